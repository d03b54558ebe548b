//! Key-ordered dispatch for instances that handle several events at once
//! (`max_in_flight > 1`, needed when a handler waits seconds for a model).
//!
//! Events with the same key in the same partition form a lane and are handled one
//! after another, in offset order; different lanes run in parallel. A keyless event is
//! a lane of its own. What may be committed in a partition is the watermark: the
//! lowest offset received and not yet done, or one past the highest received when all
//! are done (Confluent's Parallel Consumer commits the same way). So at-least-once
//! holds however handlers finish: nothing below a committed offset is still pending.
//!
//! Positions reset by a rejoin re-read offsets this instance already holds: those are
//! skipped (they are queued, in flight or done here). A partition that is revoked is
//! forgotten at once, its queued events dropped, and late completions for it ignored,
//! so if it comes back its records are read again from the group's committed offset
//! instead of being skipped.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::backend::Position;
use crate::event::Event;

/// A partition, as `(topic, partition)`.
pub(crate) type PartitionId = (Arc<str>, i32);

/// Events that must be handled in order: one key of one partition, or one keyless
/// event.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    /// Every event with this key in this partition.
    Keyed(PartitionId, Bytes),
    /// One keyless event (its offset), ordered with nothing.
    Keyless(PartitionId, i64),
}

impl Lane {
    fn of(event: &Event) -> Lane {
        let partition = (event.topic.clone(), event.partition);
        match &event.key {
            Some(key) => Lane::Keyed(partition, key.clone()),
            None => Lane::Keyless(partition, event.offset),
        }
    }

    fn partition(&self) -> &PartitionId {
        match self {
            Lane::Keyed(partition, _) | Lane::Keyless(partition, _) => partition,
        }
    }
}

/// What one partition has received and finished.
#[derive(Debug, Default)]
struct PartitionProgress {
    /// Offsets received and not yet done (queued or in flight).
    outstanding: BTreeSet<i64>,
    /// One past the highest offset received.
    received_next: i64,
    /// The watermark last handed out for commit.
    committed: Option<i64>,
    /// Which assignment of the partition this is: completions of events read under an
    /// earlier one (before a revocation) are ignored.
    epoch: u64,
}

impl PartitionProgress {
    fn watermark(&self) -> i64 {
        self.outstanding
            .first()
            .copied()
            .unwrap_or(self.received_next)
    }
}

/// Lanes, their queues and each partition's watermark.
#[derive(Debug, Default)]
pub(crate) struct KeyedDispatch {
    queues: HashMap<Lane, VecDeque<Event>>,
    /// Lanes with an event in flight.
    busy: HashSet<Lane>,
    /// Lanes with queued events and nothing in flight, in arrival order.
    ready: VecDeque<Lane>,
    progress: HashMap<PartitionId, PartitionProgress>,
    queued: usize,
    next_epoch: u64,
}

/// Proof of which assignment an event was dispatched under; hand it back with the
/// event to [`KeyedDispatch::done`]. An event that failed is never marked done: it
/// holds its partition's watermark until the instance re-reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ticket(u64);

impl KeyedDispatch {
    /// Takes in polled events: new ones are queued in their lanes, re-reads of offsets
    /// this instance already holds are dropped.
    pub(crate) fn accept(&mut self, events: Vec<Event>) {
        for event in events {
            let id = (event.topic.clone(), event.partition);
            let next_epoch = &mut self.next_epoch;
            let progress = self.progress.entry(id).or_insert_with(|| {
                *next_epoch += 1;
                PartitionProgress {
                    received_next: event.offset,
                    epoch: *next_epoch,
                    ..PartitionProgress::default()
                }
            });
            if event.offset < progress.received_next {
                continue;
            }
            progress.outstanding.insert(event.offset);
            progress.received_next = event.offset + 1;
            let lane = Lane::of(&event);
            let queue = self.queues.entry(lane.clone()).or_default();
            if queue.is_empty() && !self.busy.contains(&lane) {
                self.ready.push_back(lane);
            }
            queue.push_back(event);
            self.queued += 1;
        }
    }

    /// The next event whose lane is free, marking its lane busy until [`Self::done`].
    pub(crate) fn next(&mut self) -> Option<(Event, Ticket)> {
        while let Some(lane) = self.ready.pop_front() {
            let Some(queue) = self.queues.get_mut(&lane) else {
                continue;
            };
            let Some(event) = queue.pop_front() else {
                self.queues.remove(&lane);
                continue;
            };
            self.queued -= 1;
            let epoch = self.progress.get(lane.partition()).map_or(0, |p| p.epoch);
            self.busy.insert(lane);
            return Some((event, Ticket(epoch)));
        }
        None
    }

    /// Marks `event` done (handled or dead-lettered): its offset no longer holds the
    /// watermark back, and its lane's next event becomes ready.
    pub(crate) fn done(&mut self, event: &Event, ticket: Ticket) {
        if !self.current(event, ticket) {
            return;
        }
        let lane = Lane::of(event);
        self.busy.remove(&lane);
        match self.queues.get(&lane) {
            Some(queue) if !queue.is_empty() => self.ready.push_back(lane),
            _ => {
                self.queues.remove(&lane);
            }
        }
        if let Some(progress) = self
            .progress
            .get_mut(&(event.topic.clone(), event.partition))
        {
            progress.outstanding.remove(&event.offset);
        }
    }

    /// Whether `event` was dispatched under its partition's current assignment.
    fn current(&self, event: &Event, ticket: Ticket) -> bool {
        self.progress
            .get(&(event.topic.clone(), event.partition))
            .is_some_and(|p| p.epoch == ticket.0)
    }

