//! The edge side of an uplink: the local partitions it forwards, read straight from
//! the broker's logs in this process (no consumer group, no TCP), with positions that
//! move only once the remote has committed what was read.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use agentlog_broker::partition::Partition;
use agentlog_broker::Broker;
use regex::Regex;
use tokio::sync::watch;

use crate::event::Event;
use crate::records;

/// A local topic-partition, as progress keys name it.
pub type SourcePartition = (String, i32);

/// One local partition being forwarded.
struct Cursor {
    topic: Arc<str>,
    partition: Arc<Partition>,
    /// Next offset to forward: everything before it is committed on the remote.
    position: i64,
    watch: watch::Receiver<i64>,
    /// Index of the first `priority` entry the topic matches (unlisted topics come
    /// after every entry): lower is read first.
    rank: usize,
}

impl Cursor {
    fn key(&self) -> SourcePartition {
        (self.topic.to_string(), self.partition.index)
    }

    /// Where forwarding may read up to: the last stable offset, so records of a local
    /// transaction still open are not sent before it is decided.
    fn end(&self) -> i64 {
        self.partition.last_stable_offset()
    }
}

/// Records read for one remote transaction, and where each partition goes on after it.
#[derive(Debug, Default)]
pub struct ReadBatch {
    /// Records in offset order per partition.
    pub events: Vec<Event>,
    /// The next offset of every partition read, once this batch is committed.
    pub next: BTreeMap<SourcePartition, i64>,
    /// Stored batch bytes read (a measure of the batch's size).
    pub bytes: usize,
}

/// A local partition holds a batch the uplink cannot decode: forwarding it stops there
/// (the data stays), the rest of the uplink goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable {
    /// The local topic.
    pub topic: String,
    /// The offset of the batch.
    pub offset: i64,
    /// Why.
    pub reason: String,
}

/// The local partitions an uplink forwards.
pub struct LocalTopics {
    broker: Arc<Broker>,
    /// Holds unforwarded records against retention under this name (`None`: not).
    holder: Option<String>,
    names: Vec<String>,
    pattern: Option<Regex>,
    /// The uplink's `priority` entries, highest first.
    priorities: Vec<Regex>,
    cursors: Vec<Cursor>,
    /// Per partition, the offset up to which deleted unforwarded records were counted
    /// as lost (so a range is counted once, however many sessions find it).
    lost_until: HashMap<SourcePartition, i64>,
    /// Rotates which partition of a priority rank is read first, so a busy one cannot
    /// starve the rest of its rank.
    next_first: usize,
}

impl LocalTopics {
    /// Forwards the topics named, and those matching `pattern`, those matching
    /// `priorities` first; with a `holder`, keeps local retention from deleting what is
    /// not forwarded yet.
    pub fn new(
        broker: Arc<Broker>,
        holder: Option<String>,
        names: Vec<String>,
        pattern: Option<Regex>,
        priorities: Vec<Regex>,
    ) -> LocalTopics {
        LocalTopics {
            broker,
            holder,
            names,
            pattern,
            priorities,
            cursors: Vec::new(),
            lost_until: HashMap::new(),
            next_first: 0,
        }
    }

    fn selects(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
            || self.pattern.as_ref().is_some_and(|p| p.is_match(name))
    }

    /// Picks up topics and partitions created since the last call, starting each at
    /// its stored progress or at the log start. Returns the new topics with their
    /// partition counts, which the remote must have.
    pub fn discover(&mut self, progress: &HashMap<SourcePartition, i64>) -> Vec<(String, i32)> {
        let known: HashSet<SourcePartition> = self.cursors.iter().map(Cursor::key).collect();
        let mut added = Vec::new();
        for topic in self.broker.topics.list() {
            // Internal topics (offsets, transactions, the uplink's own) never go up
            // unless named outright.
            let name = topic.name();
            if !self.selects(name)
                || (name.starts_with("__") && !self.names.iter().any(|n| n == name))
            {
                continue;
            }
            let mut new_partitions = false;
            let rank = self
                .priorities
                .iter()
                .position(|p| p.is_match(name))
                .unwrap_or(self.priorities.len());
            for partition in &topic.partitions {
                let key = (name.to_string(), partition.index);
                if known.contains(&key) {
                    continue;
                }
                let start = partition.log.log_start_offset();
                let position = progress.get(&key).copied().unwrap_or(start);
                self.cursors.push(Cursor {
                    topic: Arc::from(name),
                    watch: partition.log.subscribe(),
                    partition: partition.clone(),
                    position,
                    rank,
                });
                new_partitions = true;
            }
            if new_partitions {
                added.push((name.to_string(), topic.partitions.len() as i32));
            }
        }
        if !added.is_empty() {
            self.hold();
        }
        added
    }

