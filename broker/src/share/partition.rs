//! One share-partition's delivery state (KIP-932): which offsets of a partition a share
//! group has finished with, which are in flight (acquired by a member under a time-limited
//! lock), and how often each was delivered.
//!
//! The window is `[start, end)`: everything before the share-partition start offset
//! (SPSO) is done, every offset in the window has an entry, and `end` is the next offset
//! never handed out. Offsets enter the window when first acquired, so its size is bounded
//! by `group.share.partition.max.record.locks`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use thiserror::Error;

/// A record's place in its share-group life cycle (Kafka's `RecordState`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordState {
    /// May be acquired (never delivered, released, or its lock timed out).
    Available,
    /// Handed to `member`, which must acknowledge it before `until`.
    Acquired {
        /// The member holding the lock.
        member: Arc<str>,
        /// When the acquisition lock expires.
        until: Instant,
    },
    /// Accepted: processed, never delivered again.
    Acknowledged,
    /// Rejected, or over the delivery-count limit: never delivered again.
    Archived,
}

/// One offset in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    /// Where it is in its life cycle.
    pub state: RecordState,
    /// How many times it was acquired.
    pub deliveries: i16,
}

/// How a member acknowledges a record (the wire's `AcknowledgeTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckType {
    /// An offset with no record (a gap or control record): archived.
    Gap,
    /// Processed: acknowledged.
    Accept,
    /// Give it back for another delivery (archived past the delivery limit).
    Release,
    /// Cannot be processed: archived.
    Reject,
}

impl AckType {
    /// The wire code's meaning; `None` for codes KIP-932 does not define.
    pub fn from_code(code: i8) -> Option<AckType> {
        match code {
            0 => Some(AckType::Gap),
            1 => Some(AckType::Accept),
            2 => Some(AckType::Release),
            3 => Some(AckType::Reject),
            _ => None,
        }
    }
}

/// One acknowledgement range: one type for all offsets, or one per offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckBatch {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// One type for the whole range, or exactly one per offset.
    pub types: Vec<AckType>,
}

/// A run of acquired offsets with one delivery count (the wire's `AcquiredRecords`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AcquiredRange {
    /// First offset.
    pub first: i64,
    /// Last offset (inclusive).
    pub last: i64,
    /// Deliveries so far, this one included.
    pub deliveries: i16,
}

/// An acknowledgement was refused; nothing of it was applied.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AckError {
    /// A range is malformed (first after last, type count not 1 nor the range's size,
    /// unknown type code).
    #[error("malformed acknowledgement: {0}")]
    Invalid(String),
    /// An offset is not acquired by this member (never acquired, already acknowledged,
    /// lock timed out, or held by another member).
    #[error("offset {0} is not acquired by this member")]
    NotAcquired(i64),
}

/// The delivery state of one share-partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharePartition {
    start: i64,
    end: i64,
    window: BTreeMap<i64, InFlight>,
}

/// The limits one acquisition observes.
#[derive(Debug, Clone, Copy)]
pub struct AcquireLimits {
    /// Most records to acquire.
    pub max_records: usize,
    /// Last offset the log read returned data for (inclusive).
    pub covered_last: i64,
    /// Largest window (`group.share.partition.max.record.locks`).
    pub max_window: i64,
    /// `group.share.delivery.count.limit`.
    pub delivery_limit: i16,
    /// When the acquisition locks expire.
    pub lock_until: Instant,
}

impl SharePartition {
    /// A share-partition whose records before `start` are done.
    pub fn starting_at(start: i64) -> SharePartition {
        SharePartition {
            start,
            end: start,
            window: BTreeMap::new(),
        }
    }

