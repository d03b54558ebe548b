//! Online migration between the two group protocols (KIP-848 "upgrade/downgrade",
//! Kafka 4's default `group.consumer.migration.policy=bidirectional`), after Kafka's
//! `convertToConsumerGroup` and `convertToClassicGroup`.
//!
//! Upgrade: a ConsumerGroupHeartbeat joining a classic group with members turns it into
//! a consumer group. Every classic member becomes a classic member of the consumer
//! group at the classic generation, owning (and targeted with) what the leader last
//! assigned it; the joining member then bumps the epoch and the server-side assignor
//! takes over. Downgrade: when the last consumer-protocol member leaves (or is fenced)
//! and classic members remain, the group becomes a classic group at the group epoch,
//! each member holding its target assignment, and a rebalance starts so a classic
//! leader assigns again. Committed offsets are stored by group id and survive both.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::time::Instant;

use super::classic::{Group, JoinReply, Member};
use super::consumer::classic_members::{
    assignment_version, to_assignment, to_topic_partitions, KnownTopics, CONSUMER_PROTOCOL_TYPE,
};
use super::consumer::{ConsumerGroup, ConsumerMember, MemberState, TopicCatalog};
use super::coordinator::lock_consumer;
use super::subscription::{encode_assignment, parse_assignment, parse_subscription};
use super::*;

/// Kafka's `validateOnlineUpgrade` and `ConsumerGroup.fromClassicGroup`: the consumer
/// group a classic group becomes, or `None` when it does not use the consumer protocol
/// or a member's embedded subscription or assignment does not parse.
fn consumer_group_from(classic: &Group, catalog: &dyn TopicCatalog) -> Option<ConsumerGroup> {
    if classic.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
        return None;
    }
    let mut group = ConsumerGroup::new(&classic.id);
    group.group_epoch = classic.generation;
    group.assignment_epoch = classic.generation;
    group.empty_since_ms = None;
    for m in classic.members.values() {
        let metadata = match classic.protocol_name.as_deref() {
            Some(name) => m.metadata(Some(name)),
            None => m.protocols.first().map(|(_, md)| md.clone())?,
        };
        let subscription = parse_subscription(&metadata)?;
        let assigned = to_assignment(&parse_assignment(&m.assignment)?, catalog);
        let mut member = ConsumerMember::new(&m.member_id, m.session_timeout);
        member.instance_id.clone_from(&m.group_instance_id);
        member.rack_id = subscription.rack_id;
        member.client_id.clone_from(&m.client_id);
        member.client_host.clone_from(&m.client_host);
        member.member_epoch = classic.generation;
        member.previous_epoch = classic.generation;
        member.state = MemberState::Stable;
        member.rebalance_timeout = m.rebalance_timeout;
        let mut names = subscription.topics;
        names.sort();
        names.dedup();
        member.subscribed_names = names;
        member.assigned = assigned.clone();
        member.classic = Some(m.protocols.clone());
        group.target.insert(m.member_id.clone(), assigned);
        if let Some(instance) = &m.group_instance_id {
            group
                .static_members
                .insert(instance.clone(), m.member_id.clone());
        }
        group.members.insert(m.member_id.clone(), member);
    }
    group.subscribed_topics = group.resolve_topics(catalog);
    Some(group)
}

