//! Classic members of a consumer group (KIP-848's online migration): consumers still on
//! the classic protocol keep using JoinGroup, SyncGroup, Heartbeat and LeaveGroup, and
//! the coordinator maps them onto the consumer group as Kafka's `GroupMetadataManager`
//! does (`classicGroupJoinToConsumerGroup` and its siblings).
//!
//! The server-side assignor computes their assignment like anyone else's. JoinGroup
//! reconciles the member (with the partitions its subscription says it owns: a
//! cooperative member revokes in place, an eager one gave everything up before
//! rejoining) and answers with its member epoch as the generation and no leader, so the
//! client assigns nothing itself; SyncGroup hands out what it may own now; Heartbeat
//! answers REBALANCE_IN_PROGRESS when it must rejoin to revoke, to collect partitions
//! others released, or to catch up with a new group epoch.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::{Assignment, ConsumerGroup, ConsumerMember, MemberState, TopicCatalog};
use crate::groups::classic::{rebalance_timeout, Group};
use crate::groups::coordinator::lock_consumer;
use crate::groups::subscription::{encode_assignment, parse_subscription, TopicPartitions};
use crate::groups::*;

/// The protocol type of every group a consumer group can convert to or from.
pub(crate) const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The group's resolved topics as a catalog: what requests without the broker's topic
/// registry at hand (LeaveGroup, in-process JoinGroup) resolve subscriptions with.
pub(crate) struct KnownTopics(pub BTreeMap<String, (Uuid, i32)>);

