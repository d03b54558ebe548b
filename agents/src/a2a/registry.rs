//! The agent-card registry: the compacted topic `a2a.registry`, one record per agent
//! keyed by its id. Compaction keeps the latest card of every agent, so reading the
//! topic from the start is discovery; a tombstone (null value) withdraws an agent.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::types::AgentCard;
use crate::backend::{Backend, ProduceError, ReadError, Sink, StartAt};
use crate::event::OutRecord;

/// The registry topic.
pub const REGISTRY_TOPIC: &str = "a2a.registry";

/// Makes sure the registry exists, compacted from its first record (one partition:
/// it is small, and one partition keeps a reader's view in write order).
pub async fn ensure<S: Sink>(sink: &S) -> Result<(), crate::backend::TopicError> {
    sink.ensure_topic(REGISTRY_TOPIC, 1, true).await
}

/// Publishes (or refreshes) `card` under `agent_id`.
pub async fn publish<S: Sink>(
    sink: &S,
    agent_id: &str,
    card: &AgentCard,
) -> Result<(), ProduceError> {
    // Serialising a struct of strings cannot fail.
    let value = serde_json::to_vec(card).unwrap_or_default();
    let record = OutRecord {
        key: Some(Bytes::copy_from_slice(agent_id.as_bytes())),
        value: Some(Bytes::from(value)),
        headers: vec![(
            "content-type".to_string(),
            Bytes::from_static(b"application/json"),
        )],
        timestamp: 0,
    };
    sink.produce(REGISTRY_TOPIC, vec![record]).await
}

/// Withdraws `agent_id`'s card: a tombstone, which compaction eventually turns into
/// no record at all.
pub async fn withdraw<S: Sink>(sink: &S, agent_id: &str) -> Result<(), ProduceError> {
    let tombstone = OutRecord {
        key: Some(Bytes::copy_from_slice(agent_id.as_bytes())),
        ..OutRecord::default()
    };
    sink.produce(REGISTRY_TOPIC, vec![tombstone]).await
}

/// The cards in the registry now: the latest per agent id, withdrawn agents left out.
/// A record that is not a card (written by something else) is skipped, not fatal.
pub async fn read_cards<B: Backend>(backend: &B) -> Result<BTreeMap<String, AgentCard>, ReadError> {
    let mut cards = BTreeMap::new();
    let mut records = match backend.read_topic(REGISTRY_TOPIC, StartAt::Earliest).await {
        Ok(records) => records,
        Err(ReadError::UnknownTopic(_)) => return Ok(cards),
        Err(error) => return Err(error),
    };
    while let Some(record) = records.next().await {
        let record = record?;
        let Some(key) = record.key.as_deref() else {
            continue;
        };
        let id = String::from_utf8_lossy(key).into_owned();
        match record
            .value
            .as_deref()
            .map(serde_json::from_slice::<AgentCard>)
        {
            None => {
                cards.remove(&id);
            }
            Some(Ok(card)) => {
                cards.insert(id, card);
            }
            Some(Err(error)) => {
                tracing::warn!(agent = %id, %error, offset = record.offset, "skipping a registry record that is not an agent card");
            }
        }
    }
    Ok(cards)
}
