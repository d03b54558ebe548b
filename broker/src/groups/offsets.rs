//! Committed offsets in sled: one tree of offsets, one tree of group records (protocol
//! type and last generation, so groups and their generation numbers survive a restart).
//!
//! Offset keys are `u16 len | group | u16 len | topic | i32 partition` (big-endian), so
//! one group's offsets are a contiguous prefix range and any byte may appear in names.
//! Values are JSON: small, self-describing, and easy to evolve.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The offset store failed.
#[derive(Debug, Error)]
#[error("offset store: {0}")]
pub struct OffsetStoreError(String);

impl From<sled::Error> for OffsetStoreError {
    fn from(error: sled::Error) -> Self {
        OffsetStoreError(error.to_string())
    }
}

/// One committed offset, as OffsetFetch and the metrics see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the group will consume.
    pub offset: i64,
    /// Leader epoch at commit, -1 if the client did not say.
    pub leader_epoch: i32,
    /// The client's free text.
    pub metadata: Option<String>,
    /// When it was committed (ms since the epoch), for retention.
    pub commit_timestamp_ms: i64,
}

/// What is kept per group.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GroupRecord {
    pub protocol_type: Option<String>,
    pub generation: i32,
    /// When the group last became empty (ms since the epoch), for offset retention.
    #[serde(default)]
    pub empty_since_ms: Option<i64>,
    /// `consumer` for a KIP-848 group (its `generation` is the group epoch); absent for
    /// classic groups, as records written before KIP-848 support are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_type: Option<String>,
}

/// The sled trees behind the coordinator.
#[derive(Debug, Clone)]
pub(crate) struct OffsetStore {
    db: sled::Db,
    offsets: sled::Tree,
    groups: sled::Tree,
    flushes: Arc<GroupFlush>,
}

/// Group commit for sled flushes: one flush at a time, shared by every caller that
/// asked before it started. Many concurrent `flush_async` calls starve sled's writers
/// (a commit's `apply_batch` then waits behind them while the coordinator's lock is
/// held, and every group stalls), so callers queue and share instead.
#[derive(Debug, Default)]
struct GroupFlush {
    /// One flush in flight at a time.
    running: tokio::sync::Mutex<()>,
    /// Tickets handed out; a caller takes one after its writes.
    requested: AtomicU64,
    /// Every ticket up to this one is covered by a finished flush.
    completed: AtomicU64,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&bytes[..usize::from(len)]);
}

fn group_prefix(group: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(group.len() + 2);
    put_str(&mut key, group);
    key
}

fn offset_key(group: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut key = group_prefix(group);
    put_str(&mut key, topic);
    key.extend_from_slice(&partition.to_be_bytes());
    key
}

impl OffsetStore {
    pub fn open(db: &sled::Db) -> Result<Self, OffsetStoreError> {
        Ok(OffsetStore {
            db: db.clone(),
            offsets: db.open_tree("group_offsets")?,
            groups: db.open_tree("groups")?,
            flushes: Arc::default(),
        })
    }

    /// Writes the offsets (all or none: one sled batch); [`OffsetStore::flush`] makes
    /// them durable.
    pub fn store(&self, group: &str, offsets: &[CommittedOffset]) -> Result<(), OffsetStoreError> {
        let mut batch = sled::Batch::default();
        for offset in offsets {
            let value = serde_json::to_vec(offset).map_err(|e| OffsetStoreError(e.to_string()))?;
            batch.insert(offset_key(group, &offset.topic, offset.partition), value);
        }
        self.offsets.apply_batch(batch)?;
        Ok(())
    }

    /// Waits until everything written so far is on disk, sharing a flush with every
    /// concurrent caller.
    pub async fn flush(&self) -> Result<(), OffsetStoreError> {
        let flushes = &self.flushes;
        let ticket = flushes.requested.fetch_add(1, Ordering::AcqRel) + 1;
        let _running = flushes.running.lock().await;
        if flushes.completed.load(Ordering::Acquire) >= ticket {
            return Ok(()); // a flush that started after our writes covered them
        }
        // Every ticket issued so far belongs to writes already made, and this flush
        // starts after them.
        let covering = flushes.requested.load(Ordering::Acquire);
        self.db.flush_async().await?;
        flushes.completed.fetch_max(covering, Ordering::AcqRel);
        Ok(())
    }

    /// Every offset of one group.
    pub fn group_offsets(&self, group: &str) -> Result<Vec<CommittedOffset>, OffsetStoreError> {
        let mut out = Vec::new();
        for entry in self.offsets.scan_prefix(group_prefix(group)) {
            let (_, value) = entry?;
            match serde_json::from_slice::<CommittedOffset>(&value) {
                Ok(offset) => out.push(offset),
                Err(error) => tracing::warn!(group, %error, "skipping unreadable committed offset"),
            }
        }
        Ok(out)
    }

    /// One partition's offset.
    pub fn get(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<CommittedOffset>, OffsetStoreError> {
        Ok(self
            .offsets
            .get(offset_key(group, topic, partition))?
            .and_then(|v| serde_json::from_slice(&v).ok()))
    }

    /// Removes some partitions' offsets.
    pub fn remove(&self, group: &str, parts: &[(String, i32)]) -> Result<(), OffsetStoreError> {
        let mut batch = sled::Batch::default();
        for (topic, partition) in parts {
            batch.remove(offset_key(group, topic, *partition));
        }
        self.offsets.apply_batch(batch)?;
        Ok(())
    }

    /// Removes a group and all its offsets.
    pub fn remove_group(&self, group: &str) -> Result<(), OffsetStoreError> {
        let mut batch = sled::Batch::default();
        for entry in self.offsets.scan_prefix(group_prefix(group)) {
            let (key, _) = entry?;
            batch.remove(key);
        }
        self.offsets.apply_batch(batch)?;
        self.groups.remove(group.as_bytes())?;
        Ok(())
    }

    /// Records a group's protocol type and generation.
    pub fn put_group(&self, group: &str, record: &GroupRecord) -> Result<(), OffsetStoreError> {
        let value = serde_json::to_vec(record).map_err(|e| OffsetStoreError(e.to_string()))?;
        self.groups.insert(group.as_bytes(), value)?;
        Ok(())
    }

    /// Every group known from a previous run: recorded groups and groups with offsets.
    pub fn load_groups(&self) -> Result<Vec<(String, GroupRecord)>, OffsetStoreError> {
        let mut out: std::collections::BTreeMap<String, GroupRecord> = Default::default();
        for entry in self.groups.iter() {
            let (key, value) = entry?;
            let record = serde_json::from_slice(&value).unwrap_or_default();
            out.insert(String::from_utf8_lossy(&key).into_owned(), record);
        }
        for entry in self.offsets.iter() {
            let (key, _) = entry?;
            if let Some((len, rest)) = key.split_first_chunk::<2>() {
                let len = usize::from(u16::from_be_bytes(*len));
                if let Some(name) = rest.get(..len) {
                    out.entry(String::from_utf8_lossy(name).into_owned())
                        .or_default();
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}
