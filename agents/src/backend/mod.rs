//! The `Source`/`Sink` seam: agent code and the runtime see only these traits, so the
//! same agent runs in-process on the broker ([`embedded`]) or on any Kafka cluster
//! ([`kafka`]).

pub mod assignor;
pub mod embedded;
pub(crate) mod follow;
mod group;
pub mod kafka;
pub mod queue;

use std::future::Future;
use std::time::Duration;

use thiserror::Error;

use crate::event::{Event, OutRecord};

pub use embedded::EmbeddedBackend;
pub use kafka::{KafkaBackend, KafkaConfig};

/// Why a backend other than the embedded one cannot run `delivery = "queue"` agents.
pub const QUEUE_NEEDS_EMBEDDED: &str = "delivery = \"queue\" needs the embedded backend: \
     librdkafka 2.12 (the kafka backend's client) has no share-group consumer";

/// Where a replay or a read of a whole topic starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first offset still in each partition.
    Earliest,
    /// This offset in every partition (clamped to what the partition holds).
    Offset(i64),
    /// The first record at or after this timestamp (ms) in each partition.
    Timestamp(i64),
}

/// A consumed position to commit: the next offset to read in a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub next_offset: i64,
}

/// Writing records failed; none of them may be treated as written.
#[derive(Debug, Error)]
pub enum ProduceError {
    /// The backend's principal may not write (or create) the topic.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The topic does not exist and could not be created.
    #[error("topic `{topic}` is unavailable: {reason}")]
    Topic {
        /// The topic.
        topic: String,
        /// Why.
        reason: String,
    },
    /// The records could not be encoded as a batch.
    #[error(transparent)]
    Encode(#[from] crate::records::EncodeError),
    /// The partition log refused the batch or could not make it durable.
    #[error("append to {topic}-{partition} failed: {reason}")]
    Append {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// The Kafka client reported a delivery failure.
    #[error("kafka delivery failed: {0}")]
    Kafka(String),
    /// The transaction the records were written in can no longer commit (fenced, or an
    /// earlier write of it failed): it will be aborted.
    #[error("transaction refused the write: {0}")]
    Transaction(String),
}

/// Creating a topic failed.
#[derive(Debug, Error)]
#[error("cannot create topic `{topic}`: {reason}")]
pub struct TopicError {
    /// The topic.
    pub topic: String,
    /// Why.
    pub reason: String,
}

/// Joining a group or reading records failed.
#[derive(Debug, Error)]
pub enum ConsumeError {
    /// The backend's principal may not read the group or a topic.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// The group coordinator refused the member.
    #[error("group `{group}`: {reason}")]
    Group {
        /// The group.
        group: String,
        /// Why.
        reason: String,
    },
    /// A partition could not be read.
    #[error("reading {topic}-{partition}: {reason}")]
    Read {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// The Kafka client failed.
    #[error("kafka consumer: {0}")]
    Kafka(String),
    /// The backend is shutting down.
    #[error("backend closed")]
    Closed,
}

/// Committing consumed positions failed; the records will be delivered again.
#[derive(Debug, Error)]
pub enum CommitError {
    /// The group rebalanced since the records were read; the member rejoins.
    #[error("group rebalanced before the commit: {0}")]
    Rebalanced(String),
    /// The commit could not be stored.
    #[error("commit failed: {0}")]
    Failed(String),
}

/// Reading a topic range (state restore, replay) failed.
#[derive(Debug, Error)]
pub enum ReadError {
    /// The backend's principal may not read the topic.
    #[error("not authorized: {0}")]
    NotAuthorized(String),
    /// No such topic.
    #[error("topic `{0}` does not exist")]
    UnknownTopic(String),
    /// A partition could not be read.
    #[error("reading {topic}-{partition}: {reason}")]
    Partition {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
}

/// Where agents' records go: one call writes a batch and resolves once it is durable
/// (embedded: fsynced per the flush policy; Kafka: acknowledged by the cluster).
pub trait Sink: Send + Sync {
    /// Writes records to `topic` (keys choose partitions); resolves when all are durable.
    fn produce(
        &self,
        topic: &str,
        records: Vec<OutRecord>,
    ) -> impl Future<Output = Result<(), ProduceError>> + Send;

    /// Writes records to several topics at once (a batch's emits, decisions and state
    /// writes); resolves when all are durable. Backends that can append everything
    /// before waiting for durability override the default, which writes topic after
    /// topic.
    fn produce_all(
        &self,
        outputs: Vec<(String, Vec<OutRecord>)>,
    ) -> impl Future<Output = Result<(), ProduceError>> + Send {
        async move {
            for (topic, records) in outputs {
                self.produce(&topic, records).await?;
            }
            Ok(())
        }
    }

    /// Applies an agent's state writes once the records carrying them are durable: at
    /// once for a plain sink; when its transaction commits for a transactional one
    /// (an aborted transaction's state is never seen).
    fn apply_state(
        &self,
        store: &std::sync::Arc<crate::state::StateStore>,
        writes: &[(String, Option<serde_json::Value>)],
    ) {
        store.apply(writes);
    }

    /// Creates `topic` if it does not exist (compacted when asked), so state and audit
    /// topics have the right cleanup policy from their first record.
    fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
    ) -> impl Future<Output = Result<(), TopicError>> + Send;
}

/// One group member's stream of records.
pub trait Source: Send {
    /// The next records of the assigned partitions, waiting up to `max_wait` for some
    /// (empty when none arrived). Rejoins the group first when a rebalance is under way.
    fn poll(
        &mut self,
        max_wait: Duration,
    ) -> impl Future<Output = Result<Vec<Event>, ConsumeError>> + Send;

    /// Commits positions for the group (after the records before them were handled).
    fn commit(
        &mut self,
        positions: Vec<Position>,
    ) -> impl Future<Output = Result<(), CommitError>> + Send;

    /// The partitions currently assigned to this member.
    fn assignment(&self) -> Vec<(String, i32)>;

    /// Leaves the group so the others rebalance at once instead of after a timeout.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// A backend: a [`Sink`] that can also open group-managed [`Source`]s and read ranges.
pub trait Backend: Sink + Clone + Send + Sync + 'static {
    /// This backend's group member.
    type Source: Source + 'static;

    /// This backend's transactional producer, for exactly-once agents.
    type Txn: crate::exactly_once::Transaction<Self::Source>;

    /// Initialises the transactional producer `transactional_id`: a previous producer
    /// with the id is fenced and its open transaction aborted.
    fn transactional(
        &self,
        transactional_id: &str,
    ) -> impl Future<Output = Result<Self::Txn, crate::exactly_once::TxnError>> + Send;

    /// Joins `group` as a consumer-protocol member subscribed to `topics`.
    fn subscribe(
        &self,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> impl Future<Output = Result<Self::Source, ConsumeError>> + Send;

    /// Joins `group` as a share-group (queue) member on `topics`: records are acquired
    /// and acknowledged one by one (see [`queue`]). Only the embedded backend has a
    /// share consumer; the others refuse.
    fn queue(
        &self,
        group: &str,
        topics: &[String],
        client_id: &str,
    ) -> impl Future<Output = Result<queue::QueueSource, ConsumeError>> + Send {
        let _ = (topics, client_id);
        let refused = ConsumeError::Group {
            group: group.to_string(),
            reason: QUEUE_NEEDS_EMBEDDED.to_string(),
        };
        async move { Err(refused) }
    }

    /// Every record of `topic` from `from` up to its end now, outside any group (state
    /// restore, replay), streamed: records come partition by partition, in offset order,
    /// as they are read, so replaying a long log holds a bounded number of them.
    fn read_topic(
        &self,
        topic: &str,
        from: StartAt,
    ) -> impl Future<Output = Result<EventStream, ReadError>> + Send;
}

/// Records read by [`Backend::read_topic`], as they arrive.
///
/// A bounded channel from the reading task: a consumer that processes slowly (a replay
/// running an agent on each record) holds the reader back instead of letting it buffer
/// the whole range. Dropping the stream stops the reader.
#[derive(Debug)]
pub struct EventStream {
    events: tokio::sync::mpsc::Receiver<Result<Event, ReadError>>,
}

/// Records a reader may have read ahead of the consumer of its stream.
const READ_AHEAD: usize = 1024;

impl EventStream {
    /// A stream, and the sending side its reading task fills.
    pub(crate) fn channel() -> (
        tokio::sync::mpsc::Sender<Result<Event, ReadError>>,
        EventStream,
    ) {
        let (sender, events) = tokio::sync::mpsc::channel(READ_AHEAD);
        (sender, EventStream { events })
    }

    /// The next record, `None` at the end of the range; an error ends the stream.
    pub async fn next(&mut self) -> Option<Result<Event, ReadError>> {
        self.events.recv().await
    }

    /// Every remaining record, for ranges known to be small (tests, tools).
    pub async fn collect_all(mut self) -> Result<Vec<Event>, ReadError> {
        let mut all = Vec::new();
        while let Some(event) = self.next().await {
            all.push(event?);
        }
        Ok(all)
    }
}
