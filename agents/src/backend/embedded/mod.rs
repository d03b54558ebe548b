//! The embedded backend: agents in the broker's process, calling the partition logs and
//! the group coordinator directly. No TCP, no copies: reads hand out `Bytes` slices of
//! the stored batches, and an emit is one encoded batch per partition appended with
//! `Partition::append`, done once `wait_durable` says so.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use agentlog_broker::authz::acl::CLUSTER_NAME;
use agentlog_broker::authz::{Operation, ResourceType, Session};
use agentlog_broker::partition::Partition;
use agentlog_broker::topics::{CreateTopicError, Topic};
use agentlog_broker::Broker;
use kafka_protocol::records::Compression as Codec;

use super::{
    Backend, ConsumeError, EventStream, ProduceError, ReadError, Sink, StartAt, TopicError,
};
use crate::event::{Event, OutRecord};
use crate::records;

mod source;

pub use source::EmbeddedSource;

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
        EmbeddedSource::join(self.broker.clone(), group, topics, client_id).await
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
mod tests;