    /// Tells retention where each partition's unforwarded records start.
    fn hold(&self) {
        let Some(holder) = &self.holder else {
            return;
        };
        for cursor in &self.cursors {
            self.broker.lifecycle.hold_from(
                holder,
                &cursor.topic,
                cursor.partition.index,
                cursor.position,
            );
        }
    }

    /// Every forwarded topic with its partition count.
    pub fn topics(&self) -> BTreeMap<String, i32> {
        let mut out = BTreeMap::new();
        for cursor in &self.cursors {
            let count = out.entry(cursor.topic.to_string()).or_insert(0);
            *count = (*count).max(cursor.partition.index + 1);
        }
        out
    }

    /// Restarts every partition at the remote's progress (a new session trusts only
    /// what the remote committed). A position below the log start means records were
    /// deleted before they were forwarded: counted, logged and skipped, never silent.
    /// Returns how many records were newly lost.
    pub fn reset(&mut self, progress: &HashMap<SourcePartition, i64>) -> u64 {
        for cursor in &mut self.cursors {
            let start = cursor.partition.log.log_start_offset();
            cursor.position = progress.get(&cursor.key()).copied().unwrap_or(start);
        }
        let lost = self.skip_deleted();
        self.hold();
        lost
    }

    /// Reads up to about `budget` bytes of unforwarded records, skipping `paused`
    /// topics. Positions do not move: see [`LocalTopics::advance`].
    pub fn read(
        &mut self,
        budget: usize,
        paused: &HashSet<String>,
    ) -> (ReadBatch, Vec<Undecodable>) {
        let mut batch = ReadBatch::default();
        let mut undecodable = Vec::new();
        let count = self.cursors.len();
        if count == 0 {
            return (batch, undecodable);
        }
        let first = self.next_first % count;
        self.next_first = self.next_first.wrapping_add(1);
        // Rotated, then (stably) by rank: each rank drained before the next, its
        // partitions taking turns at going first.
        let mut order: Vec<usize> = (0..count).map(|i| (first + i) % count).collect();
        order.sort_by_key(|&i| self.cursors[i].rank);
        for i in order {
            if batch.bytes >= budget {
                break;
            }
            let cursor = &self.cursors[i];
            if paused.contains(cursor.topic.as_ref()) {
                continue;
            }
            let end = cursor.end();
            if cursor.position >= end {
                continue;
            }
            let Ok(read) = cursor
                .partition
                .read_committed(cursor.position, budget - batch.bytes)
            else {
                // Retention moved the start past us, or the log is closing: the next
                // session's reset (or the next read) sees the new bounds.
                continue;
            };
            if read.read.bytes.is_empty() {
                continue;
            }
            let before = batch.events.len();
            // Committed records only: an aborted local transaction never goes up.
            let decoded_next = records::decode_committed(
                &cursor.topic,
                cursor.partition.index,
                &read,
                cursor.position,
                &mut batch.events,
            );
            let mut next = decoded_next.min(end);
            let mut kept = before;
            for index in before..batch.events.len() {
                let event = &batch.events[index];
                if event.offset >= end {
                    break;
                }
                if let Some(reason) = &event.undecodable {
                    undecodable.push(Undecodable {
                        topic: cursor.topic.to_string(),
                        offset: event.offset,
                        reason: reason.clone(),
                    });
                    next = event.offset;
                    break;
                }
                kept = index + 1;
            }
            batch.events.truncate(kept);
            if next > cursor.position {
                batch.bytes += read.read.bytes.len();
                batch.next.insert(cursor.key(), next);
            }
        }
        (batch, undecodable)
    }

