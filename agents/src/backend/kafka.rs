//! The Kafka backend: the same agents on any Kafka-protocol cluster (Kafka, Redpanda, a
//! separate agentlog) through librdkafka. A `StreamConsumer` per group member with
//! manual commits after handling, one shared `FutureProducer` (acks=all) for emits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::try_join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header as KafkaHeader, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::{
    Backend, CommitError, ConsumeError, EventStream, Position, ProduceError, ReadError, Sink,
    Source, StartAt, TopicError,
};
use crate::event::{Event, Header, OutRecord};

/// Most records one poll gathers.
const MAX_POLL_RECORDS: usize = 500;
/// How long a read of a topic range (replay, state restore) may go without receiving a
/// record before it gives up: the range's end is known, so silence means trouble.
const READ_TOPIC_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the cluster is and how to talk to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka properties (security, timeouts, ...), applied to every client
    /// after the backend's defaults so they can override them.
    pub properties: BTreeMap<String, String>,
}

impl KafkaConfig {
    pub(crate) fn client(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }
}

/// Agents on an external Kafka cluster.
#[derive(Clone)]
pub struct KafkaBackend {
    config: KafkaConfig,
    producer: FutureProducer,
    admin: Arc<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl KafkaBackend {
    /// Creates the shared producer and admin client (they connect lazily).
    pub fn new(config: KafkaConfig) -> Result<KafkaBackend, ProduceError> {
        let producer: FutureProducer = config
            .client(&[
                ("acks", "all"),
                ("linger.ms", "1"),
                ("message.timeout.ms", "30000"),
            ])
            .create()
            .map_err(|e| ProduceError::Kafka(e.to_string()))?;
        let admin = config
            .client(&[])
            .create()
            .map_err(|e| ProduceError::Kafka(e.to_string()))?;
        Ok(KafkaBackend {
            config,
            producer,
            admin: Arc::new(admin),
        })
    }

    /// Where the cluster is, for the clients the backend's users make (transactional
    /// producers of exactly-once agents).
    pub(crate) fn config(&self) -> &KafkaConfig {
        &self.config
    }
}

fn to_event(message: &impl Message, topic: &Arc<str>) -> Event {
    let headers = message
        .headers()
        .map(|h| {
            h.iter()
                .map(|header| Header {
                    name: Bytes::copy_from_slice(header.key.as_bytes()),
                    value: header.value.map(Bytes::copy_from_slice),
                })
                .collect()
        })
        .unwrap_or_default();
    Event {
        topic: topic.clone(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis().unwrap_or(-1),
        key: message.key().map(Bytes::copy_from_slice),
        value: message.payload().map(Bytes::copy_from_slice),
        headers,
        undecodable: None,
    }
}

/// Sends `records` to `topic` through `producer`; resolves when all are acknowledged.
/// Shared by the backend's producer and the exactly-once instances' transactional ones.
pub(crate) async fn send_records(
    producer: &FutureProducer,
    topic: &str,
    records: Vec<OutRecord>,
) -> Result<(), ProduceError> {
    {
        let sends = records.iter().map(|record| {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                headers = headers.insert(KafkaHeader {
                    key: name,
                    value: Some(value.as_ref()),
                });
            }
            let mut out: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .headers(headers)
                .timestamp(record.timestamp);
            if let Some(key) = &record.key {
                out = out.key(key.as_ref());
            }
            if let Some(value) = &record.value {
                out = out.payload(value.as_ref());
            }
            let send = producer.send(out, Duration::from_secs(30));
            async move {
                send.await
                    .map(|_| ())
                    .map_err(|(error, _)| ProduceError::Kafka(error.to_string()))
            }
        });
        try_join_all(sends).await.map(|_| ())
    }
}

/// Sends several topics' records at once: one wait for all acknowledgements.
pub(crate) async fn send_all(
    producer: &FutureProducer,
    outputs: Vec<(String, Vec<OutRecord>)>,
) -> Result<(), ProduceError> {
    let sends = outputs
        .into_iter()
        .map(|(topic, records)| async move { send_records(producer, &topic, records).await });
    try_join_all(sends).await.map(|_| ())
}

impl Sink for KafkaBackend {
    async fn produce(&self, topic: &str, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        send_records(&self.producer, topic, records).await
    }