    /// Forgets every partition not in `assigned`: queued events dropped, progress
    /// cleared, so a partition that comes back is read from the committed offset.
    pub(crate) fn retain_assigned(&mut self, assigned: &[(String, i32)]) {
        let kept = |id: &PartitionId| assigned.iter().any(|(t, p)| **t == *id.0 && *p == id.1);
        self.progress.retain(|id, _| kept(id));
        let mut dropped = 0;
        self.queues.retain(|lane, queue| {
            let keep = kept(lane.partition());
            if !keep {
                dropped += queue.len();
            }
            keep
        });
        self.queued -= dropped;
        self.ready.retain(|lane| kept(lane.partition()));
        self.busy.retain(|lane| kept(lane.partition()));
    }

    /// Positions whose watermark moved since they were last returned.
    pub(crate) fn commits_due(&mut self) -> Vec<Position> {
        let mut due = Vec::new();
        for ((topic, partition), progress) in &mut self.progress {
            let watermark = progress.watermark();
            if progress.committed != Some(watermark) {
                progress.committed = Some(watermark);
                due.push(Position {
                    topic: topic.to_string(),
                    partition: *partition,
                    next_offset: watermark,
                });
            }
        }
        due
    }

    /// Makes every partition's watermark due again (after a commit that failed).
    pub(crate) fn recommit_all(&mut self) {
        for progress in self.progress.values_mut() {
            progress.committed = None;
        }
    }

    /// Events received and waiting for their lane.
    pub(crate) fn queued(&self) -> usize {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(partition: i32, offset: i64, key: Option<&'static str>) -> Event {
        Event {
            topic: Arc::from("t"),
            partition,
            offset,
            timestamp: 0,
            key: key.map(|k| Bytes::from_static(k.as_bytes())),
            value: None,
            headers: Vec::new(),
            undecodable: None,
        }
    }

    fn drain(dispatch: &mut KeyedDispatch) -> Vec<(Event, Ticket)> {
        std::iter::from_fn(|| dispatch.next()).collect()
    }

    fn offsets(events: &[(Event, Ticket)]) -> Vec<i64> {
        events.iter().map(|(e, _)| e.offset).collect()
    }

    #[test]
    fn same_key_waits_for_the_previous_event_other_keys_do_not() {
        let mut d = KeyedDispatch::default();
        d.accept(vec![
            event(0, 0, Some("a")),
            event(0, 1, Some("a")),
            event(0, 2, Some("b")),
            event(0, 3, None),
            event(0, 4, None),
        ]);
        let first = drain(&mut d);
        assert_eq!(
            offsets(&first),
            vec![0, 2, 3, 4],
            "one per lane; 1 waits for 0"
        );
        d.done(&first[0].0, first[0].1);
        let second = drain(&mut d);
        assert_eq!(offsets(&second), vec![1]);
        assert_eq!(d.queued(), 0);
    }

    #[test]
    fn watermark_is_the_lowest_offset_not_done() {
        let mut d = KeyedDispatch::default();
        d.accept((10..14).map(|o| event(0, o, None)).collect());
        let all = drain(&mut d);
        assert_eq!(d.commits_due()[0].next_offset, 10);
        let done = |d: &mut KeyedDispatch, i: usize| d.done(&all[i].0, all[i].1);
        done(&mut d, 1);
        done(&mut d, 3);
        assert!(d.commits_due().is_empty(), "10 still pending: nothing new");
        done(&mut d, 0);
        assert_eq!(d.commits_due()[0].next_offset, 12);
        done(&mut d, 2);
        assert_eq!(d.commits_due()[0].next_offset, 14);
    }

    #[test]
    fn re_reads_after_a_rejoin_are_skipped_and_new_offsets_accepted() {
        let mut d = KeyedDispatch::default();
        d.accept(vec![event(0, 0, Some("a")), event(0, 1, Some("b"))]);
        let first = drain(&mut d);
        d.done(&first[0].0, first[0].1);
        // The position was reset to the committed offset 0: 0 and 1 come again.
        d.accept(vec![
            event(0, 0, Some("a")),
            event(0, 1, Some("b")),
            event(0, 2, Some("a")),
        ]);
        assert_eq!(offsets(&drain(&mut d)), vec![2]);
    }

    #[test]
    fn a_revoked_partition_is_forgotten_and_read_afresh_when_it_returns() {
        let mut d = KeyedDispatch::default();
        d.accept(vec![event(0, 0, Some("a")), event(0, 1, Some("a"))]);
        d.accept(vec![event(1, 5, Some("a"))]);
        let started = drain(&mut d);
        assert_eq!(offsets(&started), vec![0, 5]);
        d.retain_assigned(&[("t".to_string(), 1)]);
        assert_eq!(d.queued(), 0, "partition 0's queued event is dropped");
        let due = d.commits_due();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].partition, 1);
        // Partition 0 comes back at its committed offset: nothing is skipped.
        d.accept(vec![event(0, 0, Some("a")), event(0, 1, Some("a"))]);
        let again = drain(&mut d);
        assert_eq!(offsets(&again), vec![0]);
        // The first read's offset 0 finishes late: ignored, so offset 1 does not start
        // beside the second read's offset 0 in the same lane.
        d.done(&started[0].0, started[0].1);
        assert!(drain(&mut d).is_empty());
        d.done(&again[0].0, again[0].1);
        assert_eq!(offsets(&drain(&mut d)), vec![1]);
    }

    #[test]
    fn a_failed_event_holds_the_watermark() {
        let mut d = KeyedDispatch::default();
        d.accept(vec![event(0, 0, None), event(0, 1, None)]);
        let all = drain(&mut d);
        d.done(&all[1].0, all[1].1);
        assert_eq!(d.commits_due()[0].next_offset, 0);
    }
}
