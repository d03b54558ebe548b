//! The group state machine, after Kafka's `GroupCoordinator` / `ClassicGroup`.
//!
//! All groups live behind one mutex; no await happens while it is held. Waiting
//! (JoinGroup until the rebalance completes, SyncGroup until the leader's assignment) is
//! a oneshot channel per member, answered by whichever call or timer completes the step.
//!
//! Timers are tokio tasks holding a weak reference to the coordinator:
//! - one per member, expiring it when `session_timeout` passes without a heartbeat
//!   (members waiting in JoinGroup or SyncGroup are kept alive, as in Kafka);
//! - one per pending member (JoinGroup v4+ MEMBER_ID_REQUIRED), dropping it if it does
//!   not rejoin within its session timeout;
//! - one per rebalance, completing the join phase at the rebalance timeout (kicking out
//!   members that did not rejoin) or after `group.initial.rebalance.delay.ms` for a group
//!   that was empty.
//!
//! Timers never mutate a group they no longer own: a rebalance timer checks the group's
//! rebalance epoch, a member timer checks the member still exists with its deadline due.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::consumer::admin as consumer_admin;
use super::consumer::ConsumerGroup;
use super::offsets::{now_ms, GroupRecord, OffsetStore, OffsetStoreError};
use super::subscription::subscribed_topics;
use super::*;

/// The group coordinator: every consumer group of this broker and their offsets.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) settings: GroupSettings,
    pub(super) store: OffsetStore,
    groups: Mutex<HashMap<String, Group>>,
    /// KIP-848 consumer groups. Lock order: `groups` first when both are held.
    pub(super) consumer: Mutex<HashMap<String, ConsumerGroup>>,
    /// Set at broker shutdown: nothing waits on the coordinator any more.
    pub(super) closing: std::sync::atomic::AtomicBool,
}

type JoinReply = oneshot::Sender<Result<JoinOutcome, JoinError>>;
type SyncReply = oneshot::Sender<Result<SyncOutcome, SyncError>>;

#[derive(Debug)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<JoinReply>,
    awaiting_sync: Option<SyncReply>,
    heartbeat_deadline: Instant,
}

impl Member {
    fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(name, _)| name == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn reset_deadline(&mut self) {
        self.heartbeat_deadline = Instant::now() + self.session_timeout;
    }
}

#[derive(Debug)]
struct Group {
    id: String,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet rejoined.
    pending: HashMap<String, Instant>,
    /// Static instance id to its current member id.
    static_members: HashMap<String, String>,
    /// Bumped by every rebalance, so a stale rebalance timer does nothing.
    rebalance_epoch: u64,
    /// The join phase may not complete before this (initial rebalance delay).
    join_not_before: Option<Instant>,
    empty_since_ms: Option<i64>,
}