    /// Rebuilds a partition from persisted state: the start offset and the offsets
    /// with a state or delivery count worth keeping (anything else in between is
    /// available, never delivered).
    pub fn restore(start: i64, entries: impl IntoIterator<Item = (i64, InFlight)>) -> Self {
        let mut partition = SharePartition::starting_at(start);
        for (offset, entry) in entries {
            if offset < start {
                continue;
            }
            while partition.end < offset {
                partition.window.insert(partition.end, available(0));
                partition.end += 1;
            }
            partition.window.insert(offset, entry);
            partition.end = partition.end.max(offset + 1);
        }
        partition.advance();
        partition
    }

    /// The share-partition start offset (SPSO).
    pub fn start(&self) -> i64 {
        self.start
    }

    /// The next offset never acquired (SPEO + 1).
    pub fn end(&self) -> i64 {
        self.end
    }

    /// Every offset in the window and its state.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &InFlight)> {
        self.window.iter().map(|(offset, entry)| (*offset, entry))
    }

    /// Offsets acquired by someone right now.
    pub fn acquired_count(&self, now: Instant) -> usize {
        self.window
            .values()
            .filter(|e| matches!(&e.state, RecordState::Acquired { until, .. } if *until > now))
            .count()
    }

    /// The first offset a fetch could acquire at or after, given the log's end: the
    /// first available (or lock-expired) offset in the window, else `end` when the log
    /// has records there. `None`: nothing to hand out.
    pub fn first_acquirable(
        &self,
        now: Instant,
        high_watermark: i64,
        max_window: i64,
    ) -> Option<i64> {
        let redelivery = self
            .window
            .iter()
            .find_map(|(offset, entry)| acquirable(&entry.state, now).then_some(*offset));
        let fresh =
            (self.end < high_watermark && self.end - self.start < max_window).then_some(self.end);
        redelivery.or(fresh)
    }

    /// Records deleted from the log (retention, DeleteRecords) can no longer be
    /// delivered: the window moves to the log start.
    pub fn skip_to(&mut self, log_start: i64) {
        if log_start <= self.start {
            return;
        }
        self.window = self.window.split_off(&log_start);
        self.start = log_start;
        self.end = self.end.max(log_start);
        self.advance();
    }

    /// Acquires for `member` the available offsets up to `limits.covered_last`, first
    /// the ones in the window (redeliveries), then new ones from `end`. Each acquisition
    /// counts a delivery; lock-expired offsets past the delivery limit are archived
    /// instead. Returns the acquired runs in offset order.
    pub fn acquire(
        &mut self,
        member: &Arc<str>,
        now: Instant,
        limits: AcquireLimits,
    ) -> Vec<AcquiredRange> {
        self.expire(now, limits.delivery_limit);
        let mut ranges: Vec<AcquiredRange> = Vec::new();
        let mut taken = 0usize;
        let take = |offset: i64, entry: &mut InFlight, ranges: &mut Vec<AcquiredRange>| {
            entry.deliveries = entry.deliveries.saturating_add(1);
            entry.state = RecordState::Acquired {
                member: member.clone(),
                until: limits.lock_until,
            };
            match ranges.last_mut() {
                Some(last) if last.last + 1 == offset && last.deliveries == entry.deliveries => {
                    last.last = offset;
                }
                _ => ranges.push(AcquiredRange {
                    first: offset,
                    last: offset,
                    deliveries: entry.deliveries,
                }),
            }
        };
        for (offset, entry) in self.window.range_mut(..=limits.covered_last) {
            if taken >= limits.max_records {
                break;
            }
            if entry.state == RecordState::Available {
                take(*offset, entry, &mut ranges);
                taken += 1;
            }
        }
        while taken < limits.max_records
            && self.end <= limits.covered_last
            && self.end - self.start < limits.max_window
        {
            let mut entry = available(0);
            take(self.end, &mut entry, &mut ranges);
            self.window.insert(self.end, entry);
            self.end += 1;
            taken += 1;
        }
        ranges
    }

    /// Applies acknowledgements from `member`: all of them, or (on any error) none.
    pub fn acknowledge(
        &mut self,
        member: &str,
        batches: &[AckBatch],
        now: Instant,
        delivery_limit: i16,
    ) -> Result<(), AckError> {
        for batch in batches {
            let size = batch
                .last
                .checked_sub(batch.first)
                .and_then(|d| d.checked_add(1));
            let Some(size) = size.filter(|s| *s > 0) else {
                return Err(AckError::Invalid(format!(
                    "range {}..={} is empty",
                    batch.first, batch.last
                )));
            };
            if batch.types.len() != 1 && i64::try_from(batch.types.len()).ok() != Some(size) {
                return Err(AckError::Invalid(format!(
                    "{} acknowledge types for {size} offsets",
                    batch.types.len()
                )));
            }
            // Outside the window nothing is acquired (and the loop below stays bounded).
            if batch.first < self.start || batch.last >= self.end {
                let outside = if batch.first < self.start {
                    batch.first
                } else {
                    self.end.max(batch.first)
                };
                return Err(AckError::NotAcquired(outside));
            }
            for offset in batch.first..=batch.last {
                let owned = self.window.get(&offset).is_some_and(|entry| {
                    matches!(&entry.state, RecordState::Acquired { member: m, until }
                        if &**m == member && *until > now)
                });
                if !owned {
                    return Err(AckError::NotAcquired(offset));
                }
            }
        }
        for batch in batches {
            for (i, offset) in (batch.first..=batch.last).enumerate() {
                let ack = match batch.types.as_slice() {
                    [one] => *one,
                    many => many.get(i).copied().unwrap_or(AckType::Release),
                };
                if let Some(entry) = self.window.get_mut(&offset) {
                    entry.state = match ack {
                        AckType::Accept => RecordState::Acknowledged,
                        AckType::Gap | AckType::Reject => RecordState::Archived,
                        AckType::Release => released(entry.deliveries, delivery_limit),
                    };
                }
            }
        }
        self.advance();
        Ok(())
    }

    /// Gives back every lock `member` holds (it left or its session expired).
    pub fn release_member(&mut self, member: &str, delivery_limit: i16) -> bool {
        let mut changed = false;
        for entry in self.window.values_mut() {
            if matches!(&entry.state, RecordState::Acquired { member: m, .. } if &**m == member) {
                entry.state = released(entry.deliveries, delivery_limit);
                changed = true;
            }
        }
        self.advance();
        changed
    }

    /// Applies lock expiries: a timed-out offset becomes available again, or archived
    /// when it reached the delivery limit.
    pub fn expire(&mut self, now: Instant, delivery_limit: i16) {
        for entry in self.window.values_mut() {
            if matches!(&entry.state, RecordState::Acquired { until, .. } if *until <= now) {
                entry.state = released(entry.deliveries, delivery_limit);
            }
        }
        self.advance();
    }

    /// Moves the start past every finished offset at the front of the window.
    fn advance(&mut self) {
        while let Some(entry) = self.window.first_entry() {
            if !matches!(
                entry.get().state,
                RecordState::Acknowledged | RecordState::Archived
            ) {
                break;
            }
            entry.remove();
            self.start += 1;
        }
        if self.window.is_empty() {
            self.start = self.end;
        } else if let Some((&first, _)) = self.window.first_key_value() {
            self.start = first;
        }
    }
}

fn available(deliveries: i16) -> InFlight {
    InFlight {
        state: RecordState::Available,
        deliveries,
    }
}

/// What a released (or timed-out) record becomes.
fn released(deliveries: i16, delivery_limit: i16) -> RecordState {
    if deliveries >= delivery_limit {
        RecordState::Archived
    } else {
        RecordState::Available
    }
}

fn acquirable(state: &RecordState, now: Instant) -> bool {
    match state {
        RecordState::Available => true,
        RecordState::Acquired { until, .. } => *until <= now,
        RecordState::Acknowledged | RecordState::Archived => false,
    }
}

#[cfg(test)]
mod tests;
