//! Delivering one event to an agent: attempts with exponential backoff, then the
//! handler's outputs written durably (emits, decisions, state), or, after the last
//! attempt, the event written to its dead-letter topic. Either way the event is then
//! done and its offset may be committed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;

use tokio::sync::watch;

use crate::agent::{Agent, Context, HandlerError};
use crate::backend::{ProduceError, Sink};
use crate::event::{Event, OutRecord};
use crate::metrics::{inc, AgentMetrics};
use crate::state::{state_topic, StateStore};

/// Header naming the handler's last error on a dead-lettered record.
pub const DLQ_ERROR: &str = "dlq.error";
/// Header naming the topic the record was read from.
pub const DLQ_TOPIC: &str = "dlq.original.topic";
/// Header naming the partition the record was read from.
pub const DLQ_PARTITION: &str = "dlq.original.partition";
/// Header naming the offset the record was read from.
pub const DLQ_OFFSET: &str = "dlq.original.offset";
/// Header counting the attempts made.
pub const DLQ_ATTEMPTS: &str = "dlq.attempts";
/// Header naming the agent that gave up.
pub const DLQ_AGENT: &str = "dlq.agent";

/// How often and how patiently an event is retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (at least 1).
    pub max_attempts: u32,
    /// Wait before the first retry; doubled each time.
    pub initial_backoff: Duration,
    /// Longest wait between attempts.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// What became of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The handler succeeded and its outputs are durable.
    Handled,
    /// Every attempt failed; the event is durable in the dead-letter topic.
    DeadLettered,
}

/// An event could neither be handled nor dead-lettered; it must not be committed.
#[derive(Debug, Error)]
#[error("event {topic}-{partition}@{offset} not delivered: {reason}")]
pub struct DeliveryError {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Why.
    pub reason: NotDelivered,
}

/// Why an event was left undelivered.
#[derive(Debug, Error)]
pub enum NotDelivered {
    /// The dead-letter write failed.
    #[error("dead-letter write failed: {0}")]
    DeadLetter(#[from] ProduceError),
    /// The instance was stopped while a dependency of the handler was unavailable.
    #[error("stopped while waiting for an unavailable dependency: {0}")]
    Stopped(String),
}

/// An event's failed attempts so far: failures count towards `max_attempts`, waits for
/// an unavailable dependency do not (they only lengthen the backoff).
#[derive(Debug)]
pub(crate) struct Tally {
    failures: u32,
    waits: u32,
    /// When to give up and dead-letter.
    pub(crate) max_attempts: u32,
}

impl Tally {
    pub(crate) fn new(retry: &RetryPolicy) -> Tally {
        Tally {
            failures: 0,
            waits: 0,
            max_attempts: retry.max_attempts.max(1),
        }
    }
}

/// What comes after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AfterFailure {
    /// Wait this many backoff steps, then try again.
    Retry(u32),
    /// The instance is stopping and the event was not at fault: leave it undelivered.
    Stop,
    /// Out of attempts: dead-letter it.
    GiveUp,
}

/// Everything needed to deliver events to one agent.
#[derive(Debug)]
pub(crate) struct Delivery<A> {
    pub(crate) agent: Arc<A>,
    pub(crate) agent_id: Arc<str>,
    pub(crate) retry: RetryPolicy,
    pub(crate) dlq_topic: Option<String>,
    pub(crate) state: Arc<StateStore>,
    pub(crate) metrics: Arc<AgentMetrics>,
}

