//! Group membership APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! ListGroups, DescribeGroups, DeleteGroups. Each turns the wire request into a call on
//! the [`crate::groups::GroupCoordinator`] and its answer back into the version's
//! response, setting only fields the version carries.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{str_bytes, ReplyBody, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::groups::{
    GroupState, HeartbeatParams, JoinError, JoinParams, LeavingMember, SyncParams,
};

fn text(s: &StrBytes) -> String {
    s.to_string()
}

fn opt_text(s: &Option<StrBytes>) -> Option<String> {
    s.as_ref().map(|s| s.to_string())
}

/// FindCoordinator: this broker coordinates every group and (later) transaction.
pub fn find_coordinator(
    broker: &Broker,
    request: FindCoordinatorRequest,
    version: i16,
    (host, port): (&str, u16),
) -> FindCoordinatorResponse {
    // 0: group, 1: transaction. Share-group keys (2) belong to a protocol we lack.
    let supported = matches!(request.key_type, 0 | 1);
    let error = if supported {
        0
    } else {
        ResponseError::InvalidRequest.code()
    };
    if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key).with_error_code(error);
                if supported {
                    c.with_node_id(BrokerId(broker.node_id))
                        .with_host(str_bytes(host))
                        .with_port(i32::from(port))
                } else {
                    c.with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_message(Some(str_bytes("unsupported key type")))
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let mut response = FindCoordinatorResponse::default().with_error_code(error);
    if supported {
        response = response
            .with_node_id(BrokerId(broker.node_id))
            .with_host(str_bytes(host))
            .with_port(i32::from(port));
    } else {
        response = response.with_node_id(BrokerId(-1)).with_port(-1);
    }
    if version >= 1 && !supported {
        response = response.with_error_message(Some(str_bytes("unsupported key type")));
    }
    response
}

/// The protocol name field: non-nullable before v7 (empty string), nullable after.
fn protocol_name_field(name: Option<String>, version: i16) -> Option<StrBytes> {
    match name {
        Some(n) => Some(str_bytes(&n)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    }
}

/// JoinGroup: applies the join now; the answer waits for the rebalance.
pub fn join_group(
    broker: &Arc<Broker>,
    request: JoinGroupRequest,
    version: i16,
    client_id: &str,
    client_host: &str,
) -> ReplyBody {
    let params = JoinParams {
        group_id: text(&request.group_id.0),
        member_id: text(&request.member_id),
        group_instance_id: opt_text(&request.group_instance_id),
        client_id: client_id.to_string(),
        client_host: client_host.to_string(),
        session_timeout_ms: request.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: text(&request.protocol_type),
        protocols: request
            .protocols
            .into_iter()
            .map(|p| (text(&p.name), p.metadata))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let requested_member = params.member_id.clone();
    let wait = broker.groups.begin_join_in(params, &broker.topics);
    ReplyBody::Later(tokio::spawn(async move {
        let response = match wait.outcome().await {
            Ok(outcome) => {
                let members = outcome
                    .members
                    .into_iter()
                    .map(|m| {
                        let member = JoinGroupResponseMember::default()
                            .with_member_id(str_bytes(&m.member_id))
                            .with_metadata(m.metadata);
                        if version >= 5 {
                            member
                                .with_group_instance_id(m.group_instance_id.map(|i| str_bytes(&i)))
                        } else {
                            member
                        }
                    })
                    .collect();
                let mut response = JoinGroupResponse::default()
                    .with_generation_id(outcome.generation_id)
                    .with_protocol_name(protocol_name_field(outcome.protocol_name, version))
                    .with_leader(str_bytes(&outcome.leader))
                    .with_member_id(str_bytes(&outcome.member_id))
                    .with_members(members);
                if version >= 7 {
                    response =
                        response.with_protocol_type(outcome.protocol_type.map(|t| str_bytes(&t)));
                }
                if version >= 9 {
                    response = response.with_skip_assignment(outcome.skip_assignment);
                }
                response
            }
            Err(error) => {
                let member_id = match &error {
                    JoinError::MemberIdRequired { member_id } => member_id.clone(),
                    _ => requested_member,
                };
                JoinGroupResponse::default()
                    .with_error_code(error.code())
                    .with_generation_id(-1)
                    .with_protocol_name(protocol_name_field(None, version))
                    .with_member_id(str_bytes(&member_id))
            }
        };
        Some(ResponseKind::JoinGroup(response))
    }))
}

/// SyncGroup: the leader's assignment is applied now; followers wait for it.
pub fn sync_group(broker: &Arc<Broker>, request: SyncGroupRequest, version: i16) -> ReplyBody {
    let params = SyncParams {
        group_id: text(&request.group_id.0),
        generation_id: request.generation_id,
        member_id: text(&request.member_id),
        group_instance_id: opt_text(&request.group_instance_id),
        protocol_type: opt_text(&request.protocol_type),
        protocol_name: opt_text(&request.protocol_name),
        assignments: request
            .assignments
            .into_iter()
            .map(|a| (text(&a.member_id), a.assignment))
            .collect(),
    };
    let wait = broker.groups.begin_sync(params);
    ReplyBody::Later(tokio::spawn(async move {
        let response = match wait.outcome().await {
            Ok(outcome) => {
                let response = SyncGroupResponse::default().with_assignment(outcome.assignment);
                if version >= 5 {
                    response
                        .with_protocol_type(outcome.protocol_type.map(|t| str_bytes(&t)))
                        .with_protocol_name(outcome.protocol_name.map(|n| str_bytes(&n)))
                } else {
                    response
                }
            }
            Err(error) => SyncGroupResponse::default().with_error_code(error.code()),
        };
        Some(ResponseKind::SyncGroup(response))
    }))
}

/// Heartbeat: never waits.
pub fn heartbeat(broker: &Broker, request: HeartbeatRequest) -> HeartbeatResponse {
    let result = broker.groups.heartbeat_now(HeartbeatParams {
        group_id: text(&request.group_id.0),
        generation_id: request.generation_id,
        member_id: text(&request.member_id),
        group_instance_id: opt_text(&request.group_instance_id),
    });
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}

/// LeaveGroup: v0-2 one member, v3+ a batch with per-member errors.
pub fn leave_group(
    broker: &Broker,
    request: LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group_id = text(&request.group_id.0);
    let leaving: Vec<LeavingMember> = if version >= 3 {
        request
            .members
            .iter()
            .map(|m| LeavingMember {
                member_id: text(&m.member_id),
                group_instance_id: opt_text(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeavingMember {
            member_id: text(&request.member_id),
            group_instance_id: None,
        }]
    };
    match broker.groups.leave_now(&group_id, leaving.clone()) {
        Err(error) => LeaveGroupResponse::default().with_error_code(error.code()),
        Ok(results) if version >= 3 => LeaveGroupResponse::default().with_members(
            leaving
                .into_iter()
                .zip(results)
                .map(|(who, result)| {
                    MemberResponse::default()
                        .with_member_id(str_bytes(&who.member_id))
                        .with_group_instance_id(who.group_instance_id.map(|i| str_bytes(&i)))
                        .with_error_code(result.err().map_or(0, |e| e.code()))
                })
                .collect(),
        ),
        Ok(results) => LeaveGroupResponse::default().with_error_code(
            results
                .into_iter()
                .next()
                .and_then(|r| r.err())
                .map_or(0, |e| e.code()),
        ),
    }
}

/// ListGroups: v4+ filters by state, v5 by type.
pub fn list_groups(
    broker: &Broker,
    request: ListGroupsRequest,
    version: i16,
) -> ListGroupsResponse {
    let states: Vec<String> = request.states_filter.iter().map(text).collect();
    let types: Vec<String> = request.types_filter.iter().map(text).collect();
    let groups = broker
        .groups
        .list(&states, &types)
        .into_iter()
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if version >= 4 {
                listed = listed.with_group_state(str_bytes(g.state));
            }
            if version >= 5 {
                listed = listed.with_group_type(str_bytes(g.group_type));
            }
            listed
        })
        .chain(share_groups(broker, &states, &types, version))
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

/// Share groups as ListGroups reports them: protocol type and group type `share`.
fn share_groups(
    broker: &Broker,
    states: &[String],
    types: &[String],
    version: i16,
) -> Vec<ListedGroup> {
    const SHARE: &str = "share";
    if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case(SHARE)) {
        return Vec::new();
    }
    broker
        .shares
        .list()
        .into_iter()
        .filter(|(_, state)| {
            states.is_empty() || states.iter().any(|s| s.eq_ignore_ascii_case(state))
        })
        .map(|(id, state)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&id)))
                .with_protocol_type(str_bytes(SHARE));
            if version >= 4 {
                listed = listed.with_group_state(str_bytes(state));
            }
            if version >= 5 {
                listed = listed.with_group_type(str_bytes(SHARE));
            }
            listed
        })
        .collect()
}

