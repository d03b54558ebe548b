//! Durable LLM calls: the production [`ChatModel`] of one agent.
//!
//! Every answered call is written to the agent's call log `agent.llm.<agent>` (key
//! `<topic>/<partition>/<offset>/<step>` of the input event; value: request, response,
//! tokens, latency, cost) and made durable BEFORE the answer is handed to the agent,
//! so before any effect of it is emitted. A re-run of the same event and step (after
//! a crash, a rebalance or a retry) is answered from the log: no second cost, and the
//! same answer, hence the same decision.
//!
//! Memory: recordings are only ever needed for events that may be delivered again,
//! i.e. not yet committed. The runtime commits after each polled batch, so those lie
//! within one batch behind the newest event handled in their partition. The index
//! therefore keeps, per input partition, only the recordings of the newest
//! [`RECALL_WINDOW`] offsets (pruned on insert), whatever the log's length: memory is
//! bounded by window × partitions × steps, not by history. On start the whole call log
//! is read once (its retention bounds the start-up read) and pruned the same way, so
//! recordings of events left uncommitted by a crash are found however long ago it
//! was. Replays ([`Recall::Everything`]) keep every recording of the range they read.
//!
//! A call whose recording fails is not used ([`LlmError::Record`], an unavailable
//! dependency: the event waits and is tried again, calling the model again), so no
//! effect ever rests on an answer that a re-run could not find.
//!
//! Limit: recordings made by another process after this one started are not seen (no
//! tailing), so if a rebalance moves an uncommitted, already-answered event to another
//! process, that process calls the model once more (and records that call too).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::client::LlmClient;
use super::model::{ChatModel, ChatOutcome, LlmError, TokenUsage};
use crate::backend::{Backend, EventStream, ReadError, Sink, StartAt, TopicError};
use crate::event::{now_ms, Event, OutRecord};
use crate::metrics::{inc, llm_metrics, LlmCallMetrics, LlmErrorKind};

/// Input offsets per partition whose recordings the live index keeps (see the
/// module documentation).
pub const RECALL_WINDOW: i64 = 10_000;

/// The call log of `agent`.
pub fn call_log_topic(agent: &str) -> String {
    format!("agent.llm.{agent}")
}

/// The call log key of `event`'s call number `step`.
pub fn call_key(event: &Event, step: u32) -> String {
    format!(
        "{}/{}/{}/{step}",
        event.topic, event.partition, event.offset
    )
}

/// `(topic, partition, offset, step)` from a call log key (topic names cannot hold `/`).
pub fn parse_call_key(key: &str) -> Option<(String, i32, i64, u32)> {
    let mut parts = key.rsplitn(4, '/');
    let step = parts.next()?.parse().ok()?;
    let offset = parts.next()?.parse().ok()?;
    let partition = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_string(), partition, offset, step))
}

/// One call as written to the call log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallRecord {
    /// `<topic>/<partition>/<offset>/<step>` of the input event.
    pub key: String,
    /// The `[llm.<name>]` endpoint called.
    pub endpoint: String,
    /// The model that answered.
    pub model: String,
    /// What was asked.
    pub request: CreateChatCompletionRequest,
    /// What was answered.
    pub response: CreateChatCompletionResponse,
    /// Prompt tokens.
    pub tokens_in: u64,
    /// Completion tokens.
    pub tokens_out: u64,
    /// Time the call took, microseconds.
    pub latency_us: u64,
    /// Cost from the endpoint's prices.
    pub cost: f64,
    /// When the answer was recorded, ms since the epoch.
    pub recorded_at: i64,
}

impl CallRecord {
    fn outcome(&self) -> ChatOutcome {
        ChatOutcome {
            response: self.response.clone(),
            usage: TokenUsage {
                input: self.tokens_in,
                output: self.tokens_out,
            },
            latency: Duration::from_micros(self.latency_us),
            cost: self.cost,
            model: self.model.clone(),
            replayed: true,
        }
    }
}

/// Which recordings the index keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recall {
    /// Those of the newest [`RECALL_WINDOW`] offsets of each input partition (live).
    Window,
    /// All that were read (a replay of a bounded range).
    Everything,
}

/// Where the model's answers come from: the call log, the endpoint, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallMode {
    /// Call the endpoint and record the call (normal running).
    Live,
    /// Fail with [`LlmError::NotRecorded`] (a replay that must not spend anything).
    ReplayRecorded,
    /// Call the endpoint for EVERY call, recorded or not, and record nothing (a replay
    /// with `--live`: what the model decides now, to compare with what it decided
    /// then; the real call log stays the record of what production did). The call
    /// log is not read at all.
    ReplayLive,
}

