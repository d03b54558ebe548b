//! The partition log: one writer appending to the active segment, any number of readers,
//! group-committed fsyncs, and recovery on open.
//!
//! Locks, always taken in this order and never held across an fsync that readers wait on:
//!
//! * `writer` (std mutex): the single appender's state. Held while writing and while
//!   rolling (which fsyncs the old segment), so it only ever blocks other appenders.
//! * `shared` (std rwlock): the segment list, the tail cache and the max timestamp.
//!   Held for a few instructions by readers and writers.
//!
//! Group commit needs no lock: at most one flush loop runs per log (`flush_running`), on a
//! blocking thread, fsyncing until nothing written is left unsynced.
//!
//! The high watermark is an atomic mirrored into a `watch` channel; readers load it first
//! and never look past it, so they never see bytes that are written but not yet
//! acknowledged.

use std::collections::VecDeque;
use std::fs;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use agentlog_protocol::batch::{self, BatchError, BatchHeader, Batches, HEADER_LEN};
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

mod durability;
mod files;
mod retention;
mod tail_cache;

pub(crate) use self::files::replace_file;
use self::files::{list_segments, read_checkpoint, read_log_start};
pub(in crate::storage) use self::files::{sync_dir, write_atomically};
pub use self::retention::{DeleteRecordsError, HeldSegment, Retention, RetentionOutcome};
use self::tail_cache::TailCache;
pub use self::tail_cache::{CacheBudget, DEFAULT_CACHE_BUDGET};
use super::segment::{rlock, wlock, ActiveRecovery, Checkpoint, Segment};
use super::{
    AppendError, Appended, FlushError, FlushPolicy, LogConfig, OpenError, ReadBatches, ReadError,
    TimestampOffset,
};

