//! The classic protocol's join and sync phases: JoinGroup (new, known and static
//! members), the rebalance that gathers every member, the new generation, and SyncGroup
//! handing out the leader's assignment.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{
    new_member_id, rebalance_timeout, remove_member, Group, JoinReply, JoinWait, Member, SyncWait,
};
use crate::groups::coordinator::{lock, valid_group_id};
use crate::groups::offsets::now_ms;
use crate::groups::*;

impl GroupCoordinator {
    /// JoinGroup, answered when the rebalance completes.
    pub async fn join(&self, params: JoinParams) -> Result<JoinOutcome, JoinError> {
        self.begin_join(params).outcome().await
    }

    /// JoinGroup's side effects now, its answer later: wire handlers apply requests in
    /// order and must not wait for the rebalance while doing so. A consumer group
    /// resolves the member's subscription with only the topics it already knows; wire
    /// requests use [`Self::begin_join_in`].
    pub fn begin_join(&self, params: JoinParams) -> JoinWait {
        self.begin_join_with(params, None)
    }

    /// [`Self::begin_join`] with the broker's topics, which a classic member joining a
    /// consumer group subscribes by name.
    pub fn begin_join_in(&self, params: JoinParams, catalog: &dyn TopicCatalog) -> JoinWait {
        self.begin_join_with(params, Some(catalog))
    }

    fn begin_join_with(&self, params: JoinParams, catalog: Option<&dyn TopicCatalog>) -> JoinWait {
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
        if !groups.contains_key(&params.group_id) {
            if let Some(result) = self.join_consumer_group(&mut groups, &params, catalog) {
                return JoinWait::Ready(result);
            }
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
    pub(in crate::groups) fn join_unknown(
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

    pub(in crate::groups) fn join_known(
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
    pub(in crate::groups) fn static_rejoin(
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

    pub(in crate::groups) fn add_member_and_rebalance(
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

    pub(in crate::groups) fn update_member(
        &self,
        group: &mut Group,
        params: &JoinParams,
        tx: JoinReply,
    ) {
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

    pub(in crate::groups) fn prepare_rebalance(&self, group: &mut Group, reason: &str) {
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

    pub(in crate::groups) fn try_complete_join(&self, group: &mut Group) {
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
    pub(in crate::groups) fn complete_join(&self, group: &mut Group) {
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
            let result = self.sync_consumer_group(&params);
            return SyncWait::Ready(result.unwrap_or(Err(SyncError::UnknownMemberId)));
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
}
