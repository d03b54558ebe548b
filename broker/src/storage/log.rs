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
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};

use agentlog_protocol::batch::{self, BatchError, BatchHeader, Batches, HEADER_LEN};
use bytes::{Bytes, BytesMut};
use tokio::sync::watch;

use super::index::IndexBuilder;
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
                cache: TailCache::new(config.tail_cache_bytes),
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

    /// Starts the flush loop unless one is running (the caller's data is then covered by
    /// that loop's next fsync: it re-reads the log end before each one).
    fn start_flush_loop(self: &Arc<Self>) {
        if self.flush_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let log = Arc::clone(self);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn_blocking(move || log.flush_loop());
            }
            Err(_) => log.flush_loop(),
        }
    }

    /// fsyncs until everything written is durable, publishing after each fsync. Ends by
    /// clearing `flush_running`, then checks once more for data written by an appender
    /// that saw the flag still set (and so relied on this loop), taking the loop back
    /// if it finds some.
    fn flush_loop(&self) {
        loop {
            while let Ok(true) = self.sync_written_blocking() {}
            // The swap reads the flag an appender's `start_flush_loop` swap wrote, so that
            // appender's log end is visible to the check below.
            self.flush_running.swap(false, Ordering::AcqRel);
            let unsynced = self.log_end_offset.load(Ordering::Acquire)
                > self.durable_offset.load(Ordering::Acquire);
            if self.poisoned.load(Ordering::Acquire)
                || !unsynced
                || self.flush_running.swap(true, Ordering::AcqRel)
            {
                return;
            }
        }
    }

    /// One fsync of everything written so far, on the calling thread (the group-commit
    /// flush loop, and the interval ticker's blocking task): `Ok(true)` if it covered new
    /// data, `Ok(false)` if there was none. A failure poisons the log and wakes every
    /// waiter so that they see it.
    fn sync_written_blocking(&self) -> Result<bool, FlushError> {
        let synced = match self.capture() {
            Ok((end, _)) if end <= self.durable_offset.load(Ordering::Acquire) => Ok(false),
            Ok((end, file)) => self
                .sync_and_publish(end, || file.sync_data())
                .map(|()| true),
            // The active segment's file cannot be reached: its data can never be made
            // durable, which is a failed fsync by another name.
            Err(FlushError::Io(error)) => self.finish_sync(0, Err(error)).map(|()| false),
            Err(error) => Err(error),
        };
        if synced.is_err() {
            self.durable_tx.send_modify(|_| ());
        }
        synced
    }

    /// The error that poisoned the log, as seen by the waiters its fsync covered.
    fn poison_error(&self) -> FlushError {
        match &*lock(&self.poison_cause) {
            Some((kind, message)) => FlushError::Io(io::Error::new(*kind, message.clone())),
            None => FlushError::Poisoned,
        }
    }

    /// Starts the background fsync ticker for [`FlushPolicy::Interval`] on the current
    /// tokio runtime (`open` is synchronous, so it cannot). The task holds only a weak
    /// reference and ends when the log is dropped. Returns `None` for other policies or
    /// outside a runtime. Ticks only fsync the log; [`PartitionLog::flush`] (which also
    /// rewrites the active segment's index files) is for shutdown.
    pub fn start_background(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let FlushPolicy::Interval(period) = self.config.flush else {
            return None;
        };
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let weak = Arc::downgrade(self);
        Some(runtime.spawn(async move {
            let mut ticker = tokio::time::interval(period.max(Duration::from_millis(1)));
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(log) = weak.upgrade() else { break };
                let syncing = log.clone();
                let synced = tokio::task::spawn_blocking(move || syncing.sync_written_blocking())
                    .await
                    .unwrap_or_else(|e| Err(FlushError::Task(e.to_string())));
                if let Err(error) = synced {
                    tracing::error!(dir = %log.dir.display(), %error, "background flush failed");
                    if log.poisoned.load(Ordering::Acquire) {
                        break;
                    }
                }
            }
        }))
    }

    /// What an fsync started now would cover: the log end offset, and the active
    /// segment's file. The end is read first: anything below it lives in that segment or
    /// in one sealed (and so fsynced) before a later segment became active.
    fn capture(&self) -> Result<(i64, Arc<File>), FlushError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(FlushError::Poisoned);
        }
        let end = self.log_end_offset.load(Ordering::Acquire);
        let segment = rlock(&self.shared).segments.last().cloned();
        let segment = segment.ok_or_else(|| io::Error::other("log has no segments"))?;
        Ok((end, segment.file()?.clone()))
    }

    /// Runs one fsync of the active segment and publishes what it covered (offsets below
    /// `end`). Every such fsync goes through here, one at a time: Linux reports a failed
    /// writeback to only one of several fsyncs of a file, so the fsync that sees it must
    /// poison the log before another can publish data that writeback held.
    fn sync_and_publish(
        &self,
        end: i64,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), FlushError> {
        let _one_at_a_time = lock(&self.sync_lock);
        self.finish_sync(end, sync())
    }

    /// Records the outcome of an fsync that covered offsets below `end`: a failure
    /// poisons the log; a success publishes them, unless the log is already poisoned.
    pub(super) fn finish_sync(&self, end: i64, result: io::Result<()>) -> Result<(), FlushError> {
        self.fsyncs.fetch_add(1, Ordering::Relaxed);
        #[cfg(test)]
        let result = match self.fail_next_fsync.swap(false, Ordering::AcqRel) {
            true => Err(io::Error::other("injected fsync failure")),
            false => result,
        };
        if let Err(error) = result {
            *lock(&self.poison_cause) = Some((error.kind(), error.to_string()));
            self.poisoned.store(true, Ordering::Release);
            tracing::error!(dir = %self.dir.display(), %error, "fsync failed; log is now read-only");
            return Err(error.into());
        }
        if self.poisoned.load(Ordering::Acquire) {
            // An earlier fsync failed: this one's success may only mean the failed
            // writeback's error was reported there.
            return Err(self.poison_error());
        }
        self.mark_durable(end);
        Ok(())
    }

    /// Records that offsets below `end` are on disk; under group commit that is what
    /// moves the high watermark.
    ///
    /// The high watermark moves first: a producer released by `wait_durable` must find
    /// its data already visible to consumers.
    fn mark_durable(&self, end: i64) {
        if self.config.flush == FlushPolicy::EveryBatch {
            self.advance_locked(&mut wlock(&self.shared), end);
            self.notify(end);
        }
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        raise(&self.durable_tx, end);
    }

    fn advance_locked(&self, shared: &mut Shared, end: i64) {
        if self.high_watermark.fetch_max(end, Ordering::AcqRel) >= end {
            return;
        }
        while let Some(&(batch_end, candidate)) = shared.pending_max.front() {
            if batch_end > end {
                break;
            }
            shared.pending_max.pop_front();
            if shared
                .max_timestamp
                .is_none_or(|best| candidate.timestamp > best.timestamp)
            {
                shared.max_timestamp = Some(candidate);
            }
        }
    }

    fn notify(&self, end: i64) {
        raise(&self.hw_tx, end);
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

    /// Forces everything appended so far to disk (used on shutdown). Blocks the calling
    /// thread (and appenders) for the fsync; under group commit it also advances the
    /// high watermark.
    ///
    /// It then records a recovery point (the active segment's index files plus a small
    /// `recovery-point` file), so that the next open validates only what is appended
    /// after it instead of the whole active segment.
    pub fn flush(&self) -> Result<(), FlushError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(FlushError::Poisoned);
        }
        let writer = lock(&self.writer);
        let active = writer.active.clone();
        let point = self.point_of(&active);
        // Trimmed first, so that the next open finds no reserved space past the point.
        self.sync_and_publish(point.next_offset, || {
            active.trim()?;
            active.file()?.sync_data()
        })?;
        self.record_recovery_point(&active, point, active.index_snapshot());
        drop(writer);
        Ok(())
    }

    /// Writes a recovery point for the active segment when at least `min_bytes` were
    /// appended to it since the last one, so that after a crash the next open validates
    /// about that much (plus what arrived since) instead of the whole active segment (up
    /// to `segment.bytes`, 1 GiB by default: seconds of reading). Kafka does the same with
    /// its periodic recovery-point checkpoint. Appends wait only while the in-memory
    /// indexes are copied (and, should a roll coincide, for the roll to get past the
    /// point's file writes); the fsync and the file writes happen after. Returns whether a
    /// point was written (never for a poisoned log, which said so when it was poisoned).
    pub fn record_recovery_point_if_grown(&self, min_bytes: u64) -> Result<bool, FlushError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Ok(false);
        }
        let (active, point, snapshot) = {
            let writer = lock(&self.writer);
            let active = writer.active.clone();
            if !self.point_due(&active, min_bytes) {
                return Ok(false);
            }
            let point = self.point_of(&active);
            let snapshot = active.index_snapshot();
            (active, point, snapshot)
        };
        self.sync_and_publish(point.next_offset, || active.file()?.sync_data())?;
        Ok(self.record_recovery_point(&active, point, snapshot))
    }

    /// Whether [`PartitionLog::record_recovery_point_if_grown`] would write a point now:
    /// lets a caller prepare what goes with it (the producer snapshot) only when it will.
    pub fn recovery_point_due(&self, min_bytes: u64) -> bool {
        !self.poisoned.load(Ordering::Acquire)
            && self.point_due(&lock(&self.writer).active, min_bytes)
    }

    fn point_due(&self, active: &Segment, min_bytes: u64) -> bool {
        let last = lock(&self.recovery_point)
            .filter(|c| c.base == active.base)
            .map_or(0, |c| c.size);
        active.size().saturating_sub(last) >= min_bytes
    }

    /// The recovery point the active segment's current state would make (appends hold
    /// the writer lock, so under it size and log end agree).
    fn point_of(&self, active: &Segment) -> Checkpoint {
        Checkpoint {
            base: active.base,
            size: active.size(),
            next_offset: self.log_end_offset(),
        }
    }

    /// Writes the index files of `snapshot` (taken with `point`, whose data is fsynced),
    /// then `point`. Skipped when the segment was sealed meanwhile or a later point is
    /// already recorded. A failure only costs a longer open after a crash.
    fn record_recovery_point(
        &self,
        active: &Segment,
        point: Checkpoint,
        snapshot: Option<IndexBuilder>,
    ) -> bool {
        let mut last = lock(&self.recovery_point);
        let newer = last.is_none_or(|c| c.base != point.base || c.size < point.size);
        let Some(snapshot) = snapshot.filter(|_| newer) else {
            return false;
        };
        let recorded = active
            .persist_index_snapshot(snapshot)
            .and_then(|written| match written {
                true => write_checkpoint(&self.dir, point).map(|()| true),
                false => Ok(false),
            });
        match recorded {
            Ok(written) => {
                if written {
                    *last = Some(point);
                }
                written
            }
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot record the recovery point");
                false
            }
        }
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

