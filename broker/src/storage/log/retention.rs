//! Removing records from the front of a partition log: DeleteRecords, retention passes,
//! and the segment swaps the compactor commits. Kept apart from the append and read
//! paths because these run on maintenance tasks, serialised by `maintenance`, and are
//! the only code that deletes files.

use std::io;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use agentlog_protocol::batch::HEADER_LEN;

use super::files::{sync_dir, write_log_start};
use super::{lock, PartitionLog};
use crate::storage::segment::{rlock, wlock, Segment};

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
        // Roll an expired active segment whose every batch is visible, so that it can go.
        {
            let mut writer = lock(&self.writer);
            let all_visible = self.high_watermark() == self.log_end_offset();
            let sealed_all_expired = rlock(&self.shared)
                .segments
                .iter()
                .rev()
                .skip(1)
                .all(|s| retention.expired(s));
            if all_visible && sealed_all_expired && retention.expired(&writer.active) {
                let base = self.log_end_offset();
                self.roll(&mut writer, base)?;
            }
        }
        let segments = rlock(&self.shared).segments.clone();
        let Some(new_start) = self.plan_retention(&segments, &retention).new_start else {
            return Ok(RetentionOutcome::default());
        };
        if new_start > self.log_start_offset() {
            self.advance_log_start(new_start)?;
        }
        self.remove_segments_below_start()
    }

    /// The sealed segments `retention` would delete now but for its `keep_from` hold,
    /// oldest first: what the free-disk floor may release (see `lifecycle`).
    pub fn segments_held_back(&self, retention: Retention) -> Vec<HeldSegment> {
        let segments = rlock(&self.shared).segments.clone();
        self.plan_retention(&segments, &retention).held
    }

    /// Walks the sealed `segments` oldest first: those below the log start, and those
    /// expired or over size and not held, go (`new_start`); the ones after them that
    /// are due but held are listed; the walk stops at the first one not due.
    fn plan_retention(&self, segments: &[Arc<Segment>], retention: &Retention) -> RetentionPlan {
        let mut plan = RetentionPlan::default();
        let Some((_active, sealed)) = segments.split_last() else {
            return plan;
        };
        let log_start = self.log_start_offset();
        let mut total: u64 = segments.iter().map(|s| s.size()).sum();
        for (i, segment) in sealed.iter().enumerate() {
            let next_base = segments.get(i + 1).map_or(i64::MAX, |s| s.base);
            let over_size = retention.retention_bytes >= 0
                && total.saturating_sub(segment.size()) >= retention.retention_bytes as u64;
            let due = retention.expired(segment) || over_size;
            let below_start = next_base <= log_start;
            let held = retention.keep_from.is_some_and(|keep| next_base > keep);
            if below_start || (due && !held) {
                plan.new_start = Some(next_base);
            } else if due {
                plan.held.push(HeldSegment {
                    base: segment.base.max(log_start),
                    end: next_base,
                    bytes: segment.size(),
                    max_timestamp: segment.max_timestamp().map_or(-1, |m| m.timestamp),
                });
            } else {
                break;
            }
            total = total.saturating_sub(segment.size());
        }
        plan
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
    pub(in crate::storage) fn sealed_snapshot(&self) -> Vec<(Arc<Segment>, i64)> {
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
    pub(in crate::storage) fn replace_segments(
        &self,
        old: &[Arc<Segment>],
        new: Vec<Arc<Segment>>,
    ) -> bool {
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
    pub(in crate::storage) fn segments_current(&self, old: &[Arc<Segment>]) -> bool {
        let shared = rlock(&self.shared);
        old.iter()
            .all(|o| shared.segments.iter().any(|s| Arc::ptr_eq(s, o)))
    }

    /// The index interval new segments are built with.
    pub(in crate::storage) fn index_interval(&self) -> u32 {
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

impl Retention {
    /// Whether `segment` is older than `retention_ms` (by its largest timestamp).
    fn expired(&self, segment: &Segment) -> bool {
        self.retention_ms >= 0
            && segment.size() > 0
            && segment
                .max_timestamp()
                .is_some_and(|m| self.now_ms.saturating_sub(m.timestamp) > self.retention_ms)
    }
}

/// What a retention pass would do: the new log start, and the due segments a hold kept.
#[derive(Debug, Default)]
struct RetentionPlan {
    new_start: Option<i64>,
    held: Vec<HeldSegment>,
}

/// A sealed segment retention would delete but for a hold (`Retention::keep_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldSegment {
    /// Its first offset still in the log.
    pub base: i64,
    /// The base of the next segment: deleting this one moves the log start here.
    pub end: i64,
    /// Its size on disk.
    pub bytes: u64,
    /// Its largest record timestamp (-1 if none).
    pub max_timestamp: i64,
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
