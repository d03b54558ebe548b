//! Replaying an LLM agent: re-running it over its input topics from a point in time
//! or an offset, while writing nothing: emits, decisions, state writes and dead
//! letters are captured instead of produced. The decisions it would make are then
//! compared with those it recorded in `agent.decisions.<agent>`, matched by the
//! input event each decision names.
//!
//! By default every model call is answered from the agent's call log and none is
//! made (a call without a recording fails: "did the agent's code or options change
//! what it decides from the same answers?"). Live ([`CallMode::ReplayLive`]) every
//! call goes to the model, recordings ignored and nothing recorded ("what would the
//! model decide now?", e.g. after a prompt or model change), and each live decision
//! is compared with the recorded one.
//!
//! A replay holds what it captured and the agent's recorded decisions in memory
//! (plus, from recordings, every recording of the call log, [`Recall::Everything`]):
//! it is meant for ranges an operator inspects, not for re-processing a whole
//! retention period.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use thiserror::Error;

use super::calls::{CallMode, Recall};
use super::completion::{CompletionOptions, LlmCompletion};
use super::request::CALL_DETAIL_KEYS;
use super::router::{LlmRouter, RouterOptions};
use super::{durable_model, LlmSettings, ModelSetupError};
use crate::backend::{
    Backend, ConsumeError, EventStream, ProduceError, ReadError, Sink, StartAt, TopicError,
};
use crate::config::{AgentDef, ConfigError};
use crate::delivery::{
    decisions_topic, RetryPolicy, DLQ_ERROR, DLQ_OFFSET, DLQ_PARTITION, DLQ_TOPIC,
};
use crate::event::{Event, Header, OutRecord};
use crate::runtime::{ReplayError, Runtime};

/// A backend that reads from `inner` but keeps every record produced to it in memory
/// instead of writing it, so a replay leaves the cluster as it found it (topics it
/// needs, such as the agent's state topic, are still created).
#[derive(Debug, Clone)]
pub struct CapturingBackend<B> {
    inner: B,
    captured: Arc<Mutex<Vec<(String, OutRecord)>>>,
}

impl<B: Backend> CapturingBackend<B> {
    /// Captures writes meant for `inner`.
    pub fn new(inner: B) -> CapturingBackend<B> {
        CapturingBackend {
            inner,
            captured: Arc::default(),
        }
    }

    /// Everything produced so far, by topic, in order.
    pub fn captured(&self) -> Vec<(String, OutRecord)> {
        self.captured
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<B: Backend> Sink for CapturingBackend<B> {
    async fn produce(&self, topic: &str, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        let mut captured = self.captured.lock().unwrap_or_else(|p| p.into_inner());
        captured.extend(records.into_iter().map(|r| (topic.to_string(), r)));
        Ok(())
    }

    async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
    ) -> Result<(), TopicError> {
        self.inner.ensure_topic(topic, partitions, compacted).await
    }
}

impl<B: Backend> Backend for CapturingBackend<B> {
    type Source = B::Source;
    type Txn = B::Txn;

