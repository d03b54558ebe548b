//! Log compaction (`cleanup.policy=compact`): keep the latest record of every key.
//!
//! **What is cleaned.** A snapshot of the sealed segments (never the active one), up to
//! the first whose largest timestamp is younger than `min.compaction.lag.ms`. A pass
//! runs when the bytes appended since the last cleaning (`cleaner-checkpoint`) are at
//! least `min.cleanable.dirty.ratio` of that range, or when a tombstone kept by an
//! earlier pass has become older than `delete.retention.ms`, or once when the log has
//! stopped growing (its end unchanged since the previous pass) while sealed bytes are
//! still dirty, whatever their ratio: a pass that ran while a producer was writing
//! cleaned only part of the log, and what was sealed after it could otherwise stay
//! below the ratio, duplicates and all, for good (Kafka's 15 s default backoff makes
//! that rare there; our 2 s edge-friendly one did not).
//!
//! **How.** Pass one reads every batch of the range and maps each key to its latest
//! offset (full keys, so no hash collision can drop a live record; bounded by
//! `KEY_MAP_BYTES`, past which the pass stops at a segment boundary), and each producer
//! id to its last batch. Pass two writes each segment anew as `<name>.cleaned` files:
//! control batches and batches whose records all survive are copied byte for byte; the
//! others are rebuilt from the surviving records' *own bytes* (decompressed, filtered,
//! recompressed with the batch's codec) under the original header: same base offset,
//! last offset delta, timestamps, producer fields, so every surviving record keeps its
//! offset (gaps are normal) and nothing about it changes. Only the record count, the
//! length and the CRC are new. kafka-protocol's `RecordBatchEncoder` is not used for
//! that: it rebases a batch on its smallest surviving offset and its decoder merges
//! duplicate header keys. A batch left with no records is dropped, unless it is the
//! segment's last batch (so every offset of the segment stays covered and reads in a
//! gap find the next batch) or its producer's last batch (idempotent producer state),
//! in which case its header is kept with zero records (uncompressed), as Kafka does.
//! Tombstones (null value) are removed once their timestamp is older than
//! `delete.retention.ms`; until then they are kept so consumers see the deletion.
//!
//! **Transactions.** A transactional record enters the key map only when its producer's
//! commit marker follows it in the range: a record of an aborted transaction must never
//! make a committed value of its key look stale (read_committed consumers would then
//! see the key vanish). Records of aborted transactions are removed, keys or not; their
//! markers stay. A transaction without a marker yet is undecided: the pass stops at the
//! segment boundary below its first batch, as Kafka's cleaner stops at the last stable
//! offset.
//!
//! **Crash safety.** The cleaned files are written and fsynced next to the old ones;
//! then, under the log's maintenance lock, a `cleaning-swap` marker naming the segments
//! is written atomically (the commit point), the `.cleaned` files are renamed over the
//! originals, and the marker is removed. On open, a marker means "finish the renames";
//! `.cleaned` files without a marker are deleted. A crash therefore leaves either every
//! old segment or every new one. Readers holding an old segment keep its open files.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use agentlog_protocol::batch::{BatchHeader, Compression, HEADER_LEN};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::index::IndexBuilder;
use super::log::{sync_dir, write_atomically, PartitionLog};
use super::records::{decompress, read_varint};
use super::segment::Segment;
use crate::producers::marker_kind;

/// Marker file whose presence means "the cleaned segments it names are complete".
const SWAP_MARKER: &str = "cleaning-swap";
/// Where the end of the last cleaned range (and the oldest kept tombstone) is kept.
const CLEANER_CHECKPOINT: &str = "cleaner-checkpoint";
/// Suffix of files being written by the cleaner.
const CLEANED: &str = ".cleaned";
/// The three files of a segment.
const EXTENSIONS: [&str; 3] = ["log", "index", "timeindex"];
/// Memory bound of a pass's key map (key bytes plus per-entry overhead), like Kafka's
/// `log.cleaner.dedupe.buffer.size`: when the map fills, the pass cleans only the
/// segments mapped so far (a record is only ever removed for a newer one in the
/// range, so a shorter range is less compaction, never lost data); the next pass
/// continues from there.
const KEY_MAP_BYTES: usize = 128 << 20;
/// Estimated bytes per map entry besides the key itself.
const KEY_ENTRY_OVERHEAD: usize = 64;