impl TopicCatalog for KnownTopics {
    fn topic(&self, name: &str) -> Option<(Uuid, i32)> {
        self.0.get(name).copied()
    }
    fn name_of(&self, id: Uuid) -> Option<String> {
        self.0
            .iter()
            .find(|(_, (topic, _))| *topic == id)
            .map(|(name, _)| name.clone())
    }
    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// Partitions by name to partitions by id; unknown topics are dropped.
pub(crate) fn to_assignment(
    partitions: &TopicPartitions,
    catalog: &dyn TopicCatalog,
) -> Assignment {
    let mut out = Assignment::new();
    for (name, parts) in partitions {
        if let Some((id, _)) = catalog.topic(name) {
            out.entry(id).or_default().extend(parts.iter().copied());
        }
    }
    out
}

/// Partitions by id to partitions by name; topics the catalog no longer knows are
/// dropped.
pub(crate) fn to_topic_partitions(
    assignment: &Assignment,
    catalog: &dyn TopicCatalog,
) -> TopicPartitions {
    assignment
        .iter()
        .filter_map(|(id, parts)| {
            let name = catalog.name_of(*id)?;
            Some((name, parts.iter().copied().collect()))
        })
        .collect()
}

/// The version of a member's preferred protocol's subscription: its assignment is
/// written in the same version, as Kafka's `prepareAssignment` does.
pub(crate) fn assignment_version(protocols: &[(String, Bytes)]) -> i16 {
    protocols
        .first()
        .and_then(|(_, m)| m.get(..2))
        .map_or(0, |v| i16::from_be_bytes([v[0], v[1]]))
}

/// Why a classic request found no usable member.
enum Lookup {
    Unknown,
    Fenced,
}

impl ConsumerGroup {
    /// Kafka's `supportsClassicProtocols`: the consumer protocol type, and a protocol
    /// every classic member supports.
    pub(crate) fn supports_classic(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        if protocol_type != CONSUMER_PROTOCOL_TYPE || protocols.is_empty() {
            return false;
        }
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .filter_map(|m| m.classic.as_ref())
                .all(|theirs| theirs.iter().any(|(n, _)| n == name))
        })
    }

    /// Whether `member_id` is the only member not on the classic protocol (Kafka's
    /// `allMembersUseClassicProtocolExcept`): its departure downgrades the group.
    pub(crate) fn only_classic_besides(&self, member_id: &str) -> bool {
        self.members
            .get(member_id)
            .is_some_and(|m| m.classic.is_none())
            && self
                .members
                .values()
                .all(|m| m.member_id == member_id || m.classic.is_some())
    }

    /// Kafka's `waitingOnUnreleasedPartition`: a target partition the member lacks is
    /// still owned by another member.
    fn waiting_on_unreleased(&self, member: &ConsumerMember) -> bool {
        member.state == MemberState::UnreleasedPartitions
            && self.target.get(&member.member_id).is_some_and(|target| {
                target.iter().any(|(topic, parts)| {
                    parts.iter().any(|p| {
                        !member.assigned.get(topic).is_some_and(|a| a.contains(p))
                            && self.owned_by_other(&member.member_id, *topic, *p)
                    })
                })
            })
    }

    /// Kafka's `validateConsumerGroupMember` plus `throwIfMemberDoesNotUseClassicProtocol`.
    fn classic_member(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&mut ConsumerMember, Lookup> {
        let id = match instance_id {
            Some(instance) => match self.static_members.get(instance) {
                None => return Err(Lookup::Unknown),
                Some(current) if current != member_id => return Err(Lookup::Fenced),
                Some(current) => current.clone(),
            },
            None => member_id.to_string(),
        };
        match self.members.get_mut(&id) {
            Some(member) if member.classic.is_some() => Ok(member),
            _ => Err(Lookup::Unknown),
        }
    }

    /// JoinGroup from a classic member. Returns the answer and whether the member is new
    /// (it needs a session timer).
    pub(crate) fn classic_join(
        &mut self,
        params: &JoinParams,
        catalog: &dyn TopicCatalog,
    ) -> Result<(JoinOutcome, bool), JoinError> {
        let unknown = params.member_id.is_empty();
        let member_id = if unknown {
            Uuid::new_v4().to_string()
        } else {
            params.member_id.clone()
        };
        if !self.supports_classic(&params.protocol_type, &params.protocols) {
            return Err(JoinError::InconsistentGroupProtocol);
        }
        if unknown && params.require_known_member_id && params.group_instance_id.is_none() {
            return Err(JoinError::MemberIdRequired { member_id });
        }
        let protocol_name = params
            .protocols
            .first()
            .map(|(name, _)| name.clone())
            .ok_or(JoinError::InconsistentGroupProtocol)?;
        let subscription = params
            .protocols
            .first()
            .and_then(|(_, metadata)| parse_subscription(metadata))
            .ok_or(JoinError::InconsistentGroupProtocol)?;
        let session = Duration::from_millis(params.session_timeout_ms.max(0) as u64);
        // `new`: needs a session timer; `joined`: a member the group did not have (a
        // static successor is not one: its subscription decides).
        let (mut new, mut joined) = (false, false);
        match params.group_instance_id.as_deref() {
            None => {
                if !self.members.contains_key(&member_id) {
                    self.members
                        .insert(member_id.clone(), ConsumerMember::new(&member_id, session));
                    new = true;
                    joined = true;
                }
            }
            Some(instance) => match self.static_members.get(instance).cloned() {
                Some(current) if current == member_id => {}
                Some(current) if unknown => {
                    // A restarted static member takes its predecessor's place, epoch
                    // and assignment.
                    let target = self.target.get(&current).cloned();
                    if let Some(mut member) = self.remove_member(&current) {
                        member.member_id = member_id.clone();
                        let target = target.unwrap_or_else(|| member.assigned.clone());
                        self.target.insert(member_id.clone(), target);
                        self.members.insert(member_id.clone(), member);
                    }
                    self.static_members
                        .insert(instance.to_string(), member_id.clone());
                    new = true;
                }
                Some(_) => return Err(JoinError::FencedInstanceId),
                None if unknown => {
                    self.members
                        .insert(member_id.clone(), ConsumerMember::new(&member_id, session));
                    self.static_members
                        .insert(instance.to_string(), member_id.clone());
                    new = true;
                    joined = true;
                }
                None => return Err(JoinError::UnknownMemberId),
            },
        }
        let Some(member) = self.members.get_mut(&member_id) else {
            return Err(JoinError::UnknownMemberId);
        };
        let mut names = subscription.topics.clone();
        names.sort();
        names.dedup();
        let mut bump = joined;
        if names != member.subscribed_names || member.subscribed_regex.is_some() {
            member.subscribed_names = names;
            member.subscribed_regex = None;
            bump = true;
        }
        member.instance_id.clone_from(&params.group_instance_id);
        if subscription.rack_id.is_some() {
            member.rack_id = subscription.rack_id.clone();
        }
        member.rebalance_timeout = rebalance_timeout(params);
        member.client_id.clone_from(&params.client_id);
        member.client_host.clone_from(&params.client_host);
        member.classic = Some(params.protocols.clone());
        member.session_timeout = session;
        member.session_deadline = Instant::now() + session;
        // Kafka's sync timeout: the member must come back with SyncGroup in time.
        member.classic_deadline = Some(Instant::now() + member.rebalance_timeout);
        self.empty_since_ms = None;
        self.refresh_target(bump, catalog);
        let owned = to_assignment(&subscription.owned, catalog);
        let Some((_, after)) = self.reconcile_member(&member_id, Some(&owned)) else {
            return Err(JoinError::UnknownMemberId);
        };
        tracing::info!(group = %self.id, member = %member_id, epoch = after.member_epoch, state = ?after.state, "classic member joined the consumer group");
        Ok((
            JoinOutcome {
                generation_id: after.member_epoch,
                protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
                protocol_name: Some(protocol_name),
                leader: String::new(),
                member_id,
                members: Vec::new(),
                skip_assignment: false,
            },
            new,
        ))
    }

    /// SyncGroup from a classic member: its current assignment, unless it must rejoin.
    pub(crate) fn classic_sync(&mut self, params: &SyncParams) -> Result<SyncOutcome, SyncError> {
        let group_epoch = self.group_epoch;
        let catalog = KnownTopics(self.subscribed_topics.clone());
        let member = self
            .classic_member(&params.member_id, params.group_instance_id.as_deref())
            .map_err(|e| match e {
                Lookup::Unknown => SyncError::UnknownMemberId,
                Lookup::Fenced => SyncError::FencedInstanceId,
            })?;
        if params.generation_id != member.member_epoch {
            return Err(SyncError::IllegalGeneration);
        }
        let protocols = member.classic.clone().unwrap_or_default();
        let protocol_name = protocols.first().map(|(name, _)| name.clone());
        if params
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE)
            || params
                .protocol_name
                .as_ref()
                .is_some_and(|n| Some(n) != protocol_name.as_ref())
        {
            return Err(SyncError::InconsistentGroupProtocol);
        }
        if group_epoch > member.member_epoch && member.state != MemberState::UnrevokedPartitions {
            // Kafka's join timeout: it must rejoin within its rebalance timeout.
            member.classic_deadline = Some(Instant::now() + member.rebalance_timeout);
            return Err(SyncError::RebalanceInProgress);
        }
        member.classic_deadline = None;
        member.session_deadline = Instant::now() + member.session_timeout;
        let partitions = to_topic_partitions(&member.assigned, &catalog);
        Ok(SyncOutcome {
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name,
            assignment: Bytes::from(encode_assignment(
                assignment_version(&protocols),
                &partitions,
            )),
        })
    }

    /// Heartbeat from a classic member: REBALANCE_IN_PROGRESS when it must rejoin.
    pub(crate) fn classic_heartbeat(
        &mut self,
        params: &HeartbeatParams,
    ) -> Result<(), HeartbeatError> {
        let group_epoch = self.group_epoch;
        let member = self
            .classic_member(&params.member_id, params.group_instance_id.as_deref())
            .map_err(|e| match e {
                Lookup::Unknown => HeartbeatError::UnknownMemberId,
                Lookup::Fenced => HeartbeatError::FencedInstanceId,
            })?;
        if params.generation_id != member.member_epoch {
            return Err(HeartbeatError::IllegalGeneration);
        }
        member.session_deadline = Instant::now() + member.session_timeout;
        let member = member.clone();
        let rejoin = member.member_epoch < group_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions
                && !self.waiting_on_unreleased(&member));
        if rejoin {
            if let Some(m) = self.members.get_mut(&member.member_id) {
                if m.classic_deadline.is_none() {
                    m.classic_deadline = Some(Instant::now() + m.rebalance_timeout);
                }
            }
            return Err(HeartbeatError::RebalanceInProgress);
        }
        Ok(())
    }

    /// LeaveGroup for classic members; the group epoch moves on if anyone left.
    pub(crate) fn classic_leave(
        &mut self,
        leaving: Vec<LeavingMember>,
    ) -> Vec<Result<(), LeaveMemberError>> {
        let mut results = Vec::with_capacity(leaving.len());
        let mut removed = false;
        for who in leaving {
            let found = match who.group_instance_id.as_deref() {
                Some(instance) => match self.static_members.get(instance) {
                    None => Err(LeaveMemberError::UnknownMemberId),
                    Some(current) if !who.member_id.is_empty() && *current != who.member_id => {
                        Err(LeaveMemberError::FencedInstanceId)
                    }
                    Some(current) => Ok(current.clone()),
                },
                None => Ok(who.member_id.clone()),
            };
            let result = found.and_then(|id| {
                match self.members.get(&id) {
                    Some(m) if m.classic.is_some() => {}
                    _ => return Err(LeaveMemberError::UnknownMemberId),
                }
                tracing::info!(group = %self.id, member = %id, "classic member left the consumer group");
                self.remove_member(&id);
                removed = true;
                Ok(())
            });
            results.push(result);
        }
        if removed {
            let known = KnownTopics(self.subscribed_topics.clone());
            self.refresh_target(true, &known);
        }
        results
    }
}

