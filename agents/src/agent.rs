//! The agent API: an [`Agent`] handles one [`Event`] at a time with a [`Context`] through
//! which it emits events, reads and writes keyed state, records decisions and reports
//! metrics. Nothing it does through the context is visible until the handler returns
//! `Ok`: then the runtime writes the emits, decisions and state changes, waits until
//! they are durable, and only then commits the input (at-least-once).
//!
//! The runtime hands an instance its events in batches ([`Agent::handle_batch`]): the
//! outputs of a whole batch are written together (one append per output partition), made
//! durable once and committed once, so the per-event cost is the handler's own.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use thiserror::Error;

use crate::envelope::Envelope;
use crate::event::{Event, OutRecord};
use crate::metrics::AgentMetrics;
use crate::state::StateStore;

/// Headers that every record emitted while handling an event inherits from it: the
/// correlation id of a request/reply or fan-out, and the fan-out's size and index, so
/// an `aggregate` agent downstream can join the results of one fan-out.
pub const INHERITED_HEADERS: [&str; 3] = ["correlation_id", "fanout.count", "fanout.index"];

/// A handler failure. An ordinary one is retried per the agent's policy and finally
/// dead-lettered with its message (and any extra headers) on the record; an
/// [`HandlerError::unavailable`] one is retried without limit and never dead-letters.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct HandlerError {
    /// What went wrong, as written to the `dlq.error` header.
    pub message: String,
    /// A dependency (a model server, a tool) is unreachable: the event is not at fault,
    /// so it is retried with backoff until the dependency returns, keeping the agent's
    /// place on the log, instead of being dead-lettered.
    pub unavailable: bool,
    /// Extra headers for the dead-lettered record (e.g. the raw model answer), so an
    /// operator sees why without re-running the event.
    pub dlq_headers: Vec<(String, String)>,
}

impl HandlerError {
    /// A failure described by `message`: retried, then dead-lettered.
    pub fn new(message: impl Into<String>) -> HandlerError {
        HandlerError {
            message: message.into(),
            unavailable: false,
            dlq_headers: Vec::new(),
        }
    }

    /// A dependency is down: retried with backoff for as long as it takes, never
    /// dead-lettered.
    pub fn unavailable(message: impl Into<String>) -> HandlerError {
        HandlerError {
            unavailable: true,
            ..HandlerError::new(message)
        }
    }

    /// Adds a header to the record if it ends up dead-lettered.
    pub fn with_dlq_header(mut self, name: &str, value: impl Into<String>) -> HandlerError {
        self.dlq_headers.push((name.to_string(), value.into()));
        self
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

    /// Handles a batch of events in offset order (per partition), all through one
    /// context: what it emits for the whole batch is written together once every event
    /// is handled. Call [`Context::start_event`] before each event so that its trace and
    /// inherited headers apply to what it emits, and so that a failure discards only
    /// that event's outputs. The default calls [`Agent::handle`] for each event.
    ///
    /// On `Err`, the events before [`BatchError::index`] count as handled (when
    /// `start_event` was called for each) and the failed one is retried on its own with
    /// [`Agent::handle`] per the retry policy, then the rest of the batch follows.
    fn handle_batch(
        &self,
        events: &[Event],
        ctx: &mut Context,
    ) -> impl Future<Output = Result<(), BatchError>> + Send {
        async move {
            for (index, event) in events.iter().enumerate() {
                ctx.start_event(event);
                self.handle(event, ctx)
                    .await
                    .map_err(|error| BatchError { index, error })?;
            }
            Ok(())
        }
    }
}

/// An event of a batch failed (see [`Agent::handle_batch`]).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("event {index} of the batch failed: {error}")]
pub struct BatchError {
    /// Index of the failed event in the batch.
    pub index: usize,
    /// Why it failed.
    pub error: HandlerError,
}

/// Where the current event's outputs start in a batch context, so that its failure
/// discards only its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Marks {
    pub(crate) emits: usize,
    pub(crate) decisions: usize,
    pub(crate) state_writes: usize,
}

/// Everything an agent may do while handling one event (or a batch), buffered until it
/// succeeds.
#[derive(Debug)]
pub struct Context {
    agent_id: Arc<str>,
    /// Known from the event, or started on first use: most raw records carry no trace,
    /// and an agent that never asks should not pay for a new id per event.
    trace_id: OnceLock<String>,
    attempt: u32,
    state: Arc<StateStore>,
    metrics: Arc<AgentMetrics>,
    inherited: Vec<(String, Bytes)>,
    pub(crate) emits: Vec<(String, OutRecord)>,
    pub(crate) decisions: Vec<OutRecord>,
    pub(crate) state_writes: Vec<(String, Option<serde_json::Value>)>,
    /// Where the current event's outputs start.
    pub(crate) marks: Marks,
    /// How many events [`Context::start_event`] has started.
    pub(crate) started: usize,
}

