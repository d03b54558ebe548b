//! Queue delivery on the embedded backend: an agent instance as a member of a share
//! group (KIP-932) of the broker it runs in. It acquires a few records at a time from
//! any partition of its topics, under the group's acquisition locks, and acknowledges
//! each event on its own once handled, so any number of instances share any number of
//! partitions, and wire share consumers can be members of the same group.

use std::sync::Arc;
use std::time::Duration;

use agentlog_broker::share::group::{HeartbeatError, HeartbeatParams};
use agentlog_broker::share::partition::{AckBatch, AckType};
use agentlog_broker::share::{StartFrom, Want};
use agentlog_broker::Broker;
use tokio::time::Instant;

use super::ConsumeError;
use crate::event::Event;
use crate::records;

/// Log bytes one acquisition reads from a partition: an instance acquires a few records
/// at a time, which one stored batch (always returned whole) nearly always holds.
const MAX_READ_BYTES: usize = 64 << 10;

/// An acquired event and how many times it was delivered (this time included).
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    /// The record.
    pub event: Event,
    /// Deliveries so far, this one included.
    pub deliveries: i16,
}

/// One share-group member of an embedded agent instance.
#[derive(Debug)]
pub struct QueueSource {
    broker: Arc<Broker>,
    group: String,
    member: Arc<str>,
    topics: Vec<String>,
    client_id: String,
    epoch: i32,
    next_heartbeat: Instant,
    /// Where the next acquisition starts, so partitions take turns.
    turn: usize,
}

fn group_error(group: &str, reason: impl ToString) -> ConsumeError {
    ConsumeError::Group {
        group: group.to_string(),
        reason: reason.to_string(),
    }
}