type PartitionIndex = BTreeMap<(i64, u32), Arc<CallRecord>>;

#[derive(Debug, Default)]
struct Index {
    partitions: HashMap<(String, i32), PartitionIndex>,
}

impl Index {
    fn get(&self, topic: &str, partition: i32, offset: i64, step: u32) -> Option<Arc<CallRecord>> {
        self.partitions
            .get(&(topic.to_string(), partition))?
            .get(&(offset, step))
            .cloned()
    }

    fn insert(&mut self, recall: Recall, record: CallRecord) {
        let Some((topic, partition, offset, step)) = parse_call_key(&record.key) else {
            return;
        };
        let calls = self.partitions.entry((topic, partition)).or_default();
        calls.insert((offset, step), Arc::new(record));
        if recall == Recall::Window {
            let newest = calls.keys().next_back().map_or(offset, |(o, _)| *o);
            let oldest_kept = newest.saturating_sub(RECALL_WINDOW - 1);
            *calls = calls.split_off(&(oldest_kept, 0));
        }
    }

    fn len(&self) -> usize {
        self.partitions.values().map(BTreeMap::len).sum()
    }
}

/// Opening an agent's call log failed.
#[derive(Debug, Error)]
pub enum OpenCallLogError {
    /// The topic could not be created.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The recordings could not be read.
    #[error("reading the call log: {0}")]
    Read(#[from] ReadError),
}

/// The durable [`ChatModel`] of one agent (see the module documentation). Safe to
/// call concurrently: the index is locked only to look up and insert.
#[derive(Debug)]
pub struct DurableChatModel<S: Sink> {
    agent: String,
    client: Arc<LlmClient>,
    sink: S,
    topic: String,
    mode: CallMode,
    recall: Recall,
    index: Mutex<Index>,
    metrics: Arc<LlmCallMetrics>,
}

impl<S: Sink> DurableChatModel<S> {
    /// Whether the model calls the endpoint on a miss, and records it.
    pub fn mode(&self) -> CallMode {
        self.mode
    }

    /// Recordings currently indexed.
    pub fn indexed(&self) -> usize {
        self.lock().len()
    }

