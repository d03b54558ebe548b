//! Share groups (KIP-932): queue-like consumption where members of a group acquire
//! records one by one under time-limited locks and acknowledge each, instead of owning
//! partitions and committing offsets.
//!
//! [`ShareCoordinator`] is shared by the wire handlers (`ShareGroupHeartbeat`,
//! `ShareFetch`, `ShareAcknowledge`, the share-group offsets admin APIs) and by
//! in-process queue agents, so both kinds of member can be in one group. Membership is
//! in [`group`], the per-partition delivery state machine in [`partition`], share
//! fetch sessions in [`session`], persistence in [`store`].

pub mod group;
pub mod partition;
pub mod session;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use thiserror::Error;
use tokio::sync::watch;
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::storage::ReadError;
use crate::topics::{Topic, TopicRegistry};
use group::{HeartbeatError, HeartbeatOutcome, HeartbeatParams, ShareGroup};
use partition::{AckBatch, AckError, AcquireLimits, AcquiredRange, SharePartition};
use session::Sessions;
use store::{ShareStore, ShareStoreError, Shared};

/// The `group.share.*` settings.
#[derive(Debug, Clone, Copy)]
pub struct ShareSettings {
    /// `group.share.record.lock.duration.ms` (30 s): how long an acquired record waits
    /// for its acknowledgement before it can be delivered again.
    pub record_lock: Duration,
    /// `group.share.delivery.count.limit` (5): deliveries before a record is archived.
    pub delivery_limit: i16,
    /// `group.share.session.timeout.ms` (45 s): silence after which a member is removed.
    pub session_timeout: Duration,
    /// `group.share.heartbeat.interval.ms` (5 s): what members are told to heartbeat at.
    pub heartbeat_interval_ms: i32,
    /// `group.share.partition.max.record.locks` (2000): most offsets in flight per
    /// share-partition.
    pub max_window: i64,
}

impl ShareSettings {
    /// Reads the settings (Kafka's defaults where unset).
    pub fn from_config(config: &BrokerConfig) -> ShareSettings {
        ShareSettings {
            record_lock: Duration::from_millis(
                config.get_or("group.share.record.lock.duration.ms", 30_000u64),
            ),
            delivery_limit: config
                .get_or("group.share.delivery.count.limit", 5i16)
                .max(1),
            session_timeout: Duration::from_millis(
                config.get_or("group.share.session.timeout.ms", 45_000u64),
            ),
            heartbeat_interval_ms: config.get_or("group.share.heartbeat.interval.ms", 5_000i32),
            max_window: config
                .get_or("group.share.partition.max.record.locks", 2_000i64)
                .max(1),
        }
    }
}

/// Where a share-partition seen for the first time starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// At the high watermark (Kafka's `share.auto.offset.reset=latest`, the default).
    Latest,
    /// At the log start (what in-process agents use, like their consumer groups).
    Earliest,
}

/// How much one acquisition may take, and where a new share-partition starts.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// Most records.
    pub max_records: usize,
    /// About this many log bytes at most (whole batches: the first may be larger).
    pub max_bytes: usize,
    /// Where the share-partition starts if this group never used it.
    pub start: StartFrom,
}

/// Records acquired from one partition: whole batches and the offsets that are this
/// member's to process (the batches may hold others, which it must skip).
#[derive(Debug, Clone)]
pub struct Acquired {
    /// Whole stored batches covering the ranges.
    pub bytes: Bytes,
    /// The acquired offsets.
    pub ranges: Vec<AcquiredRange>,
}

/// A share-group operation failed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ShareError {
    /// No such topic or partition.
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// The id names a classic or consumer group.
    #[error("group `{0}` is not a share group")]
    NotShareGroup(String),
    /// The member is not in the group.
    #[error("unknown member `{0}`")]
    UnknownMember(String),
    /// The group has members (offsets can only be changed on an empty group).
    #[error("group `{0}` is not empty")]
    NonEmptyGroup(String),
    /// No such share group.
    #[error("group `{0}` does not exist")]
    GroupNotFound(String),
    /// Reading the log failed.
    #[error("reading the log: {0}")]
    Storage(String),
    /// Writing the share state failed.
    #[error("share state store: {0}")]
    Store(String),
    /// An acknowledgement was refused.
    #[error(transparent)]
    Ack(#[from] AckError),
}

