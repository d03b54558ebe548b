//! The transaction coordinator: transactional ids, their producer ids and epochs, and
//! the two-phase completion that makes a transaction's writes (and its consumed
//! offsets) visible all at once or not at all.
//!
//! State machine per transactional id (Kafka's `TransactionState`):
//!
//! ```text
//!  Empty ──AddPartitions/AddOffsets──► Ongoing ──EndTxn(commit)──► PrepareCommit ──markers──► CompleteCommit
//!    ▲                                   │  └────EndTxn(abort)/timeout/re-init──► PrepareAbort ──markers──► CompleteAbort
//!    └──────────────── InitProducerId ◄──┴──────────── (Complete* start the next transaction like Empty)
//! ```
//!
//! Every transition is written to sled (tree `transactions`, one JSON value per id) and
//! flushed before it is acted on: `Prepare*` is durable before the first marker is
//! written, so a crash between markers is finished the same way after restart
//! ([`TransactionCoordinator::recover`]). Markers go to every partition of the
//! transaction through [`crate::partition::Partition::append_marker`]; offsets staged by
//! TxnOffsetCommit are kept in the same record and applied to the group's committed
//! offsets when the commit completes (dropped on abort).
//!
//! Recovery at start: `Prepare*` are completed at once; for `Complete*` (and `Empty`
//! after an abort on re-init) the markers are written again wherever a partition still
//! shows the producer's transaction open (the marker was appended but lost before
//! fsync); `Ongoing` transactions are left to their timeout, measured from when they
//! began, so a producer that survives the broker restart may still commit, and one that
//! did not is aborted at most `transaction.timeout.ms` after it began. The timeout task
//! ([`TransactionCoordinator::start_background`]) aborts hung transactions with a bumped
//! epoch, fencing the producer that left them, as Kafka does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::broker::Broker;
use crate::groups::{CommittedOffset, MAX_OFFSET_METADATA_BYTES};
use crate::storage::PartitionLog;

/// Markers just appended: the log and the offset after the marker. Under the batch
/// flush policy nothing becomes visible until someone waits for it to be durable.
pub type WrittenMarkers = Vec<(Arc<PartitionLog>, i64)>;

/// Makes appended markers durable (and so visible) in the background, for paths that
/// answer nobody (timeouts, recovery, re-init).
fn spawn_durable(markers: WrittenMarkers) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return; // no runtime (a synchronous test): the next append or flush covers them
    };
    for (log, end) in markers {
        runtime.spawn(async move {
            if let Err(error) = log.wait_durable(end).await {
                tracing::error!(%error, "flushing a transaction marker failed");
            }
        });
    }
}

/// The coordinator epoch written into markers: one broker, one coordinator, forever.
pub const COORDINATOR_EPOCH: i32 = 0;

/// Where a transaction is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions or offsets were added; records may be arriving.
    Ongoing,
    /// EndTxn(commit) accepted; commit markers are being written.
    PrepareCommit,
    /// Abort decided; abort markers are being written.
    PrepareAbort,
    /// The last transaction committed.
    CompleteCommit,
    /// The last transaction aborted.
    CompleteAbort,
}

impl TxnState {
    /// The name Kafka's admin APIs use.
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
        }
    }

    fn is_preparing(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }
}

/// An offset staged by TxnOffsetCommit, applied when its transaction commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset to consume.
    pub offset: i64,
    /// Leader epoch of the last consumed record, -1 if unknown.
    pub leader_epoch: i32,
    /// The client's free text.
    pub metadata: Option<String>,
}

/// Everything the coordinator keeps about one transactional id (persisted as is).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// Its current producer id.
    pub producer_id: i64,
    /// Its current epoch; older epochs are fenced.
    pub epoch: i16,
    /// Where the current (or last) transaction is.
    pub state: TxnState,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// Partitions of the current (or last, kept for marker recovery) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    /// Groups whose offsets the transaction commits (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// Offsets staged by TxnOffsetCommit, per group.
    pub pending_offsets: BTreeMap<String, Vec<StagedOffset>>,
    /// When the current transaction began (ms since the epoch), -1 if none.
    pub start_ms: i64,
    /// When the record last changed.
    pub last_update_ms: i64,
    /// How the last completed transaction ended (true: committed), for marker recovery.
    #[serde(default)]
    pub last_committed: bool,
}