impl<A: Agent> Delivery<A> {
    /// Delivers one event: handled, or dead-lettered after the last attempt. Waits
    /// for an unavailable dependency (see [`HandlerError::unavailable`]) until `stop`
    /// turns true, then gives up without dead-lettering.
    pub(crate) async fn deliver<S: Sink>(
        &self,
        sink: &S,
        event: &Event,
        stop: &watch::Receiver<bool>,
    ) -> Result<Outcome, DeliveryError> {
        if let Some(reason) = &event.undecodable {
            // No handler can make sense of it and retrying cannot help: straight to the
            // dead-letter topic, raw bytes and all, so the partition moves on.
            inc(&self.metrics.errors, 1);
            tracing::warn!(agent = %self.agent_id, topic = %event.topic, partition = event.partition, offset = event.offset, %reason, "undecodable batch sent to the dead-letter topic");
            return self
                .dead_letter_durably(
                    sink,
                    event,
                    &HandlerError::new(format!("undecodable batch: {reason}")),
                    0,
                )
                .await;
        }
        let trace_id = event
            .trace_id()
            .or_else(|| Some(crate::envelope::new_trace_id()));
        let mut tally = Tally::new(&self.retry);
        let mut waits = 0;
        let mut attempt = 0;
        let last_error = loop {
            attempt += 1;
            if waits > 0 {
                inc(&self.metrics.retries, 1);
                tokio::select! {
                    _ = tokio::time::sleep(self.retry.backoff(waits)) => {}
                    _ = stopped(stop.clone()) => {}
                }
            }
            let started = Instant::now();
            let mut ctx = Context::new(
                self.agent_id.clone(),
                trace_id.clone(),
                attempt,
                self.state.clone(),
                self.metrics.clone(),
            )
            .inheriting(event);
            let result = match self.agent.handle(event, &mut ctx).await {
                Ok(()) => self
                    .write_outputs(sink, ctx)
                    .await
                    .map_err(|e| HandlerError::new(e.to_string())),
                Err(error) => Err(error),
            };
            self.metrics.observe_latency(started.elapsed());
            let error = match result {
                Ok(()) => {
                    inc(&self.metrics.events_processed, 1);
                    return Ok(Outcome::Handled);
                }
                Err(error) => error,
            };
            match self.after_failure(event, attempt, &error, &mut tally, stop) {
                AfterFailure::Retry(step) => waits = step,
                AfterFailure::Stop => {
                    return Err(self.undelivered(event, NotDelivered::Stopped(error.message)))
                }
                AfterFailure::GiveUp => break error,
            }
        };
        self.dead_letter_durably(sink, event, &last_error, tally.max_attempts)
            .await
    }

    /// Counts a failed attempt of `event` and says what comes next. Shared by the
    /// one-event and the batch paths, so both retry alike.
    pub(crate) fn after_failure(
        &self,
        event: &Event,
        attempt: u32,
        error: &HandlerError,
        tally: &mut Tally,
        stop: &watch::Receiver<bool>,
    ) -> AfterFailure {
        inc(&self.metrics.errors, 1);
        tracing::debug!(agent = %self.agent_id, topic = %event.topic, offset = event.offset, attempt, %error, "handler failed");
        if error.unavailable {
            // Not the event's fault: keep its place, wait, and try again for as long
            // as it takes, unless the instance is being stopped.
            inc(&self.metrics.unavailable, 1);
            if *stop.borrow() {
                return AfterFailure::Stop;
            }
            tally.waits += 1;
            return AfterFailure::Retry(tally.waits);
        }
        tally.failures += 1;
        if tally.failures >= tally.max_attempts {
            return AfterFailure::GiveUp;
        }
        tally.waits = tally.failures;
        AfterFailure::Retry(tally.waits)
    }

    pub(crate) fn undelivered(&self, event: &Event, reason: NotDelivered) -> DeliveryError {
        DeliveryError {
            topic: event.topic.to_string(),
            partition: event.partition,
            offset: event.offset,
            reason,
        }
    }

    /// Writes `event` to the dead-letter topic; only then may it be committed.
    pub(crate) async fn dead_letter_durably<S: Sink>(
        &self,
        sink: &S,
        event: &Event,
        error: &HandlerError,
        attempts: u32,
    ) -> Result<Outcome, DeliveryError> {
        self.dead_letter(sink, event, error, attempts)
            .await
            .map_err(|e| self.undelivered(event, NotDelivered::DeadLetter(e)))?;
        inc(&self.metrics.dead_lettered, 1);
        Ok(Outcome::DeadLettered)
    }

    async fn write_outputs<S: Sink>(&self, sink: &S, ctx: Context) -> Result<(), ProduceError> {
        let Context {
            emits,
            decisions,
            state_writes,
            ..
        } = ctx;
        self.write(sink, emits, Vec::new(), decisions, state_writes)
            .await
    }

