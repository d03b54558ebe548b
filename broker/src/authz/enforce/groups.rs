//! Group APIs: READ on the group to join, sync, heartbeat, leave and commit (plus READ
//! on each committed topic), DESCRIBE to fetch offsets, describe or find its
//! coordinator, DELETE to delete it or its offsets; ListGroups lists what the caller
//! may DESCRIBE unless it may DESCRIBE the cluster.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse,
    OffsetFetchRequest, OffsetFetchResponse, ResponseKind, SyncGroupRequest, SyncGroupResponse,
};

use super::{split_off, Check, Fixup, Refused, GROUP_DENIED, TOPIC_DENIED, TXN_DENIED};
use crate::authz::Operation::{Delete, Describe, Read};
use crate::authz::ResourceType;

/// FindCoordinator: DESCRIBE on the group (key type 0) or transactional id (1); the
/// keys refused answer with the authorization error.
pub(super) fn find_coordinator(check: &Check, req: &FindCoordinatorRequest, version: i16) -> Fixup {
    let (op_kind, code) = match req.key_type {
        1 => (ResourceType::TransactionalId, TXN_DENIED),
        _ => (ResourceType::Group, GROUP_DENIED),
    };
    let keys = if version >= 4 {
        req.coordinator_keys.clone()
    } else {
        vec![req.key.clone()]
    };
    let refused: Vec<_> = keys
        .into_iter()
        .filter(|key| !check.allowed(Describe, op_kind, key))
        .collect();
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        let ResponseKind::FindCoordinator(response) = response else {
            return;
        };
        if version < 4 {
            response.error_code = code;
            response.node_id = (-1).into();
            response.host = Default::default();
            response.port = -1;
        }
        for c in response
            .coordinators
            .iter_mut()
            .filter(|c| refused.contains(&c.key))
        {
            c.error_code = code;
            c.node_id = (-1).into();
            c.host = Default::default();
            c.port = -1;
        }
    })
}

/// JoinGroup: READ on the group.
pub(super) fn join_group(check: &Check, req: &JoinGroupRequest, version: i16) -> Refused {
    if check.group(Read, &req.group_id) {
        return Ok(Fixup::none());
    }
    let response = JoinGroupResponse::default()
        .with_error_code(GROUP_DENIED)
        .with_member_id(req.member_id.clone())
        .with_protocol_name((version < 7).then(Default::default));
    Err(Some(Box::new(ResponseKind::JoinGroup(response))))
}

/// SyncGroup: READ on the group.
pub(super) fn sync_group(check: &Check, req: &SyncGroupRequest) -> Refused {
    if check.group(Read, &req.group_id) {
        return Ok(Fixup::none());
    }
    Err(Some(Box::new(ResponseKind::SyncGroup(
        SyncGroupResponse::default().with_error_code(GROUP_DENIED),
    ))))
}

/// Heartbeat: READ on the group.
pub(super) fn heartbeat(check: &Check, req: &HeartbeatRequest) -> Refused {
    if check.group(Read, &req.group_id) {
        return Ok(Fixup::none());
    }
    Err(Some(Box::new(ResponseKind::Heartbeat(
        HeartbeatResponse::default().with_error_code(GROUP_DENIED),
    ))))
}

/// LeaveGroup: READ on the group.
pub(super) fn leave_group(check: &Check, req: &LeaveGroupRequest) -> Refused {
    if check.group(Read, &req.group_id) {
        return Ok(Fixup::none());
    }
    Err(Some(Box::new(ResponseKind::LeaveGroup(
        LeaveGroupResponse::default().with_error_code(GROUP_DENIED),
    ))))
}

/// OffsetCommit: READ on the group (else every partition answers
/// GROUP_AUTHORIZATION_FAILED), READ on each topic.
pub(super) fn offset_commit(check: &Check, req: &mut OffsetCommitRequest) -> Refused {
    if !check.group(Read, &req.group_id) {
        let topics = std::mem::take(&mut req.topics);
        let mut response = OffsetCommitResponse::default();
        push_commit_errors(&mut response.topics, topics, GROUP_DENIED);
        return Err(Some(Box::new(ResponseKind::OffsetCommit(response))));
    }
    let refused = split_off(&mut req.topics, |t| check.topic(Read, &t.name));
    if refused.is_empty() {
        return Ok(Fixup::none());
    }
    Ok(Fixup::none().and(move |_, response| {
        if let ResponseKind::OffsetCommit(response) = response {
            push_commit_errors(&mut response.topics, refused, TOPIC_DENIED);
        }
    }))
}

fn push_commit_errors(
    out: &mut Vec<OffsetCommitResponseTopic>,
    topics: Vec<kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic>,
    code: i16,
) {
    out.extend(topics.into_iter().map(|t| {
        OffsetCommitResponseTopic::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
    }));
}