/// Moves a watched offset forward to `end` and wakes receivers, unless it is already
/// there (offsets only grow, and publishers may finish out of order).
fn raise(offset: &watch::Sender<i64>, end: i64) {
    offset.send_if_modified(|current| {
        let moved = *current < end;
        if moved {
            *current = end;
        }
        moved
    });
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The appender's private state.
#[derive(Debug)]
struct Writer {
    active: Arc<Segment>,
    /// When the active segment got its first batch in this process (for `segment_ms`).
    active_since: Option<Instant>,
}

/// State readers look at.
#[derive(Debug)]
struct Shared {
    segments: Vec<Arc<Segment>>,
    cache: TailCache,
    /// The largest batch max timestamp below the high watermark (first batch with it).
    max_timestamp: Option<TimestampOffset>,
    /// New maxima appended above the high watermark: (end offset of batch, batch max).
    pending_max: VecDeque<(i64, TimestampOffset)>,
}

/// One partition's append-only log.
///
/// Shared as `Arc<PartitionLog>`: every method takes `&self`, appends are serialised
/// internally, and reads never wait for a writer's fsync. Dropping it does no I/O: call
/// [`PartitionLog::flush`] on shutdown so the next open need not validate the tail.
#[derive(Debug)]
pub struct PartitionLog {
    dir: PathBuf,
    config: LogConfig,
    writer: Mutex<Writer>,
    shared: RwLock<Shared>,
    high_watermark: AtomicI64,
    log_end_offset: AtomicI64,
    /// Every offset below this is fsynced.
    durable_offset: AtomicI64,
    leader_epoch: AtomicI32,
    hw_tx: watch::Sender<i64>,
    /// Publishes each advance of `durable_offset`, and fsync failures, to group-commit
    /// waiters. Separate from `hw_tx`, which consumers watch: a failed fsync must wake
    /// the producers waiting on it but never the fetches.
    durable_tx: watch::Sender<i64>,
    /// Whether a group-commit flush loop is running (see [`PartitionLog::wait_durable`]).
    flush_running: AtomicBool,
    poisoned: AtomicBool,
    /// Why the log was poisoned, for the waiters whose data that fsync covered.
    poison_cause: Mutex<Option<(io::ErrorKind, String)>>,
    fsyncs: AtomicU64,
    recovery_bytes_read: u64,
    truncated_on_open: u64,
    /// The lowest readable offset: the first segment's base, or higher after
    /// DeleteRecords. Persisted in [`LOG_START_FILE`] so a restart does not resurrect
    /// deleted records.
    log_start: AtomicI64,
    /// Roll thresholds, updatable at runtime (AlterConfigs): bytes, then milliseconds.
    segment_bytes: AtomicU64,
    segment_ms: AtomicU64,
    /// Serialises the maintenance operations that remove or replace segments
    /// (retention, DeleteRecords, the compaction swap) with each other. Never held by
    /// appenders or readers.
    pub(super) maintenance: Mutex<()>,
    /// The active segment's last recovery point. Held while one is written, and by a roll
    /// around sealing, so that a point's index files never overwrite a sealed segment's.
    /// Taken after `writer`, never before it.
    recovery_point: Mutex<Option<Checkpoint>>,
    /// Held around every fsync of the active segment and the publishing of its outcome
    /// (see `sync_and_publish`); always the innermost lock.
    sync_lock: Mutex<()>,
    /// The compactor's memory between passes (see `PartitionLog::compact`).
    pub(super) cleaner: super::compact::CleanerMemory,
    /// Makes the next fsync report failure (tests only).
    #[cfg(test)]
    pub(crate) fail_next_fsync: AtomicBool,
    /// Makes the next compaction stop right after its commit marker (tests only).
    #[cfg(test)]
    pub(crate) fail_before_renames: AtomicBool,
}

impl PartitionLog {
    /// Opens, or creates, the log in `dir`, truncating a torn or corrupt tail.
    ///
    /// Sealed segments are trusted (they were fsynced with their indexes when rolled):
    /// opening stats them and reads the last entry of each index file, nothing more. Only
    /// the active segment is read and validated batch by batch; its indexes are rebuilt
    /// in memory. Everything that survives is treated as committed (high watermark = log
    /// end offset), and is fsynced first so that claim holds.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, OpenError> {
        let io_err = |source: io::Error| OpenError::Io {
            path: dir.display().to_string(),
            source,
        };
        let mut config = config;
        config.segment_bytes = config
            .segment_bytes
            .clamp(HEADER_LEN as u64, u64::from(u32::MAX));
        let interval = config.index_interval_bytes;
        fs::create_dir_all(dir).map_err(io_err)?;
        super::compact::recover_swap(dir).map_err(io_err)?;
        let mut bases = list_segments(dir).map_err(io_err)?;
        let bytes_read = AtomicU64::new(0);
        let last = bases.pop();
        let mut segments = Vec::with_capacity(bases.len() + 1);
        for (i, &base) in bases.iter().enumerate() {
            let next = bases.get(i + 1).copied().or(last).unwrap_or(i64::MAX);
            let segment =
                Segment::open_sealed(dir, base, next, interval, &bytes_read).map_err(io_err)?;
            segments.push(Arc::new(segment));
        }
        let (active, recovery) = match last {
            Some(base) => {
                Segment::open_active(dir, base, interval, read_checkpoint(dir), &bytes_read)
                    .map_err(io_err)?
            }
            None => {
                let segment = Segment::create(dir, 0, interval).map_err(io_err)?;
                sync_dir(dir).map_err(io_err)?;
                let recovery = ActiveRecovery {
                    next_offset: 0,
                    truncated_bytes: 0,
                };
                (segment, recovery)
            }
        };
        active.file().and_then(|f| f.sync_data()).map_err(io_err)?;
        let active = Arc::new(active);
        segments.push(active.clone());
        let mut max_timestamp: Option<TimestampOffset> = None;
        for segment in &segments {
            if let Some(m) = segment.max_timestamp() {
                if max_timestamp.is_none_or(|best| m.timestamp > best.timestamp) {
                    max_timestamp = Some(m);
                }
            }
        }
        let end = recovery.next_offset;
        let (segment_bytes, segment_ms) = (config.segment_bytes, config.segment_ms);
        let has_data = active.size() > 0;
        let first_base = segments.first().map_or(0, |s| s.base);
        let log_start = read_log_start(dir)
            .unwrap_or(first_base)
            .clamp(first_base, end.max(first_base));
        Ok(PartitionLog {
            dir: dir.to_path_buf(),
            writer: Mutex::new(Writer {
                active,
                active_since: has_data.then(Instant::now),
            }),
            shared: RwLock::new(Shared {
                segments,
                cache: TailCache::new(config.tail_cache_bytes, config.cache_budget.clone()),
                max_timestamp,
                pending_max: VecDeque::new(),
            }),
            config,
            high_watermark: AtomicI64::new(end),
            log_end_offset: AtomicI64::new(end),
            durable_offset: AtomicI64::new(end),
            leader_epoch: AtomicI32::new(0),
            hw_tx: watch::Sender::new(end),
            durable_tx: watch::Sender::new(end),
            flush_running: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            poison_cause: Mutex::new(None),
            fsyncs: AtomicU64::new(0),
            recovery_bytes_read: bytes_read.load(Ordering::Relaxed),
            truncated_on_open: recovery.truncated_bytes,
            log_start: AtomicI64::new(log_start),
            segment_bytes: AtomicU64::new(segment_bytes),
            segment_ms: AtomicU64::new(segment_ms),
            maintenance: Mutex::new(()),
            // Unknown until one is written: the file's point may be one open rejected.
            recovery_point: Mutex::new(None),
            sync_lock: Mutex::new(()),
            cleaner: super::compact::CleanerMemory::default(),
            #[cfg(test)]
            fail_next_fsync: AtomicBool::new(false),
            #[cfg(test)]
            fail_before_renames: AtomicBool::new(false),
        })
    }

    /// Appends one or more whole, already validated batches.
    ///
    /// Assigns consecutive offsets (rewriting each header's base offset and partition
    /// leader epoch, which the CRC does not cover), rolls the segment if it is too big or
    /// too old, writes the bytes and keeps them in the tail cache. Under
    /// [`FlushPolicy::EveryBatch`] the high watermark does not move here: call
    /// [`PartitionLog::wait_durable`] for every append (from a spawned task if the
    /// producer does not wait, as with acks=1), and concurrent callers share one fsync.
    /// Under the other policies the high watermark moves before this returns.
    pub fn append(&self, mut batches: BytesMut) -> Result<Appended, AppendError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(AppendError::Poisoned);
        }
        let mut headers: Vec<(std::ops::Range<usize>, BatchHeader)> = Vec::new();
        let mut walk = Batches::new(&batches);
        for (header, range) in walk.by_ref() {
            if header.last_offset_delta < 0 {
                return Err(AppendError::InvalidLastOffsetDelta(
                    header.last_offset_delta,
                ));
            }
            headers.push((range, header));
        }
        if let Some(error) = walk.stop_reason() {
            return Err(AppendError::InvalidBatch(error.clone()));
        }
        if headers.is_empty() {
            return Err(AppendError::InvalidBatch(BatchError::Truncated {
                needed: HEADER_LEN,
                available: batches.len(),
            }));
        }

        let mut writer = lock(&self.writer);
        let base_offset = self.log_end_offset.load(Ordering::Acquire);
        let epoch = self.leader_epoch.load(Ordering::Relaxed);
        let mut next = base_offset;
        for (range, header) in &mut headers {
            let bytes = &mut batches[range.clone()];
            batch::set_base_offset(bytes, next);
            batch::set_partition_leader_epoch(bytes, epoch);
            header.base_offset = next;
            header.partition_leader_epoch = epoch;
            next = header.next_offset();
        }
        let len = batches.len() as u64;
        if self.should_roll(&writer, len, next) {
            self.roll(&mut writer, base_offset)?;
        }
        let segment = writer.active.clone();
        let position = segment.size();
        if self.config.preallocate {
            segment.reserve(position, len, self.segment_bytes.load(Ordering::Relaxed));
        }
        let file = segment.file()?;
        if let Err(error) = file.write_all_at(&batches, position) {
            // Leave no partial batch behind for readers or recovery to trip over.
            let _ = segment.truncate_to(position);
            return Err(error.into());
        }
        segment.on_appended(position, &headers);
        segment.set_size(position + len);
        writer.active_since.get_or_insert_with(Instant::now);
        self.log_end_offset.store(next, Ordering::Release);

        let visible_now = self.config.flush != FlushPolicy::EveryBatch;
        {
            let mut shared = wlock(&self.shared);
            for (_, header) in &headers {
                let best = shared
                    .pending_max
                    .back()
                    .map(|p| p.1)
                    .or(shared.max_timestamp);
                if best.is_none_or(|b| header.max_timestamp > b.timestamp) {
                    let candidate = TimestampOffset {
                        offset: header.base_offset,
                        timestamp: header.max_timestamp,
                    };
                    shared
                        .pending_max
                        .push_back((header.next_offset(), candidate));
                }
            }
            shared.cache.push(base_offset, next, batches.freeze());
            if visible_now {
                self.advance_locked(&mut shared, next);
            }
        }
        drop(writer);
        if visible_now {
            self.notify(next);
        }
        Ok(Appended {
            base_offset,
            last_offset: next - 1,
        })
    }

    fn should_roll(&self, writer: &Writer, len: u64, next: i64) -> bool {
        let active = &writer.active;
        let size = active.size();
        if size == 0 {
            return false;
        }
        let too_big = size + len > self.segment_bytes.load(Ordering::Relaxed);
        let segment_ms = self.segment_ms.load(Ordering::Relaxed);
        let too_old = writer
            .active_since
            .is_some_and(|t| t.elapsed() >= Duration::from_millis(segment_ms));
        let offsets_overflow = next - 1 - active.base > i64::from(u32::MAX);
        too_big || too_old || offsets_overflow
    }

    /// Seals the active segment (fsyncing it and its indexes) and starts a new one at
    /// `base`. Everything below `base` is then durable, so the high watermark may move.
    fn roll(&self, writer: &mut Writer, base: i64) -> io::Result<()> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        let sealed = {
            let _point = lock(&self.recovery_point);
            let _one_fsync_at_a_time = lock(&self.sync_lock);
            match self.poisoned.load(Ordering::Acquire) {
                // Sealing's fsync could succeed only because the failure went elsewhere.
                true => Err(io::Error::other("the log is poisoned by a failed fsync")),
                false => writer.active.seal(),
            }
        };
        if let Err(error) = sealed {
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(dir = %self.dir.display(), %error, "sealing a segment failed; log is now read-only");
            return Err(error);
        }
        let segment = Arc::new(Segment::create(
            &self.dir,
            base,
            self.config.index_interval_bytes,
        )?);
        sync_dir(&self.dir)?;
        tracing::debug!(dir = %self.dir.display(), base, "rolled to a new segment");
        wlock(&self.shared).segments.push(segment.clone());
        writer.active = segment;
        writer.active_since = None;
        self.mark_durable(base);
        Ok(())
    }

    /// Resolves once every offset below `end_offset` is durable per the flush policy.
    ///
    /// Under [`FlushPolicy::EveryBatch`] this is the group commit. One flush loop per log
    /// runs on a blocking thread while anything written is unsynced: it fsyncs all that
    /// was written when the fsync started, publishes it (durable offset, high watermark,
    /// watchers woken) and goes straight on to the next fsync if appends arrived in the
    /// meantime. Waiters only start the loop when none is running and then wait for the
    /// high watermark to pass their data, so any number of concurrent callers share each
    /// fsync, and under steady load no thread hand-off separates one fsync from the
    /// next. Under the other policies durability is not waited for, so this returns at
    /// once. Offsets past the log end are clamped.
    pub async fn wait_durable(self: &Arc<Self>, end_offset: i64) -> Result<(), FlushError> {
        if self.config.flush != FlushPolicy::EveryBatch {
            return Ok(());
        }
        let target = end_offset.min(self.log_end_offset());
        // Subscribed before the checks below, so a publish after them still wakes us.
        let mut published = self.durable_tx.subscribe();
        if self.durable_offset.load(Ordering::Acquire) >= target {
            return Ok(());
        }
        if self.poisoned.load(Ordering::Acquire) {
            return Err(FlushError::Poisoned);
        }
        loop {
            self.start_flush_loop();
            if published.changed().await.is_err() {
                // Unreachable while `self` holds the sender; treated as a failed flush.
                return Err(FlushError::Task("durability channel closed".into()));
            }
            if self.durable_offset.load(Ordering::Acquire) >= target {
                return Ok(());
            }
            if self.poisoned.load(Ordering::Acquire) {
                // The fsync that should have covered our data failed: report its cause.
                return Err(self.poison_error());
            }
        }
    }

    /// Whole batches from the one containing `offset`, at most `max_bytes` unless the
    /// first batch alone is larger, never past the high watermark.
    ///
    /// Recent data comes from the tail cache without a syscall (and without a copy when it
    /// was one append); older data with one positioned read, from a single segment.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        let mut read = self.read_retrying(offset, max_bytes)?;
        // Compaction keeps some emptied batches as bare headers (a segment's last, a
        // producer's last). A reply holding only those has no record, which clients
        // take for a fetch size too small (librdkafka doubles it, then fails): keep
        // reading the following segments until a batch with records, or the end.
        let Some(mut next) = only_empty_batches(&read.bytes) else {
            return Ok(read);
        };
        let mut bytes = BytesMut::from(&read.bytes[..]);
        for _ in 0..1024 {
            if next >= read.high_watermark || bytes.len() >= max_bytes {
                break;
            }
            let Ok(more) = self.read_retrying(next, max_bytes - bytes.len()) else {
                break;
            };
            if more.bytes.is_empty() {
                break;
            }
            bytes.extend_from_slice(&more.bytes);
            read.high_watermark = more.high_watermark;
            match only_empty_batches(&more.bytes) {
                Some(end) => next = end,
                None => break,
            }
        }
        read.bytes = bytes.freeze();
        Ok(read)
    }

    fn read_retrying(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        match self.read_once(offset, max_bytes) {
            // A segment removed by retention or replaced by compaction between finding
            // it and reading it: the offset is now out of range, or a retry finds the
            // replacement.
            Err(ReadError::Io(error)) => {
                let log_start_offset = self.log_start_offset();
                if offset < log_start_offset {
                    return Err(ReadError::OffsetOutOfRange {
                        offset,
                        log_start_offset,
                        high_watermark: self.high_watermark(),
                    });
                }
                tracing::debug!(dir = %self.dir.display(), offset, %error, "read failed; retrying once");
                self.read_once(offset, max_bytes)
            }
            other => other,
        }
    }

    fn read_once(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        let high_watermark = self.high_watermark();
        let (log_start_offset, segment) = {
            let shared = rlock(&self.shared);
            let log_start_offset = self.log_start.load(Ordering::Acquire);
            if offset < log_start_offset || offset > high_watermark {
                return Err(ReadError::OffsetOutOfRange {
                    offset,
                    log_start_offset,
                    high_watermark,
                });
            }
            let done = |bytes| {
                Ok(ReadBatches {
                    bytes,
                    high_watermark,
                    log_start_offset,
                })
            };
            if offset == high_watermark {
                return done(Bytes::new());
            }
            if let Some(bytes) = shared.cache.read(offset, max_bytes, high_watermark) {
                return done(bytes);
            }
            let index = shared.segments.partition_point(|s| s.base <= offset);
            let segment = index
                .checked_sub(1)
                .and_then(|i| shared.segments.get(i))
                .cloned();
            (log_start_offset, segment)
        };
        let segment = segment.ok_or_else(|| io::Error::other("no segment holds the offset"))?;
        let bytes = segment.read(offset, max_bytes, high_watermark)?;
        Ok(ReadBatches {
            bytes,
            high_watermark,
            log_start_offset,
        })
    }

    /// The first record whose timestamp is at least `timestamp`.
    ///
    /// Segments whose largest timestamp is smaller are skipped from their time index's
    /// last entry; inside a segment the time index gives where to start walking batch
    /// headers, and the first batch that qualifies is opened (decompressed if need be)
    /// to find the exact record.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, ReadError> {
        let high_watermark = self.high_watermark();
        let segments = rlock(&self.shared).segments.clone();
        for segment in segments {
            if segment.base >= high_watermark {
                break;
            }
            if segment
                .max_timestamp()
                .is_none_or(|m| m.timestamp < timestamp)
            {
                continue;
            }
            if let Some(mut found) = segment.offset_for_timestamp(timestamp, high_watermark)? {
                // Records below the log start (DeleteRecords inside a segment) are gone.
                found.offset = found.offset.max(self.log_start_offset());
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// The record with the largest timestamp (the earliest such, if several).
    ///
    /// The largest timestamp below the high watermark is tracked as batches become
    /// visible; the earliest record carrying it is then an `offset_for_timestamp` away.
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>, ReadError> {
        let best = rlock(&self.shared).max_timestamp;
        match best {
            Some(best) => self.offset_for_timestamp(best.timestamp),
            None => Ok(None),
        }
    }

    /// One past the last offset consumers may read.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// One past the last appended offset (may be ahead of the high watermark).
    pub fn log_end_offset(&self) -> i64 {
        self.log_end_offset.load(Ordering::Acquire)
    }

    /// The lowest offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// Notifies on every high watermark change, so long-polling fetches can park.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    /// Sets the partition leader epoch written into the headers of later appends.
    pub fn set_leader_epoch(&self, epoch: i32) {
        self.leader_epoch.store(epoch, Ordering::Relaxed);
    }

    /// Log-file fsyncs done since open (group commits, flushes, rolls): a metric, and how
    /// tests prove that concurrent producers share fsyncs.
    pub fn fsync_count(&self) -> u64 {
        self.fsyncs.load(Ordering::Relaxed)
    }

    /// Bytes of log read while opening: proves that open validates only the tail.
    pub fn recovery_bytes_read(&self) -> u64 {
        self.recovery_bytes_read
    }

    /// Bytes cut off a torn or corrupt tail while opening (0 after a clean shutdown).
    pub fn truncated_bytes_on_open(&self) -> u64 {
        self.truncated_on_open
    }

    /// Number of segments: lets tests and metrics see rolls.
    pub fn segment_count(&self) -> usize {
        rlock(&self.shared).segments.len()
    }
}

/// The end offset of `bytes` when it holds at least one batch and none has records.
fn only_empty_batches(bytes: &[u8]) -> Option<i64> {
    let mut end = None;
    for (header, _) in Batches::new(bytes) {
        if header.records_count != 0 {
            return None;
        }
        end = Some(header.next_offset());
    }
    end
}