    /// Writes a handler's (or a whole batch's) outputs, and a batch's dead letters: one
    /// produce per topic, all appended before any is awaited, so one batch per
    /// partition and one durable wait. The state writes are applied to the in-memory
    /// view once they are durable.
    pub(crate) async fn write<S: Sink>(
        &self,
        sink: &S,
        emits: Vec<(String, OutRecord)>,
        dead_letters: Vec<(String, OutRecord)>,
        decisions: Vec<OutRecord>,
        state_writes: Vec<(String, Option<serde_json::Value>)>,
    ) -> Result<(), ProduceError> {
        let mut by_topic: Vec<(String, Vec<OutRecord>)> = Vec::new();
        let emitted = emits.len() as u64;
        for (topic, record) in emits.into_iter().chain(dead_letters) {
            match by_topic.last_mut() {
                // Most batches emit to one topic: the last group is nearly always it.
                Some((t, records)) if *t == topic => records.push(record),
                _ => match by_topic.iter_mut().find(|(t, _)| *t == topic) {
                    Some((_, records)) => records.push(record),
                    None => by_topic.push((topic, vec![record])),
                },
            }
        }
        let decided = decisions.len() as u64;
        if !decisions.is_empty() {
            by_topic.push((decisions_topic(&self.agent_id), decisions));
        }
        if !state_writes.is_empty() {
            let now = crate::event::now_ms();
            let records = state_writes
                .iter()
                .map(|(key, value)| OutRecord {
                    key: Some(Bytes::from(key.clone())),
                    value: value
                        .as_ref()
                        .map(|v| Bytes::from(serde_json::to_vec(v).unwrap_or_default())),
                    headers: Vec::new(),
                    timestamp: now,
                })
                .collect();
            by_topic.push((state_topic(&self.agent_id), records));
        }
        if by_topic.is_empty() {
            return Ok(());
        }
        sink.produce_all(by_topic).await?;
        inc(&self.metrics.emits, emitted);
        inc(&self.metrics.decisions, decided);
        if !state_writes.is_empty() {
            sink.apply_state(&self.state, &state_writes);
        }
        Ok(())
    }

    async fn dead_letter<S: Sink>(
        &self,
        sink: &S,
        event: &Event,
        error: &HandlerError,
        attempts: u32,
    ) -> Result<(), ProduceError> {
        let (topic, record) = self.dead_letter_record(event, error, attempts);
        sink.produce(&topic, vec![record]).await
    }

    /// The record that dead-letters `event`, and its topic.
    pub(crate) fn dead_letter_record(
        &self,
        event: &Event,
        error: &HandlerError,
        attempts: u32,
    ) -> (String, OutRecord) {
        let topic = self
            .dlq_topic
            .clone()
            .unwrap_or_else(|| dlq_topic(&event.topic));
        let mut headers: Vec<(String, Bytes)> = event
            .headers
            .iter()
            .filter(|h| !h.name.starts_with(b"dlq."))
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.name).into_owned(),
                    h.value.clone().unwrap_or_default(),
                )
            })
            .collect();
        let text = |s: String| Bytes::from(s);
        headers.push((DLQ_ERROR.to_string(), text(error.message.clone())));
        for (name, value) in &error.dlq_headers {
            headers.push((name.clone(), text(value.clone())));
        }
        headers.push((DLQ_TOPIC.to_string(), text(event.topic.to_string())));
        headers.push((DLQ_PARTITION.to_string(), text(event.partition.to_string())));
        headers.push((DLQ_OFFSET.to_string(), text(event.offset.to_string())));
        headers.push((DLQ_ATTEMPTS.to_string(), text(attempts.to_string())));
        headers.push((DLQ_AGENT.to_string(), text(self.agent_id.to_string())));
        let record = OutRecord {
            key: event.key.clone(),
            value: event.value.clone(),
            headers,
            timestamp: event.timestamp,
        };
        (topic, record)
    }
}

/// Resolves once `stop` is true (never, if its sender is gone while false).
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The default dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// The decision audit log of an agent.
pub fn decisions_topic(agent_id: &str) -> String {
    format!("agent.decisions.{agent_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(10));
        assert_eq!(policy.backoff(2), Duration::from_millis(20));
        assert_eq!(policy.backoff(4), Duration::from_millis(50));
        assert_eq!(policy.backoff(60), Duration::from_millis(50));
    }
}
