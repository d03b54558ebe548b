//! ConsumerGroupHeartbeat and ConsumerGroupDescribe against the coordinator: request
//! validation as Kafka's `GroupMetadataManager` does it, member lifecycle (join, static
//! takeover, leave), target assignment and per-member reconciliation, and the timer that
//! expires a member whose session passed or who did not revoke in time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use tokio::time::Instant;
use uuid::Uuid;

use super::assignor::{self, AssignorMember};
use super::reconcile::reconcile;
use super::*;
use crate::groups::classic::Group;
use crate::groups::coordinator::{lock, lock_consumer, valid_group_id};
use crate::groups::offsets::GroupRecord;
use crate::groups::GroupCoordinator;
use crate::groups::GroupState;

type HbResult = Result<ConsumerHeartbeatOutcome, ConsumerHeartbeatError>;

impl ConsumerGroup {
    /// A group from a previous run: its epoch, no members (they rejoin).
    pub(crate) fn restored(id: &str, record: &GroupRecord) -> Self {
        let mut group = ConsumerGroup::new(id);
        group.group_epoch = record.generation;
        group.assignment_epoch = record.generation;
        group.empty_since_ms = record.empty_since_ms.or(Some(now_ms()));
        group
    }

    /// What is persisted about the group.
    pub(crate) fn record(&self) -> GroupRecord {
        GroupRecord {
            protocol_type: Some("consumer".to_string()),
            generation: self.group_epoch,
            empty_since_ms: self.empty_since_ms,
            group_type: Some("consumer".to_string()),
        }
    }

    pub(crate) fn resolve_topics(
        &self,
        catalog: &dyn TopicCatalog,
    ) -> BTreeMap<String, (Uuid, i32)> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut regexes = Vec::new();
        for member in self.members.values() {
            names.extend(member.subscribed_names.iter().cloned());
            if let Some(re) = member.subscribed_regex.as_deref() {
                if let Ok(re) = compile_regex(re) {
                    regexes.push(re);
                }
            }
        }
        if !regexes.is_empty() {
            names.extend(
                catalog
                    .names()
                    .into_iter()
                    .filter(|n| !n.starts_with("__") && regexes.iter().any(|r| r.is_match(n))),
            );
        }
        names
            .into_iter()
            .filter_map(|n| catalog.topic(&n).map(|t| (n, t)))
            .collect()
    }

    /// Re-resolves the subscribed topics (a change bumps the group epoch, as `bump`
    /// does) and computes a new target assignment if the epoch moved past it.
    pub(crate) fn refresh_target(&mut self, mut bump: bool, catalog: &dyn TopicCatalog) {
        let resolved = self.resolve_topics(catalog);
        if resolved != self.subscribed_topics {
            self.subscribed_topics = resolved;
            bump = true;
        }
        if bump {
            self.bump_epoch();
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
        }
    }

    /// Moves a member one step towards its target (Kafka's `maybeReconcile`) given what
    /// it reports owning, arming its revocation deadline while it must revoke; returns
    /// the member before and after (the group holds the latter).
    pub(crate) fn reconcile_member(
        &mut self,
        member_id: &str,
        owned: Option<&Assignment>,
    ) -> Option<(ConsumerMember, ConsumerMember)> {
        let before = self.members.get(member_id)?.clone();
        let target = self.target.get(member_id).cloned().unwrap_or_default();
        let owned_by_other = |t: Uuid, p: i32| self.owned_by_other(member_id, t, p);
        let mut after = reconcile(
            &before,
            self.assignment_epoch,
            &target,
            owned,
            &owned_by_other,
        );
        after.revocation_deadline = match after.state {
            MemberState::UnrevokedPartitions => before
                .revocation_deadline
                .filter(|_| before.pending_revocation == after.pending_revocation)
                .or(Some(Instant::now() + after.rebalance_timeout)),
            _ => None,
        };
        self.members.insert(member_id.to_string(), after.clone());
        Some((before, after))
    }

    fn compute_target(&mut self) {
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(a) = m.server_assignor.as_deref() {
                *votes.entry(a).or_default() += 1;
            }
        }
        let best = votes.values().copied().max().unwrap_or(0);
        let name = votes
            .iter()
            .find(|(_, v)| **v == best && best > 0)
            .map(|(n, _)| n.to_string())
            .unwrap_or_else(|| ASSIGNORS[0].to_string());
        let partitions: BTreeMap<Uuid, i32> = self.subscribed_topics.values().copied().collect();
        let members: Vec<AssignorMember> = self
            .members
            .values()
            .map(|m| AssignorMember {
                member_id: m.member_id.clone(),
                topics: self
                    .subscribed_topics
                    .iter()
                    .filter(|(name, _)| m.subscribes(name))
                    .map(|(_, (id, _))| *id)
                    .collect(),
                previous: self.target.get(&m.member_id).cloned().unwrap_or_default(),
            })
            .collect();
        self.target = assignor::assign(&name, &members, &partitions);
        self.assignor = name;
        self.assignment_epoch = self.group_epoch;
        tracing::info!(group = %self.id, epoch = self.group_epoch, assignor = %self.assignor, members = self.members.len(), "target assignment computed");
    }
}

