//! One segment: a `.log` file of whole batches plus its two sparse indexes.
//!
//! A segment is *active* (the single one being appended to; indexes in memory, rebuilt on
//! open) or *sealed* (rolled, fsynced with its index files; nothing held in memory but a
//! few counters, files opened on first use). All reads are positioned (`pread`), so any
//! number of readers share a segment with the one writer and never wait on each other.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};

use agentlog_protocol::batch::{self, BatchHeader, Batches, HEADER_LEN};
use bytes::Bytes;

use super::index::{self, IndexBuilder, OffsetEntry, TimeEntry, OFFSET_ENTRY, TIME_ENTRY};
use super::log::replace_file;
use super::records;
use super::TimestampOffset;

/// Read-ahead used when scanning a log file batch by batch.
const SCAN_CHUNK: usize = 1 << 20;

/// Bounds of the space the active segment reserves past its last batch. The reservation
/// grows with the segment (it is the segment's size, within these bounds), so an idle
/// partition holds 64 KiB of unused disk and a busy one extends its file a few times per
/// 8 MiB written.
const PREALLOCATE_MIN: u64 = 64 << 10;
const PREALLOCATE_MAX: u64 = 8 << 20;

/// Appends at least this large do not reserve space. Reserved (unwritten) extents save
/// the inode update only while fsyncs keep landing in blocks already written; a batch of
/// a block or more converts new extents at every fsync, which costs more than extending
/// the file (ext4, write + fdatasync loop: 170 B 0.22 -> 0.15 ms, 1 KB 0.29 -> 0.18 ms,
/// 2 KB 0.28 -> 0.23 ms, 4 KB 0.23 -> 0.30 ms, 11 KB 0.23 -> 0.29 ms, fdatasync medians
/// without -> with reservation).
const PREALLOCATE_BELOW_APPEND: u64 = 2 << 10;

pub(crate) fn rlock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn wlock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Where a segment's index information lives.
#[derive(Debug)]
enum SegIndex {
    /// Appended to right now: indexes are in memory.
    Active(IndexBuilder),
    /// Rolled: index files are complete and fsynced; only their lengths are kept.
    Sealed {
        offset_entries: u64,
        time_entries: u64,
        max_timestamp: Option<TimeEntry>,
    },
}

/// One segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Offset of the segment's first batch (its file name).
    pub base: i64,
    log_path: PathBuf,
    index_path: PathBuf,
    time_path: PathBuf,
    log: OnceLock<Arc<File>>,
    index_files: OnceLock<(File, File)>,
    /// Bytes of whole batches in the file; readers never look past it.
    size: AtomicU64,
    /// The file's length as this segment last set it: past `size` when space is reserved.
    /// Appending inside a reserved (`fallocate`d) range leaves the file's length alone, so
    /// the fdatasync of a group commit writes the data without an inode update, which on
    /// ext4 costs a journal commit (see [`PREALLOCATE_BELOW_APPEND`] for when it pays).
    allocated: AtomicU64,
    /// Cleared once `fallocate` fails (a filesystem without it, a full disk): appends then
    /// extend the file as they write.
    preallocate: AtomicBool,
    state: RwLock<SegIndex>,
}

/// A clean flush's record of the active segment: its first `size` bytes are fsynced whole
/// batches ending at `next_offset`, and its index files cover them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    pub base: i64,
    pub size: u64,
    pub next_offset: i64,
}

/// What opening the active segment found.
#[derive(Debug)]
pub(crate) struct ActiveRecovery {
    /// One past the last offset of the last valid batch.
    pub next_offset: i64,
    /// Bytes cut off the end of the file.
    pub truncated_bytes: u64,
}

impl Segment {
    fn new(dir: &Path, base: i64, state: SegIndex) -> Segment {
        let stem = format!("{base:020}");
        Segment {
            base,
            log_path: dir.join(format!("{stem}.log")),
            index_path: dir.join(format!("{stem}.index")),
            time_path: dir.join(format!("{stem}.timeindex")),
            log: OnceLock::new(),
            index_files: OnceLock::new(),
            size: AtomicU64::new(0),
            allocated: AtomicU64::new(0),
            preallocate: AtomicBool::new(true),
            state: RwLock::new(state),
        }
    }

