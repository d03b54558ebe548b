//! Following the models topic: an agent reads it to its end at start (to serve the
//! newest version that loads), then polls it for new versions and installs each one
//! between two batches. A version that does not reassemble or load is refused with a
//! decision on the agent's audit log, and the version in service keeps serving.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde_json::json;

use super::registry::{AssembleError, Assembler, DeployedModel};
use crate::backend::{Backend, ReadError, Sink, StartAt};
use crate::delivery::decisions_topic;
use crate::envelope::Envelope;

/// Something that can put a deployed version into service.
pub(crate) trait Install: Send + Sync + 'static {
    /// Loads, checks and swaps in `model` (blocking: runs on a blocking thread).
    fn install(&self, model: &DeployedModel) -> Result<(), String>;
}

/// Position in the models topic and versions not yet complete.
pub(crate) struct Follower {
    pub(crate) topic: String,
    pub(crate) model: String,
    positions: BTreeMap<i32, i64>,
    assembler: Assembler,
}

impl Follower {
    pub(crate) fn new(topic: &str, model: &str) -> Follower {
        Follower {
            topic: topic.to_string(),
            model: model.to_string(),
            positions: BTreeMap::new(),
            assembler: Assembler::default(),
        }
    }

    /// Versions of this model completed since the last call, in topic order.
    pub(crate) async fn poll<B: Backend>(
        &mut self,
        backend: &B,
    ) -> Result<Vec<Result<DeployedModel, AssembleError>>, ReadError> {
        let from = match self.positions.values().min() {
            Some(next) => StartAt::Offset(*next),
            None => StartAt::Earliest,
        };
        let mut stream = backend.read_topic(&self.topic, from).await?;
        let mut found = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event?;
            let next = self.positions.entry(event.partition).or_insert(0);
            if event.offset < *next {
                continue;
            }
            *next = event.offset + 1;
            match self.assembler.push(&event) {
                Some(Ok(model)) if model.name == self.model => found.push(Ok(model)),
                Some(Err(error)) if mentions(&error, &self.model) => found.push(Err(error)),
                Some(Err(AssembleError::NotAChunk { offset, reason })) => {
                    tracing::debug!(topic = %self.topic, offset, %reason, "not a model record");
                }
                _ => {}
            }
        }
        Ok(found)
    }
}

fn mentions(error: &AssembleError, model: &str) -> bool {
    match error {
        AssembleError::MissingChunk { name, .. } | AssembleError::Corrupt { name, .. } => {
            name == model
        }
        AssembleError::NotAChunk { .. } => false,
    }
}

/// Writes a model lifecycle decision (`model.deployed`, `model.refused`) to the agent's
/// audit log, outside any event.
pub(crate) async fn record<S: Sink>(
    sink: &S,
    agent_id: &str,
    decision: &str,
    details: serde_json::Value,
) {
    let data = json!({ "decision": decision, "details": details });
    let record = Envelope::new("decision", agent_id, None, data).to_record(None);
    if let Err(error) = sink.produce(&decisions_topic(agent_id), vec![record]).await {
        tracing::warn!(agent = %agent_id, %error, "cannot record model decision");
    }
}

/// Installs `model` on a blocking thread and records the outcome.
pub(crate) async fn install<S: Sink, I: Install>(
    sink: &S,
    agent_id: &str,
    target: Arc<I>,
    model: DeployedModel,
) -> bool {
    let details = json!({
        "model": model.name,
        "version": model.version,
        "sha256": model.sha256,
        "size": model.bytes.len(),
        "offset": model.offset,
    });
    let outcome = {
        let model = model.clone();
        tokio::task::spawn_blocking(move || target.install(&model))
            .await
            .unwrap_or_else(|e| Err(format!("loader panicked: {e}")))
    };
    match outcome {
        Ok(()) => {
            tracing::info!(agent = %agent_id, model = %model.name, version = %model.version, "model deployed");
            record(sink, agent_id, "model.deployed", details).await;
            true
        }
        Err(reason) => {
            tracing::warn!(agent = %agent_id, model = %model.name, version = %model.version, %reason, "model version refused; the previous one keeps serving");
            let mut details = details;
            details["reason"] = json!(reason);
            record(sink, agent_id, "model.refused", details).await;
            false
        }
    }
}

/// Refuses a version that did not reassemble.
pub(crate) async fn refuse<S: Sink>(sink: &S, agent_id: &str, model: &str, error: &AssembleError) {
    tracing::warn!(agent = %agent_id, %model, %error, "model version refused; the previous one keeps serving");
    record(
        sink,
        agent_id,
        "model.refused",
        json!({ "model": model, "reason": error.to_string() }),
    )
    .await;
}

/// At start: installs the newest version on the topic that loads (newest first).
/// Returns whether one was installed.
pub(crate) async fn install_latest<B: Backend, I: Install>(
    backend: &B,
    agent_id: &str,
    follower: &mut Follower,
    target: &Arc<I>,
) -> Result<bool, ReadError> {
    let versions = follower.poll(backend).await?;
    for version in versions.into_iter().rev() {
        match version {
            Ok(model) => {
                if install(backend, agent_id, target.clone(), model).await {
                    return Ok(true);
                }
            }
            Err(error) => refuse(backend, agent_id, &follower.model, &error).await,
        }
    }
    Ok(false)
}

/// Polls the topic every `every` and installs new versions, until `target` is dropped
/// (the agent stopped).
pub(crate) fn follow<B: Backend, I: Install>(
    backend: B,
    agent_id: String,
    mut follower: Follower,
    target: Weak<I>,
    every: Duration,
) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            if target.strong_count() == 0 {
                return;
            }
            let versions = match follower.poll(&backend).await {
                Ok(versions) => versions,
                Err(error) => {
                    tracing::warn!(agent = %agent_id, topic = %follower.topic, %error, "cannot read the models topic");
                    continue;
                }
            };
            for version in versions {
                let Some(target) = target.upgrade() else {
                    return;
                };
                match version {
                    Ok(model) => {
                        install(&backend, &agent_id, target, model).await;
                    }
                    Err(error) => refuse(&backend, &agent_id, &follower.model, &error).await,
                }
            }
        }
    });
}
