//! Cluster-level and config APIs: DESCRIBE on the cluster for DescribeCluster and the
//! SCRAM listing, ALTER to change SCRAM credentials, DESCRIBE_CONFIGS/ALTER_CONFIGS on
//! the topic or the cluster (broker resources) for configs; and the
//! authorized-operations bitfields Metadata, DescribeCluster and DescribeGroups
//! return on request.

use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse,
    DescribeClusterResponse, DescribeConfigsRequest, DescribeUserScramCredentialsResponse,
    IncrementalAlterConfigsRequest, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{split_off, Check, Fixup, Refused, CLUSTER_DENIED, TOPIC_DENIED};
use crate::authz::acl::CLUSTER_NAME;
use crate::authz::Operation::{Alter, AlterConfigs, Describe, DescribeConfigs};
use crate::authz::{Operation, ResourceType, Session};
use crate::handlers::str_bytes;

/// ConfigResource type codes: topic, and the two broker-level kinds.
const CONFIG_TOPIC: i8 = 2;

/// Fills in the authorized-operations bitfields a request asked for: what `session`
/// may do, or every applicable operation when `session` is `None` (authorizer off or
/// an in-process caller), as Kafka reports without an authorizer.
pub(super) fn operations_fixup(request: &RequestKind, session: Option<Session>) -> Fixup {
    let (cluster, topics, groups) = match request {
        RequestKind::Metadata(r) => (
            r.include_cluster_authorized_operations,
            r.include_topic_authorized_operations,
            false,
        ),
        RequestKind::DescribeCluster(r) => (r.include_cluster_authorized_operations, false, false),
        RequestKind::DescribeGroups(r) => (false, false, r.include_authorized_operations),
        _ => return Fixup::none(),
    };
    if !(cluster || topics || groups) {
        return Fixup::none();
    }
    Fixup::none().and(move |broker, response| {
        let bits = |kind, name: &str| {
            broker
                .authorizer
                .operations_bitfield(session.as_ref(), kind, name)
        };
        match response {
            ResponseKind::Metadata(r) => {
                if cluster {
                    r.cluster_authorized_operations = bits(ResourceType::Cluster, CLUSTER_NAME);
                }
                if topics {
                    for t in r.topics.iter_mut().filter(|t| t.error_code == 0) {
                        if let Some(name) = &t.name {
                            t.topic_authorized_operations = bits(ResourceType::Topic, name);
                        }
                    }
                }
            }
            ResponseKind::DescribeCluster(r) if cluster && r.error_code == 0 => {
                r.cluster_authorized_operations = bits(ResourceType::Cluster, CLUSTER_NAME);
            }
            ResponseKind::DescribeGroups(r) if groups => {
                for g in r.groups.iter_mut() {
                    g.authorized_operations = bits(ResourceType::Group, &g.group_id);
                }
            }
            _ => {}
        }
    })
}

/// Which resource a config resource is checked against, and the error a refusal
/// gives.
fn config_target(kind: i8, name: &str) -> (ResourceType, String, i16) {
    if kind == CONFIG_TOPIC {
        (ResourceType::Topic, name.to_string(), TOPIC_DENIED)
    } else {
        (
            ResourceType::Cluster,
            CLUSTER_NAME.to_string(),
            CLUSTER_DENIED,
        )
    }
}

/// The (type, name, error) of each refused config resource.
type RefusedConfigs = Vec<(i8, StrBytes, i16)>;

/// Takes the config resources the caller may not `op` out of a request (whose
/// resource type is `key`'s) and returns them with their errors.
fn refuse_configs<R>(
    check: &Check,
    op: Operation,
    resources: &mut Vec<R>,
    key: impl Fn(&R) -> (i8, StrBytes),
) -> RefusedConfigs {
    split_off(resources, |r| {
        let (kind, name) = key(r);
        let (resource, name, _) = config_target(kind, &name);
        check.allowed(op, resource, &name)
    })
    .iter()
    .map(|r| {
        let (kind, name) = key(r);
        let code = config_target(kind, &name).2;
        (kind, name, code)
    })
    .collect()
}