impl Group {
    fn new(id: &str) -> Self {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_epoch: 0,
            join_not_before: None,
            empty_since_ms: Some(now_ms()),
        }
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if protocol_type.is_empty() || protocols.is_empty() {
            return false;
        }
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == name))
            })
    }

    /// Kafka's vote: among protocols every member supports, each member votes for its
    /// most preferred; most votes wins, ties go to the earliest member's preference.
    fn select_protocol(&self) -> Option<String> {
        let candidates: Vec<&String> = self
            .members
            .values()
            .next()?
            .protocols
            .iter()
            .map(|(name, _)| name)
            .filter(|name| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
            })
            .collect();
        let mut votes: Vec<(&String, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(n, _)| candidates.contains(&n))
            {
                if let Some(slot) = votes.iter_mut().find(|(c, _)| *c == name) {
                    slot.1 += 1;
                }
            }
        }
        let best = votes.iter().map(|(_, v)| *v).max()?;
        votes
            .into_iter()
            .find(|(_, v)| *v == best)
            .map(|(name, _)| name.clone())
    }

    fn is_fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        match instance.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn join_outcome_for(&self, member_id: &str, with_members: bool) -> JoinOutcome {
        let members = if with_members {
            self.members
                .values()
                .map(|m| JoinedMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    metadata: m.metadata(self.protocol_name.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinOutcome {
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    fn record(&self) -> GroupRecord {
        GroupRecord {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            empty_since_ms: self.empty_since_ms,
            group_type: None,
        }
    }
}

/// A JoinGroup whose side effects are applied; await [`JoinWait::outcome`] for the
/// answer (which may take until the rebalance completes).
#[derive(Debug)]
pub enum JoinWait {
    /// Answered at once.
    Ready(Result<JoinOutcome, JoinError>),
    /// Answered when the join phase completes.
    Waiting(oneshot::Receiver<Result<JoinOutcome, JoinError>>),
}

impl JoinWait {
    /// The JoinGroup answer.
    pub async fn outcome(self) -> Result<JoinOutcome, JoinError> {
        match self {
            JoinWait::Ready(result) => result,
            JoinWait::Waiting(rx) => rx.await.unwrap_or(Err(JoinError::RebalanceInProgress)),
        }
    }
}

/// A SyncGroup whose side effects are applied; await [`SyncWait::outcome`].
#[derive(Debug)]
pub enum SyncWait {
    /// Answered at once.
    Ready(Result<SyncOutcome, SyncError>),
    /// Answered when the leader's assignment arrives.
    Waiting(oneshot::Receiver<Result<SyncOutcome, SyncError>>),
}

impl SyncWait {
    /// The SyncGroup answer.
    pub async fn outcome(self) -> Result<SyncOutcome, SyncError> {
        match self {
            SyncWait::Ready(result) => result,
            SyncWait::Waiting(rx) => rx.await.unwrap_or(Err(SyncError::RebalanceInProgress)),
        }
    }
}

/// Offsets written and waiting to be made durable: await [`PendingCommit::durable`]
/// before acknowledging, so an acknowledged commit is never lost.
#[derive(Debug)]
pub struct PendingCommit {
    store: Option<OffsetStore>,
    results: Vec<Result<(), CommitPartitionError>>,
}

impl PendingCommit {
    /// Per-partition results, in request order, once the offsets are on disk.
    pub async fn durable(self) -> Result<Vec<Result<(), CommitPartitionError>>, CommitError> {
        if let Some(store) = self.store {
            store
                .flush()
                .await
                .map_err(|e| CommitError::Storage(e.to_string()))?;
        }
        Ok(self.results)
    }
}

fn lock(inner: &Inner) -> MutexGuard<'_, HashMap<String, Group>> {
    // A panic while holding the lock would be a bug; keep serving rather than poison
    // every later request.
    inner.groups.lock().unwrap_or_else(|p| p.into_inner())
}

/// The consumer groups' lock (after `lock` when both are needed).
pub(super) fn lock_consumer(inner: &Inner) -> MutexGuard<'_, HashMap<String, ConsumerGroup>> {
    inner.consumer.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs `f` (which takes the consumer groups' lock) unless a classic group with members
/// holds this id. An empty classic group is dropped first when `convert` is set, so the
/// id can become a consumer group; its offsets stay in the store. The classic lock is
/// held throughout, so no classic JoinGroup slips in between.
pub(super) fn unless_classic<R>(
    inner: &Inner,
    group_id: &str,
    convert: bool,
    f: impl FnOnce() -> R,
) -> Option<R> {
    let mut groups = lock(inner);
    match groups.get(group_id) {
        Some(g) if g.state != GroupState::Empty && g.state != GroupState::Dead => return None,
        Some(_) if convert => {
            groups.remove(group_id);
        }
        _ => {}
    }
    Some(f())
}

fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

impl GroupCoordinator {
    /// Opens the coordinator on the broker's metadata store, restoring every group that
    /// has offsets (as Empty, with its last generation).
    pub fn open(db: &sled::Db, settings: GroupSettings) -> Result<Self, OffsetStoreError> {
        let store = OffsetStore::open(db)?;
        let mut groups = HashMap::new();
        let mut consumer = HashMap::new();
        for (id, record) in store.load_groups()? {
            if record.group_type.as_deref() == Some("consumer") {
                consumer.insert(id.clone(), ConsumerGroup::restored(&id, &record));
                continue;
            }
            let mut group = Group::new(&id);
            group.generation = record.generation;
            group.protocol_type = record.protocol_type;
            group.empty_since_ms = record.empty_since_ms.or(Some(now_ms()));
            groups.insert(id, group);
        }
        Ok(GroupCoordinator {
            inner: Arc::new(Inner {
                settings,
                store,
                groups: Mutex::new(groups),
                consumer: Mutex::new(consumer),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    fn is_closing(&self) -> bool {
        self.inner.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Broker shutdown: answers every waiting JoinGroup and SyncGroup with
    /// COORDINATOR_NOT_AVAILABLE (clients look for the coordinator again and rejoin) so
    /// no connection waits out a rebalance timeout, and refuses new waits.
    pub fn shutdown(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut groups = lock(&self.inner);
        for group in groups.values_mut() {
            for member in group.members.values_mut() {
                if let Some(tx) = member.awaiting_join.take() {
                    let _ = tx.send(Err(JoinError::CoordinatorNotAvailable));
                }
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(Err(SyncError::CoordinatorNotAvailable));
                }
            }
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &GroupSettings {
        &self.inner.settings
    }

    /// JoinGroup, answered when the rebalance completes.
    pub async fn join(&self, params: JoinParams) -> Result<JoinOutcome, JoinError> {
        self.begin_join(params).outcome().await
    }

    /// JoinGroup's side effects now, its answer later: wire handlers apply requests in
    /// order and must not wait for the rebalance while doing so.
    pub fn begin_join(&self, params: JoinParams) -> JoinWait {
        if !valid_group_id(&params.group_id) {
            return JoinWait::Ready(Err(JoinError::InvalidGroupId));
        }
        let s = &self.inner.settings;
        if params.session_timeout_ms < s.min_session_timeout_ms
            || params.session_timeout_ms > s.max_session_timeout_ms
        {
            return JoinWait::Ready(Err(JoinError::InvalidSessionTimeout));
        }
        if self.is_closing() {
            return JoinWait::Ready(Err(JoinError::CoordinatorNotAvailable));
        }
        let mut groups = lock(&self.inner);
        if consumer_admin::blocks_classic_join(&self.inner, &params.group_id) {
            tracing::info!(group = %params.group_id, "classic JoinGroup for a consumer group with members");
            return JoinWait::Ready(Err(JoinError::InconsistentGroupProtocol));
        }
        if !params.member_id.is_empty() && !groups.contains_key(&params.group_id) {
            return JoinWait::Ready(Err(JoinError::UnknownMemberId));
        }
        let group = groups
            .entry(params.group_id.clone())
            .or_insert_with(|| Group::new(&params.group_id));
        if group.state == GroupState::Dead {
            return JoinWait::Ready(Err(JoinError::CoordinatorNotAvailable));
        }
        if !group.supports(&params.protocol_type, &params.protocols) {
            return JoinWait::Ready(Err(JoinError::InconsistentGroupProtocol));
        }
        let (tx, rx) = oneshot::channel();
        let immediate = if params.member_id.is_empty() {
            self.join_unknown(group, params, tx)
        } else {
            self.join_known(group, params, tx)
        };
        match immediate {
            Some(result) => JoinWait::Ready(result),
            None => JoinWait::Waiting(rx),
        }
    }

    /// A join without a member id. `None`: the answer comes through `tx`.
    fn join_unknown(
        &self,
        group: &mut Group,
        params: JoinParams,
        tx: JoinReply,
    ) -> Option<Result<JoinOutcome, JoinError>> {
        if let Some(instance) = params.group_instance_id.clone() {
            if let Some(old_id) = group.static_members.get(&instance).cloned() {
                return self.static_rejoin(group, params, &instance, &old_id, tx);
            }
            let member_id = new_member_id(&instance);
            self.add_member_and_rebalance(group, params, member_id, tx);
            return None;
        }
        let member_id = new_member_id(&params.client_id);
        if params.require_known_member_id {
            let timeout = Duration::from_millis(params.session_timeout_ms.max(0) as u64);
            group
                .pending
                .insert(member_id.clone(), Instant::now() + timeout);
            self.spawn_pending_timer(&group.id, &member_id, timeout);
            return Some(Err(JoinError::MemberIdRequired { member_id }));
        }
        self.add_member_and_rebalance(group, params, member_id, tx);
        None
    }

    fn join_known(
        &self,
        group: &mut Group,
        params: JoinParams,
        tx: JoinReply,
    ) -> Option<Result<JoinOutcome, JoinError>> {
        let member_id = params.member_id.clone();
        if group.pending.remove(&member_id).is_some() {
            self.add_member_and_rebalance(group, params, member_id, tx);
            return None;
        }
        if let Some(instance) = params.group_instance_id.as_deref() {
            match group.static_members.get(instance) {
                Some(current) if *current != member_id => {
                    return Some(Err(JoinError::FencedInstanceId))
                }
                None => return Some(Err(JoinError::UnknownMemberId)),
                Some(_) => {}
            }
        }
        let Some(member) = group.members.get(&member_id) else {
            return Some(Err(JoinError::UnknownMemberId));
        };
        let same = member.same_protocols(&params.protocols);
        match group.state {
            GroupState::PreparingRebalance => {
                self.update_member(group, &params, tx);
                self.try_complete_join(group);
                None
            }
            GroupState::CompletingRebalance if same => {
                // The join response was lost: send it again.
                let is_leader = group.leader.as_deref() == Some(member_id.as_str());
                Some(Ok(group.join_outcome_for(&member_id, is_leader)))
            }
            GroupState::Stable if same && group.leader.as_deref() != Some(member_id.as_str()) => {
                Some(Ok(group.join_outcome_for(&member_id, false)))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member(group, &params, tx);
                self.prepare_rebalance(group, "member rejoined with new metadata");
                None
            }
            GroupState::Empty | GroupState::Dead => Some(Err(JoinError::UnknownMemberId)),
        }
    }

    /// A static member restarted (new process, same `group.instance.id`): it takes the
    /// old member's place. A Stable group whose protocol would not change keeps its
    /// generation and assignment: no rebalance.
    fn static_rejoin(
        &self,
        group: &mut Group,
        params: JoinParams,
        instance: &str,
        old_id: &str,
        tx: JoinReply,
    ) -> Option<Result<JoinOutcome, JoinError>> {
        let Some(mut member) = group.members.shift_remove(old_id) else {
            group.static_members.remove(instance);
            let member_id = new_member_id(instance);
            self.add_member_and_rebalance(group, params, member_id, tx);
            return None;
        };
        let new_id = new_member_id(instance);
        if let Some(old) = member.awaiting_join.take() {
            let _ = old.send(Err(JoinError::FencedInstanceId));
        }
        if let Some(old) = member.awaiting_sync.take() {
            let _ = old.send(Err(SyncError::FencedInstanceId));
        }
        member.member_id = new_id.clone();
        member.client_id = params.client_id.clone();
        member.client_host = params.client_host.clone();
        member.protocols = params.protocols.clone();
        member.session_timeout = Duration::from_millis(params.session_timeout_ms.max(0) as u64);
        member.rebalance_timeout = rebalance_timeout(&params);
        member.reset_deadline();
        let session = member.session_timeout;
        group.members.insert(new_id.clone(), member);
        group
            .static_members
            .insert(instance.to_string(), new_id.clone());
        if group.leader.as_deref() == Some(old_id) {
            group.leader = Some(new_id.clone());
        }
        self.spawn_session_timer(&group.id, &new_id, session);
        match group.state {
            GroupState::Stable if group.select_protocol() == group.protocol_name => {
                let is_leader = group.leader.as_deref() == Some(new_id.as_str());
                let mut outcome = group.join_outcome_for(&new_id, is_leader);
                outcome.skip_assignment = is_leader;
                Some(Ok(outcome))
            }
            GroupState::PreparingRebalance => {
                if let Some(m) = group.members.get_mut(&new_id) {
                    m.awaiting_join = Some(tx);
                }
                self.try_complete_join(group);
                None
            }
            _ => {
                if let Some(m) = group.members.get_mut(&new_id) {
                    m.awaiting_join = Some(tx);
                }
                self.prepare_rebalance(group, "static member rejoined");
                None
            }
        }
    }

    fn add_member_and_rebalance(
        &self,
        group: &mut Group,
        params: JoinParams,
        member_id: String,
        tx: JoinReply,
    ) {
        let session_timeout = Duration::from_millis(params.session_timeout_ms.max(0) as u64);
        let member = Member {
            member_id: member_id.clone(),
            group_instance_id: params.group_instance_id.clone(),
            client_id: params.client_id.clone(),
            client_host: params.client_host.clone(),
            session_timeout,
            rebalance_timeout: rebalance_timeout(&params),
            protocols: params.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            heartbeat_deadline: Instant::now() + session_timeout,
        };
        if group.members.is_empty() {
            group.protocol_type = Some(params.protocol_type);
        }
        if let Some(instance) = &params.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), member_id.clone());
        }
        if group.leader.is_none() {
            group.leader = Some(member_id.clone());
        }
        group.members.insert(member_id.clone(), member);
        self.spawn_session_timer(&group.id, &member_id, session_timeout);
        match group.state {
            GroupState::PreparingRebalance => self.try_complete_join(group),
            _ => self.prepare_rebalance(group, "member joined"),
        }
    }

    fn update_member(&self, group: &mut Group, params: &JoinParams, tx: JoinReply) {
        if let Some(member) = group.members.get_mut(&params.member_id) {
            if let Some(old) = member.awaiting_join.replace(tx) {
                let _ = old.send(Err(JoinError::RebalanceInProgress));
            }
            member.protocols.clone_from(&params.protocols);
            member.session_timeout = Duration::from_millis(params.session_timeout_ms.max(0) as u64);
            member.rebalance_timeout = rebalance_timeout(params);
            member.client_id.clone_from(&params.client_id);
            member.client_host.clone_from(&params.client_host);
        }
    }

    fn prepare_rebalance(&self, group: &mut Group, reason: &str) {
        if group.state == GroupState::CompletingRebalance {
            for member in group.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(Err(SyncError::RebalanceInProgress));
                }
            }
        }
        let was_empty = group.state == GroupState::Empty;
        group.state = GroupState::PreparingRebalance;
        group.rebalance_epoch += 1;
        let timeout = group
            .members
            .values()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let now = Instant::now();
        group.join_not_before = if was_empty {
            Some(now + self.inner.settings.initial_rebalance_delay.min(timeout))
        } else {
            None
        };
        tracing::info!(group = %group.id, generation = group.generation, reason, "preparing rebalance");
        self.spawn_rebalance_timer(group, now + timeout);
        self.try_complete_join(group);
    }

    fn try_complete_join(&self, group: &mut Group) {
        if group.state != GroupState::PreparingRebalance || !group.all_joined() {
            return;
        }
        if let Some(not_before) = group.join_not_before {
            if Instant::now() < not_before {
                return;
            }
        }
        self.complete_join(group);
    }

    /// Ends the join phase: members that did not rejoin are removed, a new generation
    /// starts, and every waiting member gets its answer (the leader gets the members).
    fn complete_join(&self, group: &mut Group) {
        let stragglers: Vec<String> = group
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in stragglers {
            tracing::info!(group = %group.id, member = %id, "removing member that did not rejoin");
            remove_member(group, &id);
        }
        group.pending.clear();
        group.join_not_before = None;
        group.generation = group.generation.saturating_add(1);
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.protocol_name = None;
            group.leader = None;
            group.empty_since_ms = Some(now_ms());
        } else {
            group.state = GroupState::CompletingRebalance;
            group.protocol_name = group.select_protocol();
            group.empty_since_ms = None;
            if group
                .leader
                .as_ref()
                .is_none_or(|l| !group.members.contains_key(l))
            {
                group.leader = group.members.keys().next().cloned();
            }
            let leader = group.leader.clone();
            let everyone = group.join_outcome_for("", true).members;
            let base = group.join_outcome_for("", false);
            for member in group.members.values_mut() {
                member.reset_deadline();
                if let Some(tx) = member.awaiting_join.take() {
                    let mut outcome = base.clone();
                    outcome.member_id = member.member_id.clone();
                    if leader.as_deref() == Some(member.member_id.as_str()) {
                        outcome.members = everyone.clone();
                    }
                    let _ = tx.send(Ok(outcome));
                }
            }
        }
        tracing::info!(group = %group.id, generation = group.generation, state = group.state.name(), members = group.members.len(), "join phase complete");
        if let Err(error) = self.inner.store.put_group(&group.id, &group.record()) {
            tracing::warn!(group = %group.id, %error, "cannot record group generation");
        }
    }

    /// SyncGroup, answered when the leader's assignment is in.
    pub async fn sync(&self, params: SyncParams) -> Result<SyncOutcome, SyncError> {
        self.begin_sync(params).outcome().await
    }

    /// SyncGroup's side effects now, its answer later.
    pub fn begin_sync(&self, params: SyncParams) -> SyncWait {
        if !valid_group_id(&params.group_id) {
            return SyncWait::Ready(Err(SyncError::InvalidGroupId));
        }
        if self.is_closing() {
            return SyncWait::Ready(Err(SyncError::CoordinatorNotAvailable));
        }
        let mut groups = lock(&self.inner);
        let Some(group) = groups.get_mut(&params.group_id) else {
            return SyncWait::Ready(Err(SyncError::UnknownMemberId));
        };
        if group.state == GroupState::Dead {
            return SyncWait::Ready(Err(SyncError::CoordinatorNotAvailable));
        }
        if !group.members.contains_key(&params.member_id) {
            return SyncWait::Ready(Err(SyncError::UnknownMemberId));
        }
        if group.is_fenced(params.group_instance_id.as_deref(), &params.member_id) {
            return SyncWait::Ready(Err(SyncError::FencedInstanceId));
        }
        if params.generation_id != group.generation {
            return SyncWait::Ready(Err(SyncError::IllegalGeneration));
        }
        if params
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref())
            || params
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != group.protocol_name.as_ref())
        {
            return SyncWait::Ready(Err(SyncError::InconsistentGroupProtocol));
        }
        match group.state {
            GroupState::Empty | GroupState::Dead => {
                SyncWait::Ready(Err(SyncError::UnknownMemberId))
            }
            GroupState::PreparingRebalance => SyncWait::Ready(Err(SyncError::RebalanceInProgress)),
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(member) = group.members.get_mut(&params.member_id) {
                    if let Some(old) = member.awaiting_sync.replace(tx) {
                        let _ = old.send(Err(SyncError::RebalanceInProgress));
                    }
                }
                if group.leader.as_deref() == Some(params.member_id.as_str()) {
                    let mut assignments: HashMap<String, Bytes> =
                        params.assignments.into_iter().collect();
                    let protocol_type = group.protocol_type.clone();
                    let protocol_name = group.protocol_name.clone();
                    for member in group.members.values_mut() {
                        member.assignment =
                            assignments.remove(&member.member_id).unwrap_or_default();
                        member.reset_deadline();
                        if let Some(tx) = member.awaiting_sync.take() {
                            let _ = tx.send(Ok(SyncOutcome {
                                protocol_type: protocol_type.clone(),
                                protocol_name: protocol_name.clone(),
                                assignment: member.assignment.clone(),
                            }));
                        }
                    }
                    group.state = GroupState::Stable;
                    tracing::info!(group = %group.id, generation = group.generation, "group stable");
                }
                SyncWait::Waiting(rx)
            }
            GroupState::Stable => {
                let protocol_type = group.protocol_type.clone();
                let protocol_name = group.protocol_name.clone();
                match group.members.get_mut(&params.member_id) {
                    Some(member) => {
                        member.reset_deadline();
                        SyncWait::Ready(Ok(SyncOutcome {
                            protocol_type,
                            protocol_name,
                            assignment: member.assignment.clone(),
                        }))
                    }
                    None => SyncWait::Ready(Err(SyncError::UnknownMemberId)),
                }
            }
        }
    }

    /// Heartbeat: keeps the member's session alive and tells it about rebalances.
    pub async fn heartbeat(&self, params: HeartbeatParams) -> Result<(), HeartbeatError> {
        self.heartbeat_now(params)
    }

    /// Heartbeat without the async wrapper (it never waits).
    pub fn heartbeat_now(&self, params: HeartbeatParams) -> Result<(), HeartbeatError> {
        if !valid_group_id(&params.group_id) {
            return Err(HeartbeatError::InvalidGroupId);
        }
        let mut groups = lock(&self.inner);
        let Some(group) = groups.get_mut(&params.group_id) else {
            return Err(HeartbeatError::UnknownMemberId);
        };
        if group.state == GroupState::Dead {
            return Err(HeartbeatError::CoordinatorNotAvailable);
        }
        if group.is_fenced(params.group_instance_id.as_deref(), &params.member_id) {
            return Err(HeartbeatError::FencedInstanceId);
        }
        let state = group.state;
        let generation = group.generation;
        let Some(member) = group.members.get_mut(&params.member_id) else {
            return Err(HeartbeatError::UnknownMemberId);
        };
        if state == GroupState::Empty {
            return Err(HeartbeatError::UnknownMemberId);
        }
        if params.generation_id != generation {
            return Err(HeartbeatError::IllegalGeneration);
        }
        member.reset_deadline();
        if state == GroupState::PreparingRebalance {
            return Err(HeartbeatError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup: removes members (v3+ batches several), rebalancing the rest.
    pub async fn leave(
        &self,
        group_id: &str,
        leaving: Vec<LeavingMember>,
    ) -> Result<Vec<Result<(), LeaveMemberError>>, LeaveError> {
        self.leave_now(group_id, leaving)
    }

    /// LeaveGroup without the async wrapper (it never waits).
    pub fn leave_now(
        &self,
        group_id: &str,
        leaving: Vec<LeavingMember>,
    ) -> Result<Vec<Result<(), LeaveMemberError>>, LeaveError> {
        if !valid_group_id(group_id) {
            return Err(LeaveError::InvalidGroupId);
        }
        let mut groups = lock(&self.inner);
        let Some(group) = groups.get_mut(group_id) else {
            return Ok(leaving
                .iter()
                .map(|_| Err(LeaveMemberError::UnknownMemberId))
                .collect());
        };
        if group.state == GroupState::Dead {
            return Err(LeaveError::CoordinatorNotAvailable);
        }
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for who in leaving {
            let member_id = match who.group_instance_id.as_deref() {
                Some(instance) => match group.static_members.get(instance) {
                    None => {
                        results.push(Err(LeaveMemberError::UnknownMemberId));
                        continue;
                    }
                    Some(current) if !who.member_id.is_empty() && *current != who.member_id => {
                        results.push(Err(LeaveMemberError::FencedInstanceId));
                        continue;
                    }
                    Some(current) => current.clone(),
                },
                None => who.member_id,
            };
            if group.pending.remove(&member_id).is_some() {
                results.push(Ok(()));
                continue;
            }
            if !group.members.contains_key(&member_id) {
                results.push(Err(LeaveMemberError::UnknownMemberId));
                continue;
            }
            tracing::info!(group = %group.id, member = %member_id, "member left");
            remove_member(group, &member_id);
            removed = true;
            results.push(Ok(()));
        }
        if removed {
            self.after_removal(group, "member left");
        } else {
            self.try_complete_join(group);
        }
        Ok(results)
    }

    fn after_removal(&self, group: &mut Group, reason: &str) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group, reason)
            }
            GroupState::PreparingRebalance => self.try_complete_join(group),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// OffsetCommit's checks against a classic group (creating one for a standalone
    /// committer); returns the group's id.
    fn check_classic_commit(
        &self,
        groups: &mut HashMap<String, Group>,
        params: &CommitParams,
    ) -> Result<String, CommitError> {
        let group = match groups.get_mut(&params.group_id) {
            Some(group) => group,
            None if params.generation_id < 0 => {
                // Not group-managed: the group exists only to hold offsets.
                groups
                    .entry(params.group_id.clone())
                    .or_insert_with(|| Group::new(&params.group_id))
            }
            None => return Err(CommitError::IllegalGeneration),
        };
        if group.state == GroupState::Dead {
            return Err(CommitError::CoordinatorNotAvailable);
        }
        if group.is_fenced(params.group_instance_id.as_deref(), &params.member_id) {
            return Err(CommitError::FencedInstanceId);
        }
        if !(params.generation_id < 0 && group.state == GroupState::Empty) {
            if group.state == GroupState::CompletingRebalance {
                return Err(CommitError::RebalanceInProgress);
            }
            let generation = group.generation;
            let Some(member) = group.members.get_mut(&params.member_id) else {
                return Err(CommitError::UnknownMemberId);
            };
            if params.generation_id != generation {
                return Err(CommitError::IllegalGeneration);
            }
            member.reset_deadline();
        }
        Ok(group.id.clone())
    }

    /// OffsetCommit: validates the committer as Kafka does and writes the offsets; await
    /// [`PendingCommit::durable`] before acknowledging.
    pub fn begin_commit(&self, params: CommitParams) -> Result<PendingCommit, CommitError> {
        if !valid_group_id(&params.group_id) {
            return Err(CommitError::InvalidGroupId);
        }
        let mut groups = lock(&self.inner);
        let consumer = consumer_admin::check_commit(
            &self.inner,
            &params.group_id,
            &params.member_id,
            params.generation_id,
        );
        let mut classic = None;
        if consumer.is_none() {
            classic = Some(self.check_classic_commit(&mut groups, &params)?);
        }
        let record = match consumer {
            Some(checked) => Some(checked?),
            None => None,
        };
        let now = now_ms();
        let mut results = Vec::with_capacity(params.offsets.len());
        let mut accepted = Vec::with_capacity(params.offsets.len());
        for offset in params.offsets {
            if offset
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > MAX_OFFSET_METADATA_BYTES)
            {
                results.push(Err(CommitPartitionError::MetadataTooLarge));
                continue;
            }
            results.push(Ok(()));
            accepted.push(CommittedOffset {
                topic: offset.topic,
                partition: offset.partition,
                offset: offset.offset,
                leader_epoch: offset.leader_epoch,
                metadata: offset.metadata,
                commit_timestamp_ms: now,
            });
        }
        if accepted.is_empty() {
            return Ok(PendingCommit {
                store: None,
                results,
            });
        }
        let record = match (record, classic.and_then(|id| groups.get_mut(&id))) {
            (Some(record), _) => record,
            (None, Some(group)) => {
                if group.members.is_empty() {
                    // A standalone committer: retention counts from its latest commit.
                    group.empty_since_ms = Some(now);
                }
                group.record()
            }
            (None, None) => return Err(CommitError::CoordinatorNotAvailable),
        };
        let store = &self.inner.store;
        store
            .store(&params.group_id, &accepted)
            .and_then(|()| store.put_group(&params.group_id, &record))
            .map_err(|e| CommitError::Storage(e.to_string()))?;
        Ok(PendingCommit {
            store: Some(store.clone()),
            results,
        })
    }

    /// Applies offsets a transaction committed: TxnOffsetCommit staged them with the
    /// transaction coordinator, and the commit makes them the group's committed offsets.
    /// The committer was checked when they were staged; the caller flushes the store.
    pub fn apply_transactional_offsets(
        &self,
        group_id: &str,
        offsets: Vec<CommittedOffset>,
    ) -> Result<(), CommitError> {
        let mut groups = lock(&self.inner);
        let record = match consumer_admin::record_of(&self.inner, group_id) {
            Some(record) => record,
            None => {
                let group = groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id));
                if group.members.is_empty() {
                    group.empty_since_ms = Some(now_ms());
                }
                group.record()
            }
        };
        let store = &self.inner.store;
        store
            .store(group_id, &offsets)
            .and_then(|()| store.put_group(group_id, &record))
            .map_err(|e| CommitError::Storage(e.to_string()))
    }

    /// TxnOffsetCommit's group check (KIP-447). A transactional producer that consumes
    /// in a group sends its consumer's member id and generation (v3+), so that a zombie
    /// whose consumer was rebalanced out cannot commit offsets for partitions another
    /// member now owns. As in Kafka, an empty member id or a negative generation skips
    /// that part of the check (clients before v3 send neither). The offsets themselves
    /// are staged with the transaction and written when it commits.
    pub fn check_txn_member(
        &self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), TxnMemberError> {
        let groups = lock(&self.inner);
        if let Some(checked) =
            consumer_admin::check_txn_member(&self.inner, group_id, generation_id, member_id)
        {
            return checked;
        }
        let Some(group) = groups.get(group_id) else {
            // No group yet: only an anonymous commit can be right about it.
            return match member_id.is_empty() {
                true => Ok(()),
                false => Err(TxnMemberError::UnknownMemberId),
            };
        };
        if group.state == GroupState::Dead {
            return Err(TxnMemberError::CoordinatorNotAvailable);
        }
        if group.is_fenced(group_instance_id, member_id) {
            return Err(TxnMemberError::FencedInstanceId);
        }
        if !member_id.is_empty() && !group.members.contains_key(member_id) {
            return Err(TxnMemberError::UnknownMemberId);
        }
        if generation_id >= 0 && generation_id != group.generation {
            return Err(TxnMemberError::IllegalGeneration);
        }
        Ok(())
    }

    /// OffsetCommit, acknowledged once durable.
    pub async fn commit_offsets(
        &self,
        params: CommitParams,
    ) -> Result<Vec<Result<(), CommitPartitionError>>, CommitError> {
        self.begin_commit(params)?.durable().await
    }

    /// OffsetFetch: the group's committed offsets, all of them (`None`) or the asked-for
    /// partitions (offset -1 where nothing is committed, as Kafka answers).
    pub async fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<CommittedOffset>, FetchOffsetsError> {
        self.fetch_offsets_now(group_id, partitions)
    }

    /// OffsetFetch without the async wrapper (it never waits).
    pub fn fetch_offsets_now(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, Vec<i32>)>>,
    ) -> Result<Vec<CommittedOffset>, FetchOffsetsError> {
        if !valid_group_id(group_id) {
            return Err(FetchOffsetsError::InvalidGroupId);
        }
        let store = &self.inner.store;
        let storage = |e: OffsetStoreError| FetchOffsetsError::Storage(e.to_string());
        match partitions {
            None => store.group_offsets(group_id).map_err(storage),
            Some(topics) => {
                let mut out = Vec::new();
                for (topic, parts) in topics {
                    for partition in parts {
                        let found = store.get(group_id, &topic, partition).map_err(storage)?;
                        out.push(found.unwrap_or(CommittedOffset {
                            topic: topic.clone(),
                            partition,
                            offset: -1,
                            leader_epoch: -1,
                            metadata: None,
                            commit_timestamp_ms: -1,
                        }));
                    }
                }
                Ok(out)
            }
        }
    }

    /// Committed offsets of one group, for lag metrics: (topic, partition) -> offset.
    pub fn committed(&self, group_id: &str) -> Vec<CommittedOffset> {
        self.inner.store.group_offsets(group_id).unwrap_or_default()
    }

    /// ListGroups, filtered by state names and group types (case-insensitive; empty
    /// filters match everything; every group here is of type `classic`).
    pub fn list(&self, states: &[String], types: &[String]) -> Vec<GroupListing> {
        let mut out = consumer_admin::listings(&self.inner, states, types);
        if types.is_empty() || types.iter().any(|t| t.eq_ignore_ascii_case("classic")) {
            let groups = lock(&self.inner);
            out.extend(
                groups
                    .values()
                    .filter(|g| g.state != GroupState::Dead)
                    .filter(|g| {
                        states.is_empty()
                            || states
                                .iter()
                                .any(|s| s.eq_ignore_ascii_case(g.state.name()))
                    })
                    .map(|g| GroupListing {
                        group_id: g.id.clone(),
                        protocol_type: g.protocol_type.clone().unwrap_or_default(),
                        state: g.state.name(),
                        group_type: "classic",
                    }),
            );
        }
        out.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        out
    }

    /// DescribeGroups for one group.
    pub fn describe(&self, group_id: &str) -> Result<GroupDescription, DescribeError> {
        if !valid_group_id(group_id) {
            return Err(DescribeError::InvalidGroupId);
        }
        let groups = lock(&self.inner);
        let group = groups
            .get(group_id)
            .filter(|g| g.state != GroupState::Dead)
            .ok_or(DescribeError::GroupIdNotFound)?;
        let stable = group.state == GroupState::Stable;
        Ok(GroupDescription {
            group_id: group.id.clone(),
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol: if stable {
                group.protocol_name.clone().unwrap_or_default()
            } else {
                String::new()
            },
            generation_id: group.generation,
            members: group
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(group.protocol_name.as_deref())
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
        })
    }

    /// DeleteGroups for one group: only an empty group may go, with all its offsets.
    pub async fn delete(&self, group_id: &str) -> Result<(), DeleteGroupError> {
        self.begin_delete(group_id)?;
        self.inner
            .store
            .flush()
            .await
            .map_err(|e| DeleteGroupError::Storage(e.to_string()))
    }

    /// DeleteGroups' side effects now; await the store's flush (via [`Self::delete`] or
    /// [`Self::flush`]) before acknowledging.
    pub fn begin_delete(&self, group_id: &str) -> Result<(), DeleteGroupError> {
        if !valid_group_id(group_id) {
            return Err(DeleteGroupError::InvalidGroupId);
        }
        let mut groups = lock(&self.inner);
        if let Some(deleted) = consumer_admin::delete(&self.inner, group_id) {
            deleted?;
            return self
                .inner
                .store
                .remove_group(group_id)
                .map_err(|e| DeleteGroupError::Storage(e.to_string()));
        }
        match groups.get(group_id) {
            None => return Err(DeleteGroupError::GroupIdNotFound),
            Some(g) if g.state == GroupState::Dead => {
                return Err(DeleteGroupError::GroupIdNotFound)
            }
            Some(g) if g.state != GroupState::Empty => return Err(DeleteGroupError::NonEmptyGroup),
            Some(_) => {}
        }
        groups.remove(group_id);
        self.inner
            .store
            .remove_group(group_id)
            .map_err(|e| DeleteGroupError::Storage(e.to_string()))
    }

    /// Waits until every change made so far is on disk.
    pub async fn flush(&self) -> Result<(), OffsetStoreError> {
        self.inner.store.flush().await
    }

    /// OffsetDelete: removes some partitions' offsets, refusing topics an active member
    /// of a consumer group subscribes to.
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<OffsetDeleteResult>, DeleteOffsetsError> {
        let results = self.begin_delete_offsets(group_id, partitions)?;
        self.inner
            .store
            .flush()
            .await
            .map_err(|e| DeleteOffsetsError::Storage(e.to_string()))?;
        Ok(results)
    }

    /// OffsetDelete's side effects now; await [`Self::flush`] before acknowledging.
    pub fn begin_delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, Vec<i32>)>,
    ) -> Result<Vec<OffsetDeleteResult>, DeleteOffsetsError> {
        if !valid_group_id(group_id) {
            return Err(DeleteOffsetsError::InvalidGroupId);
        }
        let results = {
            let groups = lock(&self.inner);
            let consumer_subscribed = consumer_admin::subscribed(&self.inner, group_id);
            let group = groups.get(group_id).filter(|g| g.state != GroupState::Dead);
            if consumer_subscribed.is_none() && group.is_none() {
                return Err(DeleteOffsetsError::GroupIdNotFound);
            }
            let subscribed: Vec<String> = if let Some(topics) = consumer_subscribed {
                topics?
            } else if let Some(group) = group.filter(|g| g.state != GroupState::Empty) {
                if group.protocol_type.as_deref() != Some("consumer") {
                    return Err(DeleteOffsetsError::NonEmptyGroup);
                }
                group
                    .members
                    .values()
                    .flat_map(|m| {
                        // A member whose subscription cannot be read might consume
                        // anything: protect every topic from it.
                        subscribed_topics(&m.metadata(group.protocol_name.as_deref()))
                            .unwrap_or_else(|| vec!["\u{0}*".to_string()])
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let mut results = Vec::new();
            let mut removable = Vec::new();
            for (topic, parts) in partitions {
                let busy = subscribed.iter().any(|s| *s == topic || s == "\u{0}*");
                for partition in parts {
                    if busy {
                        results.push((
                            topic.clone(),
                            partition,
                            Err(DeleteOffsetPartitionError::GroupSubscribedToTopic),
                        ));
                    } else {
                        removable.push((topic.clone(), partition));
                        results.push((topic.clone(), partition, Ok(())));
                    }
                }
            }
            self.inner
                .store
                .remove(group_id, &removable)
                .map_err(|e| DeleteOffsetsError::Storage(e.to_string()))?;
            results
        };
        Ok(results)
    }

    /// Drops offsets of groups that have had no members for `offsets.retention.minutes`
    /// (standalone committers: since their last commit), and such groups themselves.
    pub fn expire_offsets(&self) {
        let retention =
            i64::try_from(self.inner.settings.offsets_retention.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms();
        let mut groups = lock(&self.inner);
        let store = &self.inner.store;
        let has_offsets = |id: &str| store.group_offsets(id).is_ok_and(|o| !o.is_empty());
        for id in consumer_admin::expire(&self.inner, retention, now, &has_offsets) {
            tracing::info!(group = %id, "offsets expired; removing consumer group");
            if let Err(error) = store.remove_group(&id) {
                tracing::warn!(group = %id, %error, "cannot remove expired offsets");
            }
        }
        let expired: Vec<String> = groups
            .values()
            .filter(|g| g.state == GroupState::Empty)
            .filter(|g| {
                // Kafka drops an empty group without offsets at once; one with offsets
                // once they expire.
                g.empty_since_ms
                    .is_some_and(|t| now.saturating_sub(t) >= retention)
                    || self
                        .inner
                        .store
                        .group_offsets(&g.id)
                        .is_ok_and(|o| o.is_empty())
            })
            .map(|g| g.id.clone())
            .collect();
        for id in expired {
            tracing::info!(group = %id, "offsets expired; removing group");
            groups.remove(&id);
            if let Err(error) = self.inner.store.remove_group(&id) {
                tracing::warn!(group = %id, %error, "cannot remove expired offsets");
            }
        }
    }

    /// Starts the periodic offset expiry (every minute, at most the retention).
    pub fn start_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = self
            .inner
            .settings
            .offsets_retention
            .min(Duration::from_secs(60))
            .max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                GroupCoordinator { inner }.expire_offsets();
            }
        });
    }

    fn spawn_session_timer(&self, group_id: &str, member_id: &str, session: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let group_id = group_id.to_string();
        let member_id = member_id.to_string();
        spawn_timer(session_timer(weak, group_id, member_id, session));
    }

    fn spawn_pending_timer(&self, group_id: &str, member_id: &str, timeout: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let group_id = group_id.to_string();
        let member_id = member_id.to_string();
        spawn_timer(async move {
            tokio::time::sleep(timeout).await;
            let Some(inner) = weak.upgrade() else { return };
            let coordinator = GroupCoordinator { inner };
            let mut groups = lock(&coordinator.inner);
            if let Some(group) = groups.get_mut(&group_id) {
                if let Some(deadline) = group.pending.get(&member_id) {
                    if Instant::now() >= *deadline {
                        group.pending.remove(&member_id);
                        coordinator.try_complete_join(group);
                    }
                }
            }
        });
    }

    fn spawn_rebalance_timer(&self, group: &Group, deadline: Instant) {
        let weak = Arc::downgrade(&self.inner);
        let group_id = group.id.clone();
        let epoch = group.rebalance_epoch;
        let not_before = group.join_not_before;
        spawn_timer(async move {
            if let Some(at) = not_before {
                tokio::time::sleep_until(at).await;
                let Some(inner) = weak.upgrade() else { return };
                let coordinator = GroupCoordinator { inner };
                let mut groups = lock(&coordinator.inner);
                match groups.get_mut(&group_id) {
                    Some(group) if group.rebalance_epoch == epoch => {
                        coordinator.try_complete_join(group)
                    }
                    _ => return,
                }
            }
            tokio::time::sleep_until(deadline).await;
            let Some(inner) = weak.upgrade() else { return };
            let coordinator = GroupCoordinator { inner };
            let mut groups = lock(&coordinator.inner);
            if let Some(group) = groups.get_mut(&group_id) {
                if group.rebalance_epoch == epoch && group.state == GroupState::PreparingRebalance {
                    coordinator.complete_join(group);
                }
            }
        });
    }
}