impl GroupCoordinator {
    /// A classic JoinGroup for an id a consumer group holds: `None` if none does (an
    /// empty consumer group gives its id up, keeping its offsets, as Kafka's does). A
    /// static member replacing the last consumer-protocol member downgrades the group.
    pub(in crate::groups) fn join_consumer_group(
        &self,
        classic: &mut HashMap<String, Group>,
        params: &JoinParams,
        catalog: Option<&dyn TopicCatalog>,
    ) -> Option<Result<JoinOutcome, JoinError>> {
        let mut groups = lock_consumer(&self.inner);
        let group = groups.get_mut(&params.group_id)?;
        if group.members.is_empty() {
            groups.remove(&params.group_id);
            return None;
        }
        let known = KnownTopics(group.subscribed_topics.clone());
        let epoch_before = group.group_epoch;
        let replacing = params.member_id.is_empty()
            && params
                .group_instance_id
                .as_ref()
                .is_some_and(|i| group.static_members.contains_key(i));
        let result = group.classic_join(params, catalog.unwrap_or(&known));
        if group.group_epoch != epoch_before {
            if let Err(error) = self.inner.store.put_group(&group.id, &group.record()) {
                tracing::warn!(group = %group.id, %error, "cannot record consumer group epoch");
            }
        }
        if result.is_ok()
            && replacing
            && self.downgrade_if_all_classic(classic, &mut groups, &params.group_id)
        {
            return Some(result.map(|(outcome, _)| outcome));
        }
        Some(result.map(|(outcome, new)| {
            if new {
                let session = Duration::from_millis(params.session_timeout_ms.max(0) as u64);
                self.spawn_consumer_member_timer(&params.group_id, &outcome.member_id, session);
            }
            outcome
        }))
    }