/// DescribeConfigs: DESCRIBE_CONFIGS on each topic, or on the cluster for brokers.
pub(super) fn describe_configs(check: &Check, req: &mut DescribeConfigsRequest) -> Fixup {
    let refused = refuse_configs(check, DescribeConfigs, &mut req.resources, |r| {
        (r.resource_type, r.resource_name.clone())
    });
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        if let ResponseKind::DescribeConfigs(response) = response {
            response
                .results
                .extend(refused.into_iter().map(|(kind, name, code)| {
                    DescribeConfigsResult::default()
                        .with_resource_type(kind)
                        .with_resource_name(name)
                        .with_error_code(code)
                        .with_error_message(Some(str_bytes("not authorized to describe configs")))
                }));
        }
    })
}

/// AlterConfigs: ALTER_CONFIGS on each topic, or on the cluster for brokers.
pub(super) fn alter_configs(check: &Check, req: &mut AlterConfigsRequest) -> Fixup {
    alter_fixup(refuse_configs(
        check,
        AlterConfigs,
        &mut req.resources,
        |r| (r.resource_type, r.resource_name.clone()),
    ))
}

/// IncrementalAlterConfigs: as AlterConfigs.
pub(super) fn incremental_alter_configs(
    check: &Check,
    req: &mut IncrementalAlterConfigsRequest,
) -> Fixup {
    alter_fixup(refuse_configs(
        check,
        AlterConfigs,
        &mut req.resources,
        |r| (r.resource_type, r.resource_name.clone()),
    ))
}

/// Puts refused resources back into either alter response (their result types are
/// alike but distinct).
fn alter_fixup(refused: RefusedConfigs) -> Fixup {
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        let message = Some(str_bytes("not authorized to alter configs"));
        match response {
            ResponseKind::AlterConfigs(r) => {
                r.responses.extend(refused.into_iter().map(|(kind, name, code)| {
                    kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(kind)
                        .with_resource_name(name)
                        .with_error_code(code)
                        .with_error_message(message.clone())
                }));
            }
            ResponseKind::IncrementalAlterConfigs(r) => {
                r.responses.extend(refused.into_iter().map(|(kind, name, code)| {
                    kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                        .with_resource_type(kind)
                        .with_resource_name(name)
                        .with_error_code(code)
                        .with_error_message(message.clone())
                }));
            }
            _ => {}
        }
    })
}

/// DescribeCluster: DESCRIBE on the cluster.
pub(super) fn describe_cluster(check: &Check) -> Refused {
    if check.cluster(Describe) {
        return Ok(Fixup::none());
    }
    Err(Some(Box::new(ResponseKind::DescribeCluster(
        DescribeClusterResponse::default()
            .with_error_code(CLUSTER_DENIED)
            .with_error_message(Some(str_bytes("not authorized to describe the cluster"))),
    ))))
}

/// DescribeUserScramCredentials: DESCRIBE on the cluster.
pub(super) fn describe_scram(check: &Check) -> Refused {
    if check.cluster(Describe) {
        return Ok(Fixup::none());
    }
    Err(Some(Box::new(ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default()
            .with_error_code(CLUSTER_DENIED)
            .with_error_message(Some(str_bytes("not authorized to describe the cluster"))),
    ))))
}

/// AlterUserScramCredentials: ALTER on the cluster; every user named gets the error.
pub(super) fn alter_scram(check: &Check, req: &AlterUserScramCredentialsRequest) -> Refused {
    if check.cluster(Alter) {
        return Ok(Fixup::none());
    }
    let mut users: Vec<StrBytes> = req
        .deletions
        .iter()
        .map(|d| d.name.clone())
        .chain(req.upsertions.iter().map(|u| u.name.clone()))
        .collect();
    users.sort();
    users.dedup();
    let results = users
        .into_iter()
        .map(|user| {
            AlterUserScramCredentialsResult::default()
                .with_user(user)
                .with_error_code(CLUSTER_DENIED)
                .with_error_message(Some(str_bytes("not authorized to alter the cluster")))
        })
        .collect();
    Err(Some(Box::new(ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    ))))
}
