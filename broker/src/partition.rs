//! A partition: its log, and the producer state that makes idempotent appends
//! exactly-once. Every append goes through here so the two never disagree.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use agentlog_protocol::batch::{self, BatchHeader, Batches};
use bytes::{Bytes, BytesMut};
use thiserror::Error;

use crate::producers::{AbortedTxn, ProducerEntry, ProducerTable, SequenceCheck, SequenceError};
use crate::storage::{AppendError, Appended, OpenError, PartitionLog, ReadBatches, ReadError};

/// Read size used when replaying the log into the producer table.
const REPLAY_CHUNK: usize = 1 << 20;

/// Why an append to a partition failed; nothing was made visible.
#[derive(Debug, Error)]
pub enum PartitionAppendError {
    /// An idempotent batch was out of order or from a fenced epoch.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// The log refused the bytes or the disk failed.
    #[error(transparent)]
    Storage(#[from] AppendError),
}

/// What a read_committed consumer may see of one read: whole batches below the last
/// stable offset, and the aborted transactions they overlap. The wire fetch hands both to
/// the client, which skips the aborted records itself; in-process readers (agents, the
/// uplink) ask [`CommittedRead::is_aborted`] per batch, so the rule lives here once.
#[derive(Debug)]
pub struct CommittedRead {
    /// The read, its bytes cut at the last stable offset.
    pub read: ReadBatches,
    /// The last stable offset taken before the read (never past its high watermark).
    pub last_stable_offset: i64,
    /// Aborted transactions overlapping the returned batches (empty when they are).
    pub aborted: Vec<AbortedTxn>,
}

impl CommittedRead {
    /// Whether the batch with `header` belongs to an aborted transaction: a
    /// transactional batch of an aborted producer between its transaction's first
    /// offset and its abort marker. Control batches are not judged here.
    pub fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.is_transactional()
            && self.aborted.iter().any(|a| {
                a.producer_id == header.producer_id
                    && a.first_offset <= header.base_offset
                    && header.base_offset <= a.last_offset
            })
    }
}

/// The leading whole batches of `bytes` that end before `last_stable`.
fn batches_below(bytes: Bytes, last_stable: i64) -> Bytes {
    let mut keep = 0;
    for (header, range) in Batches::new(&bytes) {
        if header.last_offset() >= last_stable {
            break;
        }
        keep = range.end;
    }
    bytes.slice(..keep)
}

/// One partition of a topic.
#[derive(Debug)]
pub struct Partition {
    /// Its index within the topic.
    pub index: i32,
    /// Its log.
    pub log: Arc<PartitionLog>,
    dir: PathBuf,
    producers: Mutex<ProducerTable>,
    /// Serializes snapshot writes (the periodic one and the one at shutdown share a
    /// temp file); never held with `producers`.
    snapshot_write: Mutex<()>,
}

impl Partition {
    /// Opens the log in `dir` and rebuilds its producer state: the last snapshot, then
    /// every batch after it.
    pub fn open(index: i32, dir: PathBuf, log: PartitionLog) -> Result<Partition, OpenError> {
        let log = Arc::new(log);
        let mut producers = ProducerTable::load(&dir, log.log_end_offset());
        replay(&log, &mut producers).map_err(|error| OpenError::Io {
            path: dir.display().to_string(),
            source: std::io::Error::other(error.to_string()),
        })?;
        Ok(Partition {
            index,
            log,
            dir,
            producers: Mutex::new(producers),
            snapshot_write: Mutex::new(()),
        })
    }

    /// Appends whole, validated batches. Batches of idempotent producers are checked
    /// against the producer's sequence; a retry of a recent batch is answered with the
    /// offset it got the first time and not appended again.
    ///
    /// Takes the batches by value because appending patches their headers (offsets,
    /// leader epoch, append time) in place: a caller that already owns a buffer (the
    /// embedded agent path) hands it over without a copy, and the wire path hands over
    /// the request frame of a one-partition request or else makes its one copy out of
    /// the frame. Bytes after the last whole batch are dropped.
    ///
    /// With `log_append_time`, every batch is stamped with that time (topics with
    /// `message.timestamp.type=LogAppendTime`).
    pub fn append(
        &self,
        mut records: BytesMut,
        log_append_time: Option<i64>,
    ) -> Result<Appended, PartitionAppendError> {
        let batches: Vec<(BatchHeader, Range<usize>)> = Batches::new(&records).collect();
        if let Some(timestamp) = log_append_time {
            for (_, range) in &batches {
                batch::set_log_append_time(&mut records[range.clone()], timestamp)
                    .map_err(AppendError::InvalidBatch)?;
            }
        }
        let mut producers = self.lock_producers();
        if !batches.iter().any(|(header, _)| header.producer_id >= 0) {
            let appended = self.log.append(records)?;
            record_assigned(
                &mut producers,
                batches.iter().map(|(h, _)| h),
                appended.base_offset,
            );
            return Ok(appended);
        }
        // Batch by batch, so each is checked against the state its predecessor left.
        // `Batches` walks contiguous batches from the start, so splitting each one off the
        // front of the buffer yields exactly its range.
        let mut result: Option<Appended> = None;
        for (header, range) in &batches {
            let bytes = records.split_to(range.len());
            let appended = match producers.check(header)? {
                SequenceCheck::Duplicate { base_offset } => Appended {
                    base_offset,
                    last_offset: base_offset + i64::from(header.last_offset_delta),
                },
                SequenceCheck::Append => {
                    let appended = self.log.append(bytes)?;
                    record_assigned(&mut producers, [header], appended.base_offset);
                    appended
                }
            };
            result = Some(match result {
                None => appended,
                Some(first) => Appended {
                    base_offset: first.base_offset,
                    last_offset: appended.last_offset,
                },
            });
        }
        result.ok_or(PartitionAppendError::Storage(AppendError::Io(
            std::io::Error::other("no record batches"),
        )))
    }