    /// Moves positions on once a batch is committed on the remote.
    pub fn advance(&mut self, next: &BTreeMap<SourcePartition, i64>) {
        for cursor in &mut self.cursors {
            if let Some(offset) = next.get(&cursor.key()) {
                cursor.position = cursor.position.max(*offset);
            }
        }
        self.hold();
    }

    /// Records and stored bytes not yet forwarded, over every partition; the bytes are
    /// estimated from each log's average stored record size (the log keeps no index
    /// from offsets to bytes).
    pub fn behind(&self) -> (u64, u64) {
        let mut records = 0u64;
        let mut bytes = 0u64;
        for cursor in &self.cursors {
            let behind = u64::try_from(cursor.end() - cursor.position).unwrap_or(0);
            let held = cursor.end() - cursor.partition.log.log_start_offset();
            records += behind;
            if let Ok(held) = u64::try_from(held) {
                let size = u128::from(cursor.partition.log.size_bytes());
                let share = size * u128::from(behind) / u128::from(held.max(1));
                bytes += u64::try_from(share).unwrap_or(u64::MAX);
            }
        }
        (records, bytes)
    }

    /// Moves every partition whose unforwarded records were deleted locally (retention
    /// forced by the free-disk floor, DeleteRecords) on to its log start, logging the
    /// offsets lost once per partition and range. Returns how many records were newly
    /// lost (a range is counted once per process: after a restart, a partition nothing
    /// was forwarded from since is counted again, as the remote's progress still points
    /// before it).
    pub fn skip_deleted(&mut self) -> u64 {
        let mut lost = 0u64;
        for cursor in &mut self.cursors {
            let start = cursor.partition.log.log_start_offset();
            if cursor.position >= start {
                continue;
            }
            let key = cursor.key();
            let counted = self.lost_until.get(&key).copied().unwrap_or(i64::MIN);
            let first = cursor.position.max(counted);
            if first < start {
                tracing::warn!(
                    topic = %cursor.topic,
                    partition = cursor.partition.index,
                    first_lost_offset = first,
                    last_lost_offset = start - 1,
                    "uplink: records were deleted locally before they were forwarded; skipping them"
                );
                lost += u64::try_from(start - first).unwrap_or(0);
                self.lost_until.insert(key, start);
            }
            cursor.position = start;
        }
        lost
    }

    /// The timestamp of the oldest record not yet forwarded (first records of every
    /// partition behind; 0 when none is), read from the logs: between sessions no
    /// batch is read, and this is the figure an outage is watched by.
    pub fn oldest_unforwarded_ms(&self) -> i64 {
        let mut oldest: Option<i64> = None;
        let mut events = Vec::new();
        for cursor in &self.cursors {
            if cursor.position >= cursor.end() {
                continue;
            }
            let Ok(read) = cursor.partition.read_committed(cursor.position, 1) else {
                continue;
            };
            events.clear();
            records::decode_committed(
                &cursor.topic,
                cursor.partition.index,
                &read,
                cursor.position,
                &mut events,
            );
            if let Some(first) = events.first() {
                oldest = Some(oldest.map_or(first.timestamp, |o| o.min(first.timestamp)));
            }
        }
        oldest.unwrap_or(0)
    }

    /// Marks every log's current end as seen: called before a read, so records
    /// appended after it wake [`LocalTopics::wait_for_records`] instead of being missed.
    pub fn mark_seen(&mut self) {
        for cursor in &mut self.cursors {
            cursor.watch.borrow_and_update();
        }
    }

