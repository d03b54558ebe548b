//! Exactly-once on the embedded backend: the instance's transactional producer is a
//! producer id and epoch from the broker's own transaction coordinator, called
//! in-process (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit and
//! EndTxn without the wire), and its records are appended as transactional batches
//! through `Partition::append`, exactly as a wire client's would be.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use agentlog_broker::transactions::{Persist, StagedOffset, TxnCheckError};
use agentlog_broker::Broker;

use super::{PendingState, Transaction, TxnError, TRANSACTION_TIMEOUT_MS};
use crate::backend::embedded::{wait_durable, Appended, EmbeddedSource};
use crate::backend::{EmbeddedBackend, Position, ProduceError, Sink, TopicError};
use crate::event::OutRecord;
use crate::records::{encode_batch_as, TxnProducer};
use crate::state::StateStore;

/// One instance's transactional producer inside the broker.
#[derive(Debug)]
pub struct EmbeddedTxn {
    backend: EmbeddedBackend,
    id: String,
    producer_id: i64,
    epoch: i16,
    open: Mutex<Open>,
    state: PendingState,
}

/// The transaction under way.
#[derive(Debug, Default)]
struct Open {
    /// Next sequence per partition, for this epoch (from 0, continued across
    /// transactions as a client's are).
    sequences: HashMap<(String, i32), i32>,
    /// Partitions added to the current transaction.
    partitions: HashSet<(String, i32)>,
    /// Batches appended in it, made durable before it commits.
    appended: Vec<Appended>,
    /// A write failed: the transaction can only abort.
    poisoned: Option<String>,
}

fn check_error(error: TxnCheckError) -> TxnError {
    match error {
        TxnCheckError::Fenced | TxnCheckError::InvalidProducerIdMapping => {
            TxnError::Fenced(error.to_string())
        }
        other => TxnError::Failed(other.to_string()),
    }
}

impl EmbeddedTxn {
    /// InitProducerId for `id`: fences an earlier producer with it, aborting what it
    /// left open.
    pub(crate) fn init(backend: &EmbeddedBackend, id: &str) -> Result<EmbeddedTxn, TxnError> {
        let broker = backend.broker();
        let (producer_id, epoch) = broker
            .transactions
            .init_producer(broker, id, TRANSACTION_TIMEOUT_MS, None)
            .map_err(|error| TxnError::Fenced(error.to_string()))?;
        Ok(EmbeddedTxn {
            backend: backend.clone(),
            id: id.to_string(),
            producer_id,
            epoch,
            open: Mutex::new(Open::default()),
            state: PendingState::default(),
        })
    }