/// What the compactor remembers of a log between passes, in memory only (a restart
/// costs at most one extra pass).
#[derive(Debug)]
pub struct CleanerMemory {
    /// The log end offset the previous pass saw.
    seen_end: AtomicI64,
    /// The log end offset at which the last quiet pass ran: one per idle period.
    quiet_pass_end: AtomicI64,
}

impl Default for CleanerMemory {
    fn default() -> Self {
        CleanerMemory {
            seen_end: AtomicI64::new(-1),
            quiet_pass_end: AtomicI64::new(-1),
        }
    }
}

/// What one compaction pass is asked to respect.
#[derive(Debug, Clone, Copy)]
pub struct Compaction {
    /// Current time, milliseconds since the epoch.
    pub now_ms: i64,
    /// Tombstones older than this are removed.
    pub delete_retention_ms: i64,
    /// Segments with records younger than this are not cleaned yet.
    pub min_compaction_lag_ms: i64,
    /// Clean only when this fraction of the cleanable bytes is new since the last pass.
    pub min_cleanable_dirty_ratio: f64,
}

/// What a compaction pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionOutcome {
    /// Segments rewritten.
    pub segments_cleaned: u64,
    /// Their bytes before.
    pub bytes_before: u64,
    /// Their bytes after.
    pub bytes_after: u64,
    /// Records removed (superseded or expired tombstones).
    pub records_removed: u64,
    /// Everything below this offset has been cleaned.
    pub cleaned_up_to: i64,
}

/// Compaction failed; the log is unchanged (or, after the commit point, completed on
/// the next open).
#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    /// File system error.
    #[error("compaction failed: {0}")]
    Io(#[from] io::Error),
    /// A stored batch could not be decoded.
    #[error("cannot compact {segment}: {reason}")]
    Corrupt {
        /// The segment file.
        segment: String,
        /// Why.
        reason: String,
    },
}

/// The cleaner's persisted progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Checkpoint {
    cleaned_up_to: i64,
    /// Timestamp of the oldest tombstone the last pass kept (-1: none).
    oldest_tombstone: i64,
}

fn read_checkpoint(dir: &Path) -> Option<Checkpoint> {
    let text = fs::read_to_string(dir.join(CLEANER_CHECKPOINT)).ok()?;
    let mut fields = text.split_whitespace();
    if fields.next()? != "v1" {
        return None;
    }
    Some(Checkpoint {
        cleaned_up_to: fields.next()?.parse().ok()?,
        oldest_tombstone: fields.next()?.parse().ok()?,
    })
}

/// Everything below this offset was cleaned by an earlier pass (0 if never): lets tests
/// and operators see that the cleaner ran.
pub fn cleaned_up_to(dir: &Path) -> i64 {
    read_checkpoint(dir).map_or(0, |c| c.cleaned_up_to)
}

/// Finishes or rolls back a swap interrupted by a crash (called by `PartitionLog::open`
/// before it lists segments).
pub(super) fn recover_swap(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let marker = dir.join(SWAP_MARKER);
    if let Ok(text) = fs::read_to_string(&marker) {
        let bases: Vec<i64> = text
            .split_whitespace()
            .skip(1)
            .filter_map(|b| b.parse().ok())
            .collect();
        for base in &bases {
            for ext in EXTENSIONS {
                let target = dir.join(format!("{base:020}.{ext}"));
                let cleaned = dir.join(format!("{base:020}.{ext}{CLEANED}"));
                if cleaned.exists() {
                    fs::rename(&cleaned, &target)?;
                }
            }
        }
        sync_dir(dir)?;
        fs::remove_file(&marker)?;
        sync_dir(dir)?;
        tracing::warn!(dir = %dir.display(), segments = bases.len(), "finished a compaction swap interrupted by a crash");
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(CLEANED) || name == format!("{SWAP_MARKER}.tmp") {
            fs::remove_file(entry.path())?;
            tracing::info!(file = %entry.path().display(), "removed an unfinished compaction file");
        }
    }
    Ok(())
}

/// One record's place in a decompressed batch body.
struct RecordSpan {
    range: std::ops::Range<usize>,
    offset: i64,
    timestamp: i64,
    key: Option<Bytes>,
    tombstone: bool,
}