impl PartitionLog {
    /// Changes the roll thresholds used from the next append on (AlterConfigs of
    /// `segment.bytes` / `segment.ms` take effect without a restart).
    pub fn set_roll_config(&self, segment_bytes: u64, segment_ms: u64) {
        let bytes = segment_bytes.clamp(HEADER_LEN as u64, u64::from(u32::MAX));
        self.segment_bytes.store(bytes, Ordering::Relaxed);
        self.segment_ms.store(segment_ms.max(1), Ordering::Relaxed);
    }

    /// The partition directory (for maintenance code and diagnostics).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes of all segments: what retention.bytes is compared with.
    pub fn size_bytes(&self) -> u64 {
        rlock(&self.shared).segments.iter().map(|s| s.size()).sum()
    }

    /// Advances the log start offset to `offset` (DeleteRecords; -1 means the high
    /// watermark) and removes the segments wholly below it. Returns the new log start
    /// (the low watermark). The new start is persisted before any file is removed.
    pub fn delete_records(&self, offset: i64) -> Result<i64, DeleteRecordsError> {
        let _maintenance = lock(&self.maintenance);
        let high_watermark = self.high_watermark();
        let target = if offset == -1 { high_watermark } else { offset };
        if target < 0 || target > high_watermark {
            return Err(DeleteRecordsError::OffsetOutOfRange {
                offset,
                high_watermark,
            });
        }
        if target > self.log_start_offset() {
            self.advance_log_start(target)?;
        }
        self.remove_segments_below_start()?;
        Ok(self.log_start_offset())
    }

