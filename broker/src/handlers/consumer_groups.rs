//! KIP-848's APIs: ConsumerGroupHeartbeat (join, heartbeat, reconcile, leave in one
//! request) and ConsumerGroupDescribe, over [`crate::groups::GroupCoordinator`].

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member,
    TopicPartitions as DescribedTopicPartitions,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions,
};
use kafka_protocol::messages::*;

use super::{str_bytes, topic_name, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::groups::{Assignment, ConsumerHeartbeat, TopicCatalog};

/// ConsumerGroupHeartbeat v0-v1.
pub fn heartbeat(
    broker: &Broker,
    request: ConsumerGroupHeartbeatRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> ConsumerGroupHeartbeatResponse {
    let owned = request.topic_partitions.map(|topics| {
        let mut owned = Assignment::new();
        for t in topics {
            owned
                .entry(t.topic_id)
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        owned
    });
    let params = ConsumerHeartbeat {
        group_id: request.group_id.0.to_string(),
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.to_string()),
        rack_id: request.rack_id.map(|s| s.to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: request.subscribed_topic_regex.map(|s| s.to_string()),
        server_assignor: request.server_assignor.map(|s| s.to_string()),
        owned,
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        api_version: version,
    };
    let group = params.group_id.clone();
    match broker.groups.consumer_heartbeat(params, &broker.topics) {
        Ok(outcome) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(&outcome.member_id)))
            .with_member_epoch(outcome.member_epoch)
            .with_heartbeat_interval_ms(outcome.heartbeat_interval_ms)
            .with_assignment(outcome.assignment.map(|a| {
                HeartbeatAssignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(id, parts)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(parts.into_iter().collect())
                        })
                        .collect(),
                )
            })),
        Err(error) => {
            tracing::debug!(%group, %error, "ConsumerGroupHeartbeat refused");
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error.code())
                .with_error_message(Some(str_bytes(&error.to_string())))
                .with_member_epoch(-1)
        }
    }
}

fn described(catalog: &dyn TopicCatalog, assignment: Assignment) -> DescribedAssignment {
    DescribedAssignment::default().with_topic_partitions(
        assignment
            .into_iter()
            .map(|(id, parts)| {
                DescribedTopicPartitions::default()
                    .with_topic_id(id)
                    .with_topic_name(topic_name(&catalog.name_of(id).unwrap_or_default()))
                    .with_partitions(parts.into_iter().collect())
            })
            .collect(),
    )
}

/// ConsumerGroupDescribe v0-v1: a classic or unknown group answers GROUP_ID_NOT_FOUND.
pub fn describe(
    broker: &Broker,
    request: ConsumerGroupDescribeRequest,
    version: i16,
) -> ConsumerGroupDescribeResponse {
    let catalog: &dyn TopicCatalog = &broker.topics;
    let groups = request
        .group_ids
        .into_iter()
        .map(|id| {
            let base = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            match broker.groups.consumer_describe(&id.0) {
                Err(error) => base
                    .with_error_code(error.code())
                    .with_error_message(Some(str_bytes(&format!(
                        "Group {} is not a consumer group.",
                        &*id.0
                    ))))
                    .with_group_state(str_bytes("Dead")),
                Ok(group) => base
                    .with_group_state(str_bytes(group.state.name()))
                    .with_group_epoch(group.group_epoch)
                    .with_assignment_epoch(group.assignment_epoch)
                    .with_assignor_name(str_bytes(&group.assignor_name))
                    .with_members(
                        group
                            .members
                            .into_iter()
                            .map(|m| {
                                let member = Member::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_instance_id(m.instance_id.as_deref().map(str_bytes))
                                    .with_rack_id(m.rack_id.as_deref().map(str_bytes))
                                    .with_member_epoch(m.member_epoch)
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_subscribed_topic_names(
                                        m.subscribed_topic_names
                                            .iter()
                                            .map(|n| topic_name(n))
                                            .collect(),
                                    )
                                    .with_subscribed_topic_regex(
                                        m.subscribed_topic_regex.as_deref().map(str_bytes),
                                    )
                                    .with_assignment(described(catalog, m.assignment))
                                    .with_target_assignment(described(
                                        catalog,
                                        m.target_assignment,
                                    ));
                                // v1 (KIP-1099): 0 = classic, 1 = consumer protocol.
                                if version >= 1 {
                                    member.with_member_type(if m.classic { 0 } else { 1 })
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
            }
        })
        .collect();
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}