/// DescribeGroups: an unknown group is reported as Dead with no error, as Kafka does
/// before v6.
pub fn describe_groups(
    broker: &Broker,
    request: DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = request
        .groups
        .iter()
        .map(|id| {
            let mut described = DescribedGroup::default().with_group_id(id.clone());
            if version >= 3 {
                described = described.with_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
            }
            match broker.groups.describe(&text(&id.0)) {
                Ok(group) => described
                    .with_group_state(str_bytes(group.state.name()))
                    .with_protocol_type(str_bytes(&group.protocol_type))
                    .with_protocol_data(str_bytes(&group.protocol))
                    .with_members(
                        group
                            .members
                            .into_iter()
                            .map(|m| {
                                let member = DescribedGroupMember::default()
                                    .with_member_id(str_bytes(&m.member_id))
                                    .with_client_id(str_bytes(&m.client_id))
                                    .with_client_host(str_bytes(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment);
                                if version >= 4 {
                                    member.with_group_instance_id(
                                        m.group_instance_id.map(|i| str_bytes(&i)),
                                    )
                                } else {
                                    member
                                }
                            })
                            .collect(),
                    ),
                Err(crate::groups::DescribeError::GroupIdNotFound) => {
                    described.with_group_state(str_bytes(GroupState::Dead.name()))
                }
                Err(error) => described.with_error_code(error.code()),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// DeleteGroups: each group must be empty; its offsets go with it. Applied now,
/// acknowledged once the store is flushed.
pub fn delete_groups(broker: &Arc<Broker>, request: DeleteGroupsRequest) -> ReplyBody {
    let results: Vec<DeletableGroupResult> = request
        .groups_names
        .into_iter()
        .map(|id| {
            let code = match broker.groups.begin_delete(&text(&id.0)) {
                Ok(()) => 0,
                Err(error) => error.code(),
            };
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code)
        })
        .collect();
    let broker = broker.clone();
    ReplyBody::Later(tokio::spawn(async move {
        let results = match broker.groups.flush().await {
            Ok(()) => results,
            Err(error) => {
                tracing::error!(%error, "cannot flush group deletion");
                let code = ResponseError::KafkaStorageError.code();
                results
                    .into_iter()
                    .map(|r| {
                        let code = if r.error_code == 0 {
                            code
                        } else {
                            r.error_code
                        };
                        r.with_error_code(code)
                    })
                    .collect()
            }
        };
        Some(ResponseKind::DeleteGroups(
            DeleteGroupsResponse::default().with_results(results),
        ))
    }))
}