fn invalid(message: &str) -> ConsumerHeartbeatError {
    ConsumerHeartbeatError::InvalidRequest(message.to_string())
}

/// Kafka's `throwIfConsumerGroupHeartbeatRequestIsInvalid`.
fn validate(req: &ConsumerHeartbeat) -> Result<(), ConsumerHeartbeatError> {
    if req.group_id.is_empty() {
        return Err(invalid("GroupId can't be empty."));
    }
    if !valid_group_id(&req.group_id) {
        return Err(ConsumerHeartbeatError::InvalidGroupId);
    }
    if req.instance_id.as_deref() == Some("") {
        return Err(invalid("InstanceId can't be empty."));
    }
    if req.rack_id.as_deref() == Some("") {
        return Err(invalid("RackId can't be empty."));
    }
    if req.api_version >= 1 && req.member_id.is_empty() {
        return Err(invalid("MemberId can't be empty."));
    }
    match req.member_epoch {
        0 => {
            if req.rebalance_timeout_ms == -1 {
                return Err(invalid(
                    "RebalanceTimeoutMs must be provided in first request.",
                ));
            }
            if req.owned.as_ref().is_some_and(|o| !o.is_empty()) {
                return Err(invalid("TopicPartitions must be empty when (re-)joining."));
            }
            let names = req
                .subscribed_topic_names
                .as_ref()
                .is_some_and(|n| !n.is_empty());
            let regex = req
                .subscribed_topic_regex
                .as_ref()
                .is_some_and(|r| !r.is_empty());
            if !names && !regex {
                return Err(invalid(
                    "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.",
                ));
            }
        }
        e if e > 0 || e == LEAVE_GROUP_MEMBER_EPOCH => {
            if req.member_id.is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
            if req.member_id.is_empty() {
                return Err(invalid("MemberId can't be empty."));
            }
            if req.instance_id.is_none() {
                return Err(invalid("InstanceId can't be null."));
            }
        }
        _ => return Err(invalid("MemberEpoch is invalid.")),
    }
    if let Some(a) = req.server_assignor.as_deref() {
        if !ASSIGNORS.contains(&a) {
            return Err(ConsumerHeartbeatError::UnsupportedAssignor(format!(
                "ServerAssignor {a} is not supported. Supported assignors: {}.",
                ASSIGNORS.join(", ")
            )));
        }
    }
    if let Some(re) = req
        .subscribed_topic_regex
        .as_deref()
        .filter(|r| !r.is_empty())
    {
        compile_regex(re)
            .map_err(|e| ConsumerHeartbeatError::InvalidRegularExpression(e.to_string()))?;
    }
    Ok(())
}

/// Kafka's `throwIfMemberEpochIsInvalid`: a member one epoch behind may still report
/// (its response was lost) as long as it owns nothing it was not given.
fn check_epoch(
    member: &ConsumerMember,
    received: i32,
    owned: Option<&Assignment>,
) -> Result<(), ConsumerHeartbeatError> {
    if received > member.member_epoch {
        return Err(ConsumerHeartbeatError::FencedMemberEpoch);
    }
    if received < member.member_epoch {
        let subset = owned.is_some_and(|o| {
            o.iter().all(|(t, ps)| {
                member
                    .assigned
                    .get(t)
                    .is_some_and(|mine| ps.is_subset(mine))
                    || ps.is_empty()
            })
        });
        if received != member.previous_epoch || !subset {
            return Err(ConsumerHeartbeatError::FencedMemberEpoch);
        }
    }
    Ok(())
}

