//! Sparse offset and time indexes: entry formats, the in-memory builder used while a
//! segment is active, and binary search over sealed index files with positioned reads.
//!
//! Sealed segments' indexes are never loaded whole: a lookup costs about log2(entries)
//! 8- or 12-byte `pread`s, so an idle broker with thousands of segments holds no index
//! memory at all, and opening a log does not read them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use agentlog_protocol::batch::BatchHeader;

/// Bytes per offset index entry: relative offset (u32) and file position (u32).
pub(crate) const OFFSET_ENTRY: u64 = 8;
/// Bytes per time index entry: timestamp (i64) and relative offset (u32).
pub(crate) const TIME_ENTRY: u64 = 12;

/// One offset index entry: the batch starting at `segment base + rel` is at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub rel: u32,
    pub position: u32,
}

/// One time index entry: batches before `segment base + rel` all have smaller timestamps
/// than `timestamp`, and the batch at `rel` is the first to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub timestamp: i64,
    pub rel: u32,
}

impl OffsetEntry {
    fn encode(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&self.rel.to_be_bytes());
        out[4..].copy_from_slice(&self.position.to_be_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8; 8]) -> Self {
        OffsetEntry {
            rel: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }
}

impl TimeEntry {
    fn encode(&self) -> [u8; 12] {
        let mut out = [0u8; 12];
        out[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        out[8..].copy_from_slice(&self.rel.to_be_bytes());
        out
    }

    pub(crate) fn decode(b: &[u8; 12]) -> Self {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&b[..8]);
        TimeEntry {
            timestamp: i64::from_be_bytes(ts),
            rel: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }
}

/// Builds a segment's indexes batch by batch, exactly as appends (and rebuilds) see them,
/// so that an index rebuilt from the log equals the one written while appending.
#[derive(Debug, Clone)]
pub(crate) struct IndexBuilder {
    interval: u64,
    bytes_since_entry: u64,
    pub offsets: Vec<OffsetEntry>,
    pub times: Vec<TimeEntry>,
    /// Largest batch max timestamp seen, and the relative offset of the first batch with it.
    pub max_timestamp: Option<TimeEntry>,
}

impl IndexBuilder {
    /// An empty builder adding an entry every `interval` bytes of log.
    pub(crate) fn new(interval: u32) -> Self {
        IndexBuilder {
            interval: u64::from(interval.max(1)),
            bytes_since_entry: 0,
            offsets: Vec::new(),
            times: Vec::new(),
            max_timestamp: None,
        }
    }

    /// Continues from index entries loaded from files that cover the first `size` bytes
    /// of the segment (the last time entry is the maximum so far, as written on flush).
    pub(crate) fn resume(
        interval: u32,
        offsets: Vec<OffsetEntry>,
        times: Vec<TimeEntry>,
        size: u64,
    ) -> Self {
        let since = offsets
            .last()
            .map_or(size, |e| size - u64::from(e.position));
        IndexBuilder {
            interval: u64::from(interval.max(1)),
            bytes_since_entry: since,
            max_timestamp: times.last().copied(),
            offsets,
            times,
        }
    }

    /// Accounts for `header`, stored at `position`, whose base offset is `rel` past the
    /// segment base. Entries are added before the batch once `interval` bytes have gone by
    /// since the last one (Kafka's rule), so the first batch of a segment never needs one.
    pub(crate) fn on_batch(&mut self, rel: u32, position: u32, header: &BatchHeader) {
        let is_new_max = self
            .max_timestamp
            .is_none_or(|max| header.max_timestamp > max.timestamp);
        if is_new_max {
            self.max_timestamp = Some(TimeEntry {
                timestamp: header.max_timestamp,
                rel,
            });
        }
        if self.bytes_since_entry >= self.interval {
            self.offsets.push(OffsetEntry { rel, position });
            self.push_time_entry();
            self.bytes_since_entry = 0;
        }
        self.bytes_since_entry += header.total_len() as u64;
    }

    /// Adds the running maximum to the time index if it grew since the last entry; done at
    /// every offset entry and when sealing, so the last entry is the segment's maximum.
    pub(crate) fn push_time_entry(&mut self) {
        if let Some(max) = self.max_timestamp {
            if self
                .times
                .last()
                .is_none_or(|t| max.timestamp > t.timestamp)
            {
                self.times.push(max);
            }
        }
    }

    /// The position to start scanning from for relative offset `rel`.
    pub(crate) fn position_for(&self, rel: u32) -> u32 {
        let idx = self.offsets.partition_point(|e| e.rel <= rel);
        match idx.checked_sub(1) {
            Some(i) => self.offsets[i].position,
            None => 0,
        }
    }

    /// The relative offset to start a timestamp scan from: the last entry below `ts`.
    pub(crate) fn rel_for_timestamp(&self, ts: i64) -> u32 {
        let idx = self.times.partition_point(|e| e.timestamp < ts);
        match idx.checked_sub(1) {
            Some(i) => self.times[i].rel,
            None => 0,
        }
    }

    /// Serialises the offset index file's contents.
    pub(crate) fn offset_bytes(&self) -> Vec<u8> {
        self.offsets.iter().flat_map(|e| e.encode()).collect()
    }

    /// Serialises the time index file's contents.
    pub(crate) fn time_bytes(&self) -> Vec<u8> {
        self.times.iter().flat_map(|e| e.encode()).collect()
    }
}

/// Reads entry `i` (of `N` bytes) from an index file.
fn read_entry<const N: usize>(file: &File, i: u64) -> io::Result<[u8; N]> {
    let mut buf = [0u8; N];
    file.read_exact_at(&mut buf, i * N as u64)?;
    Ok(buf)
}

/// Binary search for the last of `count` entries satisfying `pred` (which must hold for a
/// prefix of the entries); `None` if no entry does.
fn last_matching<const N: usize>(
    file: &File,
    count: u64,
    pred: impl Fn(&[u8; N]) -> bool,
) -> io::Result<Option<[u8; N]>> {
    let (mut lo, mut hi) = (0u64, count);
    let mut found = None;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let entry = read_entry::<N>(file, mid)?;
        if pred(&entry) {
            found = Some(entry);
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(found)
}

/// File position to scan from for relative offset `rel`, from a sealed offset index.
pub(crate) fn file_position_for(file: &File, count: u64, rel: u32) -> io::Result<u32> {
    let hit = last_matching::<8>(file, count, |b| OffsetEntry::decode(b).rel <= rel)?;
    Ok(hit.map_or(0, |b| OffsetEntry::decode(&b).position))
}

/// Relative offset to scan from for timestamp `ts`, from a sealed time index.
pub(crate) fn file_rel_for_timestamp(file: &File, count: u64, ts: i64) -> io::Result<u32> {
    let hit = last_matching::<12>(file, count, |b| TimeEntry::decode(b).timestamp < ts)?;
    Ok(hit.map_or(0, |b| TimeEntry::decode(&b).rel))
}

/// The last entry of a sealed index file, if any.
pub(crate) fn last_offset_entry(file: &File, count: u64) -> io::Result<Option<OffsetEntry>> {
    match count.checked_sub(1) {
        Some(i) => Ok(Some(OffsetEntry::decode(&read_entry::<8>(file, i)?))),
        None => Ok(None),
    }
}

/// The last entry of a sealed time index file, if any.
pub(crate) fn last_time_entry(file: &File, count: u64) -> io::Result<Option<TimeEntry>> {
    match count.checked_sub(1) {
        Some(i) => Ok(Some(TimeEntry::decode(&read_entry::<12>(file, i)?))),
        None => Ok(None),
    }
}
