//! The tail cache: a partition's most recent appends kept in memory as the very
//! `Bytes` that were written, so consumers at the end of the log are answered without a
//! read syscall or a copy.

use std::collections::VecDeque;

use agentlog_protocol::batch::Batches;
use bytes::{Bytes, BytesMut};

/// The most recent appends, exactly as written (after offset assignment), so that
/// consumers tailing the log are served from memory.
#[derive(Debug)]
pub(super) struct TailCache {
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
    pub(super) fn new(limit: usize) -> Self {
        TailCache {
            entries: VecDeque::new(),
            bytes: 0,
            limit,
        }
    }

    /// Forgets everything (segments were rewritten under it).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Adds one append's bytes, evicting the oldest to stay within the limit.
    pub(super) fn push(&mut self, base: i64, next: i64, bytes: Bytes) {
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
    pub(super) fn read(&self, offset: i64, max_bytes: usize, high_watermark: i64) -> Option<Bytes> {
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
