//! Keyed agent state: a map in memory, every change written to the compacted topic
//! `agent.state.<agent_id>` (key = state key, value = JSON, tombstone = delete), and the
//! map rebuilt from that topic when the agent starts again.

use std::collections::HashMap;
use std::sync::Mutex;

use thiserror::Error;

use crate::backend::{Backend, ReadError, StartAt, TopicError};

/// The state topic of an agent.
pub fn state_topic(agent_id: &str) -> String {
    format!("agent.state.{agent_id}")
}

/// Restoring state failed.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The state topic could not be created.
    #[error(transparent)]
    Create(#[from] TopicError),
    /// The state topic could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// One agent's keyed state, shared by all its instances in this process.
#[derive(Debug, Default)]
pub struct StateStore {
    map: Mutex<HashMap<String, serde_json::Value>>,
}

impl StateStore {
    /// Rebuilds the state from its topic (creating the topic, compacted, if missing).
    pub async fn restore<B: Backend>(
        backend: &B,
        agent_id: &str,
    ) -> Result<StateStore, RestoreError> {
        let topic = state_topic(agent_id);
        backend.ensure_topic(&topic, 1, true).await?;
        let mut map = HashMap::new();
        let mut events = backend.read_topic(&topic, StartAt::Earliest).await?;
        while let Some(event) = events.next().await {
            let event = event?;
            let Some(key) = event
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                continue;
            };
            match event
                .value
                .as_deref()
                .filter(|v| !v.is_empty())
                .and_then(|v| serde_json::from_slice(v).ok())
            {
                Some(value) => map.insert(key.to_string(), value),
                None => map.remove(key),
            };
        }
        Ok(StateStore {
            map: Mutex::new(map),
        })
    }

    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<serde_json::Value> {
        self.lock().get(key).cloned()
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Applies changes that are already durable in the state topic.
    pub(crate) fn apply(&self, writes: &[(String, Option<serde_json::Value>)]) {
        let mut map = self.lock();
        for (key, value) in writes {
            match value {
                Some(value) => map.insert(key.clone(), value.clone()),
                None => map.remove(key),
            };
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, serde_json::Value>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}
