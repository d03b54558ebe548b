//! Exactly-once on the Kafka backend: one transactional librdkafka producer per
//! instance (`transactional.id` stable across restarts, `init_transactions` fencing
//! the previous incarnation), the batch's input offsets sent with
//! `send_offsets_to_transaction` and the consumer's group metadata (generation-aware,
//! KIP-447), as Kafka Streams' EOS v2 does. The blocking librdkafka calls run off the
//! async workers through the uplink's [`blocking`], which drives the same calls for
//! its remote transactions.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::{PendingState, Transaction, TxnError, TRANSACTION_TIMEOUT_MS};
use crate::backend::kafka::{send_all, KafkaSource};
use crate::backend::{KafkaBackend, Position, ProduceError, Sink, TopicError};
use crate::event::OutRecord;
use crate::state::StateStore;
use crate::uplink::remote::{blocking, RemoteError};

/// How long a transactional call (init, send offsets, commit, abort) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// One instance's transactional producer on the cluster.
pub struct KafkaTxn {
    producer: Arc<FutureProducer>,
    backend: KafkaBackend,
    /// A send failed: the transaction can only abort.
    poisoned: AtomicBool,
    state: PendingState,
}

impl std::fmt::Debug for KafkaTxn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaTxn").finish_non_exhaustive()
    }
}

/// A librdkafka transactional error: fencing needs a new producer, the rest an abort.
fn txn_error(error: RemoteError) -> TxnError {
    let fatal = matches!(
        &error,
        RemoteError::Kafka { source: KafkaError::Transaction(e), .. } if e.is_fatal()
    );
    if fatal {
        TxnError::Fenced(error.to_string())
    } else {
        TxnError::Failed(error.to_string())
    }
}

impl KafkaTxn {
    /// Creates the producer `id` and runs `init_transactions` (fencing older ones).
    pub(crate) async fn init(backend: &KafkaBackend, id: &str) -> Result<KafkaTxn, TxnError> {
        let config = backend.config();
        let timeout = TRANSACTION_TIMEOUT_MS.to_string();
        let producer: FutureProducer = config
            .client(&[
                ("transactional.id", id),
                ("transaction.timeout.ms", timeout.as_str()),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("linger.ms", "1"),
            ])
            .create()
            .map_err(|error| TxnError::Failed(error.to_string()))?;
        let producer = Arc::new(producer);
        let initialising = producer.clone();
        blocking("initialising transactions", move || {
            initialising.init_transactions(CALL_TIMEOUT)
        })
        .await
        .map_err(txn_error)?;
        Ok(KafkaTxn {
            producer,
            backend: backend.clone(),
            poisoned: AtomicBool::new(false),
            state: PendingState::default(),
        })
    }
}

impl Sink for KafkaTxn {
    async fn produce(&self, topic: &str, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        self.produce_all(vec![(topic.to_string(), records)]).await
    }

    async fn produce_all(
        &self,
        outputs: Vec<(String, Vec<OutRecord>)>,
    ) -> Result<(), ProduceError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(ProduceError::Transaction(
                "an earlier write of the transaction failed".to_string(),
            ));
        }
        let result = send_all(&self.producer, outputs).await;
        if result.is_err() {
            // Some records may be in: a retry inside this transaction would duplicate.
            self.poisoned.store(true, Ordering::Release);
        }
        result
    }

    fn apply_state(&self, store: &Arc<StateStore>, writes: &[(String, Option<serde_json::Value>)]) {
        self.state.stage(store, writes);
    }

    async fn ensure_topic(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
    ) -> Result<(), TopicError> {
        // Topic creation is not transactional: the backend's admin client does it.
        self.backend
            .ensure_topic(topic, partitions, compacted)
            .await
    }
}

impl Transaction<KafkaSource> for KafkaTxn {
    fn begin(&self) -> Result<(), TxnError> {
        self.poisoned.store(false, Ordering::Release);
        self.state.discard();
        self.producer
            .begin_transaction()
            .map_err(|error| TxnError::Fenced(error.to_string()))
    }

    async fn commit(&self, source: &KafkaSource, positions: Vec<Position>) -> Result<(), TxnError> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(TxnError::Failed(
                "a write of the transaction failed".to_string(),
            ));
        }
        if !positions.is_empty() {
            let metadata = source
                .group_metadata()
                .ok_or_else(|| TxnError::Rebalanced("no group membership".to_string()))?;
            let mut offsets = TopicPartitionList::new();
            for p in &positions {
                offsets
                    .add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
                    .map_err(|error| TxnError::Failed(error.to_string()))?;
            }
            let producer = self.producer.clone();
            blocking("sending offsets to the transaction", move || {
                producer.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)
            })
            .await
            .map_err(txn_error)?;
        }
        let producer = self.producer.clone();
        blocking("committing the transaction", move || {
            producer.commit_transaction(CALL_TIMEOUT)
        })
        .await
        .map_err(txn_error)?;
        self.state.apply();
        Ok(())
    }

    async fn abort(&self) {
        self.state.discard();
        let producer = self.producer.clone();
        if let Err(error) = blocking("aborting the transaction", move || {
            producer.abort_transaction(CALL_TIMEOUT)
        })
        .await
        {
            tracing::debug!(%error, "abort failed; the next init_transactions aborts instead");
        }
    }

    async fn close(self) {
        let producer = self.producer;
        // Dropping waits for librdkafka's queue: not on an async worker.
        let _ = tokio::task::spawn_blocking(move || {
            let _ = producer.flush(Duration::from_secs(1));
            drop(producer);
        })
        .await;
    }
}
