//! The embedded backend: agents in the broker's process, calling the partition logs and
//! the group coordinator directly. No TCP, no copies: reads hand out `Bytes` slices of
//! the stored batches, and an emit is one encoded batch per partition appended with
//! `Partition::append`, done once `wait_durable` says so.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentlog_broker::authz::acl::CLUSTER_NAME;
use agentlog_broker::authz::{Operation, ResourceType, Session};
use agentlog_broker::groups::{CommitError as GroupCommitError, CommitOffset, CommitParams};
use agentlog_broker::partition::Partition;
use agentlog_broker::storage::ReadError as LogReadError;
use agentlog_broker::topics::{CreateTopicError, Topic};
use agentlog_broker::Broker;
use kafka_protocol::records::Compression as Codec;
use tokio::sync::watch;

use super::group::Membership;
use super::{
    Backend, CommitError, ConsumeError, EventStream, Position, ProduceError, ReadError, Sink,
    Source, StartAt, TopicError,
};
use crate::event::{Event, OutRecord};
use crate::records;

/// Most bytes read from one partition per poll.
const MAX_READ_BYTES: usize = 1 << 20;

/// Agents inside the broker's process.
#[derive(Debug, Clone)]
pub struct EmbeddedBackend {
    broker: Arc<Broker>,
    next_partition: Arc<AtomicUsize>,
    compression: Codec,
    /// The principal agents act as when the broker's authorizer is on; `None`: the
    /// broker itself (no checks).
    session: Option<Session>,
}

impl EmbeddedBackend {
    /// A backend over a running broker's shared state.
    pub fn new(broker: Arc<Broker>) -> EmbeddedBackend {
        EmbeddedBackend {
            broker,
            next_partition: Arc::new(AtomicUsize::new(0)),
            compression: Codec::None,
            session: None,
        }
    }

    /// Acts as `principal` (`User:scorer`) from now on: with the broker's authorizer
    /// on, reads, writes and group joins need the ACLs a wire client would need.
    pub fn with_principal(mut self, principal: &str) -> EmbeddedBackend {
        self.session = Some(Session::new(principal, "127.0.0.1"));
        self
    }

    /// `Err` with a readable reason when this backend's principal may not `op` the
    /// resource.
    fn authorize(&self, op: Operation, kind: ResourceType, name: &str) -> Result<(), String> {
        let Some(session) = &self.session else {
            return Ok(());
        };
        if self.broker.authorizer.authorize(session, op, kind, name) {
            return Ok(());
        }
        tracing::warn!(principal = %session.principal, operation = op.name(), resource = %format_args!("{}:{name}", kind.name()), "agent denied by ACLs");
        Err(format!(
            "{} may not {} {} `{name}`",
            session.principal,
            op.name(),
            kind.name()
        ))
    }

    /// May write `topic`, and create it if it does not exist yet.
    fn authorize_write(&self, topic: &str) -> Result<(), ProduceError> {
        self.authorize(Operation::Write, ResourceType::Topic, topic)
            .and_then(|()| {
                if self.broker.topics.get(topic).is_some() {
                    return Ok(());
                }
                self.authorize(Operation::Create, ResourceType::Cluster, CLUSTER_NAME)
                    .or_else(|_| self.authorize(Operation::Create, ResourceType::Topic, topic))
            })
            .map_err(ProduceError::NotAuthorized)
    }

    /// Emits with this codec (uncompressed by default, which keeps reads zero-copy).
    pub fn with_compression(mut self, compression: Codec) -> EmbeddedBackend {
        self.compression = compression;
        self
    }