/// Why a transactional request is refused; shared by every operation's own enum.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnCheckError {
    /// INVALID_PRODUCER_ID_MAPPING: the id is unknown or belongs to another producer id.
    #[error("producer id does not match the transactional id")]
    InvalidProducerIdMapping,
    /// PRODUCER_FENCED (INVALID_PRODUCER_EPOCH for older versions): a newer epoch exists.
    #[error("producer fenced by a newer epoch")]
    Fenced,
    /// CONCURRENT_TRANSACTIONS: markers of the previous transaction are being written.
    #[error("the previous transaction is still completing")]
    Concurrent,
    /// INVALID_TXN_STATE: e.g. EndTxn without a transaction.
    #[error("invalid transaction state {0}")]
    InvalidState(&'static str),
    /// COORDINATOR_NOT_AVAILABLE: the store or a log failed; the client retries.
    #[error("transaction coordinator storage failed: {0}")]
    Storage(String),
}

impl TxnCheckError {
    /// The wire code; `fenced_as_epoch` for versions before KIP-588's PRODUCER_FENCED.
    pub fn code(&self, fenced_as_epoch: bool) -> ResponseError {
        match self {
            TxnCheckError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
            TxnCheckError::Fenced if fenced_as_epoch => ResponseError::InvalidProducerEpoch,
            TxnCheckError::Fenced => ResponseError::ProducerFenced,
            TxnCheckError::Concurrent => ResponseError::ConcurrentTransactions,
            TxnCheckError::InvalidState(_) => ResponseError::InvalidTxnState,
            TxnCheckError::Storage(_) => ResponseError::CoordinatorNotAvailable,
        }
    }
}

/// Why InitProducerId with a transactional id failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InitTxnError {
    /// INVALID_TRANSACTION_TIMEOUT: above `transaction.max.timeout.ms` or not positive.
    #[error("transaction timeout {0} ms is not in 1..=transaction.max.timeout.ms")]
    InvalidTimeout(i32),
    /// The producer id/epoch of a KIP-360 re-init is not the current one, or the
    /// previous transaction is still completing.
    #[error(transparent)]
    Check(#[from] TxnCheckError),
}

/// Why AddPartitionsToTxn failed for the whole request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddPartitionsError {
    /// Producer or state check failed.
    #[error(transparent)]
    Check(#[from] TxnCheckError),
}

/// Why AddOffsetsToTxn failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AddOffsetsError {
    /// INVALID_GROUP_ID.
    #[error("invalid group id")]
    InvalidGroupId,
    /// Producer or state check failed.
    #[error(transparent)]
    Check(#[from] TxnCheckError),
}

/// Why EndTxn failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EndTxnError {
    /// Producer or state check failed.
    #[error(transparent)]
    Check(#[from] TxnCheckError),
}

/// Why TxnOffsetCommit failed for the whole request.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnOffsetCommitError {
    /// INVALID_GROUP_ID.
    #[error("invalid group id")]
    InvalidGroupId,
    /// Producer or state check failed (INVALID_TXN_STATE when the group was not added
    /// with AddOffsetsToTxn).
    #[error(transparent)]
    Check(#[from] TxnCheckError),
}

/// Per-partition refusal inside an accepted TxnOffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnOffsetPartitionError {
    /// OFFSET_METADATA_TOO_LARGE.
    #[error("offset metadata too large")]
    MetadataTooLarge,
}

/// Coordinator settings.
#[derive(Debug, Clone, Copy)]
pub struct TxnSettings {
    /// `transaction.max.timeout.ms`.
    pub max_timeout_ms: i32,
    /// How often hung transactions are looked for.
    pub check_interval: Duration,
}