impl ShareError {
    /// Kafka's error code for it.
    pub fn code(&self) -> kafka_protocol::error::ResponseError {
        use kafka_protocol::error::ResponseError as E;
        match self {
            ShareError::UnknownTopicOrPartition => E::UnknownTopicOrPartition,
            ShareError::NotShareGroup(_) | ShareError::GroupNotFound(_) => E::GroupIdNotFound,
            ShareError::UnknownMember(_) => E::UnknownMemberId,
            ShareError::NonEmptyGroup(_) => E::NonEmptyGroup,
            ShareError::Storage(_) | ShareError::Store(_) => E::KafkaStorageError,
            ShareError::Ack(AckError::Invalid(_)) => E::InvalidRequest,
            ShareError::Ack(AckError::NotAcquired(_)) => E::InvalidRecordState,
        }
    }
}

impl From<ShareStoreError> for ShareError {
    fn from(error: ShareStoreError) -> Self {
        ShareError::Store(error.to_string())
    }
}

type PartitionKey = (String, Uuid, i32);

/// Share groups and their share-partitions.
#[derive(Debug)]
pub struct ShareCoordinator {
    settings: ShareSettings,
    groups: Mutex<BTreeMap<String, ShareGroup>>,
    partitions: Mutex<HashMap<PartitionKey, Shared>>,
    /// Share fetch sessions, by group and member.
    pub sessions: Sessions,
    store: ShareStore,
    /// Bumped whenever records are given back (released, lock expired, member gone),
    /// so parked fetches look again.
    released: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl ShareCoordinator {
    /// Loads every stored share-partition.
    pub fn open(db: &sled::Db, settings: ShareSettings) -> Result<Self, ShareStoreError> {
        let store = ShareStore::open(db)?;
        let mut groups = BTreeMap::new();
        let mut partitions = HashMap::new();
        for (group, topic, partition, state) in store.load_all()? {
            groups
                .entry(group.clone())
                .or_insert_with(ShareGroup::default);
            partitions.insert((group, topic, partition), Arc::new(Mutex::new(state)));
        }
        Ok(ShareCoordinator {
            settings,
            groups: Mutex::new(groups),
            partitions: Mutex::new(partitions),
            sessions: Sessions::default(),
            store,
            released: watch::channel(0).0,
        })
    }

    /// The settings in force.
    pub fn settings(&self) -> &ShareSettings {
        &self.settings
    }

    /// Whether `group` is a share group (it has members or stored state).
    pub fn exists(&self, group: &str) -> bool {
        lock(&self.groups).contains_key(group)
    }

    /// Applies a heartbeat; a leaving member's locks are released at once.
    pub fn heartbeat(
        &self,
        group_id: &str,
        params: HeartbeatParams,
        topics: &TopicRegistry,
    ) -> Result<HeartbeatOutcome, HeartbeatError> {
        self.expire_members();
        let member = params.member_id.clone();
        let outcome = {
            let mut groups = lock(&self.groups);
            let group = groups.entry(group_id.to_string()).or_default();
            group.heartbeat(params, topics, Instant::now())
        }?;
        if outcome.epoch == -1 {
            self.member_gone(group_id, &member);
        }
        Ok(outcome)
    }

    /// Fails unless `member` is in `group` (fetches and acknowledgements from members
    /// that left or were expired are refused).
    pub fn check_member(&self, group: &str, member: &str) -> Result<(), ShareError> {
        self.expire_members();
        let groups = lock(&self.groups);
        match groups.get(group) {
            Some(g) if g.members.contains_key(member) => Ok(()),
            _ => Err(ShareError::UnknownMember(member.to_string())),
        }
    }

    /// A copy of a group's membership.
    pub fn group(&self, group: &str) -> Option<ShareGroup> {
        lock(&self.groups).get(group).cloned()
    }

    /// Every share group with its state name.
    pub fn list(&self) -> Vec<(String, &'static str)> {
        lock(&self.groups)
            .iter()
            .map(|(id, g)| (id.clone(), g.state()))
            .collect()
    }

    /// Changes to this number when records are given back.
    pub fn released(&self) -> watch::Receiver<u64> {
        self.released.subscribe()
    }

    fn notify_released(&self) {
        self.released.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Removes members whose session timed out and gives back their records.
    pub fn expire_members(&self) {
        let now = Instant::now();
        let expired: Vec<(String, String)> = lock(&self.groups)
            .iter_mut()
            .flat_map(|(id, g)| {
                g.expire(now, self.settings.session_timeout)
                    .into_iter()
                    .map(move |m| (id.clone(), m))
            })
            .collect();
        for (group, member) in expired {
            tracing::info!(%group, %member, "share group member expired; releasing its records");
            self.member_gone(&group, &member);
        }
    }

    /// A member left: its share sessions end and its locks are released.
    fn member_gone(&self, group: &str, member: &str) {
        self.sessions.remove(group, member);
        let shared: Vec<(PartitionKey, Shared)> = lock(&self.partitions)
            .iter()
            .filter(|(key, _)| key.0 == group)
            .map(|(key, state)| (key.clone(), state.clone()))
            .collect();
        let mut any = false;
        for (key, state) in shared {
            let mut state = lock(&state);
            if state.release_member(member, self.settings.delivery_limit) {
                any = true;
                if let Err(error) = self.store.save(&key.0, key.1, key.2, &state) {
                    tracing::warn!(%error, group, "cannot store share state after a member left");
                }
            }
        }
        if any {
            self.notify_released();
        }
    }

    /// The share-partition of `group` on `topic`/`partition`, created (and stored) at
    /// `start` when first seen.
    fn share_partition(
        &self,
        group: &str,
        topic: &Topic,
        partition: i32,
        start: StartFrom,
    ) -> Result<Shared, ShareError> {
        let log = &topic
            .partition(partition)
            .ok_or(ShareError::UnknownTopicOrPartition)?
            .log;
        let key = (group.to_string(), topic.id(), partition);
        let mut partitions = lock(&self.partitions);
        if let Some(found) = partitions.get(&key) {
            return Ok(found.clone());
        }
        let offset = match start {
            StartFrom::Latest => log.high_watermark(),
            StartFrom::Earliest => log.log_start_offset(),
        };
        let state = SharePartition::starting_at(offset);
        // Stored now, so a restart does not start it again from a later "latest".
        self.store.save(group, topic.id(), partition, &state)?;
        lock(&self.groups).entry(group.to_string()).or_default();
        let shared = Arc::new(Mutex::new(state));
        partitions.insert(key, shared.clone());
        Ok(shared)
    }

    /// Acquires up to `want.max_records` records of one partition for `member`.
    /// `None`: nothing to acquire now.
    pub fn acquire(
        &self,
        group: &str,
        member: &Arc<str>,
        topic: &Topic,
        partition: i32,
        want: Want,
    ) -> Result<Option<Acquired>, ShareError> {
        let shared = self.share_partition(group, topic, partition, want.start)?;
        let log = &topic
            .partition(partition)
            .ok_or(ShareError::UnknownTopicOrPartition)?
            .log;
        let mut state = lock(&shared);
        let now = Instant::now();
        let high_watermark = log.high_watermark();
        state.skip_to(log.log_start_offset());
        state.expire(now, self.settings.delivery_limit);
        let Some(first) = state.first_acquirable(now, high_watermark, self.settings.max_window)
        else {
            return Ok(None);
        };
        let read = match log.read(first, want.max_bytes.max(1)) {
            Ok(read) => read,
            Err(ReadError::OffsetOutOfRange {
                log_start_offset, ..
            }) => {
                state.skip_to(log_start_offset);
                return Ok(None);
            }
            Err(error) => return Err(ShareError::Storage(error.to_string())),
        };
        let Some(covered_last) = agentlog_protocol::batch::Batches::new(&read.bytes)
            .map(|(header, _)| header.last_offset())
            .last()
        else {
            return Ok(None);
        };
        let ranges = state.acquire(
            member,
            now,
            AcquireLimits {
                max_records: want.max_records.max(1),
                covered_last: covered_last.min(high_watermark - 1),
                max_window: self.settings.max_window,
                delivery_limit: self.settings.delivery_limit,
                lock_until: now + self.settings.record_lock,
            },
        );
        let (Some(first), Some(last)) = (ranges.first(), ranges.last()) else {
            return Ok(None);
        };
        let bytes = covering(&read.bytes, first.first, last.last);
        Ok(Some(Acquired { bytes, ranges }))
    }

    /// Applies acknowledgements and stores the new state (durable after the caller
    /// awaits the metadata flush). All or nothing per partition.
    pub fn acknowledge(
        &self,
        group: &str,
        member: &str,
        topic: Uuid,
        partition: i32,
        batches: &[AckBatch],
    ) -> Result<(), ShareError> {
        let shared = lock(&self.partitions)
            .get(&(group.to_string(), topic, partition))
            .cloned();
        let Some(shared) = shared else {
            // Never fetched: nothing of it can be acquired.
            let first = batches.first().map_or(0, |b| b.first);
            return Err(AckError::NotAcquired(first).into());
        };
        let mut state = lock(&shared);
        state.acknowledge(
            member,
            batches,
            Instant::now(),
            self.settings.delivery_limit,
        )?;
        self.store.save(group, topic, partition, &state)?;
        drop(state);
        let released = batches
            .iter()
            .any(|b| b.types.contains(&partition::AckType::Release));
        if released {
            self.notify_released();
        }
        Ok(())
    }

    /// Releases what `member` holds on some partitions (a share session closed).
    pub fn release(&self, group: &str, member: &str, partitions: &[(Uuid, i32)]) {
        let mut any = false;
        for (topic, partition) in partitions {
            let key = (group.to_string(), *topic, *partition);
            let Some(shared) = lock(&self.partitions).get(&key).cloned() else {
                continue;
            };
            let mut state = lock(&shared);
            if state.release_member(member, self.settings.delivery_limit) {
                any = true;
                if let Err(error) = self.store.save(group, *topic, *partition, &state) {
                    tracing::warn!(%error, group, "cannot store share state after a release");
                }
            }
        }
        if any {
            self.notify_released();
        }
    }

    /// Every share-partition of `group`: (topic id, partition, start offset, records
    /// in flight).
    pub fn offsets(&self, group: &str) -> Vec<(Uuid, i32, i64)> {
        let mut out: Vec<(Uuid, i32, i64)> = lock(&self.partitions)
            .iter()
            .filter(|(key, _)| key.0 == group)
            .map(|(key, state)| (key.1, key.2, lock(state).start()))
            .collect();
        out.sort();
        out
    }

    /// The start offset of one share-partition, if it was ever initialized.
    pub fn start_offset(&self, group: &str, topic: Uuid, partition: i32) -> Option<i64> {
        lock(&self.partitions)
            .get(&(group.to_string(), topic, partition))
            .map(|state| lock(state).start())
    }

    /// AlterShareGroupOffsets for one partition: restarts delivery at `offset`,
    /// forgetting what was in flight. The group must have no members.
    pub fn alter_offset(
        &self,
        group: &str,
        topic: &Topic,
        partition: i32,
        offset: i64,
    ) -> Result<(), ShareError> {
        self.require_empty(group)?;
        let log = &topic
            .partition(partition)
            .ok_or(ShareError::UnknownTopicOrPartition)?
            .log;
        let offset = offset.clamp(log.log_start_offset(), log.high_watermark());
        let state = SharePartition::starting_at(offset);
        self.store.save(group, topic.id(), partition, &state)?;
        lock(&self.groups).entry(group.to_string()).or_default();
        lock(&self.partitions).insert(
            (group.to_string(), topic.id(), partition),
            Arc::new(Mutex::new(state)),
        );
        Ok(())
    }

    /// DeleteShareGroupOffsets for one topic: forgets its share-partitions. The group
    /// must have no members.
    pub fn delete_offsets(&self, group: &str, topic: Uuid) -> Result<(), ShareError> {
        self.require_empty(group)?;
        let keys: Vec<PartitionKey> = lock(&self.partitions)
            .keys()
            .filter(|key| key.0 == group && key.1 == topic)
            .cloned()
            .collect();
        for key in keys {
            self.store.remove(&key.0, key.1, key.2)?;
            lock(&self.partitions).remove(&key);
        }
        Ok(())
    }

    fn require_empty(&self, group: &str) -> Result<(), ShareError> {
        self.expire_members();
        match lock(&self.groups).get(group) {
            None => Err(ShareError::GroupNotFound(group.to_string())),
            Some(g) if !g.members.is_empty() => Err(ShareError::NonEmptyGroup(group.to_string())),
            Some(_) => Ok(()),
        }
    }
}

/// The part of `bytes` (whole batches) from the batch holding `first` to the one
/// holding `last`.
fn covering(bytes: &Bytes, first: i64, last: i64) -> Bytes {
    let mut from = None;
    let mut to = 0;
    for (header, range) in agentlog_protocol::batch::Batches::new(bytes) {
        if header.last_offset() < first {
            continue;
        }
        if header.base_offset > last {
            break;
        }
        from.get_or_insert(range.start);
        to = range.end;
    }
    match from {
        Some(from) if from < to => bytes.slice(from..to),
        _ => Bytes::new(),
    }
}