    /// The broker this backend calls into.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Records of one partition from `from` up to its end now: a bounded look at a
    /// partition (the MCP server's `read`) without reading the partitions before it,
    /// as [`Backend::read_topic`] would.
    pub fn read_partition(
        &self,
        topic: &str,
        partition: i32,
        from: StartAt,
    ) -> Result<EventStream, ReadError> {
        self.authorize(Operation::Read, ResourceType::Topic, topic)
            .map_err(ReadError::NotAuthorized)?;
        let found = self
            .broker
            .topics
            .get(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let Some(chosen) = usize::try_from(partition)
            .ok()
            .and_then(|index| found.partitions.get(index).cloned())
        else {
            return Err(ReadError::Partition {
                topic: topic.to_string(),
                partition,
                reason: format!("the topic has {} partitions", found.partitions.len()),
            });
        };
        let (sender, stream) = EventStream::channel();
        tokio::spawn(async move {
            if let Err(error) = stream_partition(&found, &chosen, from, &sender).await {
                let _ = sender.send(Err(error)).await;
            }
        });
        Ok(stream)
    }

    fn topic_or_create(&self, name: &str) -> Result<Arc<Topic>, ProduceError> {
        if let Some(topic) = self.broker.topics.get(name) {
            return Ok(topic);
        }
        let partitions = self.broker.config.num_partitions();
        match self
            .broker
            .topics
            .create(name, partitions, Default::default())
        {
            Ok(topic) => Ok(topic),
            Err(CreateTopicError::AlreadyExists(_)) => {
                self.broker
                    .topics
                    .get(name)
                    .ok_or_else(|| ProduceError::Topic {
                        topic: name.to_string(),
                        reason: "deleted while being created".to_string(),
                    })
            }
            Err(error) => Err(ProduceError::Topic {
                topic: name.to_string(),
                reason: error.to_string(),
            }),
        }
    }

    fn partition_for(&self, key: Option<&[u8]>, count: usize) -> usize {
        match key {
            Some(key) => (murmur2(key) & 0x7fff_ffff) as usize % count,
            None => self.next_partition.fetch_add(1, Ordering::Relaxed) % count,
        }
    }
}

/// Kafka's default partitioner hash (murmur2), so keys land where Java clients put them.
pub fn murmur2(data: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    const SEED: u32 = 0x9747_b28c;
    let mut h = SEED ^ data.len() as u32;
    let chunks = data.chunks_exact(4);
    let tail = chunks.remainder();
    for chunk in chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(first) = tail.first() {
        h ^= u32::from(*first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

/// Records bound for one partition.
pub(crate) type PartitionRecords = (Arc<Partition>, Vec<OutRecord>);

/// An appended batch whose durable point is still to be awaited.
#[derive(Debug)]
pub(crate) struct Appended {
    topic: String,
    partition: Arc<agentlog_broker::partition::Partition>,
    next_offset: i64,
}

impl EmbeddedBackend {
    /// Splits `records` for `topic` (created if missing) by partition, as the keys
    /// choose (Kafka's partitioner), stamping unset timestamps.
    pub(crate) fn by_partition(
        &self,
        topic: &str,
        mut records: Vec<OutRecord>,
    ) -> Result<Vec<PartitionRecords>, ProduceError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        self.authorize_write(topic)?;
        stamp_unset_timestamps(&mut records, crate::event::now_ms());
        let found = self.topic_or_create(topic)?;
        let count = found.partitions.len().max(1);
        let mut by_partition: BTreeMap<usize, Vec<OutRecord>> = BTreeMap::new();
        if count == 1 {
            by_partition.insert(0, records);
        } else {
            for record in records {
                let index = self.partition_for(record.key.as_deref(), count);
                by_partition.entry(index).or_default().push(record);
            }
        }
        by_partition
            .into_iter()
            .map(|(index, records)| {
                let partition =
                    found
                        .partitions
                        .get(index)
                        .cloned()
                        .ok_or_else(|| ProduceError::Topic {
                            topic: topic.to_string(),
                            reason: format!("partition {index} missing"),
                        })?;
                Ok((partition, records))
            })
            .collect()
    }

    /// Appends one encoded batch through the partition, like a wire produce, so the
    /// partition's producer state stays in step with everything in its log.
    pub(crate) fn append_batch(
        topic: &str,
        partition: &Arc<Partition>,
        batch: bytes::BytesMut,
        appended: &mut Vec<Appended>,
    ) -> Result<(), ProduceError> {
        let done = partition
            .append(batch, None)
            .map_err(|e| ProduceError::Append {
                topic: topic.to_string(),
                partition: partition.index,
                reason: e.to_string(),
            })?;
        appended.push(Appended {
            topic: topic.to_string(),
            partition: partition.clone(),
            next_offset: done.last_offset + 1,
        });
        Ok(())
    }

    /// The codec emits are written with.
    pub(crate) fn compression(&self) -> Codec {
        self.compression
    }

    /// Appends `records` to `topic`, one encoded batch per partition, without waiting
    /// for durability: a batch's outputs to several partitions and topics are all
    /// appended first, so their fsyncs can be one group commit.
    fn append(
        &self,
        topic: &str,
        records: Vec<OutRecord>,
        appended: &mut Vec<Appended>,
    ) -> Result<(), ProduceError> {
        for (partition, records) in self.by_partition(topic, records)? {
            let batch = records::encode_batch(&records, self.compression)?;
            Self::append_batch(topic, &partition, batch, appended)?;
        }
        Ok(())
    }
}

/// Waits until every appended batch is durable.
pub(crate) async fn wait_durable(appended: Vec<Appended>) -> Result<(), ProduceError> {
    for done in appended {
        done.partition
            .log
            .wait_durable(done.next_offset)
            .await
            .map_err(|e| ProduceError::Append {
                topic: done.topic,
                partition: done.partition.index,
                reason: e.to_string(),
            })?;
    }
    Ok(())
}

impl Sink for EmbeddedBackend {
    async fn produce(&self, topic: &str, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        let mut appended = Vec::new();
        self.append(topic, records, &mut appended)?;
        wait_durable(appended).await
    }

    async fn produce_all(
        &self,
        outputs: Vec<(String, Vec<OutRecord>)>,
    ) -> Result<(), ProduceError> {
        let mut appended = Vec::new();
        for (topic, records) in outputs {
            self.append(&topic, records, &mut appended)?;
        }
        wait_durable(appended).await
    }

    async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
    ) -> Result<(), TopicError> {
        if self.broker.topics.get(topic).is_some() {
            return Ok(());
        }
        self.authorize_write(topic).map_err(|error| TopicError {
            topic: topic.to_string(),
            reason: error.to_string(),
        })?;
        let mut configs = BTreeMap::new();
        if compacted {
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
        }
        let partitions = if partitions > 0 {
            partitions
        } else {
            self.broker.config.num_partitions()
        };
        match self.broker.topics.create(topic, partitions, configs) {
            Ok(_) | Err(CreateTopicError::AlreadyExists(_)) => Ok(()),
            Err(error) => Err(TopicError {
                topic: topic.to_string(),
                reason: error.to_string(),
            }),
        }
    }
}

/// Gives records whose timestamp is 0 the current time, as librdkafka does for the
/// Kafka backend. Written as-is, 0 (1970) is older than any `retention.ms`: the next
/// retention pass would roll the segment and delete the records, and a consumer still
/// behind them would be reset past records it never read.
fn stamp_unset_timestamps(records: &mut [OutRecord], now: i64) {
    for record in records {
        if record.timestamp == 0 {
            record.timestamp = now;
        }
    }
}

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

impl Backend for EmbeddedBackend {
    type Source = EmbeddedSource;
    type Txn = crate::exactly_once::embedded::EmbeddedTxn;

    async fn transactional(
        &self,
        transactional_id: &str,
    ) -> Result<Self::Txn, crate::exactly_once::TxnError> {
        crate::exactly_once::embedded::EmbeddedTxn::init(self, transactional_id)
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Result<EmbeddedSource, ConsumeError> {
        self.authorize(Operation::Read, ResourceType::Group, group)
            .and_then(|()| {
                topics
                    .iter()
                    .try_for_each(|t| self.authorize(Operation::Read, ResourceType::Topic, t))
            })
            .map_err(ConsumeError::NotAuthorized)?;
        let mut source = EmbeddedSource {
            broker: self.broker.clone(),
            membership: Membership::new(self.broker.clone(), group, topics, client_id),
            assigned: Vec::new(),
        };
        source.rejoin().await?;
        Ok(source)
    }

    async fn queue(
        &self,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Result<super::queue::QueueSource, ConsumeError> {
        super::queue::QueueSource::join(self.broker.clone(), group, topics, client_id).await
    }

    async fn read_topic(&self, topic: &str, from: StartAt) -> Result<EventStream, ReadError> {
        self.authorize(Operation::Read, ResourceType::Topic, topic)
            .map_err(ReadError::NotAuthorized)?;
        let found = self
            .broker
            .topics
            .get(topic)
            .ok_or_else(|| ReadError::UnknownTopic(topic.to_string()))?;
        let (sender, stream) = EventStream::channel();
        tokio::spawn(async move {
            for partition in &found.partitions {
                if let Err(error) = stream_partition(&found, partition, from, &sender).await {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            }
        });
        Ok(stream)
    }
}

/// Sends one partition's committed records from `from` up to its last stable offset now
/// (a read_committed consumer's end). Each read
/// decodes one chunk of batches (zero-copy events over it) and waits for room in the
/// channel before reading the next, so at most a few chunks are alive at once.
async fn stream_partition(
    topic: &Topic,
    partition: &Partition,
    from: StartAt,
    sender: &tokio::sync::mpsc::Sender<Result<Event, ReadError>>,
) -> Result<(), ReadError> {
    let log = &partition.log;
    let fail = |reason: String| ReadError::Partition {
        topic: topic.name().to_string(),
        partition: partition.index,
        reason,
    };
    let name: Arc<str> = Arc::from(topic.name());
    let end = partition.last_stable_offset();
    let mut position = match from {
        StartAt::Earliest => log.log_start_offset(),
        StartAt::Offset(offset) => offset.clamp(log.log_start_offset(), end),
        StartAt::Timestamp(ts) => log
            .offset_for_timestamp(ts)
            .map_err(|e| fail(e.to_string()))?
            .map_or(end, |found| found.offset),
    };
    let mut events = Vec::new();
    while position < end {
        let committed = partition
            .read_committed(position, MAX_READ_BYTES)
            .map_err(|e| fail(e.to_string()))?;
        if committed.read.bytes.is_empty() {
            break;
        }
        let next =
            records::decode_committed(&name, partition.index, &committed, position, &mut events);
        for event in events.drain(..).take_while(|e| e.offset < end) {
            if sender.send(Ok(event)).await.is_err() {
                return Ok(()); // the stream was dropped: nobody wants the rest
            }
        }
        if next <= position {
            break;
        }
        position = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::murmur2;
    use crate::backend::{Backend, EmbeddedBackend, Sink, StartAt};
    use crate::event::OutRecord;
    use bytes::Bytes;

    /// An embedded backend acting as a principal is held to the broker's ACLs: refused
    /// with a clear error (no panic) until an ACL allows it.
    #[tokio::test]
    async fn a_principal_is_held_to_the_acls() {
        use agentlog_broker::authz::{
            AclBinding, Operation, PatternType, Permission, ResourceType,
        };
        let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
            config.set("num.partitions", "1").unwrap();
            config.set("authorizer.enable", "true").unwrap();
        })
        .await
        .unwrap();
        let shared = broker.running().broker.clone();
        let backend = EmbeddedBackend::new(shared.clone()).with_principal("User:scorer");
        let record = || OutRecord {
            value: Some(Bytes::from_static(b"v")),
            ..OutRecord::default()
        };
        let refused = backend.produce("scores", vec![record()]).await.unwrap_err();
        assert!(
            matches!(&refused, crate::backend::ProduceError::NotAuthorized(r) if r.contains("User:scorer")),
            "{refused}"
        );
        let allow = |kind, name: &str, op| AclBinding {
            resource_type: kind,
            name: name.to_string(),
            pattern: PatternType::Literal,
            principal: "User:scorer".to_string(),
            host: "*".to_string(),
            operation: op,
            permission: Permission::Allow,
        };
        shared
            .authorizer
            .create(&[allow(ResourceType::Topic, "scores", Operation::All)])
            .unwrap();
        backend.produce("scores", vec![record()]).await.unwrap();
        let Err(refused) = backend
            .subscribe("scorers", &["scores".to_string()], "t")
            .await
        else {
            panic!("joined a group without READ on it");
        };
        assert!(
            matches!(refused, crate::backend::ConsumeError::NotAuthorized(_)),
            "{refused}"
        );
        // The broker's own (unnamed) backend is not checked.
        EmbeddedBackend::new(shared)
            .produce("other", vec![record()])
            .await
            .unwrap();
    }

    /// Records produced with timestamp 0 used to be stored as written (1970): the next
    /// retention pass rolled the segment and deleted them, and a consumer behind them
    /// was reset past records it never read (seen as skipped offsets in rag_freshness).
    #[tokio::test]
    async fn unset_timestamps_are_stamped_so_retention_keeps_fresh_records() {
        let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
            config.set("num.partitions", "1").unwrap();
        })
        .await
        .unwrap();
        let backend = EmbeddedBackend::new(broker.running().broker.clone());
        let before = crate::event::now_ms();
        for i in 0..3 {
            let record = OutRecord {
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from(format!("v{i}"))),
                headers: Vec::new(),
                timestamp: 0,
            };
            backend.produce("fresh", vec![record]).await.unwrap();
        }
        // Kept: a record with an explicit timestamp, however old.
        let old = OutRecord {
            value: Some(Bytes::from_static(b"old")),
            timestamp: 5,
            ..OutRecord::default()
        };
        backend.produce("fresh", vec![old]).await.unwrap();
        agentlog_broker::lifecycle::retention_pass(backend.broker());

        let events = backend
            .read_topic("fresh", StartAt::Earliest)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![0, 1, 2, 3], "records lost to retention");
        assert!(events[..3].iter().all(|e| e.timestamp >= before));
        assert_eq!(events[3].timestamp, 5);
    }

