//! The seam between the LLM agent kinds and whatever answers their chat requests.
//!
//! Kinds (`llm`, `llm_router`, `tool_agent`) build OpenAI chat requests and hand them to
//! a [`ChatModel`] together with the event and the step they are for. The production
//! model is the durable client: it answers from the agent's call log
//! (`agent.llm.<agent>`) when this event and step were already answered (a re-run
//! after a crash or rebalance, or a replay), and otherwise calls the endpoint and
//! records the call before returning it. Kinds never know which happened, so a
//! re-run makes the same decision at no cost.

use std::future::Future;
use std::time::Duration;

use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use thiserror::Error;

use crate::event::Event;

/// Tokens one call used, as the endpoint reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens.
    pub input: u64,
    /// Completion tokens.
    pub output: u64,
}

/// One answered chat request, fresh from the endpoint or replayed from the call log.
#[derive(Debug, Clone)]
pub struct ChatOutcome {
    /// The endpoint's response, as OpenAI defines it.
    pub response: CreateChatCompletionResponse,
    /// Tokens used (those of the original call when replayed).
    pub usage: TokenUsage,
    /// Time the original call took.
    pub latency: Duration,
    /// Cost of the original call, from the endpoint's configured prices.
    pub cost: f64,
    /// The model that answered.
    pub model: String,
    /// `true` when the answer came from the call log instead of the endpoint.
    pub replayed: bool,
}

/// A chat request could not be answered.
#[derive(Debug, Error)]
pub enum LlmError {
    /// The endpoint is unreachable, timing out, rate limiting (429) or failing (5xx)
    /// after every retry, or its circuit breaker is open. The event is not at fault:
    /// the agent keeps its place and tries again later; nothing is dead-lettered.
    #[error("model endpoint `{endpoint}` unavailable: {reason}")]
    Unavailable {
        /// The `[llm.<name>]` endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The endpoint refused the request itself (a 4xx other than 429): retrying the
    /// same request cannot help.
    #[error("model endpoint `{endpoint}` refused the request: {reason}")]
    Refused {
        /// The `[llm.<name>]` endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
    /// The call could not be written to the call log, so its answer must not be
    /// acted on (a re-run would call the model again and might decide otherwise).
    #[error("recording the call failed: {0}")]
    Record(String),
    /// A replay found no recorded answer for this event and step, and was told not
    /// to call the model.
    #[error("no recorded answer for {event} step {step}")]
    NotRecorded {
        /// `topic/partition/offset` of the event.
        event: String,
        /// The step.
        step: u32,
    },
}

impl From<LlmError> for crate::agent::HandlerError {
    fn from(error: LlmError) -> Self {
        match error {
            LlmError::Unavailable { .. } | LlmError::Record(_) => {
                crate::agent::HandlerError::unavailable(error.to_string())
            }
            LlmError::Refused { .. } | LlmError::NotRecorded { .. } => {
                crate::agent::HandlerError::new(error.to_string())
            }
        }
    }
}

/// Answers chat requests on behalf of one agent. `event` and `step` identify the
/// call: the same event (topic, partition, offset) and step always get the same
/// answer once one was recorded. Steps count from 0 within one handling of an event.
pub trait ChatModel: Send + Sync + 'static {
    /// Answers `request` for `event` at `step`.
    fn chat(
        &self,
        event: &Event,
        step: u32,
        request: CreateChatCompletionRequest,
    ) -> impl Future<Output = Result<ChatOutcome, LlmError>> + Send;
}