    /// Creates a new, empty active segment starting at `base`.
    pub(crate) fn create(dir: &Path, base: i64, interval: u32) -> io::Result<Segment> {
        let seg = Segment::new(dir, base, SegIndex::Active(IndexBuilder::new(interval)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&seg.log_path)?;
        let _ = seg.log.set(Arc::new(file));
        Ok(seg)
    }

    /// Opens the last segment, validating every batch (length, CRC, offset continuity)
    /// after the recovery point, truncating the file after the last good one, and
    /// rebuilding the in-memory indexes for what was validated.
    ///
    /// Without a usable `checkpoint` the whole segment is validated. With one (written by
    /// a clean [`flush`](super::PartitionLog::flush): the segment's fsynced length and next
    /// offset, with index files written at that point) the prefix is trusted, its indexes
    /// are loaded from the files, and only the bytes appended after it are validated.
    pub(crate) fn open_active(
        dir: &Path,
        base: i64,
        interval: u32,
        checkpoint: Option<Checkpoint>,
        bytes_read: &AtomicU64,
    ) -> io::Result<(Segment, ActiveRecovery)> {
        let seg = Segment::new(dir, base, SegIndex::Active(IndexBuilder::new(interval)));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&seg.log_path)?;
        let len = file.metadata()?.len();
        let resumed = checkpoint
            .filter(|c| c.base == base && c.size <= len && c.next_offset >= base)
            .and_then(|c| match seg.load_index_files(c, interval) {
                Ok(Some(builder)) => Some((c, builder)),
                Ok(None) => {
                    tracing::warn!(segment = %seg.log_path.display(), "active index files disagree with the recovery point; validating the whole segment");
                    None
                }
                Err(error) => {
                    tracing::warn!(segment = %seg.log_path.display(), %error, "active index files unreadable; validating the whole segment");
                    None
                }
            });
        // The recovery point vouches for everything before it, but damage done to the
        // file since (a bad disk block, a stray write) is cheapest to catch at the tail:
        // re-check the last index interval's batches, and fall back to a full scan if
        // they no longer hold.
        let resumed = match resumed {
            Some((c, builder)) => {
                let tail_start = u64::from(builder.position_for(u32::MAX));
                let (valid, reason) =
                    scan(&file, tail_start, c.size, true, bytes_read, |_, _| Ok(()))?;
                if valid == c.size {
                    Some((c, builder))
                } else {
                    tracing::warn!(
                        segment = %seg.log_path.display(),
                        reason = reason.as_deref().unwrap_or("unknown"),
                        "data below the recovery point is damaged; validating the whole segment"
                    );
                    None
                }
            }
            None => None,
        };
        let (start, mut expected, mut builder) = match resumed {
            Some((c, builder)) => (c.size, c.next_offset, builder),
            None => (0, base, IndexBuilder::new(interval)),
        };
        let (valid, reason) = scan(&file, start, len, true, bytes_read, |pos, header| {
            if header.base_offset != expected {
                return Err(format!(
                    "batch base offset {} where {expected} was expected",
                    header.base_offset
                ));
            }
            let (rel, position) = relative(base, header.base_offset, pos)?;
            builder.on_batch(rel, position, header);
            expected = header.next_offset();
            Ok(())
        })?;
        // Zeros after the last batch are space reserved before a crash, not damage.
        let truncated_bytes = end_of_content(&file, valid, len)? - valid;
        if truncated_bytes > 0 {
            tracing::warn!(
                segment = %seg.log_path.display(),
                valid_bytes = valid,
                truncated_bytes,
                next_offset = expected,
                reason = reason.as_deref().unwrap_or("unknown"),
                "truncating torn or corrupt tail of the log"
            );
        }
        if len > valid {
            file.set_len(valid)?;
            file.sync_all()?;
        }
        seg.size.store(valid, Ordering::Release);
        seg.allocated.store(valid, Ordering::Release);
        *wlock(&seg.state) = SegIndex::Active(builder);
        let _ = seg.log.set(Arc::new(file));
        Ok((
            seg,
            ActiveRecovery {
                next_offset: expected,
                truncated_bytes,
            },
        ))
    }

