//! In-process ML inference on ONNX Runtime (`[inference]`), models deployed through a
//! topic, and the built-in kinds that use it: `onnx` (tabular models with micro-batching
//! and hot-swapped versions) and `embed` (MiniLM sentence embeddings).
//!
//! ```toml
//! [inference]
//! library = ".models/libonnxruntime.so"   # default; ORT_DYLIB_PATH is honoured
//! intra_op_threads = 1                    # per session
//! models_topic = "agent.models"           # compacted, keyed by model name
//! models_poll_ms = 500
//! ```
//!
//! Module map: `ort_env` (loading the library), `batcher` (micro-batching thread),
//! `mapping` (event fields to input rows), `windows` (per-key sliding-window
//! features), `model` (load-time checks, scoring), `registry` (the models topic's
//! record format), `watch` (following it), `onnx` and `embed` (the kinds).

pub mod batcher;
pub mod embed;
pub mod mapping;
pub mod model;
pub mod onnx;
pub mod ort_env;
pub mod registry;
mod watch;
pub mod windows;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::backend::{Backend, ReadError, TopicError};
use crate::config::{AgentDef, ConfigError, StartAgentsError};
use crate::runtime::{AgentHandle, Runtime};

pub use embed::{EmbedAgent, EmbedOptions, Embedder};
pub use onnx::{OnnxAgent, OnnxOptions};
pub use ort_env::LoadRuntimeError;

/// The agent kinds this module builds.
pub const KINDS: &[&str] = &["onnx", "embed"];

/// `[inference]`: where ONNX Runtime is and how models are deployed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InferenceSettings {
    /// The ONNX Runtime shared library (default: `ORT_DYLIB_PATH`, else
    /// `.models/libonnxruntime.so`).
    pub library: Option<String>,
    /// Threads per session for one run (default 1: the broker and other agents share
    /// the cores; batching, not threads, is what makes tabular scoring fast).
    pub intra_op_threads: Option<usize>,
    /// The compacted topic models are deployed to (default `agent.models`).
    pub models_topic: Option<String>,
    /// How often agents look for new versions, in ms (default 500).
    pub models_poll_ms: Option<u64>,
}

impl InferenceSettings {
    /// The models topic.
    pub fn models_topic(&self) -> &str {
        self.models_topic
            .as_deref()
            .unwrap_or(registry::DEFAULT_MODELS_TOPIC)
    }

    /// Threads per session.
    pub fn intra_op_threads(&self) -> usize {
        self.intra_op_threads.unwrap_or(1)
    }

    /// Loads ONNX Runtime from the configured library (once per process).
    pub fn environment(&self) -> Result<&'static ort::environment::Environment, LoadRuntimeError> {
        ort_env::environment(&ort_env::library_path(self.library.as_deref()))
    }
}

/// Starting an inference agent failed.
#[derive(Debug, Error)]
pub enum StartInferenceError {
    /// ONNX Runtime is not installed where configured.
    #[error(transparent)]
    Runtime(#[from] LoadRuntimeError),
    /// The configured model file could not be read or loaded.
    #[error("agent `{agent}`: {reason}")]
    Model {
        /// The agent.
        agent: String,
        /// Why.
        reason: String,
    },
    /// The models topic could not be created.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The models topic could not be read.
    #[error("reading the models topic: {0}")]
    Read(#[from] ReadError),
    /// The batching thread could not be started.
    #[error("starting the batching thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Rows an agent can have outstanding at once: its instances times the events each
/// handles concurrently (a later `scale` only makes batches wait less or more).
fn callers(def: &AgentDef) -> usize {
    def.instances.unwrap_or(1).max(1) * def.max_in_flight.unwrap_or(1).max(1)
}

/// Checks an inference agent's definition.
pub(crate) fn validate(def: &AgentDef, _settings: &InferenceSettings) -> Result<(), ConfigError> {
    let options = |reason: String| ConfigError::Options {
        name: def.name.clone(),
        reason,
    };
    match def.kind.as_str() {
        "onnx" => OnnxOptions::from_table(&def.options)
            .map(|_| ())
            .map_err(options),
        "embed" => EmbedOptions::from_table(&def.options)
            .map(|_| ())
            .map_err(options),
        other => Err(ConfigError::UnknownKind {
            name: def.name.clone(),
            kind: other.to_string(),
        }),
    }
}

/// Starts an inference agent.
pub(crate) async fn start<B: Backend>(
    runtime: &Runtime<B>,
    def: &AgentDef,
    settings: &InferenceSettings,
) -> Result<AgentHandle, StartAgentsError> {
    validate(def, settings)?;
    let environment = settings.environment().map_err(StartInferenceError::from)?;
    let model_error = |reason: String| StartInferenceError::Model {
        agent: def.name.clone(),
        reason,
    };
    let options = |reason: String| ConfigError::Options {
        name: def.name.clone(),
        reason,
    };
    if def.kind == "embed" {
        let opts = EmbedOptions::from_table(&def.options).map_err(options)?;
        let threads = opts.intra_op_threads.unwrap_or(settings.intra_op_threads());
        let embedder = embed::load_embedder(
            environment,
            opts.model.clone(),
            opts.tokenizer.clone(),
            threads,
        )
        .await
        .map_err(model_error)?;
        let agent = EmbedAgent::new(&def.name, opts, embedder, callers(def))
            .map_err(StartInferenceError::from)?;
        return Ok(runtime.start(def.spec(), agent).await?);
    }
    let opts = OnnxOptions::from_table(&def.options).map_err(options)?;
    let agent = OnnxAgent::new(
        &def.name,
        opts.clone(),
        environment,
        settings.intra_op_threads(),
        callers(def),
    )
    .map_err(StartInferenceError::from)?;
    let backend = runtime.backend();
    let topic = settings.models_topic();
    backend
        .ensure_topic(topic, 1, true)
        .await
        .map_err(StartInferenceError::from)?;
    // Model decisions may come before the runtime creates the audit log: create it
    // first, with the one partition that keeps it in decision order.
    backend
        .ensure_topic(&crate::delivery::decisions_topic(&def.name), 1, false)
        .await
        .map_err(StartInferenceError::from)?;
    let mut follower = watch::Follower::new(topic, &opts.model);
    let deployed = watch::install_latest(backend, &def.name, &mut follower, agent.shared())
        .await
        .map_err(StartInferenceError::from)?;
    if !deployed {
        if let Some(path) = &opts.path {
            let bytes = std::fs::read(path)
                .map_err(|e| model_error(format!("reading model `{path}`: {e}")))?;
            let version = opts.version.clone().unwrap_or_else(|| "file".to_string());
            let loader = agent.clone();
            tokio::task::spawn_blocking(move || loader.load(&version, &bytes))
                .await
                .map_err(|e| model_error(e.to_string()))?
                .map_err(|e| model_error(format!("model `{path}`: {e}")))?;
        } else {
            tracing::warn!(agent = %def.name, model = %opts.model, topic, "no version deployed yet; events wait for one");
        }
    }
    watch::follow(
        backend.clone(),
        def.name.clone(),
        follower,
        Arc::downgrade(agent.shared()),
        Duration::from_millis(settings.models_poll_ms.unwrap_or(500)),
    );
    Ok(runtime.start(def.spec(), agent).await?)
}
