//! Idempotent producers: per-partition sequence tracking, duplicate detection, and the
//! snapshots that let that state survive a restart.
//!
//! A producer with a producer id numbers its batches per partition. The broker keeps, per
//! producer, its epoch and its last five batches (as Kafka does: five is the most a
//! client keeps in flight per partition). A batch that repeats one of those is a retry of
//! something already appended, and is answered with the original offset instead of being
//! appended twice; a batch that skips ahead is refused as out of order; a batch from an
//! older epoch is refused as fenced.
//!
//! The table is rebuilt after a restart from a snapshot file plus the batch headers
//! appended after the snapshot's offset, so a client retrying across a broker restart
//! still gets exactly-once appends.
//!
//! The table also follows transactions on its partition: the first offset of each
//! producer's open transaction (the last stable offset is the smallest of them) and the
//! aborted transactions index `(producer id, first offset, marker offset)` that
//! read_committed fetches hand to consumers so they skip aborted records. Both are part
//! of the snapshot and are rebuilt by the same replay (markers are ordinary batches of
//! the log), so they survive restarts exactly as sequences do.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use agentlog_protocol::batch::{BatchHeader, Batches};
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// How many recent batches are remembered per producer (Kafka's
/// `max.in.flight.requests.per.connection` ceiling for idempotence).
pub const REMEMBERED_BATCHES: usize = 5;

const SNAPSHOT_FILE: &str = "producers.snapshot.json";

/// One appended batch of a producer, as far as duplicate detection needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchMeta {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset the batch was given.
    pub base_offset: i64,
}

/// What the broker remembers of one producer on one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// The producer's current epoch.
    pub epoch: i16,
    /// Its most recent batches, oldest first.
    pub batches: VecDeque<BatchMeta>,
}

/// Why an idempotent batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SequenceError {
    /// INVALID_PRODUCER_EPOCH: a newer epoch of this producer has written here.
    #[error("producer {producer_id} epoch {epoch} is older than the current epoch {current}")]
    StaleEpoch {
        /// The producer.
        producer_id: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The epoch the partition knows.
        current: i16,
    },
    /// OUT_OF_ORDER_SEQUENCE_NUMBER: a gap, or a new epoch not starting at 0.
    #[error("producer {producer_id}: expected sequence {expected}, got {got}")]
    OutOfOrder {
        /// The producer.
        producer_id: i64,
        /// The sequence that would have been next.
        expected: i32,
        /// The batch's first sequence.
        got: i32,
    },
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Append it.
    Append,
    /// Already appended at this base offset: answer success, append nothing.
    Duplicate {
        /// Where it was appended the first time.
        base_offset: i64,
    },
}

/// One aborted transaction on one partition, as read_committed consumers need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AbortedTxn {
    /// The producer whose records are to be skipped.
    pub producer_id: i64,
    /// Offset of the transaction's first batch on this partition.
    pub first_offset: i64,
    /// Offset of the abort marker (the last offset of the transaction).
    pub last_offset: i64,
}

/// Every producer's state on one partition.
#[derive(Debug, Default)]
pub struct ProducerTable {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id -> offset of its first transactional batch.
    ongoing: HashMap<i64, i64>,
    /// Aborted transactions, in marker order.
    aborted: Vec<AbortedTxn>,
    /// The log offset up to which this table reflects the log.
    applied_until: i64,
}

/// The kind of a transaction marker (the control record's key type).
const CONTROL_ABORT: i16 = 0;
/// See [`CONTROL_ABORT`].
const CONTROL_COMMIT: i16 = 1;

/// Reads a zigzag varint (record fields), returning the value and the bytes used.
fn read_varint(buf: &[u8]) -> Option<(i64, usize)> {
    let mut value: u64 = 0;
    for (i, byte) in buf.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Some((decoded, i + 1));
        }
    }
    None
}