/// Whether a coordinator write waits for the disk before the call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Flushed before returning: the answer to a wire client, who acts on it after a
    /// broker crash too (a producer that outlives the broker may still commit).
    Durable,
    /// Written, and made durable by the next durable write or sled's background flush.
    /// Only for callers that cannot outlive a crash that loses it: the in-process agent
    /// producer stages its offsets and commits at once, and if the process dies in
    /// between, its open transaction is aborted when the agent re-initialises, so the
    /// `PrepareCommit` flush is the one write its commit needs.
    Deferred,
}

/// The transaction coordinator of this broker.
#[derive(Debug)]
pub struct TransactionCoordinator {
    settings: TxnSettings,
    db: sled::Db,
    tree: sled::Tree,
    txns: Mutex<HashMap<String, TxnMetadata>>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn storage(error: impl std::fmt::Display) -> TxnCheckError {
    TxnCheckError::Storage(error.to_string())
}

impl TransactionCoordinator {
    /// Loads every transactional id from the metadata store.
    pub fn open(db: &sled::Db, settings: TxnSettings) -> Result<Self, sled::Error> {
        let tree = db.open_tree("transactions")?;
        let mut txns = HashMap::new();
        for entry in tree.iter() {
            let (_, value) = entry?;
            match serde_json::from_slice::<TxnMetadata>(&value) {
                Ok(meta) => {
                    txns.insert(meta.transactional_id.clone(), meta);
                }
                Err(error) => tracing::error!(%error, "unreadable transaction record skipped"),
            }
        }
        Ok(TransactionCoordinator {
            settings,
            db: db.clone(),
            tree,
            txns: Mutex::new(txns),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, TxnMetadata>> {
        self.txns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one record and, under [`Persist::Durable`], waits for it to be on disk:
    /// every transition something depends on is durable before it is acted on.
    fn persist(&self, meta: &TxnMetadata, policy: Persist) -> Result<(), TxnCheckError> {
        let value = serde_json::to_vec(meta).map_err(storage)?;
        self.tree
            .insert(meta.transactional_id.as_bytes(), value)
            .map_err(storage)?;
        if policy == Persist::Durable {
            self.db.flush().map_err(storage)?;
        }
        Ok(())
    }

    /// InitProducerId with a transactional id: a producer id (new, or the id's own with
    /// the epoch bumped, fencing older producers). An open transaction of the previous
    /// epoch is aborted first, with the new epoch on its markers.
    pub fn init_producer(
        &self,
        broker: &Broker,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), InitTxnError> {
        if timeout_ms <= 0 || timeout_ms > self.settings.max_timeout_ms {
            return Err(InitTxnError::InvalidTimeout(timeout_ms));
        }
        let mut txns = self.lock();
        let now = now_ms();
        let Some(current) = txns.get(transactional_id).cloned() else {
            let producer_id = broker.next_producer_id().map_err(storage)?;
            let meta = TxnMetadata {
                transactional_id: transactional_id.to_string(),
                producer_id,
                epoch: 0,
                state: TxnState::Empty,
                timeout_ms,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                pending_offsets: BTreeMap::new(),
                start_ms: -1,
                last_update_ms: now,
                last_committed: false,
            };
            self.persist(&meta, Persist::Durable)?;
            txns.insert(transactional_id.to_string(), meta);
            return Ok((producer_id, 0));
        };
        if let Some((producer_id, epoch)) = expected {
            // KIP-360: a producer re-initialising itself must still be the current one.
            if producer_id != current.producer_id || epoch != current.epoch {
                return Err(TxnCheckError::Fenced.into());
            }
        }
        if current.state.is_preparing() {
            return Err(TxnCheckError::Concurrent.into());
        }
        let mut meta = current;
        let (producer_id, epoch) = if meta.epoch >= i16::MAX - 1 {
            (broker.next_producer_id().map_err(storage)?, 0)
        } else {
            (meta.producer_id, meta.epoch + 1)
        };
        if meta.state == TxnState::Ongoing {
            // Abort with the new epoch on the markers: the old producer's late writes
            // to these partitions are fenced.
            meta.epoch = if producer_id == meta.producer_id {
                epoch
            } else {
                meta.epoch
            };
            meta.state = TxnState::PrepareAbort;
            meta.last_update_ms = now;
            self.persist(&meta, Persist::Durable)?;
            spawn_durable(self.complete(broker, &mut meta)?);
        }
        meta.producer_id = producer_id;
        meta.epoch = epoch;
        meta.state = TxnState::Empty;
        meta.timeout_ms = timeout_ms;
        meta.groups.clear();
        meta.pending_offsets.clear();
        meta.start_ms = -1;
        meta.last_update_ms = now;
        self.persist(&meta, Persist::Durable)?;
        txns.insert(transactional_id.to_string(), meta);
        Ok((producer_id, epoch))
    }

    /// Finds the id's record and checks the producer, starting a new transaction when
    /// the previous one is complete.
    fn ongoing<'a>(
        txns: &'a mut HashMap<String, TxnMetadata>,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
    ) -> Result<&'a mut TxnMetadata, TxnCheckError> {
        let meta = txns
            .get_mut(transactional_id)
            .ok_or(TxnCheckError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(TxnCheckError::InvalidProducerIdMapping);
        }
        if epoch != meta.epoch {
            return Err(TxnCheckError::Fenced);
        }
        if meta.state.is_preparing() {
            return Err(TxnCheckError::Concurrent);
        }
        if meta.state != TxnState::Ongoing {
            meta.state = TxnState::Ongoing;
            meta.partitions.clear();
            meta.groups.clear();
            meta.pending_offsets.clear();
            meta.start_ms = now_ms();
        }
        Ok(meta)
    }

    /// AddPartitionsToTxn: the partitions will get this transaction's markers.
    pub fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, i32)],
    ) -> Result<(), AddPartitionsError> {
        let mut txns = self.lock();
        let before = txns.get(transactional_id).cloned();
        let meta = Self::ongoing(&mut txns, transactional_id, producer_id, epoch)?;
        meta.partitions.extend(partitions.iter().cloned());
        meta.last_update_ms = now_ms();
        let meta = meta.clone();
        if let Err(error) = self.persist(&meta, Persist::Durable) {
            if let Some(before) = before {
                txns.insert(transactional_id.to_string(), before);
            }
            return Err(error.into());
        }
        Ok(())
    }

