//! Pieces the LLM kinds share: reading their `[agents.options]`, building a chat
//! request, reading the answer, and the call facts every decision records.

use async_openai::types::chat::CreateChatCompletionRequest;
use serde_json::{json, Map, Value};

use super::model::ChatOutcome;
use crate::agent::HandlerError;
use crate::config::{AgentDef, ConfigError};
use crate::event::Event;

/// Typed access to an agent's options, refusing keys the kind does not know, so a
/// misspelt option is an error at start-up naming it rather than a silent default.
#[derive(Debug)]
pub(crate) struct Options<'a> {
    def: &'a AgentDef,
}

impl<'a> Options<'a> {
    /// The options of `def`, which may only use `known` keys.
    pub(crate) fn new(def: &'a AgentDef, known: &[&str]) -> Result<Options<'a>, ConfigError> {
        let options = Options { def };
        if let Some(unknown) = def.options.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(options.error(format!(
                "unknown option `{unknown}` for kind `{}` (known: {})",
                def.kind,
                known.join(", ")
            )));
        }
        Ok(options)
    }

    /// A configuration error about this agent.
    pub(crate) fn error(&self, reason: String) -> ConfigError {
        ConfigError::Options {
            name: self.def.name.clone(),
            reason,
        }
    }

    /// The raw option `key`.
    pub(crate) fn raw(&self, key: &str) -> Option<&'a toml::Value> {
        self.def.options.get(key)
    }

    /// An optional string option.
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.raw(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.error(format!("options.{key} must be a string"))),
        }
    }

    /// A required string option.
    pub(crate) fn required(&self, key: &str) -> Result<String, ConfigError> {
        self.string(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| self.error(format!("options.{key} is required")))
    }

    /// An optional non-negative integer option.
    pub(crate) fn unsigned(&self, key: &str, default: u32) -> Result<u32, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(toml::Value::Integer(n)) => u32::try_from(*n)
                .map_err(|_| self.error(format!("options.{key} must be between 0 and 2^32"))),
            Some(_) => Err(self.error(format!("options.{key} must be an integer"))),
        }
    }

    /// An optional number option.
    pub(crate) fn number(&self, key: &str, default: f32) -> Result<f32, ConfigError> {
        match self.raw(key) {
            None => Ok(default),
            Some(toml::Value::Float(n)) => Ok(*n as f32),
            Some(toml::Value::Integer(n)) => Ok(*n as f32),
            Some(_) => Err(self.error(format!("options.{key} must be a number"))),
        }
    }
}

/// A chat request: an optional system message, the user message, sampling limits and,
/// when given, a JSON-schema response format named `schema_name`.
pub(crate) fn chat_request(
    system: Option<&str>,
    user: String,
    max_tokens: u32,
    temperature: f32,
    schema: Option<(&str, &Value)>,
) -> Result<CreateChatCompletionRequest, HandlerError> {
    let mut messages = Vec::new();
    if let Some(system) = system {
        messages.push(json!({ "role": "system", "content": system }));
    }
    messages.push(json!({ "role": "user", "content": user }));
    // `model` stays empty: the endpoint's client fills in its configured model.
    let mut request = json!({
        "model": "",
        "messages": messages,
        "max_tokens": max_tokens,
        "temperature": temperature,
    });
    if let Some((name, schema)) = schema {
        request["response_format"] = json!({
            "type": "json_schema",
            "json_schema": { "name": name, "schema": schema, "strict": true },
        });
    }
    serde_json::from_value(request)
        .map_err(|e| HandlerError::new(format!("building the chat request: {e}")))
}

/// The text of the first choice (empty when the model said nothing).
pub(crate) fn answer_text(outcome: &ChatOutcome) -> String {
    outcome
        .response
        .choices
        .first()
        .and_then(|c| c.message.content.clone())
        .unwrap_or_default()
}

/// `<topic>/<partition>/<offset>` of an event: how decisions name their input.
pub(crate) fn event_ref(event: &Event) -> String {
    format!("{}/{}/{}", event.topic, event.partition, event.offset)
}

/// The facts of a call every decision records: which input, which model, tokens,
/// cost, latency, and whether the answer was replayed from the call log.
pub(crate) fn call_details(event: &Event, outcome: &ChatOutcome) -> Map<String, Value> {
    let mut details = Map::new();
    details.insert("input".into(), event_ref(event).into());
    details.insert("model".into(), outcome.model.clone().into());
    details.insert("tokens_in".into(), outcome.usage.input.into());
    details.insert("tokens_out".into(), outcome.usage.output.into());
    details.insert("cost".into(), json!(outcome.cost));
    details.insert(
        "latency_ms".into(),
        json!(outcome.latency.as_secs_f64() * 1e3),
    );
    details.insert("replayed".into(), outcome.replayed.into());
    details
}

/// Detail keys that describe the call rather than the decision: a replay compares
/// decisions without them.
pub const CALL_DETAIL_KEYS: [&str; 6] = [
    "model",
    "tokens_in",
    "tokens_out",
    "cost",
    "latency_ms",
    "replayed",
];