    /// Opens a sealed segment without reading its log: the index files are checked for
    /// shape and for a last entry consistent with the log's length and the next segment's
    /// base. Only when that check fails is the log scanned to rebuild them.
    pub(crate) fn open_sealed(
        dir: &Path,
        base: i64,
        next_base: i64,
        interval: u32,
        bytes_read: &AtomicU64,
    ) -> io::Result<Segment> {
        let seg = Segment::new(dir, base, SegIndex::Active(IndexBuilder::new(interval)));
        let log_len = fs::metadata(&seg.log_path)?.len();
        match seg.check_index_files(log_len, next_base) {
            Ok(Some(state)) => {
                seg.size.store(log_len, Ordering::Release);
                *wlock(&seg.state) = state;
                return Ok(seg);
            }
            Ok(None) => {
                tracing::warn!(segment = %seg.log_path.display(), "index files disagree with the log; rebuilding")
            }
            Err(error) => {
                tracing::warn!(segment = %seg.log_path.display(), %error, "index files unreadable; rebuilding")
            }
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&seg.log_path)?;
        let mut builder = IndexBuilder::new(interval);
        let (valid, reason) = scan(&file, 0, log_len, false, bytes_read, |pos, header| {
            if batch_end(header) > next_base || header.base_offset < base {
                return Err(format!(
                    "batch offsets {}..{} outside the segment",
                    header.base_offset,
                    batch_end(header)
                ));
            }
            let (rel, position) = relative(base, header.base_offset, pos)?;
            builder.on_batch(rel, position, header);
            Ok(())
        })?;
        if valid < log_len {
            tracing::warn!(
                segment = %seg.log_path.display(),
                valid_bytes = valid,
                truncated_bytes = log_len - valid,
                reason = reason.as_deref().unwrap_or("unknown"),
                "truncating corrupt end of a sealed segment"
            );
            file.set_len(valid)?;
        }
        seg.size.store(valid, Ordering::Release);
        let _ = seg.log.set(Arc::new(file));
        seg.write_index_files(builder)?;
        Ok(seg)
    }

    fn check_index_files(&self, log_len: u64, next_base: i64) -> io::Result<Option<SegIndex>> {
        let offsets = File::open(&self.index_path)?;
        let times = File::open(&self.time_path)?;
        let (olen, tlen) = (offsets.metadata()?.len(), times.metadata()?.len());
        if olen % OFFSET_ENTRY != 0 || tlen % TIME_ENTRY != 0 {
            return Ok(None);
        }
        let limit = next_base - self.base;
        let (offset_entries, time_entries) = (olen / OFFSET_ENTRY, tlen / TIME_ENTRY);
        if let Some(last) = index::last_offset_entry(&offsets, offset_entries)? {
            if u64::from(last.position) >= log_len || i64::from(last.rel) >= limit {
                return Ok(None);
            }
        }
        let max_timestamp = index::last_time_entry(&times, time_entries)?;
        match max_timestamp {
            None if log_len > 0 => return Ok(None),
            Some(last) if i64::from(last.rel) >= limit => return Ok(None),
            _ => {}
        }
        Ok(Some(SegIndex::Sealed {
            offset_entries,
            time_entries,
            max_timestamp,
        }))
    }

    /// Reads the index files of an active segment whose first `size` bytes are trusted,
    /// to resume appending; `None` if they do not fit that prefix.
    fn load_index_files(
        &self,
        checkpoint: Checkpoint,
        interval: u32,
    ) -> io::Result<Option<IndexBuilder>> {
        let size = checkpoint.size;
        let rel_limit = checkpoint.next_offset - self.base;
        let offset_bytes = fs::read(&self.index_path)?;
        let time_bytes = fs::read(&self.time_path)?;
        let offset_chunks = offset_bytes.chunks_exact(OFFSET_ENTRY as usize);
        let time_chunks = time_bytes.chunks_exact(TIME_ENTRY as usize);
        if !offset_chunks.remainder().is_empty() || !time_chunks.remainder().is_empty() {
            return Ok(None);
        }
        let offsets: Vec<OffsetEntry> = offset_chunks
            .filter_map(|c| c.try_into().ok().map(OffsetEntry::decode))
            .collect();
        let times: Vec<TimeEntry> = time_chunks
            .filter_map(|c| c.try_into().ok().map(TimeEntry::decode))
            .collect();
        let ordered = offsets
            .windows(2)
            .all(|w| w[0].rel < w[1].rel && w[0].position < w[1].position)
            && times.windows(2).all(|w| w[0].timestamp < w[1].timestamp);
        let in_prefix = offsets
            .last()
            .is_none_or(|e| u64::from(e.position) < size && i64::from(e.rel) < rel_limit)
            && times.last().is_none_or(|e| i64::from(e.rel) < rel_limit);
        if !ordered || !in_prefix || (size > 0 && times.is_empty()) {
            return Ok(None);
        }
        Ok(Some(IndexBuilder::resume(interval, offsets, times, size)))
    }