impl QueueSource {
    /// Joins `group` as a new member subscribed to `topics`.
    pub async fn join(
        broker: Arc<Broker>,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Result<QueueSource, ConsumeError> {
        let mut source = QueueSource {
            broker,
            group: group.to_string(),
            member: Arc::from(uuid::Uuid::new_v4().to_string().as_str()),
            topics: topics.to_vec(),
            client_id: client_id.to_string(),
            epoch: 0,
            next_heartbeat: Instant::now(),
            turn: 0,
        };
        source.heartbeat()?;
        Ok(source)
    }

    /// Every partition of the subscribed topics (all are shared by every member).
    pub fn assignment(&self) -> Vec<(String, i32)> {
        self.topics
            .iter()
            .filter_map(|name| self.broker.topics.get(name))
            .flat_map(|t| {
                let name = t.name().to_string();
                t.partitions
                    .iter()
                    .map(|p| (name.clone(), p.index))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// `group.share.delivery.count.limit`: the last delivery a record gets.
    pub fn delivery_limit(&self) -> i16 {
        self.broker.shares.settings().delivery_limit
    }

    /// This member's id in the share group.
    pub fn member_id(&self) -> &str {
        &self.member
    }

    fn heartbeat(&mut self) -> Result<(), ConsumeError> {
        let params = |epoch: i32, topics: Option<Vec<String>>| HeartbeatParams {
            member_id: self.member.to_string(),
            member_epoch: epoch,
            topics,
            rack: None,
            client_id: self.client_id.clone(),
            client_host: "in-process".to_string(),
        };
        let shares = &self.broker.shares;
        // Joining (epoch 0) names the topics; later heartbeats leave them unchanged.
        let topics = (self.epoch == 0).then(|| self.topics.clone());
        let beat = shares.heartbeat(&self.group, params(self.epoch, topics), &self.broker.topics);
        let outcome = match beat {
            Ok(outcome) => outcome,
            // Expired (a long stall) or fenced: join again; its records were released.
            Err(HeartbeatError::UnknownMember(_) | HeartbeatError::Fenced { .. }) => shares
                .heartbeat(
                    &self.group,
                    params(0, Some(self.topics.clone())),
                    &self.broker.topics,
                )
                .map_err(|e| group_error(&self.group, e))?,
            Err(error) => return Err(group_error(&self.group, error)),
        };
        self.epoch = outcome.epoch;
        let interval = u64::try_from(shares.settings().heartbeat_interval_ms).unwrap_or(5000);
        self.next_heartbeat = Instant::now() + Duration::from_millis(interval);
        Ok(())
    }

    /// Acquires up to `max` events from the subscribed topics' partitions, waiting up
    /// to `max_wait` for some (empty when none came).
    pub async fn poll(
        &mut self,
        max: usize,
        max_wait: Duration,
    ) -> Result<Vec<QueuedEvent>, ConsumeError> {
        let deadline = Instant::now() + max_wait;
        let mut released = self.broker.shares.released();
        loop {
            if Instant::now() >= self.next_heartbeat {
                self.heartbeat()?;
            }
            released.borrow_and_update();
            let mut watchers = Vec::new();
            let events = self.acquire(max.max(1), &mut watchers)?;
            if !events.is_empty() || Instant::now() >= deadline {
                return Ok(events);
            }
            let slice = deadline
                .min(self.next_heartbeat)
                .min(Instant::now() + Duration::from_millis(250));
            if watchers.is_empty() {
                tokio::time::sleep_until(slice).await;
                continue;
            }
            let moved =
                futures::future::select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = tokio::time::timeout_at(slice, moved) => {}
                _ = released.changed() => {}
            }
        }
    }

    /// One pass over the partitions, starting at this member's turn.
    fn acquire(
        &mut self,
        max: usize,
        watchers: &mut Vec<tokio::sync::watch::Receiver<i64>>,
    ) -> Result<Vec<QueuedEvent>, ConsumeError> {
        let partitions: Vec<_> = self
            .topics
            .iter()
            .filter_map(|name| self.broker.topics.get(name))
            .flat_map(|topic| {
                let indexes: Vec<i32> = topic.partitions.iter().map(|p| p.index).collect();
                indexes.into_iter().map(move |i| (topic.clone(), i))
            })
            .collect();
        let count = partitions.len();
        let mut out = Vec::new();
        for step in 0..count {
            let Some((topic, index)) = partitions.get((self.turn + step) % count) else {
                continue;
            };
            if let Some(partition) = topic.partition(*index) {
                watchers.push(partition.log.subscribe());
            }
            if out.len() >= max {
                continue;
            }
            let acquired = self
                .broker
                .shares
                .acquire(
                    &self.group,
                    &self.member,
                    topic,
                    *index,
                    Want {
                        max_records: max - out.len(),
                        max_bytes: MAX_READ_BYTES,
                        start: StartFrom::Earliest,
                    },
                )
                .map_err(|e| ConsumeError::Read {
                    topic: topic.name().to_string(),
                    partition: *index,
                    reason: e.to_string(),
                })?;
            let Some(acquired) = acquired else {
                continue;
            };
            let name: Arc<str> = Arc::from(topic.name());
            let mut decoded = Vec::new();
            let first = acquired.ranges.first().map_or(0, |r| r.first);
            let last = acquired.ranges.last().map_or(first, |r| r.last);
            records::decode_range(&name, *index, &acquired.bytes, first..=last, &mut decoded);
            let mut gaps = Vec::new();
            for range in &acquired.ranges {
                let mut expected = range.first;
                for event in decoded
                    .iter()
                    .filter(|e| e.offset >= range.first && e.offset <= range.last)
                {
                    gaps.extend(expected..event.offset);
                    expected = event.offset + 1;
                    out.push(QueuedEvent {
                        event: event.clone(),
                        deliveries: range.deliveries,
                    });
                }
                gaps.extend(expected..=range.last);
            }
            // Offsets with no record (transaction markers, compacted away) are done.
            if !gaps.is_empty() {
                let batches: Vec<AckBatch> = gaps
                    .into_iter()
                    .map(|offset| AckBatch {
                        first: offset,
                        last: offset,
                        types: vec![AckType::Gap],
                    })
                    .collect();
                if let Err(error) = self.broker.shares.acknowledge(
                    &self.group,
                    &self.member,
                    topic.id(),
                    *index,
                    &batches,
                ) {
                    tracing::warn!(group = %self.group, %error, "cannot acknowledge record-less offsets");
                }
            }
        }
        self.turn = self.turn.wrapping_add(1);
        Ok(out)
    }

    /// Acknowledges one event: applied at once (no other member can get it), durable at
    /// the next metadata flush, which this starts without waiting for it. An instance
    /// crashing before that flush sees the event again (at least once); waiting would
    /// add a flush to every event of every instance.
    pub async fn acknowledge(&self, event: &Event, ack: AckType) -> Result<(), ConsumeError> {
        let topic =
            self.broker.topics.get(&event.topic).ok_or_else(|| {
                group_error(&self.group, format!("topic {} is gone", event.topic))
            })?;
        let batch = AckBatch {
            first: event.offset,
            last: event.offset,
            types: vec![ack],
        };
        self.broker
            .shares
            .acknowledge(
                &self.group,
                &self.member,
                topic.id(),
                event.partition,
                &[batch],
            )
            .map_err(|e| group_error(&self.group, e))?;
        let broker = self.broker.clone();
        tokio::spawn(async move {
            if let Err(error) = broker.groups.flush().await {
                tracing::warn!(%error, "cannot make a queue acknowledgement durable");
            }
        });
        Ok(())
    }

    /// Leaves the group: whatever it still holds is released at once.
    pub fn close(self) {
        let params = HeartbeatParams {
            member_id: self.member.to_string(),
            member_epoch: -1,
            topics: None,
            rack: None,
            client_id: self.client_id.clone(),
            client_host: String::new(),
        };
        if let Err(error) = self
            .broker
            .shares
            .heartbeat(&self.group, params, &self.broker.topics)
        {
            tracing::debug!(group = %self.group, %error, "leaving the share group");
        }
    }
}
