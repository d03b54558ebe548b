//! Partition logs: segments of raw record batches, sparse indexes, recovery, flushing.
//!
//! One [`PartitionLog`] owns one partition directory. The layout and the persist policy
//! follow Kafka so that operators' intuitions (and tools that list segment files) carry
//! over:
//!
//! * `{base_offset:020}.log`: record batches exactly as producers sent them, with only the
//!   base offset and partition leader epoch rewritten (both outside the CRC).
//! * `{base_offset:020}.index`: sparse offset index, 8-byte big-endian entries
//!   `(batch base offset - segment base: u32, file position: u32)`, one every
//!   `index_interval_bytes` of log.
//! * `{base_offset:020}.timeindex`: sparse time index, 12-byte big-endian entries
//!   `(max timestamp so far: i64, offset - segment base: u32)` where the offset is the first
//!   batch that reached that maximum; a final entry holding the segment's maximum is
//!   written when the segment is sealed.
//! * `recovery-point`: one line `v1 {active base} {bytes} {next offset}` written (via a
//!   temporary file and rename) by [`PartitionLog::flush`]: that prefix of the active
//!   segment is fsynced and its index files, written at the same time, cover it.
//!
//! Index files are written, and fsynced with the log, when a segment is sealed (rolled)
//! and on `flush`; between those the active segment's indexes live in memory. On open,
//! sealed segments are trusted (a stat and the last entry of each index file, no log
//! bytes read), and only the active segment after the recovery point (all of it, after a
//! crash before any flush) is validated batch by batch and truncated to its last whole,
//! CRC-valid batch.
//!
//! * `log-start-offset`: `v1 {offset}`, the lowest readable offset once DeleteRecords or
//!   retention moved it (written atomically before any segment file is removed).
//! * `cleaner-checkpoint`: `v1 {cleaned up to} {oldest kept tombstone timestamp}`, the
//!   compactor's progress; `cleaning-swap` and `*.cleaned` exist only while a compaction
//!   swap is in flight (see `compact`).
//!
//! Module map: `index` (entry formats, in-memory builder, file lookups), `segment`
//! (one segment's files, positioned reads, scans), `records` (finding a record by
//! timestamp inside a batch), `log` (the partition log: append, read, group commit,
//! recovery), `compact` (log compaction and its crash-safe segment swap).

mod compact;
mod index;
#[cfg(test)]
mod lifecycle_tests;
mod log;
mod records;
mod segment;
#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use thiserror::Error;

pub use compact::{cleaned_up_to, CompactError, Compaction, CompactionOutcome};
pub(crate) use log::replace_file;
pub use log::{
    CacheBudget, DeleteRecordsError, HeldSegment, PartitionLog, Retention, RetentionOutcome,
    DEFAULT_CACHE_BUDGET,
};

/// When appended bytes are forced to disk, and so when they become visible and acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before the high watermark moves past a batch (group commit: concurrent
    /// appenders share one fsync). Nothing acknowledged with acks=all is ever lost.
    EveryBatch,
    /// fsync in the background at this interval; the high watermark moves on write. The
    /// ticker is started by [`PartitionLog::start_background`].
    Interval(Duration),
    /// Never fsync explicitly (the OS writes back); the high watermark moves on write.
    Never,
}

/// Per-partition log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this many bytes
    /// (clamped to at most 4 GiB, as index positions are u32).
    pub segment_bytes: u64,
    /// Roll when the active segment's first batch was appended longer ago than this
    /// (measured from the first append since the log was opened: a restart restarts it).
    pub segment_ms: u64,
    /// Bytes of log between two sparse offset/time index entries.
    pub index_interval_bytes: u32,
    /// When data is forced to disk.
    pub flush: FlushPolicy,
    /// Upper bound on the bytes of recent batches kept in memory for reads. The cache
    /// holds the appended `Bytes` themselves, so an append that is a slice of a larger
    /// request buffer keeps that buffer alive until evicted.
    pub tail_cache_bytes: usize,
    /// The budget every tail cache of the broker shares (`log.cache.budget.bytes`).
    pub cache_budget: std::sync::Arc<CacheBudget>,
    /// Reserve file space ahead of appends (see `Segment::reserve`): an fdatasync then
    /// leaves the inode alone, which on ext4 saves a journal commit per group commit.
    pub preallocate: bool,
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Offset assigned to the first record of the first batch.
    pub base_offset: i64,
    /// Offset of the last record of the last batch.
    pub last_offset: i64,
}

/// What a read returned.
#[derive(Debug, Clone)]
pub struct ReadBatches {
    /// Whole batches, the first containing the requested offset; empty when the offset is
    /// the high watermark.
    pub bytes: Bytes,
    /// High watermark when the read was made.
    pub high_watermark: i64,
    /// Log start offset when the read was made.
    pub log_start_offset: i64,
}

/// A record located by timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampOffset {
    /// The record's offset.
    pub offset: i64,
    /// The record's timestamp.
    pub timestamp: i64,
}

/// Opening a log failed.
#[derive(Debug, Error)]
pub enum OpenError {
    /// File system error.
    #[error("cannot open log in {path}: {source}")]
    Io {
        /// The log directory.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// Appending failed; nothing was made visible.
#[derive(Debug, Error)]
pub enum AppendError {
    /// A batch claims a negative `lastOffsetDelta`, so offsets cannot be assigned.
    #[error("invalid batch: last offset delta {0} is negative")]
    InvalidLastOffsetDelta(i32),
    /// An earlier fsync failed; the page cache can no longer be trusted to hold what was
    /// written, so the log refuses writes until it is reopened (and recovered).
    #[error("log is read-only after an fsync failure")]
    Poisoned,
    /// File system error.
    #[error("append failed: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not whole v2 batches.
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] agentlog_protocol::batch::BatchError),
}

/// Reading failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The offset is below the log start or above the high watermark.
    #[error("offset {offset} out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        /// Requested.
        offset: i64,
        /// Lowest readable.
        log_start_offset: i64,
        /// One past the highest readable.
        high_watermark: i64,
    },
    /// File system error.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Making data durable failed.
#[derive(Debug, Error)]
pub enum FlushError {
    /// An earlier fsync failed; later ones could report success for data the kernel has
    /// already dropped, so none is trusted until the log is reopened.
    #[error("log is read-only after an fsync failure")]
    Poisoned,
    /// The blocking fsync task could not run to completion (runtime shutting down).
    #[error("flush task failed: {0}")]
    Task(String),
    /// File system error (fsync failing is fatal for the data it covers).
    #[error("flush failed: {0}")]
    Io(#[from] std::io::Error),
}

impl Default for LogConfig {
    /// Kafka's defaults (1 GiB segments, 7 day roll, 4 KiB index interval), group commit,
    /// and a 1 MiB tail cache: safe, and cheap per idle partition.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            flush: FlushPolicy::EveryBatch,
            tail_cache_bytes: 1 << 20,
            cache_budget: CacheBudget::new(DEFAULT_CACHE_BUDGET),
            preallocate: true,
        }
    }
}