impl GroupCoordinator {
    /// Upgrades the classic group `group_id` (which has members) to a consumer group,
    /// or says why not (`false`: it stays classic and the heartbeat is refused).
    pub(in crate::groups) fn upgrade(
        &self,
        classic: &mut HashMap<String, Group>,
        group_id: &str,
        catalog: &dyn TopicCatalog,
    ) -> bool {
        let Some(converted) = classic
            .get(group_id)
            .and_then(|g| consumer_group_from(g, catalog))
        else {
            tracing::info!(group = %group_id, "classic group cannot be upgraded to a consumer group");
            return false;
        };
        if let Some(mut old) = classic.remove(group_id) {
            // Anyone waiting in JoinGroup or SyncGroup rejoins the consumer group.
            for member in old.members.values_mut() {
                if let Some(tx) = member.awaiting_join.take() {
                    let _ = tx.send(Err(JoinError::RebalanceInProgress));
                }
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(Err(SyncError::RebalanceInProgress));
                }
            }
        }
        for member in converted.members.values() {
            self.spawn_consumer_member_timer(group_id, &member.member_id, member.session_timeout);
        }
        if let Err(error) = self.inner.store.put_group(group_id, &converted.record()) {
            tracing::warn!(group = %group_id, %error, "cannot record the upgraded group");
        }
        tracing::info!(group = %group_id, epoch = converted.group_epoch, members = converted.members.len(), "classic group upgraded to a consumer group");
        lock_consumer(&self.inner).insert(group_id.to_string(), converted);
        true
    }

    /// Kafka's `validateOnlineDowngradeWithFencedMember` and `convertToClassicGroup`:
    /// if `leaving` is the last member on the consumer protocol and classic members
    /// remain, the group becomes a classic group without it and rebalances. Returns
    /// whether it did (the caller then does not remove `leaving` itself).
    pub(in crate::groups) fn maybe_downgrade(
        &self,
        classic: &mut HashMap<String, Group>,
        consumer: &mut HashMap<String, ConsumerGroup>,
        group_id: &str,
        leaving: &str,
    ) -> bool {
        let Some(group) = consumer.get(group_id) else {
            return false;
        };
        if group.members.len() <= 1 || !group.only_classic_besides(leaving) {
            return false;
        }
        self.convert_to_classic(classic, consumer, group_id, Some(leaving));
        true
    }

    /// Kafka's `validateOnlineDowngradeWithReplacedMemberId`: a classic static member
    /// took the place of the last consumer-protocol member, so every member is classic.
    /// The group becomes classic without a rebalance (the newcomer keeps its
    /// predecessor's assignment). Returns whether it did.
    pub(in crate::groups) fn downgrade_if_all_classic(
        &self,
        classic: &mut HashMap<String, Group>,
        consumer: &mut HashMap<String, ConsumerGroup>,
        group_id: &str,
    ) -> bool {
        let all_classic = consumer.get(group_id).is_some_and(|g| {
            !g.members.is_empty() && g.members.values().all(|m| m.classic.is_some())
        });
        if all_classic {
            self.convert_to_classic(classic, consumer, group_id, None);
        }
        all_classic
    }

    /// `convertToClassicGroup`: replaces the consumer group by a classic one at its group
    /// epoch, every member but `leaving` holding its target assignment; a departure
    /// (`leaving` set) starts a rebalance.
    fn convert_to_classic(
        &self,
        classic: &mut HashMap<String, Group>,
        consumer: &mut HashMap<String, ConsumerGroup>,
        group_id: &str,
        leaving: Option<&str>,
    ) {
        let Some(group) = consumer.remove(group_id) else {
            return;
        };
        let catalog = KnownTopics(group.subscribed_topics.clone());
        let mut downgraded = Group::new(group_id);
        downgraded.generation = group.group_epoch;
        downgraded.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
        downgraded.state = GroupState::Stable;
        downgraded.empty_since_ms = None;
        for m in group
            .members
            .values()
            .filter(|m| Some(m.member_id.as_str()) != leaving)
        {
            let protocols = m.classic.clone().unwrap_or_default();
            let target = group.target.get(&m.member_id).cloned().unwrap_or_default();
            let assignment = encode_assignment(
                assignment_version(&protocols),
                &to_topic_partitions(&target, &catalog),
            );
            if let Some(instance) = &m.instance_id {
                downgraded
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            downgraded.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout: m.session_timeout,
                    rebalance_timeout: m.rebalance_timeout,
                    protocols,
                    assignment: Bytes::from(assignment),
                    awaiting_join: None::<JoinReply>,
                    awaiting_sync: None,
                    heartbeat_deadline: Instant::now() + m.session_timeout,
                },
            );
        }
        downgraded.protocol_name = downgraded.select_protocol();
        downgraded.leader = downgraded.members.keys().next().cloned();
        for member in downgraded.members.values() {
            self.spawn_session_timer(group_id, &member.member_id, member.session_timeout);
        }
        tracing::info!(group = %group_id, generation = downgraded.generation, members = downgraded.members.len(), "consumer group downgraded to a classic group");
        if let Err(error) = self.inner.store.put_group(group_id, &downgraded.record()) {
            tracing::warn!(group = %group_id, %error, "cannot record the downgraded group");
        }
        classic.insert(group_id.to_string(), downgraded);
        if leaving.is_some() {
            if let Some(group) = classic.get_mut(group_id) {
                self.prepare_rebalance(group, "downgraded from a consumer group");
            }
        }
    }
}
