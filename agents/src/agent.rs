//! The agent API: an [`Agent`] handles one [`Event`] at a time with a [`Context`] through
//! which it emits events, reads and writes keyed state, records decisions and reports
//! metrics. Nothing it does through the context is visible until the handler returns
//! `Ok`: then the runtime writes the emits, decisions and state changes, waits until
//! they are durable, and only then commits the input (at-least-once).

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use thiserror::Error;

use crate::envelope::Envelope;
use crate::event::{Event, OutRecord};
use crate::metrics::AgentMetrics;
use crate::state::StateStore;

/// A handler failure; the runtime retries the event and finally dead-letters it with
/// this message in its headers.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    /// A failure described by `message`.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError(message.into())
    }
}

/// An agent: user code that reacts to events. Implement it with `async fn handle`; the
/// same value runs on every backend.
pub trait Agent: Send + Sync + 'static {
    /// The agent's kind, the label its metrics are reported under.
    fn kind(&self) -> &str {
        "custom"
    }

    /// Handles one event. Returning an error makes the runtime retry (with backoff) and,
    /// after the last attempt, dead-letter the event.
    fn handle(
        &self,
        event: &Event,
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

/// Everything an agent may do while handling one event, buffered until it succeeds.
#[derive(Debug)]
pub struct Context {
    agent_id: Arc<str>,
    trace_id: Option<String>,
    attempt: u32,
    state: Arc<StateStore>,
    metrics: Arc<AgentMetrics>,
    pub(crate) emits: Vec<(String, OutRecord)>,
    pub(crate) decisions: Vec<OutRecord>,
    pub(crate) state_writes: Vec<(String, Option<serde_json::Value>)>,
}

impl Context {
    pub(crate) fn new(
        agent_id: Arc<str>,
        trace_id: Option<String>,
        attempt: u32,
        state: Arc<StateStore>,
        metrics: Arc<AgentMetrics>,
    ) -> Context {
        Context {
            agent_id,
            trace_id,
            attempt,
            state,
            metrics,
            emits: Vec::new(),
            decisions: Vec::new(),
            state_writes: Vec::new(),
        }
    }

    /// This agent's id (its name in the configuration).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The trace the current event belongs to (a new one is started for events that
    /// carry none, so everything emitted while handling one event shares a trace).
    pub fn trace_id(&self) -> &str {
        self.trace_id.as_deref().unwrap_or_default()
    }

    /// 1 for the first attempt at this event, 2 for the first retry, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Emits an enveloped event (JSON value, `ce_*` headers) continuing the current trace.
    pub fn emit(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        event_type: &str,
        data: serde_json::Value,
    ) {
        let envelope = Envelope::new(event_type, &self.agent_id, self.trace_id.clone(), data);
        self.emits
            .push((topic.to_string(), envelope.to_record(key)));
    }

    /// Emits a plain record as given (forwarding, or non-enveloped formats).
    pub fn emit_raw(&mut self, topic: &str, record: OutRecord) {
        self.emits.push((topic.to_string(), record));
    }

    /// Records a decision in the audit log `agent.decisions.<agent_id>`: an envelope of
    /// type `decision` whose data holds `decision` and `details`.
    pub fn decide(&mut self, decision: &str, details: serde_json::Value) {
        let data = serde_json::json!({ "decision": decision, "details": details });
        let envelope = Envelope::new("decision", &self.agent_id, self.trace_id.clone(), data);
        self.decisions.push(envelope.to_record(None));
    }

    /// The state under `key`, including this handler's own uncommitted writes.
    pub fn state_get(&self, key: &str) -> Option<serde_json::Value> {
        for (written, value) in self.state_writes.iter().rev() {
            if written == key {
                return value.clone();
            }
        }
        self.state.get(key)
    }

    /// Sets `key` (durable in the state topic once the handler succeeds).
    pub fn state_put(&mut self, key: &str, value: serde_json::Value) {
        self.state_writes.push((key.to_string(), Some(value)));
    }

    /// Removes `key` (a tombstone in the state topic).
    pub fn state_delete(&mut self, key: &str) {
        self.state_writes.push((key.to_string(), None));
    }

    /// Adds `delta` to the agent's custom counter `name`.
    pub fn metric(&self, name: &str, delta: u64) {
        self.metrics.add_custom(name, delta);
    }
}