    /// One retention pass (Kafka's semantics): sealed segments go, oldest first, while
    /// their largest timestamp is older than `retention_ms`, while the log exceeds
    /// `retention_bytes` by at least the segment's size, or when they lie wholly below
    /// the log start. The active segment is never deleted; when time retention would
    /// delete everything, it is rolled first (so an idle log still empties).
    pub fn apply_retention(
        &self,
        retention: Retention,
    ) -> Result<RetentionOutcome, DeleteRecordsError> {
        let _maintenance = lock(&self.maintenance);
        let expired = |segment: &Segment| {
            retention.retention_ms >= 0
                && segment.size() > 0
                && segment.max_timestamp().is_some_and(|m| {
                    retention.now_ms.saturating_sub(m.timestamp) > retention.retention_ms
                })
        };
        // Roll an expired active segment whose every batch is visible, so that it can go.
        {
            let mut writer = lock(&self.writer);
            let all_visible = self.high_watermark() == self.log_end_offset();
            let sealed_all_expired = rlock(&self.shared)
                .segments
                .iter()
                .rev()
                .skip(1)
                .all(|s| expired(s));
            if all_visible && sealed_all_expired && expired(&writer.active) {
                let base = self.log_end_offset();
                self.roll(&mut writer, base)?;
            }
        }
        let segments = rlock(&self.shared).segments.clone();
        let Some((_active, sealed)) = segments.split_last() else {
            return Ok(RetentionOutcome::default());
        };
        let mut total: u64 = segments.iter().map(|s| s.size()).sum();
        let mut new_start = None;
        for (i, segment) in sealed.iter().enumerate() {
            let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base);
            let over_size = retention.retention_bytes >= 0
                && total.saturating_sub(segment.size()) >= retention.retention_bytes as u64;
            let below_start = next_base <= self.log_start_offset();
            let held = retention.keep_from.is_some_and(|keep| next_base > keep);
            if (expired(segment) || over_size) && held && !below_start {
                break;
            }
            if expired(segment) || over_size || below_start {
                total = total.saturating_sub(segment.size());
                new_start = Some(next_base);
            } else {
                break;
            }
        }
        let Some(new_start) = new_start else {
            return Ok(RetentionOutcome::default());
        };
        if new_start > self.log_start_offset() {
            self.advance_log_start(new_start)?;
        }
        self.remove_segments_below_start()
    }

    /// Moves the log start to `offset` and persists it (write, fsync, rename, fsync
    /// the directory) before anything is deleted.
    fn advance_log_start(&self, offset: i64) -> io::Result<()> {
        write_log_start(&self.dir, offset)?;
        self.log_start.fetch_max(offset, Ordering::AcqRel);
        Ok(())
    }

    /// Drops the sealed segments that end at or below the log start from the list, then
    /// unlinks their files. Readers that hold one keep reading its open file; readers
    /// that come later get OFFSET_OUT_OF_RANGE.
    fn remove_segments_below_start(&self) -> Result<RetentionOutcome, DeleteRecordsError> {
        let start = self.log_start_offset();
        let removed: Vec<Arc<Segment>> = {
            let mut shared = wlock(&self.shared);
            let keep_from = shared
                .segments
                .windows(2)
                .take_while(|pair| pair[1].base <= start)
                .count();
            shared.segments.drain(..keep_from).collect()
        };
        let mut outcome = RetentionOutcome::default();
        for segment in removed {
            outcome.segments_deleted += 1;
            outcome.bytes_deleted += segment.size();
            segment.remove_files()?;
            tracing::info!(dir = %self.dir.display(), base = segment.base, bytes = segment.size(), "deleted segment");
        }
        if outcome.segments_deleted > 0 {
            sync_dir(&self.dir)?;
        }
        Ok(outcome)
    }

    /// The sealed segments, oldest first (a snapshot: the compactor works on it while
    /// appends continue), with the base of the segment after each.
    pub(super) fn sealed_snapshot(&self) -> Vec<(Arc<Segment>, i64)> {
        let shared = rlock(&self.shared);
        let count = shared.segments.len().saturating_sub(1);
        (0..count)
            .filter_map(|i| {
                let next = shared.segments.get(i + 1)?.base;
                Some((shared.segments.get(i)?.clone(), next))
            })
            .collect()
    }

    /// Replaces `old` segments (still present, in order) by `new` ones with the same
    /// bases, under the segment lock, and drops the tail cache (it may hold bytes of
    /// the old segments). Returns false, changing nothing, if `old` is not current.
    pub(super) fn replace_segments(&self, old: &[Arc<Segment>], new: Vec<Arc<Segment>>) -> bool {
        let mut shared = wlock(&self.shared);
        let Some(first) = old.first() else {
            return false;
        };
        let Some(at) = shared.segments.iter().position(|s| Arc::ptr_eq(s, first)) else {
            return false;
        };
        let current = shared.segments.get(at..at + old.len());
        let same = current.is_some_and(|c| c.iter().zip(old).all(|(a, b)| Arc::ptr_eq(a, b)));
        if !same || new.len() != old.len() {
            return false;
        }
        for (i, segment) in new.into_iter().enumerate() {
            shared.segments[at + i] = segment;
        }
        shared.cache.clear();
        true
    }

    /// Whether every segment in `old` is still in the list (the compactor checks this
    /// before committing a swap).
    pub(super) fn segments_current(&self, old: &[Arc<Segment>]) -> bool {
        let shared = rlock(&self.shared);
        old.iter()
            .all(|o| shared.segments.iter().any(|s| Arc::ptr_eq(s, o)))
    }

    /// The index interval new segments are built with.
    pub(super) fn index_interval(&self) -> u32 {
        self.config.index_interval_bytes
    }
}