/// Whether a stored control batch is a commit (`Some(true)`) or abort marker, read from
/// its first record's key `[version i16, type i16]`. Control batches are never
/// compressed. `None` for anything else (an unknown control type is ignored, as Kafka
/// ignores unknown control records).
pub fn marker_kind(batch: &[u8]) -> Option<bool> {
    // Records start after the 61-byte v2 batch header.
    let mut rest = batch.get(61..)?;
    let (_length, used) = read_varint(rest)?;
    rest = rest.get(used + 1..)?; // the length, then the attributes byte
    let (_timestamp_delta, used) = read_varint(rest)?;
    rest = rest.get(used..)?;
    let (_offset_delta, used) = read_varint(rest)?;
    rest = rest.get(used..)?;
    let (key_length, used) = read_varint(rest)?;
    rest = rest.get(used..)?;
    if key_length < 4 {
        return None;
    }
    let kind = i16::from_be_bytes([*rest.get(2)?, *rest.get(3)?]);
    match kind {
        CONTROL_ABORT => Some(false),
        CONTROL_COMMIT => Some(true),
        _ => None,
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

fn last_sequence(header: &BatchHeader) -> i32 {
    let last = i64::from(header.base_sequence) + i64::from(header.last_offset_delta);
    // Sequences wrap at i32::MAX, as clients number them.
    (last % (i64::from(i32::MAX) + 1)) as i32
}

impl ProducerTable {
    /// Decides whether an idempotent batch (producer id >= 0) may be appended.
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let producer_id = header.producer_id;
        let Some(entry) = self.producers.get(&producer_id) else {
            // An unknown producer (new, or forgotten) may start at any sequence.
            return Ok(SequenceCheck::Append);
        };
        if header.producer_epoch < entry.epoch {
            return Err(SequenceError::StaleEpoch {
                producer_id,
                epoch: header.producer_epoch,
                current: entry.epoch,
            });
        }
        if header.producer_epoch > entry.epoch {
            return if header.base_sequence == 0 {
                Ok(SequenceCheck::Append)
            } else {
                Err(SequenceError::OutOfOrder {
                    producer_id,
                    expected: 0,
                    got: header.base_sequence,
                })
            };
        }
        let last = last_sequence(header);
        if let Some(seen) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate {
                base_offset: seen.base_offset,
            });
        }
        let expected = entry
            .batches
            .back()
            .map_or(header.base_sequence, |b| next_sequence(b.last_sequence));
        if header.base_sequence != expected {
            return Err(SequenceError::OutOfOrder {
                producer_id,
                expected,
                got: header.base_sequence,
            });
        }
        Ok(SequenceCheck::Append)
    }

    /// Records a batch that is now in the log (its header carries its assigned offset).
    /// Control batches are recorded with [`ProducerTable::record_marker`].
    pub fn record(&mut self, header: &BatchHeader) {
        self.applied_until = self.applied_until.max(header.next_offset());
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        if header.is_transactional() {
            self.ongoing
                .entry(header.producer_id)
                .or_insert(header.base_offset);
        }
        let entry = self
            .producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        if entry.batches.len() == REMEMBERED_BATCHES {
            entry.batches.pop_front();
        }
        entry.batches.push_back(BatchMeta {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset: header.base_offset,
        });
    }

    /// Records a transaction marker now in the log: the producer's open transaction (if
    /// any) ends here, and goes into the aborted index when `commit` is false. A marker
    /// of a newer epoch (an abort written by the coordinator while fencing) also fences
    /// older epochs of the producer on this partition.
    pub fn record_marker(&mut self, header: &BatchHeader, commit: bool) {
        self.applied_until = self.applied_until.max(header.next_offset());
        let producer_id = header.producer_id;
        if let Some(first_offset) = self.ongoing.remove(&producer_id) {
            if !commit {
                self.aborted.push(AbortedTxn {
                    producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                });
            }
        }
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: header.producer_epoch,
                batches: VecDeque::new(),
            });
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
    }

    /// Records every batch in `log_bytes` (whole batches as stored).
    pub fn record_all(&mut self, log_bytes: &[u8]) {
        for (header, range) in Batches::new(log_bytes) {
            if header.is_control() {
                match marker_kind(&log_bytes[range]) {
                    Some(commit) => self.record_marker(&header, commit),
                    None => self.applied_until = self.applied_until.max(header.next_offset()),
                }
            } else {
                self.record(&header);
            }
        }
    }

    /// The first offset of the oldest open transaction here: the last stable offset,
    /// unless the high watermark is lower.
    pub fn first_unstable_offset(&self) -> Option<i64> {
        self.ongoing.values().copied().min()
    }

    /// Where a producer's open transaction on this partition began, if it has one.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Aborted transactions overlapping `[from, to)`: what a read_committed consumer of
    /// that range must skip.
    pub fn aborted_between(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.aborted
            .iter()
            .filter(|a| a.last_offset >= from && a.first_offset < to)
            .copied()
            .collect()
    }

    /// Forgets aborted transactions that end before `log_start_offset`: no fetch can
    /// reach them any more (retention deleted their records).
    pub fn prune_aborted(&mut self, log_start_offset: i64) {
        self.aborted.retain(|a| a.last_offset >= log_start_offset);
    }

    /// Every known producer with its state, for DescribeProducers.
    pub fn all(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// The offset up to which the table reflects the log.
    pub fn applied_until(&self) -> i64 {
        self.applied_until
    }

    /// A producer's state, for tests and operators (DescribeProducers, later).
    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// The table as a snapshot file's contents: taken under the partition's lock, written
    /// (with [`write_snapshot`]) after it is released.
    pub fn snapshot_bytes(&self) -> std::io::Result<Vec<u8>> {
        let snapshot = Snapshot {
            applied_until: self.applied_until,
            producers: self
                .producers
                .iter()
                .map(|(id, e)| (*id, e.clone()))
                .collect(),
            ongoing: self.ongoing.iter().map(|(id, o)| (*id, *o)).collect(),
            aborted: self.aborted.clone(),
        };
        serde_json::to_vec(&snapshot).map_err(std::io::Error::other)
    }

    /// Loads the snapshot in `dir`, if there is a usable one: a snapshot that claims
    /// more of the log than survived (`log_end_offset`) describes data that was lost,
    /// and is ignored.
    pub fn load(dir: &Path, log_end_offset: i64) -> ProducerTable {
        let Ok(bytes) = std::fs::read(snapshot_path(dir)) else {
            return ProducerTable::default();
        };
        match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(snapshot) if snapshot.applied_until <= log_end_offset => ProducerTable {
                producers: snapshot.producers.into_iter().collect(),
                ongoing: snapshot.ongoing.into_iter().collect(),
                aborted: snapshot.aborted,
                applied_until: snapshot.applied_until,
            },
            Ok(_) => {
                tracing::warn!(dir = %dir.display(), "producer snapshot is ahead of the log; rebuilding from the log");
                discard_snapshot(dir)
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "unreadable producer snapshot; rebuilding from the log");
                discard_snapshot(dir)
            }
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    applied_until: i64,
    producers: Vec<(i64, ProducerEntry)>,
    /// Open transactions (absent in snapshots written before transactions existed).
    #[serde(default)]
    ongoing: Vec<(i64, i64)>,
    /// The aborted transactions index.
    #[serde(default)]
    aborted: Vec<AbortedTxn>,
}