    /// A classic SyncGroup for a consumer group; `None` if the id is not one.
    pub(in crate::groups) fn sync_consumer_group(
        &self,
        params: &SyncParams,
    ) -> Option<Result<SyncOutcome, SyncError>> {
        let mut groups = lock_consumer(&self.inner);
        Some(groups.get_mut(&params.group_id)?.classic_sync(params))
    }

    /// A classic Heartbeat for a consumer group; `None` if the id is not one.
    pub(in crate::groups) fn heartbeat_consumer_group(
        &self,
        params: &HeartbeatParams,
    ) -> Option<Result<(), HeartbeatError>> {
        let mut groups = lock_consumer(&self.inner);
        Some(groups.get_mut(&params.group_id)?.classic_heartbeat(params))
    }

    /// A classic LeaveGroup for a consumer group; `None` if the id is not one.
    pub(in crate::groups) fn leave_consumer_group(
        &self,
        group_id: &str,
        leaving: Vec<LeavingMember>,
    ) -> Option<Vec<Result<(), LeaveMemberError>>> {
        let mut groups = lock_consumer(&self.inner);
        let group = groups.get_mut(group_id)?;
        let epoch_before = group.group_epoch;
        let results = group.classic_leave(leaving);
        if group.group_epoch != epoch_before {
            if let Err(error) = self.inner.store.put_group(&group.id, &group.record()) {
                tracing::warn!(group = %group.id, %error, "cannot record consumer group epoch");
            }
        }
        Some(results)
    }
}
