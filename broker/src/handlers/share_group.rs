//! ShareGroupHeartbeat and ShareGroupDescribe (KIP-932), on [`crate::share`].

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::share_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{
    ShareGroupDescribeRequest, ShareGroupDescribeResponse, ShareGroupHeartbeatRequest,
    ShareGroupHeartbeatResponse,
};
use uuid::Uuid;

use super::{str_bytes, topic_name, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::share::group::{HeartbeatError, HeartbeatParams};

/// The assignor share groups report (every member gets every subscribed partition).
pub const ASSIGNOR: &str = "simple";

/// ShareGroupHeartbeat: join (epoch 0), heartbeat, or leave (epoch -1).
pub fn heartbeat(
    broker: &Broker,
    request: ShareGroupHeartbeatRequest,
    client_id: &str,
    client_host: &str,
) -> ShareGroupHeartbeatResponse {
    let group = request.group_id.0.to_string();
    let response = ShareGroupHeartbeatResponse::default()
        .with_heartbeat_interval_ms(broker.shares.settings().heartbeat_interval_ms);
    if group.is_empty() {
        return error(
            response,
            ResponseError::InvalidRequest,
            "GroupId can't be empty.",
        );
    }
    if broker.groups.describe(&group).is_ok() {
        // A classic (or consumer) group of that name exists: Kafka's GroupIdNotFound.
        return error(
            response,
            ResponseError::GroupIdNotFound,
            &format!("Group {group} is not a share group."),
        );
    }
    let params = HeartbeatParams {
        member_id: request.member_id.to_string(),
        member_epoch: request.member_epoch,
        topics: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        rack: request.rack_id.map(|r| r.to_string()),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
    };
    match broker.shares.heartbeat(&group, params, &broker.topics) {
        Ok(outcome) => response
            .with_member_id(Some(request.member_id))
            .with_member_epoch(outcome.epoch)
            .with_assignment(outcome.assignment.map(|topics| {
                Assignment::default().with_topic_partitions(
                    topics
                        .into_iter()
                        .map(|(id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(partitions)
                        })
                        .collect(),
                )
            })),
        Err(refused) => {
            tracing::info!(%group, member = %request.member_id, %refused, "share group heartbeat refused");
            let code = match &refused {
                HeartbeatError::Invalid(_) => ResponseError::InvalidRequest,
                HeartbeatError::UnknownMember(_) => ResponseError::UnknownMemberId,
                HeartbeatError::Fenced { .. } => ResponseError::FencedMemberEpoch,
            };
            error(response, code, &refused.to_string())
        }
    }
}

fn error(
    response: ShareGroupHeartbeatResponse,
    code: ResponseError,
    message: &str,
) -> ShareGroupHeartbeatResponse {
    response
        .with_error_code(code.code())
        .with_error_message(Some(str_bytes(message)))
        .with_member_epoch(-1)
}

/// ShareGroupDescribe: members, their subscriptions and assignments.
pub fn describe(broker: &Broker, request: ShareGroupDescribeRequest) -> ShareGroupDescribeResponse {
    let topic_name_of = |id: Uuid| {
        broker
            .topics
            .get_by_id(id)
            .map(|t| t.name().to_string())
            .unwrap_or_default()
    };
    let groups = request
        .group_ids
        .iter()
        .map(|id| {
            let name = id.0.to_string();
            let described = DescribedGroup::default()
                .with_group_id(id.clone())
                .with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            let Some(group) = broker.shares.group(&name) else {
                let message = if broker.groups.describe(&name).is_ok() {
                    format!("Group {name} is not a share group.")
                } else {
                    format!("Group {name} not found.")
                };
                return described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&message)))
                    .with_group_state(str_bytes("Dead"));
            };
            let members = group
                .members
                .values()
                .map(|m| {
                    Member::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_rack_id(m.rack.as_deref().map(str_bytes))
                        .with_member_epoch(m.epoch)
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_subscribed_topic_names(
                            m.subscribed.iter().map(|t| topic_name(t)).collect(),
                        )
                        .with_assignment(
                            DescribedAssignment::default().with_topic_partitions(
                                m.assignment
                                    .iter()
                                    .map(|(id, partitions)| {
                                        DescribedTopic::default()
                                            .with_topic_id(*id)
                                            .with_topic_name(topic_name(&topic_name_of(*id)))
                                            .with_partitions(partitions.clone())
                                    })
                                    .collect(),
                            ),
                        )
                })
                .collect();
            described
                .with_group_state(str_bytes(group.state()))
                .with_group_epoch(group.epoch)
                .with_assignment_epoch(group.epoch)
                .with_assignor_name(str_bytes(ASSIGNOR))
                .with_members(members)
        })
        .collect();
    ShareGroupDescribeResponse::default().with_groups(groups)
}