impl GroupCoordinator {
    /// ConsumerGroupHeartbeat: joins, heartbeats, reconciles or leaves. Never waits.
    pub fn consumer_heartbeat(
        &self,
        req: ConsumerHeartbeat,
        catalog: &dyn TopicCatalog,
    ) -> HbResult {
        validate(&req)?;
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(ConsumerHeartbeatError::CoordinatorNotAvailable);
        }
        let joining = req.member_epoch == 0;
        let group_id = req.group_id.clone();
        // Classic groups first (lock order); held throughout so no classic JoinGroup
        // slips in between.
        let mut classic = lock(&self.inner);
        match classic.get(&group_id).map(|g| g.state) {
            Some(GroupState::Empty | GroupState::Dead) if joining => {
                // An empty classic group gives its id up; its offsets stay.
                classic.remove(&group_id);
            }
            Some(GroupState::Empty | GroupState::Dead) | None => {}
            Some(_) => {
                if !joining || !self.upgrade(&mut classic, &group_id, catalog) {
                    tracing::info!(group = %group_id, "consumer protocol heartbeat for a classic group with members");
                    return Err(ConsumerHeartbeatError::GroupIdNotFound);
                }
            }
        }
        self.heartbeat_locked(&mut classic, req, catalog)
    }

    fn heartbeat_locked(
        &self,
        classic: &mut HashMap<String, Group>,
        req: ConsumerHeartbeat,
        catalog: &dyn TopicCatalog,
    ) -> HbResult {
        let mut groups = lock_consumer(&self.inner);
        if req.member_epoch == LEAVE_GROUP_MEMBER_EPOCH {
            let leaving = groups
                .get(&req.group_id)
                .and_then(|g| match &req.instance_id {
                    Some(instance) => g
                        .static_members
                        .get(instance)
                        .filter(|id| **id == req.member_id)
                        .cloned(),
                    None => Some(req.member_id.clone()),
                });
            if let Some(leaving) = leaving {
                if self.maybe_downgrade(classic, &mut groups, &req.group_id, &leaving) {
                    return Ok(ConsumerHeartbeatOutcome {
                        member_id: leaving,
                        member_epoch: LEAVE_GROUP_MEMBER_EPOCH,
                        heartbeat_interval_ms: 0,
                        assignment: None,
                    });
                }
            }
        }
        let created = !groups.contains_key(&req.group_id);
        if created && req.member_epoch != 0 {
            return Err(ConsumerHeartbeatError::UnknownMemberId);
        }
        let group = groups
            .entry(req.group_id.clone())
            .or_insert_with(|| ConsumerGroup::new(&req.group_id));
        let epoch_before = group.group_epoch;
        let result = match req.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH | LEAVE_GROUP_STATIC_MEMBER_EPOCH => leave(group, &req),
            _ => self.join_or_heartbeat(group, req, catalog),
        };
        if created || group.group_epoch != epoch_before {
            if let Err(error) = self.inner.store.put_group(&group.id, &group.record()) {
                tracing::warn!(group = %group.id, %error, "cannot record consumer group epoch");
            }
        }
        if created && group.members.is_empty() {
            // A join that failed validation against the group must not leave one behind.
            let id = group.id.clone();
            groups.remove(&id);
            if let Err(error) = self.inner.store.remove_group(&id) {
                tracing::warn!(group = %id, %error, "cannot drop empty consumer group");
            }
        }
        result
    }

    fn join_or_heartbeat(
        &self,
        group: &mut ConsumerGroup,
        req: ConsumerHeartbeat,
        catalog: &dyn TopicCatalog,
    ) -> HbResult {
        let settings = &self.inner.settings;
        let session = Duration::from_millis(settings.consumer_session_timeout_ms.max(1) as u64);
        let member_id = if req.member_id.is_empty() {
            uuid::Uuid::new_v4().to_string()
        } else {
            req.member_id.clone()
        };
        let joining = req.member_epoch == 0;
        let mut bump = false;
        let mut new_timer = false;
        if joining {
            if let Some(instance) = req.instance_id.as_deref() {
                match group.static_members.get(instance).cloned() {
                    Some(old) if old == member_id => {}
                    Some(old) => {
                        let Some(previous) = group.members.get(&old) else {
                            return Err(ConsumerHeartbeatError::UnknownMemberId);
                        };
                        if previous.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
                            return Err(ConsumerHeartbeatError::UnreleasedInstanceId);
                        }
                        // A static member restarted: it takes over the old one's
                        // assignment and epoch, no rebalance.
                        if let Some(mut member) = group.remove_member(&old) {
                            member.member_id = member_id.clone();
                            member.member_epoch = member.previous_epoch;
                            group
                                .target
                                .insert(member_id.clone(), group_target_of(group, &old, &member));
                            group.members.insert(member_id.clone(), member);
                            group.empty_since_ms = None;
                            group
                                .static_members
                                .insert(instance.to_string(), member_id.clone());
                            new_timer = true;
                            tracing::info!(group = %group.id, member = %member_id, instance, "static member rejoined");
                        }
                    }
                    None => {}
                }
            }
            match group.members.get_mut(&member_id) {
                Some(member) if member.instance_id.is_some() && !new_timer => {
                    // Same static member id rejoining: fenced, start over.
                    reset(member);
                    bump = true;
                }
                Some(member) if !new_timer => {
                    reset(member);
                    bump = true;
                }
                Some(_) => {}
                None => {
                    let mut member = ConsumerMember::new(&member_id, session);
                    member.instance_id = req.instance_id.clone();
                    if let Some(instance) = &req.instance_id {
                        group
                            .static_members
                            .insert(instance.clone(), member_id.clone());
                    }
                    group.members.insert(member_id.clone(), member);
                    group.empty_since_ms = None;
                    bump = true;
                    new_timer = true;
                    tracing::info!(group = %group.id, member = %member_id, "member joined");
                }
            }
        } else {
            if let Some(instance) = req.instance_id.as_deref() {
                match group.static_members.get(instance) {
                    Some(current) if *current != member_id => {
                        return Err(ConsumerHeartbeatError::FencedInstanceId)
                    }
                    None => return Err(ConsumerHeartbeatError::UnknownMemberId),
                    Some(_) => {}
                }
            }
            let Some(member) = group.members.get(&member_id) else {
                return Err(ConsumerHeartbeatError::UnknownMemberId);
            };
            check_epoch(member, req.member_epoch, req.owned.as_ref())?;
        }
        let Some(member) = group.members.get_mut(&member_id) else {
            return Err(ConsumerHeartbeatError::UnknownMemberId);
        };
        if req.rebalance_timeout_ms > 0 {
            member.rebalance_timeout = Duration::from_millis(req.rebalance_timeout_ms as u64);
        }
        if let Some(names) = &req.subscribed_topic_names {
            let mut names = names.clone();
            names.sort();
            names.dedup();
            if names != member.subscribed_names {
                member.subscribed_names = names;
                bump = true;
            }
        }
        if let Some(re) = &req.subscribed_topic_regex {
            let re = Some(re.clone()).filter(|r| !r.is_empty());
            if re != member.subscribed_regex {
                member.subscribed_regex = re;
                bump = true;
            }
        }
        if let Some(a) = &req.server_assignor {
            if member.server_assignor.as_ref() != Some(a) {
                member.server_assignor = Some(a.clone());
                bump = true;
            }
        }
        if req.rack_id.is_some() {
            member.rack_id.clone_from(&req.rack_id);
        }
        member.client_id.clone_from(&req.client_id);
        member.client_host.clone_from(&req.client_host);
        member.session_timeout = session;
        member.session_deadline = Instant::now() + session;
        // A member speaking the consumer protocol is no classic member (any more).
        member.classic = None;
        member.classic_deadline = None;
        group.refresh_target(bump, catalog);
        let Some((before, after)) = group.reconcile_member(&member_id, req.owned.as_ref()) else {
            return Err(ConsumerHeartbeatError::UnknownMemberId);
        };
        let send = joining
            || after.assigned != before.assigned
            || req
                .owned
                .as_ref()
                .is_some_and(|o| !same(o, &after.assigned));
        if after.member_epoch != before.member_epoch || after.state != before.state {
            tracing::debug!(group = %group.id, member = %member_id, epoch = after.member_epoch, state = ?after.state, "member reconciled");
        }
        let outcome = ConsumerHeartbeatOutcome {
            member_id: member_id.clone(),
            member_epoch: after.member_epoch,
            heartbeat_interval_ms: settings.consumer_heartbeat_interval_ms,
            assignment: send.then(|| after.assigned.clone()),
        };
        if new_timer {
            self.spawn_consumer_member_timer(&group.id, &member_id, session);
        }
        Ok(outcome)
    }

    /// ConsumerGroupDescribe for one group.
    pub fn consumer_describe(
        &self,
        group_id: &str,
    ) -> Result<ConsumerGroupDescription, ConsumerDescribeError> {
        if !valid_group_id(group_id) {
            return Err(ConsumerDescribeError::InvalidGroupId);
        }
        let groups = lock_consumer(&self.inner);
        let group = groups
            .get(group_id)
            .ok_or(ConsumerDescribeError::GroupIdNotFound)?;
        Ok(ConsumerGroupDescription {
            group_id: group.id.clone(),
            state: group.state(),
            group_epoch: group.group_epoch,
            assignment_epoch: group.assignment_epoch,
            assignor_name: group.assignor.clone(),
            members: group
                .members
                .values()
                .map(|m| ConsumerMemberDescription {
                    member_id: m.member_id.clone(),
                    instance_id: m.instance_id.clone(),
                    rack_id: m.rack_id.clone(),
                    member_epoch: m.member_epoch,
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    subscribed_topic_names: m.subscribed_names.clone(),
                    subscribed_topic_regex: m.subscribed_regex.clone(),
                    assignment: m.assigned.clone(),
                    target_assignment: group.target.get(&m.member_id).cloned().unwrap_or_default(),
                    classic: m.classic.is_some(),
                })
                .collect(),
        })
    }
}

