//! Partition logs: segments of raw record batches, sparse indexes, recovery, flushing.
//!
//! CONTRACT STUB: the public API below is what the rest of the broker is written against.
//! The storage implementation replaces the bodies; the signatures are the contract.

use std::path::Path;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::sync::watch;

/// When appended bytes are forced to disk, and so when they become visible and acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlushPolicy {
    /// fsync before the high watermark moves past a batch (group commit: concurrent
    /// appenders share one fsync). Nothing acknowledged with acks=all is ever lost.
    EveryBatch,
    /// fsync in the background at this interval; the high watermark moves on write.
    Interval(Duration),
    /// Never fsync explicitly (the OS writes back); the high watermark moves on write.
    Never,
}

/// Per-partition log settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would grow past this many bytes.
    pub segment_bytes: u64,
    /// Roll when the active segment's first batch was appended longer ago than this.
    pub segment_ms: u64,
    /// Bytes of log between two sparse offset/time index entries.
    pub index_interval_bytes: u32,
    /// When data is forced to disk.
    pub flush: FlushPolicy,
    /// Upper bound on the bytes of recent batches kept in memory for reads.
    pub tail_cache_bytes: usize,
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
    /// File system error (fsync failing is fatal for the data it covers).
    #[error("flush failed: {0}")]
    Io(#[from] std::io::Error),
}

/// One partition's append-only log.
#[derive(Debug)]
pub struct PartitionLog {}

impl PartitionLog {
    /// Opens, or creates, the log in `dir`, truncating a torn or corrupt tail.
    pub fn open(dir: &Path, config: LogConfig) -> Result<PartitionLog, OpenError> {
        let _ = (dir, config);
        Ok(PartitionLog {})
    }

    /// Appends one or more whole, already validated batches.
    pub fn append(&self, batches: BytesMut) -> Result<Appended, AppendError> {
        let _ = batches;
        Ok(Appended {
            base_offset: 0,
            last_offset: 0,
        })
    }

    /// Resolves once every offset below `end_offset` is durable per the flush policy.
    pub async fn wait_durable(&self, end_offset: i64) -> Result<(), FlushError> {
        let _ = end_offset;
        Ok(())
    }

    /// Whole batches from the one containing `offset`, at most `max_bytes` unless the
    /// first batch alone is larger, never past the high watermark.
    pub fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadBatches, ReadError> {
        let _ = (offset, max_bytes);
        Ok(ReadBatches {
            bytes: Bytes::new(),
            high_watermark: 0,
            log_start_offset: 0,
        })
    }

    /// The first record whose timestamp is at least `timestamp`.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<TimestampOffset>, ReadError> {
        let _ = timestamp;
        Ok(None)
    }

    /// The record with the largest timestamp (the earliest such, if several).
    pub fn max_timestamp(&self) -> Result<Option<TimestampOffset>, ReadError> {
        Ok(None)
    }

    /// One past the last offset consumers may read.
    pub fn high_watermark(&self) -> i64 {
        0
    }

    /// One past the last appended offset (may be ahead of the high watermark).
    pub fn log_end_offset(&self) -> i64 {
        0
    }

    /// The lowest offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        0
    }

    /// Notifies on every high watermark change, so long-polling fetches can park.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        watch::channel(0).1
    }

    /// Forces everything appended so far to disk (used on shutdown).
    pub fn flush(&self) -> Result<(), FlushError> {
        Ok(())
    }
}