    /// Waits until a forwarded partition's log grew since [`LocalTopics::mark_seen`],
    /// or `max_wait`.
    pub async fn wait_for_records(&mut self, max_wait: Duration) {
        if self.cursors.is_empty() {
            tokio::time::sleep(max_wait).await;
            return;
        }
        let changed = futures::future::select_all(
            self.cursors.iter_mut().map(|c| Box::pin(c.watch.changed())),
        );
        if let Ok((Err(_), _, _)) = tokio::time::timeout(max_wait, changed).await {
            // A log is gone (topic deleted): do not spin on it.
            tokio::time::sleep(max_wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::LocalTopics;
    use crate::test_transactions::{commit_open, values, write_outcomes, COMMITTED, OPEN};

    /// An aborted local transaction never goes up, and an open one only once it commits:
    /// the uplink forwards what a read_committed consumer of the edge would see.
    #[tokio::test]
    async fn only_committed_records_are_forwarded() {
        let edge = agentlog_broker::EmbeddedBroker::start().await.unwrap();
        let broker = edge.running().broker.clone();
        let topic = broker.topics.create("tx", 1, Default::default()).unwrap();
        write_outcomes(&topic.partitions[0]);

        let mut local = LocalTopics::new(broker, None, vec!["tx".to_string()], None, Vec::new());
        local.discover(&HashMap::new());
        let (batch, undecodable) = local.read(1 << 20, &HashSet::new());
        assert!(undecodable.is_empty());
        assert_eq!(values(&batch.events), COMMITTED);
        local.advance(&batch.next);

        let (batch, _) = local.read(1 << 20, &HashSet::new());
        assert!(batch.events.is_empty(), "an open transaction was read");
        commit_open(&topic.partitions[0]);
        let (batch, _) = local.read(1 << 20, &HashSet::new());
        assert_eq!(values(&batch.events), [OPEN]);
    }

    /// Appends one stored batch holding one record `value` (a batch is the smallest
    /// unit a read returns, so a budget of one byte reads exactly one).
    fn append_one(partition: &agentlog_broker::partition::Partition, value: &str) {
        use agentlog_protocol::fixtures::{encode, record};
        let one = record(
            0,
            None,
            Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
            1,
        );
        partition
            .append(
                encode(&[one], kafka_protocol::records::Compression::None),
                None,
            )
            .unwrap();
        partition.log.flush().unwrap();
    }

    /// With `priority`, every read starts with the highest-ranked topic that has
    /// records, whichever partition the rotation would start at; below it, the rotation
    /// still takes turns, and lower ranks are read once higher ones are drained.
    #[tokio::test]
    async fn priority_topics_are_read_first() {
        let edge = agentlog_broker::EmbeddedBroker::start().await.unwrap();
        let broker = edge.running().broker.clone();
        let telemetry = broker
            .topics
            .create("telemetry", 3, Default::default())
            .unwrap();
        let alarms = broker
            .topics
            .create("alarms", 1, Default::default())
            .unwrap();
        for partition in &telemetry.partitions {
            append_one(partition, "telemetry");
        }
        for value in ["alarm-1", "alarm-2"] {
            append_one(&alarms.partitions[0], value);
        }
        let priority = vec![regex::Regex::new("^(?:alarms)$").unwrap()];
        let mut local = LocalTopics::new(
            broker,
            None,
            vec!["telemetry".into(), "alarms".into()],
            None,
            priority,
        );
        local.discover(&HashMap::new());

        // Budget 1: one stored batch per read. Four reads cover every rotation start.
        for _ in 0..4 {
            let (batch, _) = local.read(1, &HashSet::new());
            assert_eq!(values(&batch.events), ["alarm-1"]);
        }
        let (batch, _) = local.read(1, &HashSet::new());
        local.advance(&batch.next);
        let (batch, _) = local.read(1, &HashSet::new());
        assert_eq!(values(&batch.events), ["alarm-2"]);
        local.advance(&batch.next);
        // Alarms drained: the telemetry partitions take turns at going first.
        let mut firsts = HashSet::new();
        for _ in 0..3 {
            let (batch, _) = local.read(1, &HashSet::new());
            assert_eq!(values(&batch.events), ["telemetry"]);
            firsts.insert(batch.next.keys().next().unwrap().1);
        }
        assert_eq!(firsts.len(), 3, "the rotation within a rank is kept");
        // A whole budget takes alarms first, then the rest.
        append_one(&alarms.partitions[0], "alarm-3");
        let (batch, _) = local.read(1 << 20, &HashSet::new());
        assert_eq!(values(&batch.events)[0], "alarm-3");
        assert_eq!(batch.events.len(), 4);
    }
}