/// The target a static member's successor inherits.
fn group_target_of(group: &ConsumerGroup, old: &str, member: &ConsumerMember) -> Assignment {
    group
        .target
        .get(old)
        .cloned()
        .unwrap_or_else(|| member.assigned.clone())
}

/// A member rejoining with epoch 0 gave up everything it had: start it over.
fn reset(member: &mut ConsumerMember) {
    member.member_epoch = 0;
    member.previous_epoch = 0;
    member.state = MemberState::Stable;
    member.assigned = Assignment::new();
    member.pending_revocation = Assignment::new();
    member.revocation_deadline = None;
}

/// Assignments equal, ignoring topics with no partitions.
fn same(a: &Assignment, b: &Assignment) -> bool {
    let strip = |x: &Assignment| -> Assignment {
        x.iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(t, p)| (*t, p.clone()))
            .collect()
    };
    strip(a) == strip(b)
}

fn leave(group: &mut ConsumerGroup, req: &ConsumerHeartbeat) -> HbResult {
    let member_id = match req.instance_id.as_deref() {
        Some(instance) => match group.static_members.get(instance) {
            Some(current) if *current != req.member_id => {
                return Err(ConsumerHeartbeatError::FencedInstanceId)
            }
            Some(current) => current.clone(),
            None => return Err(ConsumerHeartbeatError::UnknownMemberId),
        },
        None => req.member_id.clone(),
    };
    let Some(member) = group.members.get_mut(&member_id) else {
        return Err(ConsumerHeartbeatError::UnknownMemberId);
    };
    if req.member_epoch == LEAVE_GROUP_STATIC_MEMBER_EPOCH {
        // Keeps its partitions for its successor until its session runs out.
        if member.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH {
            member.previous_epoch = member.member_epoch;
            member.member_epoch = LEAVE_GROUP_STATIC_MEMBER_EPOCH;
        }
        tracing::info!(group = %group.id, member = %member_id, "static member left temporarily");
    } else {
        group.remove_member(&member_id);
        group.bump_epoch();
        tracing::info!(group = %group.id, member = %member_id, "member left");
    }
    Ok(ConsumerHeartbeatOutcome {
        member_id,
        member_epoch: req.member_epoch,
        heartbeat_interval_ms: 0,
        assignment: None,
    })
}
