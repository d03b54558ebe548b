//! The classic protocol's membership upkeep: Heartbeat, LeaveGroup, and the timers
//! (session, pending member, rebalance) that expire members and complete join phases.
//!
//! Timers never mutate a group they no longer own: a rebalance timer checks the group's
//! rebalance epoch, a member timer checks the member still exists with its deadline due.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::Instant;

use super::{remove_member, Group};
use crate::groups::coordinator::{lock, spawn_timer, valid_group_id, Inner};
use crate::groups::*;

impl GroupCoordinator {
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
            let result = self.heartbeat_consumer_group(&params);
            return result.unwrap_or(Err(HeartbeatError::UnknownMemberId));
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
            let unknown = |n: usize| (0..n).map(|_| Err(LeaveMemberError::UnknownMemberId));
            let n = leaving.len();
            return Ok(self
                .leave_consumer_group(group_id, leaving)
                .unwrap_or_else(|| unknown(n).collect()));
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

    pub(in crate::groups) fn after_removal(&self, group: &mut Group, reason: &str) {
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(group, reason)
            }
            GroupState::PreparingRebalance => self.try_complete_join(group),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    pub(in crate::groups) fn spawn_session_timer(
        &self,
        group_id: &str,
        member_id: &str,
        session: Duration,
    ) {
        let weak = Arc::downgrade(&self.inner);
        let group_id = group_id.to_string();
        let member_id = member_id.to_string();
        spawn_timer(session_timer(weak, group_id, member_id, session));
    }

    pub(in crate::groups) fn spawn_pending_timer(
        &self,
        group_id: &str,
        member_id: &str,
        timeout: Duration,
    ) {
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

    pub(in crate::groups) fn spawn_rebalance_timer(&self, group: &Group, deadline: Instant) {
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
