//! The tail cache: a partition's most recent appends kept in memory as the very
//! `Bytes` that were written, so consumers at the end of the log are answered without a
//! read syscall or a copy.
//!
//! Two bounds: each partition's own (`log.tail.cache.bytes`), and one budget all
//! partitions of the broker share (`log.cache.budget.bytes`), so memory follows a
//! setting and not the number of partitions. An append that finds the budget spent
//! evicts its own partition's oldest entries; if that is not enough it is not cached
//! and its readers are served from the segment file (the OS page cache), as Kafka
//! serves every read.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentlog_protocol::batch::Batches;
use bytes::{Bytes, BytesMut};

/// Default of `log.cache.budget.bytes`: room to serve a few dozen busy partitions
/// from memory, whatever the number of idle ones.
pub const DEFAULT_CACHE_BUDGET: usize = 64 << 20;

/// The bytes all tail caches of one broker may hold together.
#[derive(Debug)]
pub struct CacheBudget {
    limit: AtomicUsize,
    used: AtomicUsize,
}

impl CacheBudget {
    /// A budget of `limit` bytes, shared by every log given a clone of it.
    pub fn new(limit: usize) -> Arc<CacheBudget> {
        Arc::new(CacheBudget {
            limit: AtomicUsize::new(limit),
            used: AtomicUsize::new(0),
        })
    }

    /// Changes the limit (a dynamic broker config): caches over it shrink as they
    /// next append.
    pub fn set_limit(&self, limit: usize) {
        self.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held by tail caches now (for metrics).
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// Takes `bytes` from the budget if they fit.
    fn try_take(&self, bytes: usize) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl PartialEq for CacheBudget {
    /// The same budget, not an equal one: two brokers' budgets are never "equal".
    fn eq(&self, other: &CacheBudget) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for CacheBudget {}

/// The most recent appends, exactly as written (after offset assignment), so that
/// consumers tailing the log are served from memory.
#[derive(Debug)]
pub(super) struct TailCache {
    entries: VecDeque<CacheEntry>,
    /// Bytes of `entries`, all of them taken from `budget`.
    bytes: usize,
    limit: usize,
    budget: Arc<CacheBudget>,
}

#[derive(Debug)]
struct CacheEntry {
    base: i64,
    next: i64,
    bytes: Bytes,
}

impl TailCache {
    pub(super) fn new(limit: usize, budget: Arc<CacheBudget>) -> Self {
        TailCache {
            entries: VecDeque::new(),
            bytes: 0,
            limit,
            budget,
        }
    }

    /// Forgets everything (segments were rewritten under it).
    pub(super) fn clear(&mut self) {
        self.entries.clear();
        self.budget.give_back(self.bytes);
        self.bytes = 0;
    }

    /// Drops the oldest entry; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        let Some(old) = self.entries.pop_front() else {
            return false;
        };
        self.bytes -= old.bytes.len();
        self.budget.give_back(old.bytes.len());
        true
    }

    /// Adds one append's bytes, evicting the oldest to stay within the partition's
    /// limit and the broker's budget; an append that cannot fit is not cached.
    pub(super) fn push(&mut self, base: i64, next: i64, bytes: Bytes) {
        let contiguous = self.entries.back().is_none_or(|last| last.next == base);
        if bytes.len() > self.limit || !contiguous {
            self.clear();
            if bytes.len() > self.limit {
                return;
            }
        }
        while self.bytes + bytes.len() > self.limit {
            if !self.evict_oldest() {
                break;
            }
        }
        while !self.budget.try_take(bytes.len()) {
            if !self.evict_oldest() {
                // Nothing of ours left to give: the entries kept must stay contiguous
                // with what comes next, and they are (there are none).
                return;
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

impl Drop for TailCache {
    fn drop(&mut self) {
        self.budget.give_back(self.bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(cache: &mut TailCache, base: i64, len: usize) {
        cache.push(base, base + 1, Bytes::from(vec![0u8; len]));
    }

    /// Caches sharing a budget hold at most the budget together: a full budget makes an
    /// append evict its own partition's oldest bytes, or go uncached when it has none;
    /// dropped or cleared caches give their bytes back.
    #[test]
    fn caches_share_one_budget() {
        let budget = CacheBudget::new(300);
        let mut a = TailCache::new(1000, budget.clone());
        let mut b = TailCache::new(1000, budget.clone());
        append(&mut a, 0, 200);
        append(&mut b, 0, 200);
        assert_eq!((a.bytes, b.bytes, budget.used()), (200, 0, 200));
        assert!(
            b.entries.is_empty(),
            "over budget and nothing to evict: not cached"
        );

        append(&mut a, 1, 200);
        assert_eq!(a.entries.len(), 1, "its own oldest made room");
        assert_eq!((a.entries[0].base, budget.used()), (1, 200));

        drop(a);
        assert_eq!(budget.used(), 0);
        append(&mut b, 1, 250);
        assert_eq!((b.bytes, budget.used()), (250, 250));
        b.clear();
        assert_eq!(budget.used(), 0);

        budget.set_limit(0);
        append(&mut b, 2, 1);
        assert_eq!(budget.used(), 0, "a zero budget caches nothing");
    }
}
