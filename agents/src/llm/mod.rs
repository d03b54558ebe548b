//! LLM agents: calls to any OpenAI-compatible endpoint (`[llm.<name>]` tables), made
//! durable on the log, and the built-in kinds that use them.

pub mod model;
pub mod tools;

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::backend::Backend;
use crate::config::{AgentDef, ConfigError, StartAgentsError};
use crate::runtime::{AgentHandle, Runtime};

pub use model::{ChatModel, ChatOutcome, LlmError, TokenUsage};

/// The agent kinds this module builds.
pub const KINDS: &[&str] = &["llm", "llm_router", "tool_agent"];

/// `[llm.<name>]` tables: the endpoints LLM agents may call, by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct LlmSettings {
    /// Endpoint definitions by name.
    pub endpoints: BTreeMap<String, toml::Table>,
}

/// Checks an LLM agent's definition.
pub(crate) fn validate(def: &AgentDef, _settings: &LlmSettings) -> Result<(), ConfigError> {
    Err(ConfigError::Options {
        name: def.name.clone(),
        reason: format!("kind `{}` is not built yet", def.kind),
    })
}

/// Starts an LLM agent.
pub(crate) async fn start<B: Backend>(
    _runtime: &Runtime<B>,
    def: &AgentDef,
    settings: &LlmSettings,
) -> Result<AgentHandle, StartAgentsError> {
    Err(validate(def, settings)
        .err()
        .unwrap_or(ConfigError::Options {
            name: def.name.clone(),
            reason: "not built yet".to_string(),
        })
        .into())
}