/// Removes a refused snapshot, so that a log that later grows past its offset (with other
/// batches) can never make it look valid; returns the empty table to rebuild from.
fn discard_snapshot(dir: &Path) -> ProducerTable {
    if let Err(error) = std::fs::remove_file(snapshot_path(dir)) {
        tracing::warn!(dir = %dir.display(), %error, "cannot remove the refused producer snapshot");
    }
    ProducerTable::default()
}

/// Replaces the snapshot in `dir` atomically (temp file, fsync, rename). Its directory
/// entry is not fsynced: should the rename be lost, the older snapshot covers less of
/// the log, and open replays the rest.
pub fn write_snapshot(dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::storage::replace_file(&snapshot_path(dir), bytes)
}

fn snapshot_path(dir: &Path) -> PathBuf {
    dir.join(SNAPSHOT_FILE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(
        producer_id: i64,
        epoch: i16,
        base_sequence: i32,
        records: i32,
        base_offset: i64,
    ) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 49,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            records_count: records,
        }
    }

    #[test]
    fn retries_of_recent_batches_are_duplicates_and_gaps_are_refused() {
        let mut table = ProducerTable::default();
        for (i, seq) in [0, 3, 6].into_iter().enumerate() {
            let h = header(7, 0, seq, 3, i as i64 * 3);
            assert_eq!(table.check(&h), Ok(SequenceCheck::Append));
            table.record(&h);
        }
        assert_eq!(
            table.check(&header(7, 0, 3, 3, 0)),
            Ok(SequenceCheck::Duplicate { base_offset: 3 })
        );
        assert!(matches!(
            table.check(&header(7, 0, 10, 1, 0)),
            Err(SequenceError::OutOfOrder {
                expected: 9,
                got: 10,
                ..
            })
        ));
        assert_eq!(
            table.check(&header(7, 0, 9, 1, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn only_five_batches_are_remembered() {
        let mut table = ProducerTable::default();
        for i in 0..7 {
            table.record(&header(1, 0, i, 1, i64::from(i)));
        }
        assert_eq!(
            table.get(1).map(|e| e.batches.len()),
            Some(REMEMBERED_BATCHES)
        );
        // The oldest two are forgotten: a retry of them is no longer recognised.
        assert!(table.check(&header(1, 0, 0, 1, 0)).is_err());
        assert_eq!(
            table.check(&header(1, 0, 6, 1, 0)),
            Ok(SequenceCheck::Duplicate { base_offset: 6 })
        );
    }

    #[test]
    fn epochs_fence_old_producers_and_new_epochs_start_at_zero() {
        let mut table = ProducerTable::default();
        table.record(&header(1, 2, 0, 1, 0));
        assert!(matches!(
            table.check(&header(1, 1, 1, 1, 0)),
            Err(SequenceError::StaleEpoch { .. })
        ));
        assert!(matches!(
            table.check(&header(1, 3, 5, 1, 0)),
            Err(SequenceError::OutOfOrder { .. })
        ));
        assert_eq!(
            table.check(&header(1, 3, 0, 1, 0)),
            Ok(SequenceCheck::Append)
        );
        // Unknown producers may start anywhere.
        assert_eq!(
            table.check(&header(9, 0, 42, 1, 0)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut table = ProducerTable::default();
        table.record(&header(1, 0, i32::MAX - 1, 2, 0));
        assert_eq!(
            table.check(&header(1, 0, 0, 1, 2)),
            Ok(SequenceCheck::Append)
        );
    }

    #[test]
    fn snapshots_round_trip_and_are_refused_when_ahead_of_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let mut table = ProducerTable::default();
        table.record(&header(4, 1, 0, 10, 0));
        write_snapshot(dir.path(), &table.snapshot_bytes().unwrap()).unwrap();
        let loaded = ProducerTable::load(dir.path(), 10);
        assert_eq!(loaded.get(4), table.get(4));
        assert_eq!(loaded.applied_until(), 10);
        let ahead = ProducerTable::load(dir.path(), 5);
        assert!(ahead.get(4).is_none());
        assert_eq!(ahead.applied_until(), 0);
        // Refused once, gone: a log that later grows past 10 with other batches must
        // not make it look valid.
        assert!(!snapshot_path(dir.path()).exists());
        assert!(ProducerTable::load(dir.path(), 20).get(4).is_none());
    }
}