    /// AddOffsetsToTxn: the transaction will commit offsets of `group_id`.
    pub fn add_offsets(
        &self,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        group_id: &str,
        policy: Persist,
    ) -> Result<(), AddOffsetsError> {
        if group_id.is_empty() {
            return Err(AddOffsetsError::InvalidGroupId);
        }
        let mut txns = self.lock();
        let before = txns.get(transactional_id).cloned();
        let meta = Self::ongoing(&mut txns, transactional_id, producer_id, epoch)?;
        meta.groups.insert(group_id.to_string());
        meta.last_update_ms = now_ms();
        let meta = meta.clone();
        if let Err(error) = self.persist(&meta, policy) {
            if let Some(before) = before {
                txns.insert(transactional_id.to_string(), before);
            }
            return Err(AddOffsetsError::Check(error));
        }
        Ok(())
    }

    /// TxnOffsetCommit: stages offsets; they become the group's committed offsets when
    /// the transaction commits. Group membership (generation, member id) is not
    /// checked: the transaction's fencing by epoch already rules out zombies.
    pub fn stage_offsets(
        &self,
        transactional_id: &str,
        group_id: &str,
        producer_id: i64,
        epoch: i16,
        offsets: Vec<StagedOffset>,
        policy: Persist,
    ) -> Result<Vec<Result<(), TxnOffsetPartitionError>>, TxnOffsetCommitError> {
        if group_id.is_empty() {
            return Err(TxnOffsetCommitError::InvalidGroupId);
        }
        let mut txns = self.lock();
        let meta = txns
            .get_mut(transactional_id)
            .ok_or(TxnCheckError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(TxnCheckError::InvalidProducerIdMapping.into());
        }
        if meta.epoch != epoch {
            return Err(TxnCheckError::Fenced.into());
        }
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group_id) {
            return Err(TxnCheckError::InvalidState("group not added to the transaction").into());
        }
        let before = meta.clone();
        let mut results = Vec::with_capacity(offsets.len());
        let staged = meta
            .pending_offsets
            .entry(group_id.to_string())
            .or_default();
        for offset in offsets {
            if offset
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_OFFSET_METADATA_BYTES)
            {
                results.push(Err(TxnOffsetPartitionError::MetadataTooLarge));
                continue;
            }
            staged.retain(|o| !(o.topic == offset.topic && o.partition == offset.partition));
            staged.push(offset);
            results.push(Ok(()));
        }
        meta.last_update_ms = now_ms();
        let meta = meta.clone();
        if let Err(error) = self.persist(&meta, policy) {
            txns.insert(transactional_id.to_string(), before);
            return Err(error.into());
        }
        Ok(results)
    }

    /// EndTxn: commits or aborts the open transaction: `Prepare*` made durable, markers
    /// written to every partition, offsets applied (on commit), `Complete*` recorded.
    /// A retry of an EndTxn that already completed the same way succeeds. Returns the
    /// markers written, for the caller to wait on before answering.
    pub fn end_txn(
        &self,
        broker: &Broker,
        transactional_id: &str,
        producer_id: i64,
        epoch: i16,
        commit: bool,
    ) -> Result<WrittenMarkers, EndTxnError> {
        let mut txns = self.lock();
        let meta = txns
            .get_mut(transactional_id)
            .ok_or(TxnCheckError::InvalidProducerIdMapping)?;
        if meta.producer_id != producer_id {
            return Err(TxnCheckError::InvalidProducerIdMapping.into());
        }
        if meta.epoch != epoch {
            return Err(TxnCheckError::Fenced.into());
        }
        match (meta.state, commit) {
            (TxnState::Ongoing, _) => {}
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                return Ok(Vec::new())
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                return Err(TxnCheckError::Concurrent.into())
            }
            (state, _) => return Err(TxnCheckError::InvalidState(state.name()).into()),
        }
        meta.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        meta.last_update_ms = now_ms();
        let mut working = meta.clone();
        if let Err(error) = self.persist(&working, Persist::Durable) {
            meta.state = TxnState::Ongoing;
            return Err(error.into());
        }
        let result = self.complete(broker, &mut working);
        *meta = working;
        result.map_err(EndTxnError::Check)
    }

    /// Writes the markers of a `Prepare*` transaction, applies its offsets on commit and
    /// records `Complete*`. On failure the record stays `Prepare*` and is retried by the
    /// background task.
    fn complete(
        &self,
        broker: &Broker,
        meta: &mut TxnMetadata,
    ) -> Result<WrittenMarkers, TxnCheckError> {
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(Vec::new()),
        };
        let now = now_ms();
        let mut written = Vec::new();
        for (topic_name, index) in &meta.partitions {
            let Some(topic) = broker.topics.get(topic_name) else {
                continue; // deleted since: nothing left to mark
            };
            let Some(partition) = topic.partition(*index) else {
                continue;
            };
            let appended = partition
                .append_marker(meta.producer_id, meta.epoch, commit, COORDINATOR_EPOCH, now)
                .map_err(|error| {
                    spawn_durable(std::mem::take(&mut written));
                    storage(error)
                })?;
            written.push((partition.log.clone(), appended.last_offset + 1));
        }
        if commit {
            for (group_id, offsets) in &meta.pending_offsets {
                let offsets: Vec<CommittedOffset> = offsets
                    .iter()
                    .map(|o| CommittedOffset {
                        topic: o.topic.clone(),
                        partition: o.partition,
                        offset: o.offset,
                        leader_epoch: o.leader_epoch,
                        metadata: o.metadata.clone(),
                        commit_timestamp_ms: now,
                    })
                    .collect();
                broker
                    .groups
                    .apply_transactional_offsets(group_id, offsets)
                    .map_err(storage)?;
            }
        }
        meta.state = if commit {
            TxnState::CompleteCommit
        } else {
            TxnState::CompleteAbort
        };
        meta.last_committed = commit;
        meta.pending_offsets.clear();
        meta.last_update_ms = now;
        if let Err(error) = self.persist(meta, Persist::Durable) {
            spawn_durable(written);
            return Err(error);
        }
        Ok(written)
    }

    /// Finishes what a crash interrupted: `Prepare*` completed, lost markers of
    /// completed transactions written again. `Ongoing` ones are left to the timeout.
    pub fn recover(&self, broker: &Broker) {
        let mut txns = self.lock();
        for meta in txns.values_mut() {
            if meta.state.is_preparing() {
                match self.complete(broker, meta) {
                    Ok(written) => spawn_durable(written),
                    Err(error) => {
                        tracing::error!(id = %meta.transactional_id, %error, "completing a transaction after restart failed; will retry");
                    }
                }
                continue;
            }
            if meta.state == TxnState::Ongoing {
                continue;
            }
            let now = now_ms();
            for (topic_name, index) in &meta.partitions {
                let Some(topic) = broker.topics.get(topic_name) else {
                    continue;
                };
                let Some(partition) = topic.partition(*index) else {
                    continue;
                };
                if partition.ongoing_transaction(meta.producer_id).is_some() {
                    tracing::warn!(id = %meta.transactional_id, topic = %topic_name, partition = index, "rewriting a transaction marker lost in a crash");
                    match partition.append_marker(
                        meta.producer_id,
                        meta.epoch,
                        meta.last_committed,
                        COORDINATOR_EPOCH,
                        now,
                    ) {
                        Ok(appended) => {
                            spawn_durable(vec![(partition.log.clone(), appended.last_offset + 1)])
                        }
                        Err(error) => tracing::error!(%error, "rewriting a marker failed"),
                    }
                }
            }
        }
    }

    /// Aborts transactions open longer than their timeout (bumping the epoch, so the
    /// producer that left them is fenced) and retries completions that failed.
    pub fn abort_expired(&self, broker: &Broker) {
        let now = now_ms();
        let mut txns = self.lock();
        for meta in txns.values_mut() {
            let expired = meta.state == TxnState::Ongoing
                && now.saturating_sub(meta.start_ms) > i64::from(meta.timeout_ms);
            if expired {
                tracing::info!(id = %meta.transactional_id, "aborting a transaction that exceeded its timeout");
                let mut working = meta.clone();
                if working.epoch < i16::MAX - 1 {
                    working.epoch += 1;
                }
                working.state = TxnState::PrepareAbort;
                working.last_update_ms = now;
                if let Err(error) = self.persist(&working, Persist::Durable) {
                    tracing::error!(%error, "cannot record a timed-out abort");
                    continue;
                }
                *meta = working;
            }
            if meta.state.is_preparing() {
                let mut working = meta.clone();
                match self.complete(broker, &mut working) {
                    Ok(written) => spawn_durable(written),
                    Err(error) => {
                        tracing::error!(id = %meta.transactional_id, %error, "completing a transaction failed; will retry");
                    }
                }
                *meta = working;
            }
        }
    }

    /// Starts the timeout task; it stops with the broker.
    pub fn start_background(broker: &Arc<Broker>) {
        let weak = Arc::downgrade(broker);
        let period = broker.transactions.settings.check_interval;
        let mut stopping = broker.shutdown_signal();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = crate::server::stopped(&mut stopping) => return,
                }
                let Some(broker) = weak.upgrade() else { return };
                broker.transactions.abort_expired(&broker);
            }
        });
    }

    /// Whether an open transaction has staged offsets of `group_id` for the partition:
    /// OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT then.
    pub fn has_pending_offsets(&self, group_id: &str, topic: &str, partition: i32) -> bool {
        self.lock().values().any(|meta| {
            (meta.state == TxnState::Ongoing || meta.state.is_preparing())
                && meta.pending_offsets.get(group_id).is_some_and(|offsets| {
                    offsets
                        .iter()
                        .any(|o| o.topic == topic && o.partition == partition)
                })
        })
    }

    /// One transactional id's state, for DescribeTransactions.
    pub fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.lock().get(transactional_id).cloned()
    }

    /// Every transactional id's state, for ListTransactions.
    pub fn list(&self) -> Vec<TxnMetadata> {
        let mut all: Vec<TxnMetadata> = self.lock().values().cloned().collect();
        all.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        all
    }
}

#[cfg(test)]
mod tests;
