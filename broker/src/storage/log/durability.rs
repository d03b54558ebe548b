//! Durability: the group-commit flush loop, fsyncs and their publication (the high
//! watermark moves only past durable bytes under policies that wait), poisoning after a
//! failed fsync, and the recovery points that let a restart skip validating the tail.

use std::fs::File;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::files::write_checkpoint;
use super::{lock, raise, PartitionLog, Shared};
use crate::storage::index::IndexBuilder;
use crate::storage::segment::{rlock, wlock, Checkpoint, Segment};
use crate::storage::{FlushError, FlushPolicy};

impl PartitionLog {
    /// Starts the flush loop unless one is running (the caller's data is then covered by
    /// that loop's next fsync: it re-reads the log end before each one).
    pub(super) fn start_flush_loop(self: &Arc<Self>) {
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
    pub(super) fn flush_loop(&self) {
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
    pub(super) fn sync_written_blocking(&self) -> Result<bool, FlushError> {
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
    pub(super) fn poison_error(&self) -> FlushError {
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
    pub(super) fn capture(&self) -> Result<(i64, Arc<File>), FlushError> {
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
    pub(super) fn sync_and_publish(
        &self,
        end: i64,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), FlushError> {
        let _one_at_a_time = lock(&self.sync_lock);
        self.finish_sync(end, sync())
    }

    /// Records the outcome of an fsync that covered offsets below `end`: a failure
    /// poisons the log; a success publishes them, unless the log is already poisoned.
    pub(in crate::storage) fn finish_sync(
        &self,
        end: i64,
        result: io::Result<()>,
    ) -> Result<(), FlushError> {
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
    pub(super) fn mark_durable(&self, end: i64) {
        if self.config.flush == FlushPolicy::EveryBatch {
            self.advance_locked(&mut wlock(&self.shared), end);
            self.notify(end);
        }
        self.durable_offset.fetch_max(end, Ordering::AcqRel);
        raise(&self.durable_tx, end);
    }

    pub(super) fn advance_locked(&self, shared: &mut Shared, end: i64) {
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

    pub(super) fn notify(&self, end: i64) {
        raise(&self.hw_tx, end);
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

    pub(super) fn point_due(&self, active: &Segment, min_bytes: u64) -> bool {
        let last = lock(&self.recovery_point)
            .filter(|c| c.base == active.base)
            .map_or(0, |c| c.size);
        active.size().saturating_sub(last) >= min_bytes
    }

    /// The recovery point the active segment's current state would make (appends hold
    /// the writer lock, so under it size and log end agree).
    pub(super) fn point_of(&self, active: &Segment) -> Checkpoint {
        Checkpoint {
            base: active.base,
            size: active.size(),
            next_offset: self.log_end_offset(),
        }
    }

    /// Writes the index files of `snapshot` (taken with `point`, whose data is fsynced),
    /// then `point`. Skipped when the segment was sealed meanwhile or a later point is
    /// already recorded. A failure only costs a longer open after a crash.
    pub(super) fn record_recovery_point(
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
}
