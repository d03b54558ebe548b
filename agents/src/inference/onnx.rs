//! The `onnx` agent kind: maps each event's fields to input rows, scores it in a micro-
//! batch with the model version in service, and emits a prediction (scores, label,
//! model name and version) to `output_topic`, an alert to `alert_topic` when the score
//! reaches `threshold`, and a decision naming the version to the audit log.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ort::environment::Environment;
use serde::Deserialize;
use serde_json::json;

use super::batcher::{BatchError, Batcher};
use super::mapping::{payload, InputSpec};
use super::model::{LoadedModel, ModelId, ModelLoadError, OnnxRunner, Scored, NO_MODEL};
use super::ort_env::session_from_bytes;
use super::registry::{sha256_hex, DeployedModel};
use super::watch::Install;
use super::windows::WindowSpec;
use crate::agent::{Agent, Context, HandlerError};
use crate::event::Event;

/// `[agents.options]` of an `onnx` agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OnnxOptions {
    /// The model's name: its key in the models topic.
    pub model: String,
    /// An ONNX file to serve until (or unless) a version is deployed through the topic.
    pub path: Option<String>,
    /// Version label of `path` (default `file`).
    pub version: Option<String>,
    /// The model's inputs and where their values come from.
    pub inputs: Vec<InputSpec>,
    /// Output tensor to read (default: the model's first output).
    pub output: Option<String>,
    /// Where predictions go.
    pub output_topic: String,
    /// Names of the output columns (`label` is the name of the winning one).
    pub labels: Option<Vec<String>>,
    /// Column compared with `threshold` (default: the last, i.e. the positive class).
    pub score_index: Option<usize>,
    /// Score at or above which an event is positive and alerted (default 0.5 for
    /// the label, no alerts without it).
    pub threshold: Option<f64>,
    /// Where alerts go (needs `threshold`).
    pub alert_topic: Option<String>,
    /// Most events scored in one session run (default 64).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest an event waits for others to fill its batch, in ms (default 0: a batch
    /// is whatever queued while the previous one ran, so batches grow with load and
    /// an idle agent adds no delay).
    #[serde(default)]
    pub max_wait_ms: u64,
    /// Sliding-window features per key, usable as `window.*` fields.
    pub windows: Option<WindowSpec>,
}

fn default_batch_size() -> usize {
    64
}

impl OnnxOptions {
    /// Parses and checks an agent's options table.
    pub fn from_table(table: &toml::Table) -> Result<OnnxOptions, String> {
        let options: OnnxOptions = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        if options.inputs.is_empty() {
            return Err("an onnx agent needs at least one [[agents.options.inputs]]".to_string());
        }
        for input in &options.inputs {
            input.check()?;
        }
        if options.alert_topic.is_some() && options.threshold.is_none() {
            return Err("options.alert_topic needs options.threshold".to_string());
        }
        if options.batch_size == 0 {
            return Err("options.batch_size must be at least 1".to_string());
        }
        Ok(options)
    }
}

/// What an `onnx` agent's instances share: the options, the batcher (whose thread owns
/// the session) and the ONNX Runtime environment to build new versions' sessions in.
pub(crate) struct Shared {
    options: OnnxOptions,
    inputs: Arc<Vec<InputSpec>>,
    batcher: Batcher<OnnxRunner>,
    environment: &'static Environment,
    intra_op_threads: usize,
    serving: Mutex<Option<Arc<ModelId>>>,
}

impl Install for Shared {
    fn install(&self, model: &DeployedModel) -> Result<(), String> {
        let id = ModelId {
            name: model.name.clone(),
            version: model.version.clone(),
            sha256: model.sha256.clone(),
        };
        self.load(id, &model.bytes).map_err(|e| e.to_string())
    }
}

impl Shared {
    fn load(&self, id: ModelId, bytes: &[u8]) -> Result<(), ModelLoadError> {
        let session = session_from_bytes(self.environment, bytes, self.intra_op_threads)
            .map_err(ModelLoadError::Session)?;
        let loaded = LoadedModel::check(
            id,
            session,
            self.inputs.clone(),
            self.options.output.as_deref(),
            self.options.batch_size,
        )?;
        let id = loaded.id.clone();
        self.batcher
            .swap(loaded)
            .map_err(|e| ModelLoadError::Session(e.to_string()))?;
        *self.serving.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
        Ok(())
    }
}

/// An `onnx` agent. Cloning shares the model and batcher.
#[derive(Clone)]
pub struct OnnxAgent {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OnnxAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxAgent")
            .field("model", &self.shared.options.model)
            .field("serving", &self.serving())
            .finish_non_exhaustive()
    }
}