/// Walks the records of one (decompressed) batch body.
fn parse_records(header: &BatchHeader, body: &Bytes) -> Result<Vec<RecordSpan>, String> {
    let mut out = Vec::with_capacity(header.records_count.max(0) as usize);
    let mut pos = 0usize;
    for _ in 0..header.records_count.max(0) {
        let start = pos;
        let malformed = || format!("malformed record at byte {start}");
        let len = read_varint(body, &mut pos).ok_or_else(malformed)?;
        let len = usize::try_from(len).map_err(|_| malformed())?;
        let next = pos.checked_add(len).ok_or_else(malformed)?;
        if next > body.len() {
            return Err(malformed());
        }
        pos += 1; // attributes
        let ts_delta = read_varint(body, &mut pos).ok_or_else(malformed)?;
        let offset_delta = read_varint(body, &mut pos).ok_or_else(malformed)?;
        let key_len = read_varint(body, &mut pos).ok_or_else(malformed)?;
        let key = if key_len < 0 {
            None
        } else {
            let end = pos
                .checked_add(usize::try_from(key_len).map_err(|_| malformed())?)
                .ok_or_else(malformed)?;
            if end > next {
                return Err(malformed());
            }
            let key = body.slice(pos..end);
            pos = end;
            Some(key)
        };
        let value_len = read_varint(body, &mut pos).ok_or_else(malformed)?;
        if pos > next {
            return Err(malformed());
        }
        out.push(RecordSpan {
            range: start..next,
            offset: header.base_offset.wrapping_add(offset_delta),
            timestamp: header.base_timestamp.wrapping_add(ts_delta),
            key,
            tombstone: value_len < 0,
        });
        pos = next;
    }
    Ok(out)
}

/// Reads the whole batches of a segment, one at a time.
fn for_each_batch(
    segment: &Segment,
    mut visit: impl FnMut(&BatchHeader, Bytes) -> Result<(), CompactError>,
) -> Result<(), CompactError> {
    let file = segment.file()?;
    let size = segment.size();
    let corrupt = |reason: String| CompactError::Corrupt {
        segment: segment.log_path().display().to_string(),
        reason,
    };
    let mut pos = 0u64;
    let mut head = [0u8; HEADER_LEN];
    while pos + HEADER_LEN as u64 <= size {
        file.read_exact_at(&mut head, pos)?;
        let header = BatchHeader::parse(&head).map_err(|e| corrupt(e.to_string()))?;
        let len = header.total_len() as u64;
        if pos + len > size {
            return Err(corrupt(format!("batch at {pos} runs past the end")));
        }
        let mut whole = vec![0u8; header.total_len()];
        file.read_exact_at(&mut whole, pos)?;
        visit(&header, Bytes::from(whole))?;
        pos += len;
    }
    Ok(())
}

/// Decompressed records of a batch.
fn batch_body(header: &BatchHeader, whole: &Bytes) -> Result<Bytes, String> {
    let body = whole.slice(HEADER_LEN.min(whole.len())..);
    match header.compression() {
        Compression::None => Ok(body),
        codec => decompress(codec, &body).map_err(|e| e.to_string()),
    }
}

fn compress(codec: Compression, raw: &[u8]) -> Result<BytesMut, String> {
    let mut out = BytesMut::new();
    let fill = |tmp: &mut BytesMut| {
        tmp.put_slice(raw);
        Ok(())
    };
    let result = match codec {
        Compression::None => {
            out.put_slice(raw);
            Ok(())
        }
        Compression::Gzip => Gzip::compress(&mut out, fill),
        Compression::Snappy => Snappy::compress(&mut out, fill),
        Compression::Lz4 => Lz4::compress(&mut out, fill),
        Compression::Zstd => Zstd::compress(&mut out, fill),
        Compression::Unknown(id) => return Err(format!("unknown codec {id}")),
    };
    result.map_err(|e| e.to_string())?;
    Ok(out)
}