    /// Agents read as the Kafka backend's read_committed consumers do: an aborted
    /// transaction's records never reach a handler, and an open one's only once it
    /// commits; records after the open transaction wait for it.
    #[tokio::test]
    async fn agents_see_committed_records_only() {
        use crate::backend::{Sink as _, Source};
        use crate::test_transactions::{commit_open, values, write_outcomes, COMMITTED, OPEN};

        let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
            config.set("group.initial.rebalance.delay.ms", "0").unwrap();
        })
        .await
        .unwrap();
        let backend = EmbeddedBackend::new(broker.running().broker.clone());
        backend.ensure_topic("tx", 1, false).await.unwrap();
        let topic = backend.broker().topics.get("tx").unwrap();
        write_outcomes(&topic.partitions[0]);

        let read = backend
            .read_topic("tx", StartAt::Earliest)
            .await
            .unwrap()
            .collect_all()
            .await
            .unwrap();
        assert_eq!(values(&read), COMMITTED);

        let mut source = backend
            .subscribe("readers", &["tx".to_string()], "test")
            .await
            .unwrap();
        let polled = source
            .poll(std::time::Duration::from_millis(200))
            .await
            .unwrap();
        assert_eq!(values(&polled), COMMITTED);
        let waiting = source
            .poll(std::time::Duration::from_millis(100))
            .await
            .unwrap();
        assert!(
            waiting.is_empty(),
            "an open transaction was read: {waiting:?}"
        );

        commit_open(&topic.partitions[0]);
        let polled = source
            .poll(std::time::Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(values(&polled), [OPEN]);
    }

    #[test]
    fn only_unset_timestamps_are_stamped() {
        let mut records = vec![
            OutRecord::default(),
            OutRecord {
                timestamp: -1,
                ..OutRecord::default()
            },
            OutRecord {
                timestamp: 7,
                ..OutRecord::default()
            },
        ];
        super::stamp_unset_timestamps(&mut records, 1_000);
        let stamped: Vec<i64> = records.iter().map(|r| r.timestamp).collect();
        assert_eq!(stamped, vec![1_000, -1, 7]);
    }

    #[test]
    fn murmur2_matches_kafka() {
        // Values from Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21") as i32, -973_932_308);
        assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
        assert_eq!(
            murmur2(b"a-little-bit-longer-string") as i32,
            -1_486_304_829
        );
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
            -58_897_971
        );
    }
}