/// OffsetFetch: DESCRIBE on each group (refused groups answer
/// GROUP_AUTHORIZATION_FAILED); topics the caller may not DESCRIBE answer
/// TOPIC_AUTHORIZATION_FAILED when named and are left out of "all offsets".
pub(super) fn offset_fetch(check: &Check, req: &mut OffsetFetchRequest, version: i16) -> Refused {
    if version < 8 {
        if !check.group(Describe, &req.group_id) {
            let mut response = OffsetFetchResponse::default().with_error_code(GROUP_DENIED);
            // v0 and v1 have no top-level error: every named partition carries it.
            if let Some(topics) = &req.topics {
                response.topics = topics
                    .iter()
                    .map(|t| {
                        OffsetFetchResponseTopic::default()
                            .with_name(t.name.clone())
                            .with_partitions(
                                t.partition_indexes
                                    .iter()
                                    .map(|p| fetch_error(*p, GROUP_DENIED))
                                    .collect(),
                            )
                    })
                    .collect();
            }
            return Err(Some(Box::new(ResponseKind::OffsetFetch(response))));
        }
        let refused = match &mut req.topics {
            Some(topics) => split_off(topics, |t| check.topic(Describe, &t.name)),
            None => Vec::new(),
        };
        let session = check.session.clone();
        return Ok(Fixup::none().and(move |broker, response| {
            let ResponseKind::OffsetFetch(response) = response else {
                return;
            };
            response.topics.retain(|t| {
                broker
                    .authorizer
                    .authorize(&session, Describe, ResourceType::Topic, &t.name)
            });
            response.topics.extend(refused.into_iter().map(|t| {
                OffsetFetchResponseTopic::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partition_indexes
                            .iter()
                            .map(|p| fetch_error(*p, TOPIC_DENIED))
                            .collect(),
                    )
            }));
        }));
    }
    let refused = split_off(&mut req.groups, |g| check.group(Describe, &g.group_id));
    let session = check.session.clone();
    Ok(Fixup::none().and(move |broker, response| {
        let ResponseKind::OffsetFetch(response) = response else {
            return;
        };
        for group in &mut response.groups {
            group.topics.retain(|t| {
                broker
                    .authorizer
                    .authorize(&session, Describe, ResourceType::Topic, &t.name)
            });
        }
        response.groups.extend(refused.into_iter().map(|g| {
            OffsetFetchResponseGroup::default()
                .with_group_id(g.group_id)
                .with_error_code(GROUP_DENIED)
        }));
    }))
}

fn fetch_error(partition: i32, code: i16) -> OffsetFetchResponsePartition {
    OffsetFetchResponsePartition::default()
        .with_partition_index(partition)
        .with_committed_offset(-1)
        .with_error_code(code)
}

/// OffsetDelete: DELETE on the group, READ on each topic.
pub(super) fn offset_delete(check: &Check, req: &mut OffsetDeleteRequest) -> Refused {
    let allowed =
        check.group(Delete, &req.group_id) && req.topics.iter().all(|t| check.topic(Read, &t.name));
    if allowed {
        return Ok(Fixup::none());
    }
    let code = if check.visible(Delete, ResourceType::Group, &req.group_id) {
        TOPIC_DENIED
    } else {
        GROUP_DENIED
    };
    Err(Some(Box::new(ResponseKind::OffsetDelete(
        OffsetDeleteResponse::default().with_error_code(code),
    ))))
}

/// DescribeGroups: DESCRIBE on each group.
pub(super) fn describe_groups(check: &Check, req: &DescribeGroupsRequest) -> Fixup {
    let refused: Vec<_> = req
        .groups
        .iter()
        .filter(|g| !check.group(Describe, g))
        .cloned()
        .collect();
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        let ResponseKind::DescribeGroups(response) = response else {
            return;
        };
        for group in response.groups.iter_mut() {
            if refused.contains(&group.group_id) {
                *group = DescribedGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(GROUP_DENIED)
                    .with_authorized_operations(group.authorized_operations);
            }
        }
    })
}

/// ListGroups: everything with DESCRIBE on the cluster, else the groups the caller may
/// DESCRIBE.
pub(super) fn list_groups(check: &Check) -> Fixup {
    if check.visible(Describe, ResourceType::Cluster, super::CLUSTER_NAME) {
        return Fixup::none();
    }
    let session = check.session.clone();
    Fixup::none().and(move |broker, response| {
        if let ResponseKind::ListGroups(response) = response {
            response.groups.retain(|g| {
                broker
                    .authorizer
                    .authorize(&session, Describe, ResourceType::Group, &g.group_id)
            });
        }
    })
}

/// DeleteGroups: DELETE on each group.
pub(super) fn delete_groups(check: &Check, req: &mut DeleteGroupsRequest) -> Fixup {
    let refused = split_off(&mut req.groups_names, |g| check.group(Delete, g));
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        if let ResponseKind::DeleteGroups(response) = response {
            response.results.extend(refused.into_iter().map(|g| {
                DeletableGroupResult::default()
                    .with_group_id(g)
                    .with_error_code(GROUP_DENIED)
            }));
        }
    })
}