    /// Writes a transaction marker (commit or abort) for `producer_id`: the broker's own
    /// path for control batches, which clients may not produce. It ends the producer's
    /// open transaction here (moving the last stable offset) and, for an abort, adds it
    /// to the aborted transactions index. A marker for a producer with no open
    /// transaction here is still written (harmless, as in Kafka): recovery may repeat a
    /// marker whose first copy was lost.
    pub fn append_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
        timestamp: i64,
    ) -> Result<Appended, PartitionAppendError> {
        let bytes = marker_batch(
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
            timestamp,
        )?;
        let mut producers = self.lock_producers();
        let appended = self.log.append(bytes.clone())?;
        for (header, _) in Batches::new(&bytes) {
            let assigned = BatchHeader {
                base_offset: appended.base_offset,
                ..header
            };
            producers.record_marker(&assigned, commit);
        }
        Ok(appended)
    }

    /// The last stable offset: below it every transaction is decided. The first offset
    /// of the oldest open transaction, else the high watermark.
    pub fn last_stable_offset(&self) -> i64 {
        let high_watermark = self.log.high_watermark();
        self.lock_producers()
            .first_unstable_offset()
            .map_or(high_watermark, |first| first.min(high_watermark))
    }

    /// Aborted transactions overlapping `[from, to)`, for read_committed fetches.
    pub fn aborted_transactions(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.lock_producers().aborted_between(from, to)
    }

    /// Reads up to `max_bytes` from `offset` as a read_committed consumer sees it:
    /// nothing at or past the last stable offset (taken before the read, so the read
    /// never returns data of a transaction decided after it), plus the aborted
    /// transactions of what is returned.
    pub fn read_committed(
        &self,
        offset: i64,
        max_bytes: usize,
    ) -> Result<CommittedRead, ReadError> {
        let stable = self.last_stable_offset();
        let mut read = self.log.read(offset, max_bytes)?;
        read.bytes = batches_below(read.bytes, stable);
        let aborted = match Batches::new(&read.bytes).last() {
            Some((last, _)) => self.aborted_transactions(offset, last.next_offset()),
            None => Vec::new(),
        };
        Ok(CommittedRead {
            last_stable_offset: stable.min(read.high_watermark),
            read,
            aborted,
        })
    }

    /// Where `producer_id`'s open transaction on this partition began, if it has one
    /// (recovery uses it to find markers that were lost).
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<i64> {
        self.lock_producers().ongoing_transaction(producer_id)
    }

    /// Every producer known here: (id, state, first offset of its open transaction), for
    /// DescribeProducers.
    pub fn producers(&self) -> Vec<(i64, ProducerEntry, Option<i64>)> {
        let producers = self.lock_producers();
        producers
            .all()
            .map(|(id, entry)| (id, entry.clone(), producers.ongoing_transaction(id)))
            .collect()
    }

    /// Persists the producer state, so the next start need not replay the log.
    /// The aborted transactions index is trimmed to the log first.
    pub fn save_producer_state(&self) -> std::io::Result<()> {
        self.write_producer_snapshot(&self.producer_snapshot()?)
    }

    /// The producer table as a snapshot, taken under the partition's lock (appends hold
    /// it, so the snapshot covers no more than the log end at that moment).
    fn producer_snapshot(&self) -> std::io::Result<Vec<u8>> {
        let mut producers = self.lock_producers();
        producers.prune_aborted(self.log.log_start_offset());
        producers.snapshot_bytes()
    }

    fn write_producer_snapshot(&self, bytes: &[u8]) -> std::io::Result<()> {
        let _writing = self
            .snapshot_write
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        crate::producers::write_snapshot(&self.dir, bytes)
    }

    /// Writes the log's recovery point once the active segment grew by `min_bytes` (see
    /// [`PartitionLog::record_recovery_point_if_grown`]), and with it a producer-state
    /// snapshot: after a crash, open then replays the batches after the snapshot instead
    /// of the whole log. The snapshot is taken before the point's fsync, so that
    /// everything it describes is on disk by the time it is written.
    pub fn record_recovery_point_if_grown(&self, min_bytes: u64) -> std::io::Result<bool> {
        if !self.log.recovery_point_due(min_bytes) {
            return Ok(false);
        }
        let snapshot = self.producer_snapshot()?;
        let recorded = self
            .log
            .record_recovery_point_if_grown(min_bytes)
            .map_err(|error| std::io::Error::other(error.to_string()))?;
        if recorded {
            self.write_producer_snapshot(&snapshot)?;
        }
        Ok(recorded)
    }

    /// A producer's remembered state on this partition.
    pub fn producer_epoch(&self, producer_id: i64) -> Option<i16> {
        self.lock_producers().get(producer_id).map(|e| e.epoch)
    }

    fn lock_producers(&self) -> MutexGuard<'_, ProducerTable> {
        self.producers.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One control batch holding one marker record (also what tests use to write markers
/// straight into a log): key `[version 0, type]` (0 abort,
/// 1 commit), value `[version 0, coordinator epoch]`.
pub(crate) fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    timestamp: i64,
) -> Result<BytesMut, AppendError> {
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    let mut key = BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&i16::from(commit).to_be_bytes());
    let mut value = BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options)
        .map_err(|error| AppendError::Io(std::io::Error::other(error.to_string())))?;
    Ok(buf)
}