impl OnnxAgent {
    /// An agent with no model in service yet (events wait until one is installed).
    /// `callers` bounds the rows outstanding at once (instances × `max_in_flight`).
    pub fn new(
        name: &str,
        options: OnnxOptions,
        environment: &'static Environment,
        intra_op_threads: usize,
        callers: usize,
    ) -> std::io::Result<OnnxAgent> {
        let batcher = Batcher::start(
            name,
            OnnxRunner::default(),
            options.batch_size,
            Duration::from_millis(options.max_wait_ms),
            callers,
        )?;
        Ok(OnnxAgent {
            shared: Arc::new(Shared {
                inputs: Arc::new(options.inputs.clone()),
                options,
                batcher,
                environment,
                intra_op_threads,
                serving: Mutex::new(None),
            }),
        })
    }

    /// Loads an ONNX file's bytes as `version` and puts it into service.
    pub fn load(&self, version: &str, bytes: &[u8]) -> Result<(), ModelLoadError> {
        let id = ModelId {
            name: self.shared.options.model.clone(),
            version: version.to_string(),
            sha256: sha256_hex(bytes),
        };
        self.shared.load(id, bytes)
    }

    /// The version in service, if any.
    pub fn serving(&self) -> Option<Arc<ModelId>> {
        self.shared
            .serving
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The options it runs with.
    pub fn options(&self) -> &OnnxOptions {
        &self.shared.options
    }

    /// Scores one row (one `Vec` per input) through the shared batcher: what `handle`
    /// does after mapping, exposed for benchmarks and embedding in custom agents.
    pub async fn score_row(&self, row: Vec<Vec<f64>>) -> Result<Scored, BatchError> {
        self.shared.batcher.submit(row).await
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn mapping_error(error: impl std::fmt::Display) -> HandlerError {
        HandlerError::new(format!("input mapping: {error}")).with_dlq_header("dlq.stage", "input")
    }
}

impl Agent for OnnxAgent {
    fn kind(&self) -> &str {
        "onnx"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let options = &self.shared.options;
        let needs_json =
            options.windows.is_some() || options.inputs.iter().any(|i| i.raw.is_none());
        let payload = if needs_json {
            Some(payload(event).map_err(Self::mapping_error)?)
        } else {
            None
        };
        let extra = match (&options.windows, &payload) {
            (Some(windows), Some(payload)) => windows
                .update(event, payload, ctx)
                .map_err(Self::mapping_error)?,
            _ => Default::default(),
        };
        let row = options
            .inputs
            .iter()
            .map(|input| input.extract(event, payload.as_ref(), &extra))
            .collect::<Result<Vec<_>, _>>()
            .map_err(Self::mapping_error)?;
        let scored = match self.shared.batcher.submit(row).await {
            Ok(scored) => scored,
            Err(BatchError::Failed(reason)) if reason == NO_MODEL => {
                return Err(HandlerError::unavailable(format!(
                    "model `{}`: {NO_MODEL}",
                    options.model
                )))
            }
            Err(BatchError::Failed(reason)) => {
                return Err(
                    HandlerError::new(format!("model `{}`: {reason}", options.model))
                        .with_dlq_header("dlq.stage", "model"),
                )
            }
            Err(BatchError::Stopped) => return Err(HandlerError::unavailable("agent stopping")),
        };
        let index = options
            .score_index
            .unwrap_or(scored.scores.len().saturating_sub(1));
        let score = f64::from(scored.scores.get(index).copied().ok_or_else(|| {
            HandlerError::new(format!(
                "score_index {index} is outside the model's {} outputs",
                scored.scores.len()
            ))
        })?);
        let threshold = options.threshold.unwrap_or(0.5);
        let positive = score >= threshold;
        let class = if scored.scores.len() == 1 {
            usize::from(positive)
        } else {
            argmax(&scored.scores)
        };
        let label = options
            .labels
            .as_ref()
            .and_then(|l| l.get(class).cloned())
            .unwrap_or_else(|| class.to_string());
        let model = &scored.model;
        let source =
            json!({"topic": &*event.topic, "partition": event.partition, "offset": event.offset});
        let prediction = json!({
            "model": model.name,
            "version": model.version,
            "sha256": model.sha256,
            "scores": scored.scores,
            "score": score,
            "label": label,
            "batch": scored.batch,
            "source": source,
        });
        ctx.emit(
            &options.output_topic,
            event.key.clone(),
            "prediction",
            prediction.clone(),
        );
        let alerted = options.threshold.is_some() && positive;
        if alerted {
            if let Some(topic) = &options.alert_topic {
                ctx.emit(topic, event.key.clone(), "prediction.alert", prediction);
                ctx.metric("alerts", 1);
            }
        }
        ctx.decide(
            if alerted { "alert" } else { "scored" },
            json!({
                "model": model.name,
                "version": model.version,
                "score": score,
                "label": label,
                "source": source,
            }),
        );
        ctx.metric("scored", 1);
        Ok(())
    }
}

fn argmax(scores: &[f32]) -> usize {
    scores
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, v)| {
            if *v > bv {
                (i, *v)
            } else {
                (bi, bv)
            }
        })
        .0
}
