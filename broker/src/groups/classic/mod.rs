//! Kafka's classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): the
//! group and member state, after Kafka's `ClassicGroup`. The join and sync phases live
//! in `join`, heartbeats, departures and the timers in `membership`.

mod join;
mod membership;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use indexmap::IndexMap;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::groups::offsets::{now_ms, GroupRecord};
use crate::groups::*;

pub(in crate::groups) type JoinReply = oneshot::Sender<Result<JoinOutcome, JoinError>>;
pub(in crate::groups) type SyncReply = oneshot::Sender<Result<SyncOutcome, SyncError>>;

#[derive(Debug)]
pub(in crate::groups) struct Member {
    pub(in crate::groups) member_id: String,
    pub(in crate::groups) group_instance_id: Option<String>,
    pub(in crate::groups) client_id: String,
    pub(in crate::groups) client_host: String,
    pub(in crate::groups) session_timeout: Duration,
    pub(in crate::groups) rebalance_timeout: Duration,
    pub(in crate::groups) protocols: Vec<(String, Bytes)>,
    pub(in crate::groups) assignment: Bytes,
    pub(in crate::groups) awaiting_join: Option<JoinReply>,
    pub(in crate::groups) awaiting_sync: Option<SyncReply>,
    pub(in crate::groups) heartbeat_deadline: Instant,
}

impl Member {
    pub(in crate::groups) fn metadata(&self, protocol: Option<&str>) -> Bytes {
        protocol
            .and_then(|p| self.protocols.iter().find(|(name, _)| name == p))
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    pub(in crate::groups) fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    pub(in crate::groups) fn reset_deadline(&mut self) {
        self.heartbeat_deadline = Instant::now() + self.session_timeout;
    }
}

#[derive(Debug)]
pub(in crate::groups) struct Group {
    pub(in crate::groups) id: String,
    pub(in crate::groups) state: GroupState,
    pub(in crate::groups) generation: i32,
    pub(in crate::groups) protocol_type: Option<String>,
    pub(in crate::groups) protocol_name: Option<String>,
    pub(in crate::groups) leader: Option<String>,
    pub(in crate::groups) members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, not yet rejoined.
    pub(in crate::groups) pending: HashMap<String, Instant>,
    /// Static instance id to its current member id.
    pub(in crate::groups) static_members: HashMap<String, String>,
    /// Bumped by every rebalance, so a stale rebalance timer does nothing.
    pub(in crate::groups) rebalance_epoch: u64,
    /// The join phase may not complete before this (initial rebalance delay).
    pub(in crate::groups) join_not_before: Option<Instant>,
    pub(in crate::groups) empty_since_ms: Option<i64>,
}

impl Group {
    pub(in crate::groups) fn new(id: &str) -> Self {
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

    pub(in crate::groups) fn supports(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
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
    pub(in crate::groups) fn select_protocol(&self) -> Option<String> {
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

    pub(in crate::groups) fn is_fenced(&self, instance: Option<&str>, member_id: &str) -> bool {
        match instance.and_then(|i| self.static_members.get(i)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    pub(in crate::groups) fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    pub(in crate::groups) fn join_outcome_for(
        &self,
        member_id: &str,
        with_members: bool,
    ) -> JoinOutcome {
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

    pub(in crate::groups) fn record(&self) -> GroupRecord {
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

pub(in crate::groups) fn new_member_id(prefix: &str) -> String {
    let prefix = if prefix.is_empty() { "member" } else { prefix };
    format!("{prefix}-{}", uuid::Uuid::new_v4())
}

pub(in crate::groups) fn rebalance_timeout(params: &JoinParams) -> Duration {
    // JoinGroup v0 has no rebalance timeout: Kafka uses the session timeout.
    let ms = if params.rebalance_timeout_ms > 0 {
        params.rebalance_timeout_ms
    } else {
        params.session_timeout_ms
    };
    Duration::from_millis(ms.max(0) as u64)
}

/// Removes a member, answering anything it waits on and freeing its instance id.
pub(in crate::groups) fn remove_member(group: &mut Group, member_id: &str) {
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