    /// This agent's LLM counters.
    pub fn metrics(&self) -> &Arc<LlmCallMetrics> {
        &self.metrics
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn record(&self, record: &CallRecord) -> Result<(), LlmError> {
        let value = serde_json::to_vec(record).map_err(|e| LlmError::Record(e.to_string()))?;
        let out = OutRecord {
            key: Some(Bytes::from(record.key.clone())),
            value: Some(Bytes::from(value)),
            headers: vec![(
                "content-type".to_string(),
                Bytes::from_static(b"application/json"),
            )],
            timestamp: record.recorded_at,
        };
        self.sink
            .produce(&self.topic, vec![out])
            .await
            .map_err(|e| LlmError::Record(e.to_string()))
    }

    fn count_error(&self, error: &LlmError) {
        self.metrics.observe_error(match error {
            LlmError::Unavailable { .. } => LlmErrorKind::Unavailable,
            LlmError::Refused { .. } => LlmErrorKind::Refused,
            LlmError::Record(_) => LlmErrorKind::Record,
            LlmError::NotRecorded { .. } => LlmErrorKind::NotRecorded,
        });
    }
}

impl<B: Backend> DurableChatModel<B> {
    /// The durable model of `agent` calling `client`: creates the call log if needed
    /// and indexes its recordings (per `recall`) before returning, except in
    /// [`CallMode::ReplayLive`], which never answers from them.
    pub async fn open(
        backend: B,
        agent: &str,
        client: Arc<LlmClient>,
        mode: CallMode,
        recall: Recall,
    ) -> Result<DurableChatModel<B>, OpenCallLogError> {
        let topic = call_log_topic(agent);
        // One partition: the log reads back in call order.
        backend.ensure_topic(&topic, 1, false).await?;
        let mut index = Index::default();
        let mut records = match mode {
            // Never answered from: nothing to read (a dropped sender ends the stream).
            CallMode::ReplayLive => EventStream::channel().1,
            CallMode::Live | CallMode::ReplayRecorded => {
                backend.read_topic(&topic, StartAt::Earliest).await?
            }
        };
        while let Some(event) = records.next().await {
            let event = event?;
            let parsed = event
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<CallRecord>(v).ok());
            match parsed {
                Some(record) => index.insert(recall, record),
                None => tracing::warn!(
                    agent,
                    offset = event.offset,
                    "unreadable call log record skipped"
                ),
            }
        }
        tracing::debug!(agent, recordings = index.len(), "call log indexed");
        let metrics = llm_metrics().of(agent, &client.settings().model);
        Ok(DurableChatModel {
            agent: agent.to_string(),
            client,
            sink: backend,
            topic,
            mode,
            recall,
            index: Mutex::new(index),
            metrics,
        })
    }
}

impl<S: Sink + 'static> ChatModel for DurableChatModel<S> {
    async fn chat(
        &self,
        event: &Event,
        step: u32,
        request: CreateChatCompletionRequest,
    ) -> Result<ChatOutcome, LlmError> {
        let recorded = match self.mode {
            CallMode::ReplayLive => None,
            CallMode::Live | CallMode::ReplayRecorded => {
                self.lock()
                    .get(&event.topic, event.partition, event.offset, step)
            }
        };
        if let Some(record) = recorded {
            inc(&self.metrics.replayed, 1);
            return Ok(record.outcome());
        }
        if self.mode == CallMode::ReplayRecorded {
            let error = LlmError::NotRecorded {
                event: format!("{}/{}/{}", event.topic, event.partition, event.offset),
                step,
            };
            self.count_error(&error);
            return Err(error);
        }
        let outcome = match self.client.complete(&request).await {
            Ok(outcome) => outcome,
            Err(error) => {
                self.count_error(&error);
                return Err(error);
            }
        };
        let record = CallRecord {
            key: call_key(event, step),
            endpoint: self.client.name().to_string(),
            model: outcome.model.clone(),
            request,
            response: outcome.response.clone(),
            tokens_in: outcome.usage.input,
            tokens_out: outcome.usage.output,
            latency_us: outcome.latency.as_micros().min(u128::from(u64::MAX)) as u64,
            cost: outcome.cost,
            recorded_at: now_ms(),
        };
        if self.mode == CallMode::Live {
            if let Err(error) = self.record(&record).await {
                tracing::warn!(agent = %self.agent, key = %record.key, %error, "recording a model call failed; its answer is not used");
                self.count_error(&error);
                return Err(error);
            }
        }
        self.metrics.observe_call(
            outcome.usage.input,
            outcome.usage.output,
            outcome.cost,
            outcome.latency,
        );
        if self.mode == CallMode::Live {
            // A re-run of this event is answered from here, as from the log.
            self.lock().insert(self.recall, record);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: &str) -> CallRecord {
        CallRecord {
            key: key.to_string(),
            endpoint: "e".to_string(),
            model: "m".to_string(),
            request: serde_json::from_value(
                serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "x"}]}),
            )
            .unwrap(),
            response: serde_json::from_value(serde_json::json!({
                "id": "1", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
            }))
            .unwrap(),
            tokens_in: 3,
            tokens_out: 1,
            latency_us: 10,
            cost: 0.5,
            recorded_at: 1,
        }
    }

    #[test]
    fn keys_round_trip() {
        assert_eq!(
            parse_call_key("orders.v1/2/77/1"),
            Some(("orders.v1".to_string(), 2, 77, 1))
        );
        assert_eq!(parse_call_key("nonsense"), None);
    }

    #[test]
    fn the_live_index_keeps_only_the_newest_window_per_partition() {
        let mut index = Index::default();
        for offset in 0..(RECALL_WINDOW + 5) {
            index.insert(Recall::Window, record(&format!("in/0/{offset}/0")));
        }
        index.insert(Recall::Window, record("in/1/3/0"));
        assert_eq!(index.len() as i64, RECALL_WINDOW + 1);
        assert!(index.get("in", 0, 4, 0).is_none(), "pruned");
        assert!(index.get("in", 0, 5, 0).is_some());
        assert!(
            index.get("in", 1, 3, 0).is_some(),
            "other partitions unaffected"
        );
        let outcome = index.get("in", 0, RECALL_WINDOW, 0).unwrap().outcome();
        assert!(outcome.replayed);
        assert_eq!(
            outcome.usage,
            TokenUsage {
                input: 3,
                output: 1
            }
        );

        let mut everything = Index::default();
        for offset in 0..(RECALL_WINDOW + 5) {
            everything.insert(Recall::Everything, record(&format!("in/0/{offset}/0")));
        }
        assert_eq!(everything.len() as i64, RECALL_WINDOW + 5);
    }
}