    fn broker(&self) -> &Arc<Broker> {
        self.backend.broker()
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends every record into the transaction: the new partitions added first (one
    /// coordinator write), then one batch per partition.
    fn append_all(
        &self,
        open: &mut Open,
        outputs: Vec<(String, Vec<OutRecord>)>,
    ) -> Result<(), ProduceError> {
        let mut parts = Vec::new();
        for (topic, records) in outputs {
            for (partition, records) in self.backend.by_partition(&topic, records)? {
                parts.push((topic.clone(), partition, records));
            }
        }
        let new: Vec<(String, i32)> = parts
            .iter()
            .map(|(topic, partition, _)| (topic.clone(), partition.index))
            .filter(|key| !open.partitions.contains(key))
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        if !new.is_empty() {
            self.broker()
                .transactions
                .add_partitions(&self.id, self.producer_id, self.epoch, &new)
                .map_err(|error| ProduceError::Transaction(error.to_string()))?;
            open.partitions.extend(new);
        }
        for (topic, partition, records) in parts {
            let sequence = open
                .sequences
                .entry((topic.clone(), partition.index))
                .or_insert(0);
            let producer = TxnProducer {
                producer_id: self.producer_id,
                epoch: self.epoch,
                base_sequence: *sequence,
            };
            let batch = encode_batch_as(&records, self.backend.compression(), Some(producer))?;
            EmbeddedBackend::append_batch(&topic, &partition, batch, &mut open.appended)?;
            let count = i32::try_from(records.len()).unwrap_or(i32::MAX);
            *sequence = sequence.wrapping_add(count) & i32::MAX;
        }
        Ok(())
    }

    /// Ends the transaction on the coordinator and waits for its markers.
    async fn end(&self, commit: bool) -> Result<(), TxnError> {
        let markers = self
            .broker()
            .transactions
            .end_txn(
                self.broker(),
                &self.id,
                self.producer_id,
                self.epoch,
                commit,
            )
            .map_err(|error| match error {
                agentlog_broker::transactions::EndTxnError::Check(check) => check_error(check),
            })?;
        for (log, end) in markers {
            log.wait_durable(end)
                .await
                .map_err(|error| TxnError::Failed(error.to_string()))?;
        }
        Ok(())
    }

    /// Stages the positions as the group's offsets in the transaction.
    fn send_offsets(&self, group: &str, positions: Vec<Position>) -> Result<(), TxnError> {
        let transactions = &self.broker().transactions;
        transactions
            .add_offsets(
                &self.id,
                self.producer_id,
                self.epoch,
                group,
                Persist::Deferred,
            )
            .map_err(|error| match error {
                agentlog_broker::transactions::AddOffsetsError::Check(check) => check_error(check),
                other => TxnError::Failed(other.to_string()),
            })?;
        let offsets = positions
            .into_iter()
            .map(|p| StagedOffset {
                topic: p.topic,
                partition: p.partition,
                offset: p.next_offset,
                leader_epoch: -1,
                metadata: None,
            })
            .collect();
        let staged = transactions
            .stage_offsets(
                &self.id,
                group,
                self.producer_id,
                self.epoch,
                offsets,
                Persist::Deferred,
            )
            .map_err(|error| match error {
                agentlog_broker::transactions::TxnOffsetCommitError::Check(check) => {
                    check_error(check)
                }
                other => TxnError::Failed(other.to_string()),
            })?;
        if let Some(Err(error)) = staged.into_iter().find(Result::is_err) {
            return Err(TxnError::Failed(error.to_string()));
        }
        Ok(())
    }
}

impl Sink for EmbeddedTxn {
    async fn produce(&self, topic: &str, records: Vec<OutRecord>) -> Result<(), ProduceError> {
        self.produce_all(vec![(topic.to_string(), records)]).await
    }

    /// Appends into the transaction; the records are made durable before it commits
    /// (and visible when it does), not before this returns.
    async fn produce_all(
        &self,
        outputs: Vec<(String, Vec<OutRecord>)>,
    ) -> Result<(), ProduceError> {
        let mut open = self.lock();
        if let Some(reason) = &open.poisoned {
            return Err(ProduceError::Transaction(reason.clone()));
        }
        let result = self.append_all(&mut open, outputs);
        if let Err(error) = &result {
            // Part of the records may be in: a retry would write them twice.
            open.poisoned = Some(error.to_string());
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
        self.backend
            .ensure_topic(topic, partitions, compacted)
            .await
    }
}

impl Transaction<EmbeddedSource> for EmbeddedTxn {
    fn begin(&self) -> Result<(), TxnError> {
        let mut open = self.lock();
        open.partitions.clear();
        open.appended.clear();
        open.poisoned = None;
        self.state.discard();
        Ok(())
    }

    async fn commit(
        &self,
        source: &EmbeddedSource,
        positions: Vec<Position>,
    ) -> Result<(), TxnError> {
        let (appended, any_partition) = {
            let mut open = self.lock();
            if let Some(reason) = &open.poisoned {
                return Err(TxnError::Failed(reason.clone()));
            }
            (
                std::mem::take(&mut open.appended),
                !open.partitions.is_empty(),
            )
        };
        if positions.is_empty() && !any_partition {
            self.state.apply();
            return Ok(()); // nothing read, nothing written: no transaction to end
        }
        if !positions.is_empty() {
            let (group, member_id, generation) = source.member();
            if let Err(error) = self
                .broker()
                .groups
                .check_txn_member(group, generation, member_id, None)
            {
                source.request_rejoin();
                return Err(TxnError::Rebalanced(error.to_string()));
            }
            let group = group.to_string();
            self.send_offsets(&group, positions)?;
        }
        // Every record durable before the outcome is decided, as acks before EndTxn.
        wait_durable(appended)
            .await
            .map_err(|error| TxnError::Failed(error.to_string()))?;
        self.end(true).await?;
        self.state.apply();
        Ok(())
    }

    async fn abort(&self) {
        self.lock().appended.clear();
        self.state.discard();
        // Refused when nothing was begun on the coordinator: nothing to abort then.
        if let Err(error) = self.end(false).await {
            tracing::debug!(id = %self.id, %error, "abort refused; re-initialising aborts instead");
        }
    }

    async fn close(self) {}
}