impl Context {
    pub(crate) fn new(
        agent_id: Arc<str>,
        trace_id: Option<String>,
        attempt: u32,
        state: Arc<StateStore>,
        metrics: Arc<AgentMetrics>,
    ) -> Context {
        let known = OnceLock::new();
        if let Some(id) = trace_id {
            let _ = known.set(id);
        }
        Context {
            agent_id,
            trace_id: known,
            attempt,
            state,
            metrics,
            inherited: Vec::new(),
            emits: Vec::new(),
            decisions: Vec::new(),
            state_writes: Vec::new(),
            marks: Marks::default(),
            started: 0,
        }
    }

    /// Starts handling `event` in a batch: its trace and inherited headers apply from
    /// now on, and its outputs are marked so that its failure discards only them.
    /// Handlers of single events never need this.
    pub fn start_event(&mut self, event: &Event) {
        self.marks = Marks {
            emits: self.emits.len(),
            decisions: self.decisions.len(),
            state_writes: self.state_writes.len(),
        };
        self.started += 1;
        self.trace_id = OnceLock::new();
        if !event.headers.is_empty() {
            // A header-less record has no trace to continue: leave it to first use.
            if let Some(id) = event.trace_id() {
                let _ = self.trace_id.set(id);
            }
        }
        self.set_inherited(event);
    }

    /// Discards the outputs of the current event (it failed).
    pub(crate) fn discard_current(&mut self) {
        self.emits.truncate(self.marks.emits);
        self.decisions.truncate(self.marks.decisions);
        self.state_writes.truncate(self.marks.state_writes);
    }

    /// Continues `trace` (a retried event keeps the trace of its first attempt).
    pub(crate) fn set_trace(&mut self, trace: String) {
        self.trace_id = OnceLock::from(trace);
    }

    /// Sets the attempt number reported to the handler.
    pub(crate) fn set_attempt(&mut self, attempt: u32) {
        self.attempt = attempt;
    }

    /// Carries the workflow headers of `event` ([`INHERITED_HEADERS`]) onto every
    /// record emitted with [`Context::emit`], so a fan-out's results find their
    /// fan-in whichever agents they pass through.
    pub(crate) fn inheriting(mut self, event: &Event) -> Context {
        self.set_inherited(event);
        self
    }

    fn set_inherited(&mut self, event: &Event) {
        self.inherited.clear();
        if event.headers.is_empty() {
            return;
        }
        self.inherited = event
            .headers
            .iter()
            .filter(|h| {
                INHERITED_HEADERS
                    .iter()
                    .any(|n| h.name.as_ref() == n.as_bytes())
            })
            .filter_map(|h| {
                let name = String::from_utf8_lossy(&h.name).into_owned();
                Some((name, h.value.clone()?))
            })
            .collect();
    }

    /// The inherited workflow header `name` of the event being handled.
    pub fn inherited(&self, name: &str) -> Option<&Bytes> {
        self.inherited
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
    }

    /// This agent's id (its name in the configuration).
    pub fn agent_id(&self) -> &str {
        &self.agent_id
    }

    /// The trace the current event belongs to (a new one is started for events that
    /// carry none, so everything emitted while handling one event shares a trace).
    pub fn trace_id(&self) -> &str {
        self.trace_id.get_or_init(crate::envelope::new_trace_id)
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
        let envelope = Envelope::new(
            event_type,
            &self.agent_id,
            Some(self.trace_id().to_string()),
            data,
        );
        let mut record = envelope.to_record(key);
        record.headers.extend(self.inherited.iter().cloned());
        self.emits.push((topic.to_string(), record));
    }

    /// Emits a plain record as given (forwarding, or non-enveloped formats).
    pub fn emit_raw(&mut self, topic: &str, record: OutRecord) {
        self.emits.push((topic.to_string(), record));
    }

    /// Records a decision in the audit log `agent.decisions.<agent_id>`: an envelope of
    /// type `decision` whose data holds `decision` and `details`.
    pub fn decide(&mut self, decision: &str, details: serde_json::Value) {
        let data = serde_json::json!({ "decision": decision, "details": details });
        let envelope = Envelope::new(
            "decision",
            &self.agent_id,
            Some(self.trace_id().to_string()),
            data,
        );
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