    /// A copy of the active segment's in-memory indexes (`None` once sealed), taken with
    /// the segment's size for a recovery point.
    pub(crate) fn index_snapshot(&self) -> Option<IndexBuilder> {
        match &*rlock(&self.state) {
            SegIndex::Active(builder) => Some(builder.clone()),
            SegIndex::Sealed { .. } => None,
        }
    }

    /// Writes and fsyncs the active segment's index files from a snapshot, so that a later
    /// open can resume from the recovery point instead of validating the whole segment.
    /// Does nothing once the segment is sealed (its files are then the sealed ones).
    pub(crate) fn persist_index_snapshot(&self, snapshot: IndexBuilder) -> io::Result<bool> {
        if matches!(&*rlock(&self.state), SegIndex::Sealed { .. }) {
            return Ok(false);
        }
        self.write_files(snapshot)?;
        Ok(true)
    }

    /// Writes and fsyncs both index files from `builder`, then marks the segment sealed.
    fn write_index_files(&self, builder: IndexBuilder) -> io::Result<()> {
        let builder = self.write_files(builder)?;
        *wlock(&self.state) = SegIndex::Sealed {
            offset_entries: builder.offsets.len() as u64,
            time_entries: builder.times.len() as u64,
            max_timestamp: builder.max_timestamp,
        };
        Ok(())
    }

    /// Writes and fsyncs both index files, with a final time entry for the maximum. Each
    /// replaces its predecessor by rename, so a crash midway leaves the previous file
    /// whole (a recovery point's files are rewritten while the point before still relies
    /// on them; a torn time index could otherwise pass for a shorter valid one). The
    /// renames become durable with the directory's next fsync (the recovery point's, or
    /// the roll's); until then the previous files stand, as does the previous point.
    fn write_files(&self, mut builder: IndexBuilder) -> io::Result<IndexBuilder> {
        builder.push_time_entry();
        replace_file(&self.index_path, &builder.offset_bytes())?;
        replace_file(&self.time_path, &builder.time_bytes())?;
        Ok(builder)
    }

    /// Seals the active segment when it is rolled: fsyncs the log, writes and fsyncs the
    /// index files, then drops the in-memory indexes. Readers keep using the in-memory
    /// indexes until the files are complete, so they never wait on these fsyncs.
    pub(crate) fn seal(&self) -> io::Result<()> {
        let builder = match &*rlock(&self.state) {
            SegIndex::Active(builder) => builder.clone(),
            SegIndex::Sealed { .. } => return Ok(()),
        };
        // Opening trusts a sealed segment's file length as its size.
        self.trim()?;
        self.file()?.sync_data()?;
        self.write_index_files(builder)
    }

    /// Before an append of `len` bytes at `position`: when it is small (below
    /// [`PREALLOCATE_BELOW_APPEND`]) and would extend the file, reserves room with
    /// `fallocate`: as much again as the segment holds (within
    /// [`PREALLOCATE_MIN`]..=[`PREALLOCATE_MAX`]), never past `limit` (the roll size)
    /// unless the append itself is. Called by the single writer. A failure only turns
    /// reservation off for this segment: the write then extends the file as it would
    /// without.
    pub(crate) fn reserve(&self, position: u64, len: u64, limit: u64) {
        let end = position + len;
        let allocated = self.allocated.load(Ordering::Acquire);
        if end <= allocated
            || len >= PREALLOCATE_BELOW_APPEND
            || !self.preallocate.load(Ordering::Relaxed)
        {
            return;
        }
        let size = self.size();
        let target = (size + size.clamp(PREALLOCATE_MIN, PREALLOCATE_MAX))
            .min(limit)
            .max(end);
        let from = allocated.max(size);
        let reserved = self.file().and_then(|file| {
            rustix::fs::fallocate(
                file,
                rustix::fs::FallocateFlags::empty(),
                from,
                target - from,
            )
            .map_err(io::Error::from)
        });
        match reserved {
            Ok(()) => self.allocated.store(target, Ordering::Release),
            Err(error) => {
                self.preallocate.store(false, Ordering::Relaxed);
                tracing::debug!(segment = %self.log_path.display(), %error, "cannot reserve space ahead of appends; the file grows as it is written");
            }
        }
    }