/// Group ids are non-empty and fit the offset store's u16 length prefix (Kafka sets no
/// upper limit; 64 KiB of group id is not a real name).
pub(super) fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && group_id.len() <= usize::from(u16::MAX)
}

/// Starts a timer task. The coordinator must be driven from inside a tokio runtime (the
/// broker's, or an in-process caller's); outside one, timers cannot run: say so loudly
/// rather than panic.
pub(super) fn spawn_timer<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(future);
        }
        Err(_) => {
            tracing::error!("group coordinator used outside a tokio runtime: timers disabled")
        }
    }
}

/// One partition's outcome in OffsetDelete: topic, partition, result.
pub type OffsetDeleteResult = (String, i32, Result<(), DeleteOffsetPartitionError>);

fn rebalance_timeout(params: &JoinParams) -> Duration {
    // JoinGroup v0 has no rebalance timeout: Kafka uses the session timeout.
    let ms = if params.rebalance_timeout_ms > 0 {
        params.rebalance_timeout_ms
    } else {
        params.session_timeout_ms
    };
    Duration::from_millis(ms.max(0) as u64)
}

/// Removes a member, answering anything it waits on and freeing its instance id.
fn remove_member(group: &mut Group, member_id: &str) {
    if let Some(mut member) = group.members.shift_remove(member_id) {
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(Err(JoinError::UnknownMemberId));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(Err(SyncError::UnknownMemberId));
        }
        if let Some(instance) = &member.group_instance_id {
            if group.static_members.get(instance).map(String::as_str) == Some(member_id) {
                group.static_members.remove(instance);
            }
        }
        if group.leader.as_deref() == Some(member_id) {
            group.leader = group.members.keys().next().cloned();
        }
    }
}

/// Expires a member whose session passed without a heartbeat, then rebalances the rest.
async fn session_timer(weak: Weak<Inner>, group_id: String, member_id: String, session: Duration) {
    let mut wake = Instant::now() + session;
    loop {
        tokio::time::sleep_until(wake).await;
        let Some(inner) = weak.upgrade() else { return };
        let coordinator = GroupCoordinator { inner };
        let mut groups = lock(&coordinator.inner);
        let Some(group) = groups.get_mut(&group_id) else {
            return;
        };
        let Some(member) = group.members.get(&member_id) else {
            return;
        };
        let now = Instant::now();
        if member.awaiting_join.is_some() || member.awaiting_sync.is_some() {
            // Kept alive while it waits on us.
            wake = now + member.session_timeout;
            continue;
        }
        if now < member.heartbeat_deadline {
            wake = member.heartbeat_deadline;
            continue;
        }
        tracing::info!(group = %group_id, member = %member_id, "session timed out; removing member");
        remove_member(group, &member_id);
        coordinator.after_removal(group, "member session timed out");
        return;
    }
}