    /// Refused: a replay runs its agent outside any group and writes nothing, so it
    /// has no transaction to commit (the real backend's would write).
    async fn transactional(&self, _: &str) -> Result<Self::Txn, crate::exactly_once::TxnError> {
        Err(crate::exactly_once::TxnError::Failed(
            "a replay writes nothing: it runs no transactions".to_string(),
        ))
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Result<Self::Source, ConsumeError> {
        self.inner.subscribe(group, topics, client_id).await
    }

    async fn read_topic(&self, topic: &str, from: StartAt) -> Result<EventStream, ReadError> {
        self.inner.read_topic(topic, from).await
    }
}

/// A replay could not run.
#[derive(Debug, Error)]
pub enum ReplayAgentError {
    /// The agent's definition is not an LLM agent's, or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Its model could not be set up.
    #[error(transparent)]
    Model(#[from] ModelSetupError),
    /// Reading or re-running failed.
    #[error(transparent)]
    Replay(#[from] ReplayError),
    /// The recorded decisions could not be read.
    #[error("reading recorded decisions: {0}")]
    Decisions(#[from] ReadError),
}

/// A decision the replay made differently from the recorded one.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionDiff {
    /// `<topic>/<partition>/<offset>` of the input event.
    pub input: String,
    /// The recorded decision (`{decision, details}` without call facts).
    pub recorded: Value,
    /// The replayed one (from the live model with `live`).
    pub replayed: Value,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayComparison {
    /// Input events re-run.
    pub events: usize,
    /// Decisions identical to the recorded ones.
    pub identical: usize,
    /// Decisions that differ, with both.
    pub differing: Vec<DecisionDiff>,
    /// Events whose model call had no recording (so they could not be decided
    /// without calling the model), by input; always empty live.
    pub not_recorded: Vec<String>,
    /// Replayed decisions with no recorded decision to compare with, by input.
    pub unmatched: Vec<String>,
    /// Events that failed for another reason (would have been dead-lettered).
    pub failed: Vec<(String, String)>,
    /// Records the agent would have emitted (not written).
    pub emits: usize,
    /// Calls made to the live model (only with `--live`: one per call the agent made).
    pub model_calls: u64,
}

/// The comparable part of a decision record: `{decision, details}` without the
/// call's facts, its input and the model's wording of its reason.
fn comparable(event: &Event) -> Option<(String, Value)> {
    let envelope = event.envelope()?;
    let decision = envelope.data.get("decision")?.clone();
    let mut details = envelope.data.get("details")?.as_object()?.clone();
    let input = details.remove("input")?.as_str()?.to_string();
    for key in CALL_DETAIL_KEYS.iter().chain(&["reason", "raw_answer"]) {
        details.remove(*key);
    }
    Some((
        input,
        serde_json::json!({ "decision": decision, "details": details }),
    ))
}

fn header_text(record: &OutRecord, name: &str) -> String {
    record
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default()
}

/// An [`OutRecord`] read back as an [`Event`] (for envelope parsing).
fn as_event(topic: &str, record: OutRecord) -> Event {
    Event {
        topic: Arc::from(topic),
        partition: 0,
        offset: 0,
        timestamp: record.timestamp,
        key: record.key,
        value: record.value,
        headers: record
            .headers
            .into_iter()
            .map(|(name, value)| Header {
                name: name.into(),
                value: Some(value),
            })
            .collect(),
        undecodable: None,
    }
}

/// Re-runs LLM agent `def` over its input topics from `from` (see the module
/// documentation); `live` calls the model for every call, ignoring the recordings.
pub async fn replay_agent<B: Backend>(
    backend: B,
    def: &AgentDef,
    settings: &LlmSettings,
    from: StartAt,
    live: bool,
) -> Result<ReplayComparison, ReplayAgentError> {
    let mode = if live {
        CallMode::ReplayLive
    } else {
        CallMode::ReplayRecorded
    };
    let endpoint = match def.kind.as_str() {
        "llm" => CompletionOptions::from_def(def)?.llm,
        "llm_router" => RouterOptions::from_def(def)?.llm,
        other => {
            return Err(ConfigError::Options {
                name: def.name.clone(),
                reason: format!("kind `{other}` cannot be replayed from LLM recordings"),
            }
            .into())
        }
    };
    let model = durable_model(
        &backend,
        &def.name,
        &endpoint,
        settings,
        mode,
        Recall::Everything,
    )
    .await?;
    let model_name = settings
        .endpoints
        .get(&endpoint)
        .map(|e| e.model.clone())
        .unwrap_or_default();
    let calls_before = model.metrics().snapshot().requests;
    let capture = CapturingBackend::new(backend.clone());
    let runtime = Runtime::new(capture.clone());
    // One attempt: a missing recording will not appear by retrying.
    let spec = def.spec().retry(RetryPolicy {
        max_attempts: 1,
        ..RetryPolicy::default()
    });
    let mut comparison = ReplayComparison::default();
    for topic in &def.topics {
        let report = match def.kind.as_str() {
            "llm" => {
                let agent = LlmCompletion::new(
                    CompletionOptions::from_def(def)?,
                    model.clone(),
                    &model_name,
                );
                runtime.replay(&spec, agent, topic, from).await?
            }
            _ => {
                let agent =
                    LlmRouter::new(RouterOptions::from_def(def)?, model.clone(), &model_name);
                runtime.replay(&spec, agent, topic, from).await?
            }
        };
        comparison.events += report.handled + report.dead_lettered;
    }
    comparison.model_calls = model.metrics().snapshot().requests - calls_before;

    let mut recorded = BTreeMap::new();
    let decisions = backend
        .read_topic(&decisions_topic(&def.name), StartAt::Earliest)
        .await?
        .collect_all()
        .await?;
    for event in &decisions {
        if let Some((input, decision)) = comparable(event) {
            recorded.insert(input, decision); // a re-run's decision supersedes
        }
    }
    let own_decisions = decisions_topic(&def.name);
    for (topic, record) in capture.captured() {
        if topic == own_decisions {
            let Some((input, replayed)) = comparable(&as_event(&topic, record)) else {
                continue;
            };
            match recorded.get(&input) {
                Some(before) if *before == replayed => comparison.identical += 1,
                Some(before) => comparison.differing.push(DecisionDiff {
                    input,
                    recorded: before.clone(),
                    replayed,
                }),
                None => comparison.unmatched.push(input),
            }
        } else if record.headers.iter().any(|(n, _)| n == DLQ_ERROR) {
            let input = format!(
                "{}/{}/{}",
                header_text(&record, DLQ_TOPIC),
                header_text(&record, DLQ_PARTITION),
                header_text(&record, DLQ_OFFSET)
            );
            let error = header_text(&record, DLQ_ERROR);
            if error.starts_with("no recorded answer") {
                comparison.not_recorded.push(input);
            } else {
                comparison.failed.push((input, error));
            }
        } else if !topic.starts_with("agent.state.") {
            comparison.emits += 1;
        }
    }
    Ok(comparison)
}