/// What retention is asked to enforce in one pass.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Delete segments whose largest timestamp is older than this (-1: never).
    pub retention_ms: i64,
    /// Trim the log to this size (-1: unlimited).
    pub retention_bytes: i64,
    /// The current time in milliseconds since the epoch.
    pub now_ms: i64,
    /// Keep every segment holding this offset or later, however old or large: a
    /// reader that must not miss records (an edge uplink not yet forwarded) still needs
    /// them. `None`: nothing held.
    pub keep_from: Option<i64>,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Segments deleted.
    pub segments_deleted: u64,
    /// Bytes of log deleted.
    pub bytes_deleted: u64,
}

/// Moving the log start (DeleteRecords, retention) failed.
#[derive(Debug, thiserror::Error)]
pub enum DeleteRecordsError {
    /// The requested offset is beyond the high watermark (or negative and not -1).
    #[error("offset {offset} is beyond the high watermark {high_watermark}")]
    OffsetOutOfRange {
        /// Requested.
        offset: i64,
        /// One past the highest readable.
        high_watermark: i64,
    },
    /// File system error.
    #[error("deleting records failed: {0}")]
    Io(#[from] io::Error),
}

/// Name of the file holding the persisted log start offset.
const LOG_START_FILE: &str = "log-start-offset";

/// The persisted log start offset, if the file is there and readable.
fn read_log_start(dir: &Path) -> Option<i64> {
    let text = fs::read_to_string(dir.join(LOG_START_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "v1" {
        return None;
    }
    let offset = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some(offset)
}

/// Atomically replaces the persisted log start offset.
fn write_log_start(dir: &Path, offset: i64) -> io::Result<()> {
    write_atomically(dir, LOG_START_FILE, &format!("v1 {offset}\n"))
}

/// Writes `name` in `dir` via a temporary file, fsync, rename and directory fsync, so
/// a crash leaves either the old or the new content.
pub(super) fn write_atomically(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    replace_file(&dir.join(name), text.as_bytes())?;
    sync_dir(dir)
}

/// Replaces `path` with `bytes` via `<path>.tmp`, fsync and rename: a crash leaves the
/// old or the new content whole. The rename is durable once the directory is fsynced,
/// which callers do themselves ([`write_atomically`]) or leave to a later write that
/// does, if the old content standing until then is acceptable.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let mut file = File::create(&tmp)?;
    io::Write::write_all(&mut file, bytes)?;
    file.sync_all()?;
    fs::rename(&tmp, path)
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

/// Base offsets of the `{base:020}.log` files in `dir`, ascending.
fn list_segments(dir: &Path) -> io::Result<Vec<i64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".log")) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(base) = stem.parse::<i64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Name of the file holding the active segment's recovery point.
const CHECKPOINT_FILE: &str = "recovery-point";

/// The recovery point written by the last clean flush, if it is there and readable.
fn read_checkpoint(dir: &Path) -> Option<Checkpoint> {
    let text = fs::read_to_string(dir.join(CHECKPOINT_FILE)).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "v1" {
        return None;
    }
    let checkpoint = Checkpoint {
        base: fields.next()?.parse().ok()?,
        size: fields.next()?.parse().ok()?,
        next_offset: fields.next()?.parse().ok()?,
    };
    fields.next().is_none().then_some(checkpoint)
}

/// Atomically replaces the recovery point (write, fsync, rename, fsync directory).
fn write_checkpoint(dir: &Path, checkpoint: Checkpoint) -> io::Result<()> {
    let text = format!(
        "v1 {} {} {}\n",
        checkpoint.base, checkpoint.size, checkpoint.next_offset
    );
    write_atomically(dir, CHECKPOINT_FILE, &text)
}

/// Makes a new segment file's directory entry durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The most recent appends, exactly as written (after offset assignment), so that
/// consumers tailing the log are served from memory.
#[derive(Debug)]
struct TailCache {
    entries: VecDeque<CacheEntry>,
    bytes: usize,
    limit: usize,
}

#[derive(Debug)]
struct CacheEntry {
    base: i64,
    next: i64,
    bytes: Bytes,
}

impl TailCache {
    fn new(limit: usize) -> Self {
        TailCache {
            entries: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Forgets everything (segments were rewritten under it).
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Adds one append's bytes, evicting the oldest to stay within the limit.
    fn push(&mut self, base: i64, next: i64, bytes: Bytes) {
        let contiguous = self.entries.back().is_none_or(|last| last.next == base);
        if bytes.len() > self.limit || !contiguous {
            self.entries.clear();
            self.bytes = 0;
            if bytes.len() > self.limit {
                return;
            }
        }
        while self.bytes + bytes.len() > self.limit {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.bytes.len(),
                None => break,
            }
        }
        self.bytes += bytes.len();
        self.entries.push_back(CacheEntry { base, next, bytes });
    }

    /// Whole batches from the one containing `offset`, if the cache still holds it: a
    /// slice of the appended `Bytes` when the answer lies within one append, else one copy.
    fn read(&self, offset: i64, max_bytes: usize, high_watermark: i64) -> Option<Bytes> {
        if self.entries.front().is_none_or(|first| offset < first.base) {
            return None;
        }
        let first = self.entries.partition_point(|e| e.next <= offset);
        let entry = self.entries.get(first)?;
        let mut from = Batches::new(&entry.bytes)
            .find(|(header, _)| header.next_offset() > offset)
            .map(|(_, range)| range.start)?;
        let mut pieces: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        for entry in self.entries.range(first..) {
            let slice = entry.bytes.get(from..)?;
            let mut take = 0usize;
            let mut stop = false;
            for (header, range) in Batches::new(slice) {
                if header.next_offset() > high_watermark
                    || (total + take > 0 && total + range.end > max_bytes)
                {
                    stop = true;
                    break;
                }
                take = range.end;
            }
            if take > 0 {
                pieces.push(entry.bytes.slice(from..from + take));
                total += take;
            }
            if stop || take < slice.len() {
                break;
            }
            from = 0;
        }
        match pieces.len() {
            0 => None,
            1 => pieces.pop(),
            _ => {
                let mut out = BytesMut::with_capacity(total);
                for piece in pieces {
                    out.extend_from_slice(&piece);
                }
                Some(out.freeze())
            }
        }
    }
}