    /// Cuts the file back to `size` (a failed write's leftovers, or reserved space), so
    /// that its length is its data again. Called by the single writer.
    pub(crate) fn truncate_to(&self, size: u64) -> io::Result<()> {
        self.file()?.set_len(size)?;
        self.allocated.store(size, Ordering::Release);
        Ok(())
    }

    /// Gives back the space reserved past the last batch: before sealing (opening trusts a
    /// sealed segment's length) and at a clean flush (so the next open has no zeros to
    /// look past). The caller fsyncs afterwards.
    pub(crate) fn trim(&self) -> io::Result<()> {
        // The file's own length, not `allocated`: a failed reservation or a failed cut
        // after a failed write may have left it longer than this segment knows.
        let size = self.size();
        if self.file()?.metadata()?.len() > size {
            self.truncate_to(size)?;
        }
        Ok(())
    }

    /// Unlinks the segment's files (retention). Open handles keep working, so readers
    /// that already hold the segment finish their reads.
    pub(crate) fn remove_files(&self) -> io::Result<()> {
        // Open first, so that holders of this segment that have not read yet still can.
        let _ = self.file();
        let _ = self.index_files();
        for path in [&self.log_path, &self.index_path, &self.time_path] {
            match fs::remove_file(path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// Opens the log and index files now, so that replacing them on disk (compaction's
    /// renames) does not change what holders of this segment read.
    pub(crate) fn pin_files(&self) -> io::Result<()> {
        self.file()?;
        if matches!(&*rlock(&self.state), SegIndex::Sealed { .. }) {
            self.index_files()?;
        }
        Ok(())
    }

    /// The `.log` file's path.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The log file, opened on first use for sealed segments.
    pub(crate) fn file(&self) -> io::Result<&Arc<File>> {
        if let Some(file) = self.log.get() {
            return Ok(file);
        }
        let file = File::open(&self.log_path)?;
        let _ = self.log.set(Arc::new(file));
        self.log
            .get()
            .ok_or_else(|| io::Error::other("log file handle vanished"))
    }

    fn index_files(&self) -> io::Result<&(File, File)> {
        if let Some(files) = self.index_files.get() {
            return Ok(files);
        }
        let files = (File::open(&self.index_path)?, File::open(&self.time_path)?);
        let _ = self.index_files.set(files);
        self.index_files
            .get()
            .ok_or_else(|| io::Error::other("index file handles vanished"))
    }

    /// Bytes of whole batches in the segment.
    pub(crate) fn size(&self) -> u64 {
        self.size.load(Ordering::Acquire)
    }

    /// Indexes the batches just written at `position` (each header with its byte range
    /// within the write), under one lock acquisition.
    pub(crate) fn on_appended(&self, position: u64, batches: &[(Range<usize>, BatchHeader)]) {
        if let SegIndex::Active(builder) = &mut *wlock(&self.state) {
            for (range, header) in batches {
                let at = position + range.start as u64;
                if let Ok((rel, at)) = relative(self.base, header.base_offset, at) {
                    builder.on_batch(rel, at, header);
                }
            }
        }
    }

    /// Publishes the new end of the file once the bytes are written.
    pub(crate) fn set_size(&self, size: u64) {
        self.size.store(size, Ordering::Release);
    }

    /// The largest batch max timestamp in the segment, and the first batch that has it.
    pub(crate) fn max_timestamp(&self) -> Option<TimestampOffset> {
        let entry = match &*rlock(&self.state) {
            SegIndex::Active(builder) => builder.max_timestamp,
            SegIndex::Sealed { max_timestamp, .. } => *max_timestamp,
        };
        entry.map(|e| TimestampOffset {
            offset: self.base + i64::from(e.rel),
            timestamp: e.timestamp,
        })
    }

    fn position_for(&self, offset: i64) -> io::Result<u64> {
        let rel = u32::try_from(offset - self.base).unwrap_or(u32::MAX);
        let count = match &*rlock(&self.state) {
            SegIndex::Active(builder) => return Ok(u64::from(builder.position_for(rel))),
            SegIndex::Sealed { offset_entries, .. } => *offset_entries,
        };
        Ok(u64::from(index::file_position_for(
            &self.index_files()?.0,
            count,
            rel,
        )?))
    }

    fn offset_for_timestamp_hint(&self, ts: i64) -> io::Result<i64> {
        let count = match &*rlock(&self.state) {
            SegIndex::Active(builder) => {
                return Ok(self.base + i64::from(builder.rel_for_timestamp(ts)))
            }
            SegIndex::Sealed { time_entries, .. } => *time_entries,
        };
        let rel = index::file_rel_for_timestamp(&self.index_files()?.1, count, ts)?;
        Ok(self.base + i64::from(rel))
    }

    /// Walks headers from `from` to the batch containing `offset`; `None` if the walk
    /// overshoots or hits bytes that are not a header (a lying index).
    fn locate(
        &self,
        file: &File,
        from: u64,
        offset: i64,
    ) -> io::Result<Option<(u64, BatchHeader)>> {
        let size = self.size();
        let mut pos = from;
        let mut buf = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= size {
            file.read_exact_at(&mut buf, pos)?;
            let Ok(header) = BatchHeader::parse(&buf) else {
                return Ok(None);
            };
            // Overshooting on the first batch looked at means the index lies (unless
            // we started at the segment's beginning); later, it means `offset` fell in
            // a gap left by compaction, and the next batch is the answer (as in Kafka).
            if header.base_offset > offset && pos == from && from != 0 {
                return Ok(None);
            }
            if batch_end(&header) > offset {
                return Ok(Some((pos, header)));
            }
            pos += header.total_len() as u64;
        }
        Ok(None)
    }

    /// Finds the batch containing `offset`, via the index and, should the index lie, from
    /// the start of the segment.
    fn find_batch(&self, file: &File, offset: i64) -> io::Result<(u64, BatchHeader)> {
        let hint = self.position_for(offset)?;
        if let Some(found) = self.locate(file, hint, offset)? {
            return Ok(found);
        }
        if hint != 0 {
            tracing::warn!(segment = %self.log_path.display(), offset, "offset index points to the wrong place; scanning the segment");
            if let Some(found) = self.locate(file, 0, offset)? {
                return Ok(found);
            }
        }
        Err(invalid(format!(
            "offset {offset} not found in segment {}",
            self.log_path.display()
        )))
    }

    /// Whole batches from the one containing `offset`, in one positioned read: at most
    /// `max_bytes` unless the first batch is larger, only batches below `high_watermark`.
    pub(crate) fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        high_watermark: i64,
    ) -> io::Result<Bytes> {
        let file = self.file()?;
        let (pos, header) = self.find_batch(file, offset)?;
        let available = self.size().saturating_sub(pos);
        let first = header.total_len() as u64;
        if first > available {
            return Err(invalid(format!(
                "batch at {pos} runs past the end of the segment"
            )));
        }
        let want = (max_bytes as u64).min(available).max(first);
        let mut buf =
            vec![0u8; usize::try_from(want).map_err(|_| invalid("read too large".into()))?];
        file.read_exact_at(&mut buf, pos)?;
        let mut take = 0;
        for (header, range) in Batches::new(&buf) {
            if batch_end(&header) > high_watermark || (take > 0 && range.end > max_bytes) {
                break;
            }
            take = range.end;
        }
        buf.truncate(take);
        Ok(Bytes::from(buf))
    }

    /// The first record at or after `ts` in this segment, below `high_watermark`.
    pub(crate) fn offset_for_timestamp(
        &self,
        ts: i64,
        high_watermark: i64,
    ) -> io::Result<Option<TimestampOffset>> {
        let file = self.file()?;
        let start_offset = self.offset_for_timestamp_hint(ts)?;
        let (mut pos, _) = self.find_batch(file, start_offset)?;
        let size = self.size();
        let mut head = [0u8; HEADER_LEN];
        while pos + HEADER_LEN as u64 <= size {
            file.read_exact_at(&mut head, pos)?;
            let header = BatchHeader::parse(&head).map_err(|e| invalid(e.to_string()))?;
            if batch_end(&header) > high_watermark {
                return Ok(None);
            }
            let len = header.total_len() as u64;
            if header.max_timestamp >= ts {
                if pos + len > size {
                    return Err(invalid(format!(
                        "batch at {pos} runs past the end of the segment"
                    )));
                }
                let mut whole = vec![0u8; header.total_len()];
                file.read_exact_at(&mut whole, pos)?;
                let found = records::first_record_at_or_after(&header, &whole, ts)
                    .map_err(|e| invalid(e.to_string()))?;
                if found.is_some() {
                    return Ok(found);
                }
            }
            pos += len;
        }
        Ok(None)
    }
}

/// Offset and position relative to the segment, as the u32s the indexes store.
fn relative(base: i64, offset: i64, position: u64) -> Result<(u32, u32), String> {
    let rel = u32::try_from(offset - base)
        .map_err(|_| format!("offset {offset} too far from segment base {base}"))?;
    let position =
        u32::try_from(position).map_err(|_| format!("position {position} past 4 GiB"))?;
    Ok((rel, position))
}

/// Walks the whole batches of `file[..end]`, reading ahead in large chunks, handing each
/// header to `visit` (which may reject it). Returns the end of the last accepted batch
/// and, if the walk stopped before `end`, why.
fn scan(
    file: &File,
    start: u64,
    end: u64,
    check_crc: bool,
    bytes_read: &AtomicU64,
    mut visit: impl FnMut(u64, &BatchHeader) -> Result<(), String>,
) -> io::Result<(u64, Option<String>)> {
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    let mut pos = start;
    let fill = |buf: &mut Vec<u8>, buf_start: &mut u64, pos: u64, need: usize| -> io::Result<()> {
        let have = (buf_start.saturating_add(buf.len() as u64)).saturating_sub(pos);
        if pos >= *buf_start && have >= need as u64 {
            return Ok(());
        }
        let len = (need.max(SCAN_CHUNK) as u64).min(end - pos);
        buf.clear();
        buf.resize(len as usize, 0);
        file.read_exact_at(buf, pos)?;
        bytes_read.fetch_add(len, Ordering::Relaxed);
        *buf_start = pos;
        Ok(())
    };
    while pos < end {
        let remaining = end - pos;
        fill(
            &mut buf,
            &mut buf_start,
            pos,
            (HEADER_LEN as u64).min(remaining) as usize,
        )?;
        let at = (pos - buf_start) as usize;
        let header = match BatchHeader::parse(&buf[at..]) {
            Ok(header) => header,
            Err(error) => return Ok((pos, Some(error.to_string()))),
        };
        let total = header.total_len() as u64;
        if total > remaining {
            return Ok((
                pos,
                Some(format!(
                    "batch of {total} bytes but only {remaining} left in the file"
                )),
            ));
        }
        fill(&mut buf, &mut buf_start, pos, total as usize)?;
        let at = (pos - buf_start) as usize;
        if check_crc {
            if let Err(error) = batch::verify(&buf[at..at + total as usize]) {
                return Ok((pos, Some(error.to_string())));
            }
        }
        if header.last_offset_delta < 0 {
            return Ok((
                pos,
                Some(format!(
                    "negative last offset delta {}",
                    header.last_offset_delta
                )),
            ));
        }
        if let Err(reason) = visit(pos, &header) {
            return Ok((pos, Some(reason)));
        }
        pos += total;
    }
    Ok((pos, None))
}

/// One past the last non-zero byte of `file` in `from..len` (`from` if there is none):
/// what a truncation at `from` destroys, as opposed to reserved space it gives back.
fn end_of_content(file: &File, from: u64, len: u64) -> io::Result<u64> {
    if from >= len {
        // Every open of an active segment comes here, mostly with nothing past the data.
        return Ok(from);
    }
    let mut end = from;
    let mut buf = vec![0u8; SCAN_CHUNK];
    let mut pos = from;
    while pos < len {
        let n = usize::try_from(len - pos).map_or(SCAN_CHUNK, |left| left.min(SCAN_CHUNK));
        file.read_exact_at(&mut buf[..n], pos)?;
        if let Some(last) = buf[..n].iter().rposition(|&b| b != 0) {
            end = pos + last as u64 + 1;
        }
        pos += n as u64;
    }
    Ok(end)
}

/// One past a stored batch's last offset, saturating: headers read back from disk (or
/// from where a damaged index points) may hold any value and must not overflow.
fn batch_end(header: &BatchHeader) -> i64 {
    header
        .base_offset
        .saturating_add(i64::from(header.last_offset_delta))
        .saturating_add(1)
}