/// Records batches that were just appended starting at `base_offset`.
fn record_assigned<'a>(
    producers: &mut ProducerTable,
    headers: impl IntoIterator<Item = &'a BatchHeader>,
    base_offset: i64,
) {
    let mut next = base_offset;
    for header in headers {
        let assigned = BatchHeader {
            base_offset: next,
            ..*header
        };
        producers.record(&assigned);
        next = assigned.next_offset();
    }
}

/// Feeds every batch the table has not seen yet into it.
fn replay(log: &PartitionLog, producers: &mut ProducerTable) -> Result<(), ReadError> {
    let mut offset = producers.applied_until().max(log.log_start_offset());
    let end = log.high_watermark();
    while offset < end {
        let read = log.read(offset, REPLAY_CHUNK)?;
        if read.bytes.is_empty() {
            break;
        }
        producers.record_all(&read.bytes);
        let reached = producers.applied_until();
        if reached <= offset {
            break; // no progress: never loop forever on a log we cannot walk
        }
        offset = reached;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LogConfig;
    use agentlog_protocol::fixtures;
    use bytes::Bytes;
    use kafka_protocol::records::Compression;

    fn batch(producer_id: i64, epoch: i16, first_sequence: i32, count: i32) -> Vec<u8> {
        let records: Vec<_> = (0..count)
            .map(|i| {
                let value = Bytes::from(format!("v{}", first_sequence + i));
                let record = fixtures::record(i, None, Some(value), 1);
                fixtures::from_producer(record, producer_id, epoch, first_sequence, false)
            })
            .collect();
        fixtures::encode(&records, Compression::None).to_vec()
    }

    impl Partition {
        fn append_now(&self, records: &[u8]) -> Result<Appended, PartitionAppendError> {
            self.append(BytesMut::from(records), None)
        }
    }

    fn open(dir: &std::path::Path) -> Partition {
        let log = PartitionLog::open(dir, LogConfig::default()).unwrap();
        Partition::open(0, dir.to_path_buf(), log).unwrap()
    }

    #[tokio::test]
    async fn retried_batches_are_appended_once_even_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        {
            let partition = open(dir.path());
            assert_eq!(
                partition
                    .append_now(&batch(5, 0, 0, 3))
                    .unwrap()
                    .base_offset,
                0
            );
            assert_eq!(
                partition
                    .append_now(&batch(-1, -1, -1, 2))
                    .unwrap()
                    .base_offset,
                3
            );
            assert_eq!(
                partition
                    .append_now(&batch(5, 0, 3, 2))
                    .unwrap()
                    .base_offset,
                5
            );
            // The retry of the first batch is answered with its original offset.
            let retry = partition.append_now(&batch(5, 0, 0, 3)).unwrap();
            assert_eq!((retry.base_offset, retry.last_offset), (0, 2));
            assert!(matches!(
                partition.append_now(&batch(5, 0, 9, 1)),
                Err(PartitionAppendError::Sequence(SequenceError::OutOfOrder {
                    expected: 5,
                    ..
                }))
            ));
            partition.log.wait_durable(7).await.unwrap();
            assert_eq!(partition.log.high_watermark(), 7);
            // No snapshot saved: the next open must rebuild from the log.
        }
        let partition = open(dir.path());
        assert_eq!(partition.producer_epoch(5), Some(0));
        assert_eq!(
            partition
                .append_now(&batch(5, 0, 3, 2))
                .unwrap()
                .base_offset,
            5
        );
        assert_eq!(partition.log.log_end_offset(), 7);
        assert_eq!(
            partition
                .append_now(&batch(5, 0, 5, 1))
                .unwrap()
                .base_offset,
            7
        );
        partition.log.flush().unwrap();
        partition.save_producer_state().unwrap();
        drop(partition);

        let partition = open(dir.path());
        assert_eq!(
            partition
                .append_now(&batch(5, 0, 5, 1))
                .unwrap()
                .base_offset,
            7,
            "snapshot lost the last batch"
        );
        assert!(matches!(
            partition.append_now(&batch(5, 0, 0, 1)),
            Err(PartitionAppendError::Sequence(_))
        ));
    }
}
