//! In-process ML inference on ONNX Runtime (`[inference]`), models deployed
//! through a topic, and the built-in kinds that use it (onnx, embed).

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::backend::Backend;
use crate::config::{AgentDef, ConfigError, StartAgentsError};
use crate::runtime::{AgentHandle, Runtime};

/// The agent kinds this module builds.
pub const KINDS: &[&str] = &["onnx", "embed"];

/// `[inference]`: where ONNX Runtime is and how models are deployed.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct InferenceSettings {
    /// Settings by name.
    pub settings: BTreeMap<String, toml::Value>,
}

/// Checks an inference agent's definition.
pub(crate) fn validate(def: &AgentDef, _settings: &InferenceSettings) -> Result<(), ConfigError> {
    Err(ConfigError::Options {
        name: def.name.clone(),
        reason: format!("kind `{}` is not built yet", def.kind),
    })
}

/// Starts an inference agent.
pub(crate) async fn start<B: Backend>(
    _runtime: &Runtime<B>,
    def: &AgentDef,
    settings: &InferenceSettings,
) -> Result<AgentHandle, StartAgentsError> {
    Err(validate(def, settings)
        .err()
        .unwrap_or(ConfigError::Options {
            name: def.name.clone(),
            reason: "not built yet".to_string(),
        })
        .into())
}