    async fn produce_all(
        &self,
        outputs: Vec<(String, Vec<OutRecord>)>,
    ) -> Result<(), ProduceError> {
        send_all(&self.producer, outputs).await
    }

    async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
    ) -> Result<(), TopicError> {
        let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        if compacted {
            new = new.set("cleanup.policy", "compact");
        }
        let results = self
            .admin
            .create_topics([&new], &AdminOptions::new())
            .await
            .map_err(|e| TopicError {
                topic: topic.to_string(),
                reason: e.to_string(),
            })?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(TopicError {
                        topic: topic.to_string(),
                        reason: code.to_string(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// A group member on the cluster.
pub struct KafkaSource {
    consumer: Arc<StreamConsumer>,
    topics: BTreeMap<String, Arc<str>>,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    fn topic(&mut self, name: &str) -> Arc<str> {
        self.topics
            .entry(name.to_string())
            .or_insert_with(|| Arc::from(name))
            .clone()
    }
}

impl KafkaSource {
    /// The consumer's group metadata (member id, generation): what a transaction's
    /// offsets are checked against, so a member rebalanced out cannot commit them.
    pub(crate) fn group_metadata(&self) -> Option<rdkafka::consumer::ConsumerGroupMetadata> {
        self.consumer.group_metadata()
    }
}

impl Source for KafkaSource {
    async fn poll(&mut self, max_wait: Duration) -> Result<Vec<Event>, ConsumeError> {
        let consumer = self.consumer.clone();
        let mut events = Vec::new();
        let first = match tokio::time::timeout(max_wait, consumer.recv()).await {
            Err(_) => return Ok(events),
            Ok(result) => result.map_err(|e| ConsumeError::Kafka(e.to_string()))?,
        };
        let topic = self.topic(first.topic());
        events.push(to_event(&first, &topic));
        drop(first);
        // Then whatever librdkafka has already fetched, without waiting for more:
        // records of one fetch response are queued together, and a wait here would
        // be added to every request/reply hop (MCP, A2A, tools) on this backend.
        while events.len() < MAX_POLL_RECORDS {
            match tokio::time::timeout(Duration::ZERO, consumer.recv()).await {
                Ok(Ok(message)) => {
                    let topic = self.topic(message.topic());
                    events.push(to_event(&message, &topic));
                }
                Ok(Err(error)) => return Err(ConsumeError::Kafka(error.to_string())),
                Err(_) => break,
            }
        }
        Ok(events)
    }

    async fn commit(&mut self, positions: Vec<Position>) -> Result<(), CommitError> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for p in &positions {
            list.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
                .map_err(|e| CommitError::Failed(e.to_string()))?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|e| CommitError::Failed(e.to_string()))?
            .map_err(|e| match e.rdkafka_error_code() {
                Some(
                    RDKafkaErrorCode::RebalanceInProgress
                    | RDKafkaErrorCode::IllegalGeneration
                    | RDKafkaErrorCode::UnknownMemberId
                    | RDKafkaErrorCode::AssignmentLost,
                ) => CommitError::Rebalanced(e.to_string()),
                _ => CommitError::Failed(e.to_string()),
            })
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.consumer
            .assignment()
            .map(|list| {
                list.elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn close(self) {
        let consumer = self.consumer;
        // Unsubscribing and dropping block while librdkafka leaves the group.
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
    }
}

impl Backend for KafkaBackend {
    type Source = KafkaSource;
    type Txn = crate::exactly_once::kafka::KafkaTxn;

    async fn transactional(
        &self,
        transactional_id: &str,
    ) -> Result<Self::Txn, crate::exactly_once::TxnError> {
        crate::exactly_once::kafka::KafkaTxn::init(self, transactional_id).await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> Result<KafkaSource, ConsumeError> {
        let consumer: StreamConsumer = self
            .config
            .client(&[
                ("group.id", group),
                ("client.id", client_id),
                ("enable.auto.commit", "false"),
                ("auto.offset.reset", "earliest"),
                ("session.timeout.ms", "6000"),
                ("heartbeat.interval.ms", "500"),
                ("topic.metadata.refresh.interval.ms", "1000"),
            ])
            .create()
            .map_err(|e| ConsumeError::Kafka(e.to_string()))?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&names)
            .map_err(|e| ConsumeError::Kafka(e.to_string()))?;
        Ok(KafkaSource {
            consumer: Arc::new(consumer),
            topics: BTreeMap::new(),
        })
    }

    async fn read_topic(&self, topic: &str, from: StartAt) -> Result<EventStream, ReadError> {
        let config = self.config.clone();
        let topic = topic.to_string();
        let (sender, stream) = EventStream::channel();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = read_topic_blocking(&config, &topic, from, &sender) {
                let _ = sender.blocking_send(Err(error));
            }
        });
        Ok(stream)
    }
}

/// The next offset `consumer` will fetch from `topic`/`partition`, once it has one.
fn position_of(consumer: &BaseConsumer, topic: &str, partition: i32) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, partition)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}

/// Streams `topic` from `from` to its end now into `sender`, one partition at a time
/// (each assigned alone, so records arrive partition by partition without being
/// regrouped in memory). Stops early, without error, if the stream is dropped.
fn read_topic_blocking(
    config: &KafkaConfig,
    topic: &str,
    from: StartAt,
    sender: &tokio::sync::mpsc::Sender<Result<Event, ReadError>>,
) -> Result<(), ReadError> {
    let kafka = |e: rdkafka::error::KafkaError| ReadError::Kafka(e.to_string());
    let consumer: BaseConsumer = config
        .client(&[
            ("group.id", "agentlog-reader"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ])
        .create()
        .map_err(kafka)?;
    let timeout = Duration::from_secs(10);
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(ReadError::UnknownTopic(topic.to_string()));
    }
    let mut ends = BTreeMap::new();
    let mut starts = BTreeMap::new();
    for &partition in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, timeout)
            .map_err(kafka)?;
        ends.insert(partition, high);
        starts.insert(
            partition,
            match from {
                StartAt::Earliest => low,
                StartAt::Offset(offset) => offset.clamp(low, high),
                StartAt::Timestamp(_) => high,
            },
        );
    }
    if let StartAt::Timestamp(ts) = from {
        let mut query = TopicPartitionList::new();
        for &partition in &partitions {
            query
                .add_partition_offset(topic, partition, Offset::Offset(ts))
                .map_err(kafka)?;
        }
        let found = consumer.offsets_for_times(query, timeout).map_err(kafka)?;
        for element in found.elements() {
            if let Offset::Offset(offset) = element.offset() {
                starts.insert(element.partition(), offset);
            }
        }
    }
    let name: Arc<str> = Arc::from(topic);
    for &partition in &partitions {
        let start = starts.get(&partition).copied().unwrap_or(0);
        let end = ends.get(&partition).copied().unwrap_or(0);
        if start >= end {
            continue;
        }
        let mut assignment = TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, Offset::Offset(start))
            .map_err(kafka)?;
        consumer.assign(&assignment).map_err(kafka)?;
        let mut idle_deadline = std::time::Instant::now() + READ_TOPIC_IDLE_TIMEOUT;
        loop {
            if std::time::Instant::now() >= idle_deadline {
                return Err(ReadError::Partition {
                    topic: topic.to_string(),
                    partition,
                    reason: format!(
                        "no record for {}s before offset {end}",
                        READ_TOPIC_IDLE_TIMEOUT.as_secs()
                    ),
                });
            }
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                // The range may end in records a consumer never sees (transaction
                // markers): the client's position then passes the end without a message.
                if position_of(&consumer, topic, partition).is_some_and(|at| at >= end) {
                    break;
                }
                continue;
            };
            let message = result.map_err(kafka)?;
            idle_deadline = std::time::Instant::now() + READ_TOPIC_IDLE_TIMEOUT;
            if message.offset() < end
                && sender.blocking_send(Ok(to_event(&message, &name))).is_err()
            {
                return Ok(()); // the stream was dropped: nobody wants the rest
            }
            if message.offset() + 1 >= end {
                break;
            }
        }
    }
    Ok(())
}
