//! The embedded backend's group member: joins through the broker's group coordinator
//! like any wire client (so mixed groups work), then reads its partitions' logs in
//! place, read_committed, and commits offsets with the coordinator's own checks.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use agentlog_broker::groups::{CommitError as GroupCommitError, CommitOffset, CommitParams};
use agentlog_broker::partition::Partition;
use agentlog_broker::storage::ReadError as LogReadError;
use agentlog_broker::Broker;
use tokio::sync::watch;

use super::MAX_READ_BYTES;
use crate::backend::group::Membership;
use crate::backend::{CommitError, ConsumeError, Position, Source};
use crate::event::Event;
use crate::records;

/// A partition this member reads, with its position and high-watermark watch.
#[derive(Debug)]
struct Assigned {
    topic: Arc<str>,
    partition: Arc<Partition>,
    position: i64,
    watch: watch::Receiver<i64>,
}

/// An in-process group member reading the logs directly.
#[derive(Debug)]
pub struct EmbeddedSource {
    broker: Arc<Broker>,
    membership: Membership,
    assigned: Vec<Assigned>,
}

impl EmbeddedSource {
    /// Joins `group` as a member subscribed to `topics` and positions itself at the
    /// committed offsets of what it was assigned.
    pub(super) async fn join(
        broker: Arc<Broker>,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Result<EmbeddedSource, ConsumeError> {
        let mut source = EmbeddedSource {
            membership: Membership::new(broker.clone(), group, topics, client_id),
            broker,
            assigned: Vec::new(),
        };
        source.rejoin().await?;
        Ok(source)
    }

    async fn rejoin(&mut self) -> Result<(), ConsumeError> {
        let assignment = self.membership.join().await?;
        let group = self.membership.group.clone();
        let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in &assignment {
            by_topic.entry(topic.clone()).or_default().push(*partition);
        }
        self.wait_stable(&group, &assignment).await;
        let committed: HashMap<(String, i32), i64> = self
            .broker
            .groups
            .fetch_offsets_now(&group, Some(by_topic.into_iter().collect()))
            .map_err(|e| ConsumeError::Group {
                group: group.clone(),
                reason: e.to_string(),
            })?
            .into_iter()
            .map(|c| ((c.topic, c.partition), c.offset))
            .collect();
        self.assigned.clear();
        for (topic, partition) in assignment {
            let Some(found) = self.broker.topics.get(&topic).and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|index| t.partitions.get(index).cloned())
            }) else {
                continue;
            };
            let start = found.log.log_start_offset();
            let position = match committed.get(&(topic.clone(), partition)) {
                Some(offset) if *offset >= start => *offset,
                _ => start,
            };
            self.assigned.push(Assigned {
                topic: Arc::from(topic.as_str()),
                watch: found.log.subscribe(),
                partition: found,
                position,
            });
        }
        Ok(())
    }

    /// Waits while a transaction has offsets of these partitions staged but not yet
    /// decided (OffsetFetch's `require_stable`, KIP-447): the previous owner's
    /// exactly-once work either commits (and this member starts after it) or aborts
    /// (and this member redoes it), never both.
    async fn wait_stable(&self, group: &str, assignment: &[(String, i32)]) {
        let mut logged = false;
        while assignment.iter().any(|(topic, partition)| {
            self.broker
                .transactions
                .has_pending_offsets(group, topic, *partition)
        }) {
            if !logged {
                tracing::debug!(%group, "waiting for an open transaction's offsets to be decided");
                logged = true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The group, member id and generation this member commits as: a transaction's
    /// offsets are refused once the member was rebalanced out (KIP-447).
    pub(crate) fn member(&self) -> (&str, &str, i32) {
        (
            &self.membership.group,
            &self.membership.member_id,
            self.membership.generation,
        )
    }

    /// Marks the membership stale: the next poll rejoins.
    pub(crate) fn request_rejoin(&self) {
        self.membership.request_rejoin();
    }

    fn read_available(&mut self) -> Result<Vec<Event>, ConsumeError> {
        let mut events = Vec::new();
        for assigned in &mut self.assigned {
            let committed = match assigned
                .partition
                .read_committed(assigned.position, MAX_READ_BYTES)
            {
                Ok(committed) => committed,
                Err(LogReadError::OffsetOutOfRange {
                    log_start_offset,
                    high_watermark,
                    ..
                }) => {
                    // Like auto.offset.reset=earliest.
                    if assigned.position < log_start_offset {
                        tracing::warn!(
                            topic = %assigned.topic,
                            partition = assigned.partition.index,
                            position = assigned.position,
                            log_start_offset,
                            "records deleted before they were read (retention or DeleteRecords); skipping to the log start"
                        );
                    }
                    assigned.position = assigned.position.clamp(log_start_offset, high_watermark);
                    continue;
                }
                Err(error) => {
                    return Err(ConsumeError::Read {
                        topic: assigned.topic.to_string(),
                        partition: assigned.partition.index,
                        reason: error.to_string(),
                    })
                }
            };
            if committed.read.bytes.is_empty() {
                continue;
            }
            let next = records::decode_committed(
                &assigned.topic,
                assigned.partition.index,
                &committed,
                assigned.position,
                &mut events,
            );
            assigned.position = next
                .min(committed.last_stable_offset)
                .max(assigned.position);
        }
        Ok(events)
    }
}

impl Source for EmbeddedSource {
    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<Event>, ConsumeError> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            if self.membership.needs_rejoin() {
                self.rejoin().await?;
            }
            for assigned in &mut self.assigned {
                assigned.watch.borrow_and_update();
            }
            let events = self.read_available()?;
            if !events.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(events);
            }
            // Park until a high watermark moves, the deadline, or a heartbeat tick may
            // have asked for a rejoin.
            let slice = deadline.min(tokio::time::Instant::now() + Duration::from_millis(100));
            if self.assigned.is_empty() {
                tokio::time::sleep_until(slice).await;
            } else {
                let changed = futures::future::select_all(
                    self.assigned
                        .iter_mut()
                        .map(|a| Box::pin(a.watch.changed())),
                );
                if let Ok((Err(_), _, _)) = tokio::time::timeout_at(slice, changed).await {
                    // A partition's log is gone (topic deleted): do not spin on it.
                    tokio::time::sleep_until(slice).await;
                }
            }
        }
    }

    async fn commit(&mut self, positions: Vec<Position>) -> Result<(), CommitError> {
        if positions.is_empty() {
            return Ok(());
        }
        let params = CommitParams {
            group_id: self.membership.group.clone(),
            generation_id: self.membership.generation,
            member_id: self.membership.member_id.clone(),
            group_instance_id: None,
            offsets: positions
                .into_iter()
                .map(|p| CommitOffset {
                    topic: p.topic,
                    partition: p.partition,
                    offset: p.next_offset,
                    leader_epoch: -1,
                    metadata: None,
                })
                .collect(),
        };
        // The offsets are written to the store now; their fsync is left to the store's
        // background flusher instead of awaiting `PendingCommit::durable`. At-least-once
        // holds either way (a commit lost in a crash means redelivery, never loss), and
        // it keeps frequent in-process commits from queueing one sled flush each: many
        // concurrent flushes can exhaust sled's I/O pool and stall the coordinator.
        match self.broker.groups.begin_commit(params) {
            Ok(_pending) => Ok(()),
            Err(
                error @ (GroupCommitError::RebalanceInProgress
                | GroupCommitError::IllegalGeneration
                | GroupCommitError::UnknownMemberId
                | GroupCommitError::FencedInstanceId),
            ) => {
                self.membership.request_rejoin();
                Err(CommitError::Rebalanced(error.to_string()))
            }
            Err(error) => Err(CommitError::Failed(error.to_string())),
        }
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.assigned
            .iter()
            .map(|a| (a.topic.to_string(), a.partition.index))
            .collect()
    }

    async fn close(mut self) {
        self.membership.leave();
    }
}
