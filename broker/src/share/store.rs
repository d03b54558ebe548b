//! Share-partition state in the metadata store, as Kafka's share coordinator keeps it
//! in `__share_group_state`: the start offset and runs of offsets with a state or a
//! delivery count worth remembering. Acquired offsets are stored as available with
//! their delivery count, so after a restart nothing unacknowledged is lost and nothing
//! acknowledged is delivered again.

use std::sync::Arc;

use thiserror::Error;
use uuid::Uuid;

use super::partition::{InFlight, RecordState, SharePartition};

const FORMAT: u8 = 1;
const AVAILABLE: u8 = 0;
const ACKNOWLEDGED: u8 = 2;
const ARCHIVED: u8 = 4;
/// Farthest a stored offset may lie past the start offset.
const MAX_SPAN: i64 = 10_000_000;

/// Reading or writing share state failed.
#[derive(Debug, Error)]
pub enum ShareStoreError {
    /// The metadata store failed.
    #[error("share state store: {0}")]
    Store(#[from] sled::Error),
    /// A stored value is not in a format this version writes.
    #[error("share state for {0} is unreadable")]
    Corrupt(String),
}

/// Where share-partition state lives.
#[derive(Debug, Clone)]
pub struct ShareStore {
    tree: sled::Tree,
}

/// One stored share-partition.
pub type Stored = (String, Uuid, i32, SharePartition);

impl ShareStore {
    /// Opens the share state tree of the metadata store.
    pub fn open(db: &sled::Db) -> Result<ShareStore, ShareStoreError> {
        Ok(ShareStore {
            tree: db.open_tree("share_partitions")?,
        })
    }

    /// Every stored share-partition.
    pub fn load_all(&self) -> Result<Vec<Stored>, ShareStoreError> {
        let mut all = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item?;
            let (group, topic, partition) = decode_key(&key)
                .ok_or_else(|| ShareStoreError::Corrupt(String::from_utf8_lossy(&key).into()))?;
            let state = decode_value(&value)
                .ok_or_else(|| ShareStoreError::Corrupt(format!("{group}/{topic}/{partition}")))?;
            all.push((group, topic, partition, state));
        }
        Ok(all)
    }

    /// Writes one share-partition's state (durable at the next metadata flush).
    pub fn save(
        &self,
        group: &str,
        topic: Uuid,
        partition: i32,
        state: &SharePartition,
    ) -> Result<(), ShareStoreError> {
        self.tree
            .insert(key(group, topic, partition), encode_value(state))?;
        Ok(())
    }

    /// Forgets one share-partition.
    pub fn remove(&self, group: &str, topic: Uuid, partition: i32) -> Result<(), ShareStoreError> {
        self.tree.remove(key(group, topic, partition))?;
        Ok(())
    }
}

fn key(group: &str, topic: Uuid, partition: i32) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + 21);
    key.extend_from_slice(group.as_bytes());
    key.push(0);
    key.extend_from_slice(topic.as_bytes());
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

fn decode_key(key: &[u8]) -> Option<(String, Uuid, i32)> {
    let split = key.len().checked_sub(21)?;
    let (group, rest) = key.split_at(split);
    let (zero, rest) = rest.split_first()?;
    if *zero != 0 {
        return None;
    }
    let (topic, partition) = rest.split_at(16);
    Some((
        String::from_utf8(group.to_vec()).ok()?,
        Uuid::from_slice(topic).ok()?,
        i32::from_be_bytes(partition.try_into().ok()?),
    ))
}

/// Start offset, then runs `(first, last, state, deliveries)` of equal entries; offsets
/// never delivered and still available are left out.
fn encode_value(state: &SharePartition) -> Vec<u8> {
    let mut runs: Vec<(i64, i64, u8, i16)> = Vec::new();
    for (offset, entry) in state.entries() {
        let code = match entry.state {
            RecordState::Available | RecordState::Acquired { .. } => AVAILABLE,
            RecordState::Acknowledged => ACKNOWLEDGED,
            RecordState::Archived => ARCHIVED,
        };
        if code == AVAILABLE && entry.deliveries == 0 {
            continue;
        }
        match runs.last_mut() {
            Some(run) if run.1 + 1 == offset && run.2 == code && run.3 == entry.deliveries => {
                run.1 = offset;
            }
            _ => runs.push((offset, offset, code, entry.deliveries)),
        }
    }
    let mut out = Vec::with_capacity(9 + runs.len() * 19);
    out.push(FORMAT);
    out.extend_from_slice(&state.start().to_be_bytes());
    for (first, last, code, deliveries) in runs {
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&last.to_be_bytes());
        out.push(code);
        out.extend_from_slice(&deliveries.to_be_bytes());
    }
    out
}

fn decode_value(value: &[u8]) -> Option<SharePartition> {
    let (format, rest) = value.split_first()?;
    if *format != FORMAT || rest.len() < 8 || (rest.len() - 8) % 19 != 0 {
        return None;
    }
    let (start, mut runs) = rest.split_at(8);
    let start = i64::from_be_bytes(start.try_into().ok()?);
    let mut entries = Vec::new();
    while runs.len() >= 19 {
        let (run, rest) = runs.split_at(19);
        runs = rest;
        let first = i64::from_be_bytes(run.get(0..8)?.try_into().ok()?);
        let last = i64::from_be_bytes(run.get(8..16)?.try_into().ok()?);
        let state = match *run.get(16)? {
            ACKNOWLEDGED => RecordState::Acknowledged,
            ARCHIVED => RecordState::Archived,
            _ => RecordState::Available,
        };
        let deliveries = i16::from_be_bytes(run.get(17..19)?.try_into().ok()?);
        // A run past any window this broker keeps is not ours.
        let span = last.checked_sub(start).filter(|s| *s <= MAX_SPAN);
        if last < first || first < start || span.is_none() {
            return None;
        }
        for offset in first..=last {
            entries.push((
                offset,
                InFlight {
                    state: state.clone(),
                    deliveries,
                },
            ));
        }
    }
    Some(SharePartition::restore(start, entries))
}

/// A share-partition shared by the handlers of one group (one lock per partition).
pub type Shared = Arc<std::sync::Mutex<SharePartition>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_the_store_format() {
        let entries = vec![
            (
                12,
                InFlight {
                    state: RecordState::Available,
                    deliveries: 2,
                },
            ),
            (
                13,
                InFlight {
                    state: RecordState::Acknowledged,
                    deliveries: 1,
                },
            ),
            (
                15,
                InFlight {
                    state: RecordState::Archived,
                    deliveries: 5,
                },
            ),
        ];
        let state = SharePartition::restore(10, entries);
        let decoded = decode_value(&encode_value(&state));
        assert_eq!(decoded, Some(state));
        let key = key("g\0x", Uuid::from_u128(7), 3);
        assert_eq!(
            decode_key(&key),
            Some(("g\0x".to_string(), Uuid::from_u128(7), 3))
        );
        assert_eq!(decode_value(&[FORMAT, 1, 2]), None);
    }
}
