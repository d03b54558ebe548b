//! LLM agents: calls to any OpenAI-compatible endpoint (`[llm.<name>]` tables), made
//! durable on the log, and the built-in kinds that use them.
//!
//! Module map: `settings` (the typed `[llm.<name>]` tables), `client` (one endpoint's
//! HTTP client: bounded retries, `Retry-After`, concurrency limit) with `breaker`,
//! `model` (the [`ChatModel`] seam), `calls` (the durable model: every call recorded
//! in `agent.llm.<agent>` before its answer is used, re-runs answered from there),
//! `completion` (kind `llm`), `router` (kind `llm_router`), `template` and `schema`
//! (prompts and answer checks), `replay` (re-running an agent over its inputs from
//! the recordings).

pub mod breaker;
pub mod calls;
pub mod client;
pub mod completion;
pub mod model;
pub mod replay;
pub(crate) mod request;
pub mod router;
pub mod schema;
pub mod settings;
pub mod template;
pub mod tools;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use crate::backend::{Backend, TopicError};
use crate::config::{AgentDef, ConfigError, StartAgentsError};
use crate::runtime::{AgentHandle, Runtime, StartError};

pub use calls::{CallMode, DurableChatModel, Recall};
pub use client::LlmClient;
pub use completion::{CompletionOptions, LlmCompletion};
pub use model::{ChatModel, ChatOutcome, LlmError, TokenUsage};
pub use router::{LlmRouter, RouterOptions};
pub use settings::{EndpointSettings, LlmSettings};

/// The agent kinds this module builds.
pub const KINDS: &[&str] = &["llm", "llm_router", "tool_agent"];

/// Checks an LLM agent's definition: its options, and the endpoint it names.
pub(crate) fn validate(def: &AgentDef, settings: &LlmSettings) -> Result<(), ConfigError> {
    let endpoint = match def.kind.as_str() {
        "llm" => CompletionOptions::from_def(def)?.llm,
        "llm_router" => RouterOptions::from_def(def)?.llm,
        "tool_agent" => {
            tools::validate(def)?;
            tools::endpoint(def)?
        }
        _ => return Err(not_in_this_build(def)),
    };
    settings
        .endpoint(&endpoint)
        .map(|_| ())
        .map_err(|e| ConfigError::Options {
            name: def.name.clone(),
            reason: e.to_string(),
        })
}

fn not_in_this_build(def: &AgentDef) -> ConfigError {
    ConfigError::Options {
        name: def.name.clone(),
        reason: format!("kind `{}` is not available in this build", def.kind),
    }
}

/// Building an agent's durable model failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelSetupError {
    /// The endpoint is not configured, invalid, or its API key variable is unset.
    #[error(transparent)]
    Client(#[from] client::ClientError),
    /// The call log could not be created or read.
    #[error("agent `{agent}`: {source}")]
    CallLog {
        /// The agent.
        agent: String,
        /// Why.
        source: calls::OpenCallLogError,
    },
}

/// The client of endpoint `name`, shared by every agent of this process that calls it
/// with the same settings, so `max_concurrency` and the circuit breaker hold per
/// endpoint rather than per agent.
pub fn shared_client(
    name: &str,
    settings: &EndpointSettings,
) -> Result<Arc<LlmClient>, client::ClientError> {
    type Clients = Mutex<HashMap<String, Arc<LlmClient>>>;
    static CLIENTS: OnceLock<Clients> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Clients::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(client) = clients.get(name).filter(|c| c.settings() == settings) {
        return Ok(client.clone());
    }
    let client = Arc::new(LlmClient::new(name, settings)?);
    clients.insert(name.to_string(), client.clone());
    Ok(client)
}

/// The durable [`ChatModel`] of `agent` calling endpoint `endpoint`: what every LLM
/// kind (and `tool_agent`) answers through. Creates and indexes the agent's call log.
pub async fn durable_model<B: Backend>(
    backend: &B,
    agent: &str,
    endpoint: &str,
    settings: &LlmSettings,
    mode: CallMode,
    recall: Recall,
) -> Result<Arc<DurableChatModel<B>>, ModelSetupError> {
    let endpoint_settings = settings
        .endpoint(endpoint)
        .map_err(client::ClientError::from)?;
    let client = shared_client(endpoint, endpoint_settings)?;
    let model = DurableChatModel::open(backend.clone(), agent, client, mode, recall)
        .await
        .map_err(|source| ModelSetupError::CallLog {
            agent: agent.to_string(),
            source,
        })?;
    Ok(Arc::new(model))
}

/// The production model of `agent` calling endpoint `endpoint`: live calls, each
/// recorded, re-runs answered from the call log. For kinds built elsewhere, e.g.
/// `tool_agent` in this module's `start`.
pub async fn live_model<B: Backend>(
    backend: &B,
    agent: &str,
    endpoint: &str,
    settings: &LlmSettings,
) -> Result<Arc<DurableChatModel<B>>, ModelSetupError> {
    durable_model(
        backend,
        agent,
        endpoint,
        settings,
        CallMode::Live,
        Recall::Window,
    )
    .await
}

/// A model set-up failure as a start-up error naming the agent.
pub(crate) fn setup_error(def: &AgentDef, error: ModelSetupError) -> StartAgentsError {
    match error {
        ModelSetupError::Client(e) => ConfigError::Options {
            name: def.name.clone(),
            reason: e.to_string(),
        }
        .into(),
        ModelSetupError::CallLog { agent, source } => StartError::Topics {
            agent,
            source: TopicError {
                topic: calls::call_log_topic(&def.name),
                reason: source.to_string(),
            },
        }
        .into(),
    }
}

/// Starts an LLM agent.
pub(crate) async fn start<B: Backend>(
    runtime: &Runtime<B>,
    def: &AgentDef,
    settings: &LlmSettings,
) -> Result<AgentHandle, StartAgentsError> {
    let model_for = |endpoint: String| async move {
        let model = live_model(runtime.backend(), &def.name, &endpoint, settings)
            .await
            .map_err(|e| setup_error(def, e))?;
        let model_name = settings
            .endpoints
            .get(&endpoint)
            .map(|e| e.model.clone())
            .unwrap_or_default();
        Ok::<_, StartAgentsError>((model, model_name))
    };
    match def.kind.as_str() {
        "llm" => {
            let options = CompletionOptions::from_def(def)?;
            let (model, name) = model_for(options.llm.clone()).await?;
            let agent = LlmCompletion::new(options, model, &name);
            Ok(runtime.start(def.spec(), agent).await?)
        }
        "llm_router" => {
            let options = RouterOptions::from_def(def)?;
            let (model, name) = model_for(options.llm.clone()).await?;
            let agent = LlmRouter::new(options, model, &name);
            Ok(runtime.start(def.spec(), agent).await?)
        }
        "tool_agent" => {
            let (model, _) = model_for(tools::endpoint(def)?).await?;
            tools::start(runtime, def, model).await
        }
        _ => Err(not_in_this_build(def).into()),
    }
}