/// The original header with a new body: same offsets, timestamps and producer fields;
/// new length, record count, CRC (and no compression when empty).
fn rebuild(whole: &[u8], body: &[u8], count: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&whole[..HEADER_LEN]);
    out.extend_from_slice(body);
    let batch_length = (out.len() - 12) as i32;
    out[8..12].copy_from_slice(&batch_length.to_be_bytes());
    if count == 0 {
        let attributes = i16::from_be_bytes([out[21], out[22]]) & !0x07;
        out[21..23].copy_from_slice(&attributes.to_be_bytes());
    }
    out[57..61].copy_from_slice(&count.to_be_bytes());
    let crc = crc32c::crc32c(&out[21..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Pass one's map from key to its latest offset, with the memory it takes.
#[derive(Default)]
struct KeyMap {
    offsets: HashMap<Bytes, i64>,
    /// Key bytes plus per-entry overhead, checked against [`KEY_MAP_BYTES`].
    bytes: usize,
}

impl KeyMap {
    fn insert(&mut self, key: Bytes, offset: i64) {
        let len = key.len();
        if self.offsets.insert(key, offset).is_none() {
            self.bytes += len + KEY_ENTRY_OVERHEAD;
        }
    }
}

/// A transaction seen in pass one whose marker has not come yet.
struct OpenTxn {
    first_offset: i64,
    /// Base offsets of its batches (removed whole if it aborts).
    batches: Vec<i64>,
    /// Its keyed records, mapped only if it commits.
    keys: Vec<(Bytes, i64)>,
}

fn cleaned_path(dir: &Path, base: i64, ext: &str) -> PathBuf {
    dir.join(format!("{base:020}.{ext}{CLEANED}"))
}

fn remove_cleaned(dir: &Path, bases: &[i64]) {
    for base in bases {
        for ext in EXTENSIONS {
            let _ = fs::remove_file(cleaned_path(dir, *base, ext));
        }
    }
}

impl PartitionLog {
    /// One compaction pass over the sealed segments; `None` when there was nothing
    /// worth cleaning (or retention removed the segments meanwhile).
    pub fn compact(&self, policy: Compaction) -> Result<Option<CompactionOutcome>, CompactError> {
        let dir = self.dir().to_path_buf();
        let checkpoint = read_checkpoint(&dir).unwrap_or(Checkpoint {
            cleaned_up_to: 0,
            oldest_tombstone: -1,
        });
        let lag_limit = policy.now_ms.saturating_sub(policy.min_compaction_lag_ms);
        let range: Vec<(Arc<Segment>, i64)> = self
            .sealed_snapshot()
            .into_iter()
            .take_while(|(s, _)| s.max_timestamp().is_none_or(|m| m.timestamp <= lag_limit))
            .collect();
        if range.is_empty() {
            return Ok(None);
        }
        let total: u64 = range.iter().map(|(s, _)| s.size()).sum();
        let dirty: u64 = range
            .iter()
            .filter(|(s, _)| s.base >= checkpoint.cleaned_up_to)
            .map(|(s, _)| s.size())
            .sum();
        let ratio_due = dirty > 0
            && total > 0
            && dirty as f64 / total as f64 >= policy.min_cleanable_dirty_ratio;
        let tombstones_due = checkpoint.oldest_tombstone >= 0
            && policy.now_ms.saturating_sub(checkpoint.oldest_tombstone)
                > policy.delete_retention_ms;
        let end_now = self.log_end_offset();
        let quiet = self.cleaner.seen_end.swap(end_now, Ordering::Relaxed) == end_now;
        let quiet_due =
            quiet && dirty > 0 && self.cleaner.quiet_pass_end.load(Ordering::Relaxed) != end_now;
        if !ratio_due && !tombstones_due && !quiet_due {
            return Ok(None);
        }
        if quiet_due {
            self.cleaner
                .quiet_pass_end
                .store(end_now, Ordering::Relaxed);
        }
        for (segment, _) in &range {
            segment.pin_files()?;
        }

        // Pass one: the latest committed offset of every key, the last batch of every
        // producer, and which transactional batches were aborted.
        let mut latest = KeyMap::default();
        let mut last_of_producer: HashMap<i64, i64> = HashMap::new();
        let mut open_txns: HashMap<i64, OpenTxn> = HashMap::new();
        let mut aborted: HashSet<i64> = HashSet::new();
        let mut mapped = 0usize;
        for (segment, _) in &range {
            if mapped > 0 && latest.bytes >= KEY_MAP_BYTES {
                break;
            }
            mapped += 1;
            for_each_batch(segment, |header, whole| {
                if header.producer_id >= 0 {
                    last_of_producer.insert(header.producer_id, header.base_offset);
                }
                if header.is_control() {
                    let decided = marker_kind(&whole)
                        .and_then(|commit| Some((commit, open_txns.remove(&header.producer_id)?)));
                    match decided {
                        Some((true, txn)) => {
                            for (key, offset) in txn.keys {
                                latest.insert(key, offset);
                            }
                        }
                        Some((false, txn)) => aborted.extend(txn.batches),
                        None => {}
                    }
                    return Ok(());
                }
                let body = batch_body(header, &whole).map_err(|reason| CompactError::Corrupt {
                    segment: segment.log_path().display().to_string(),
                    reason,
                })?;
                let records =
                    parse_records(header, &body).map_err(|reason| CompactError::Corrupt {
                        segment: segment.log_path().display().to_string(),
                        reason,
                    })?;
                if header.is_transactional() {
                    let txn = open_txns.entry(header.producer_id).or_insert(OpenTxn {
                        first_offset: header.base_offset,
                        batches: Vec::new(),
                        keys: Vec::new(),
                    });
                    txn.batches.push(header.base_offset);
                    txn.keys
                        .extend(records.into_iter().filter_map(|r| Some((r.key?, r.offset))));
                    return Ok(());
                }
                for record in records {
                    if let Some(key) = record.key {
                        latest.insert(key, record.offset);
                    }
                }
                Ok(())
            })?;
        }

        let mut range = range;
        range.truncate(mapped);
        if let Some(undecided) = open_txns.values().map(|t| t.first_offset).min() {
            range.retain(|(_, next)| *next <= undecided);
        }
        let Some(&(_, end)) = range.last() else {
            return Ok(None);
        };

        // Pass two: write the cleaned segments.
        let bases: Vec<i64> = range.iter().map(|(s, _)| s.base).collect();
        let mut outcome = CompactionOutcome {
            cleaned_up_to: end,
            ..CompactionOutcome::default()
        };
        let mut oldest_tombstone = -1i64;
        let written = (|| -> Result<(), CompactError> {
            for (segment, _) in &range {
                let (after, removed) = self.write_cleaned(
                    segment,
                    &latest.offsets,
                    &aborted,
                    &last_of_producer,
                    policy,
                    &mut oldest_tombstone,
                )?;
                outcome.segments_cleaned += 1;
                outcome.bytes_before += segment.size();
                outcome.bytes_after += after;
                outcome.records_removed += removed;
            }
            sync_dir(&dir)?;
            Ok(())
        })();
        if let Err(error) = written {
            remove_cleaned(&dir, &bases);
            return Err(error);
        }

        // Commit: under the maintenance lock, so retention cannot remove these segments
        // between the check and the renames.
        let _maintenance = self
            .maintenance
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let old: Vec<Arc<Segment>> = range.iter().map(|(s, _)| s.clone()).collect();
        if !self.segments_current(&old) {
            remove_cleaned(&dir, &bases);
            return Ok(None);
        }
        let list: Vec<String> = bases.iter().map(|b| b.to_string()).collect();
        write_atomically(&dir, SWAP_MARKER, &format!("v1 {}\n", list.join(" ")))?;
        #[cfg(test)]
        if self
            .fail_before_renames
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(CompactError::Io(io::Error::other(
                "injected crash after the marker",
            )));
        }
        for base in &bases {
            for ext in EXTENSIONS {
                fs::rename(
                    cleaned_path(&dir, *base, ext),
                    dir.join(format!("{base:020}.{ext}")),
                )?;
            }
        }
        sync_dir(&dir)?;
        let bytes_read = AtomicU64::new(0);
        let mut new = Vec::with_capacity(range.len());
        for (segment, next) in &range {
            new.push(Arc::new(Segment::open_sealed(
                &dir,
                segment.base,
                *next,
                self.index_interval(),
                &bytes_read,
            )?));
        }
        fs::remove_file(dir.join(SWAP_MARKER))?;
        sync_dir(&dir)?;
        if !self.replace_segments(&old, new) {
            // Unreachable while the maintenance lock is held; the files are already
            // right, so the next open picks them up.
            tracing::error!(dir = %dir.display(), "segment list changed under the compaction swap");
        }
        write_atomically(
            &dir,
            CLEANER_CHECKPOINT,
            &format!("v1 {end} {oldest_tombstone}\n"),
        )?;
        tracing::info!(
            dir = %dir.display(),
            segments = outcome.segments_cleaned,
            bytes_before = outcome.bytes_before,
            bytes_after = outcome.bytes_after,
            records_removed = outcome.records_removed,
            cleaned_up_to = end,
            "compacted"
        );
        Ok(Some(outcome))
    }

    /// Writes one segment's `.cleaned` files; returns its new size and records removed.
    fn write_cleaned(
        &self,
        segment: &Segment,
        latest: &HashMap<Bytes, i64>,
        aborted: &HashSet<i64>,
        last_of_producer: &HashMap<i64, i64>,
        policy: Compaction,
        oldest_tombstone: &mut i64,
    ) -> Result<(u64, u64), CompactError> {
        let dir = self.dir();
        let base = segment.base;
        let corrupt = |reason: String| CompactError::Corrupt {
            segment: segment.log_path().display().to_string(),
            reason,
        };
        // Headers first: the last batch of the segment must be known while writing.
        let mut batches: Vec<(BatchHeader, Bytes)> = Vec::new();
        for_each_batch(segment, |header, whole| {
            batches.push((*header, whole));
            Ok(())
        })?;
        let mut log = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(cleaned_path(dir, base, "log"))?;
        let mut builder = IndexBuilder::new(self.index_interval());
        let mut position = 0u64;
        let mut removed = 0u64;
        let count = batches.len();
        for (i, (header, whole)) in batches.into_iter().enumerate() {
            let out: Option<Vec<u8>> = if header.is_control() {
                None // kept as it is
            } else {
                let body = batch_body(&header, &whole).map_err(corrupt)?;
                let records = parse_records(&header, &body).map_err(corrupt)?;
                let mut keep = Vec::with_capacity(records.len());
                let of_aborted_txn = aborted.contains(&header.base_offset);
                for record in &records {
                    let live = !of_aborted_txn
                        && match &record.key {
                            Some(key) => latest.get(key) == Some(&record.offset),
                            None => true,
                        };
                    let expired_tombstone = record.tombstone
                        && policy.now_ms.saturating_sub(record.timestamp)
                            > policy.delete_retention_ms;
                    if live && !expired_tombstone {
                        if record.tombstone
                            && (*oldest_tombstone < 0 || record.timestamp < *oldest_tombstone)
                        {
                            *oldest_tombstone = record.timestamp;
                        }
                        keep.push(record.range.clone());
                    }
                }
                removed += (records.len() - keep.len()) as u64;
                if keep.len() == records.len() {
                    None
                } else {
                    let last_of_segment = i + 1 == count;
                    let last_of_its_producer = header.producer_id >= 0
                        && last_of_producer.get(&header.producer_id) == Some(&header.base_offset);
                    if keep.is_empty() && !last_of_segment && !last_of_its_producer {
                        continue;
                    }
                    let mut raw = Vec::new();
                    for range in &keep {
                        raw.extend_from_slice(&body[range.clone()]);
                    }
                    let body = if keep.is_empty() {
                        BytesMut::new()
                    } else {
                        compress(header.compression(), &raw).map_err(corrupt)?
                    };
                    Some(rebuild(&whole, &body, keep.len() as i32))
                }
            };
            let bytes: &[u8] = out.as_deref().unwrap_or(&whole);
            let new_header = BatchHeader::parse(bytes).map_err(|e| corrupt(e.to_string()))?;
            let rel = u32::try_from(header.base_offset - base)
                .map_err(|_| corrupt("offset too far from the segment base".into()))?;
            let at =
                u32::try_from(position).map_err(|_| corrupt("segment larger than 4 GiB".into()))?;
            builder.on_batch(rel, at, &new_header);
            log.write_all(bytes)?;
            position += bytes.len() as u64;
        }
        log.sync_all()?;
        builder.push_time_entry();
        for (ext, bytes) in [
            ("index", builder.offset_bytes()),
            ("timeindex", builder.time_bytes()),
        ] {
            let mut file = File::create(cleaned_path(dir, base, ext))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
        }
        Ok((position, removed))
    }
}
