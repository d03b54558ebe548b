//! CreateAcls, DescribeAcls and DeleteAcls: managing the authorizer's bindings, as
//! Kafka's `KafkaApis` answers them (ALTER on the cluster to change, DESCRIBE to list;
//! SECURITY_DISABLED while the authorizer is off).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl,
};
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{
    CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse,
    DescribeAclsRequest, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::str_bytes;
use crate::authz::acl::CLUSTER_NAME;
use crate::authz::{
    AclBinding, AclFilter, Operation, PatternType, Permission, ResourceType, Session,
};
use crate::broker::Broker;

/// Why an ACL request is refused as a whole: its error code and message.
fn refusal(broker: &Broker, session: Option<&Session>, op: Operation) -> Option<(i16, String)> {
    let authz = &broker.authorizer;
    if let Some(s) = session {
        if !authz.authorize(s, op, ResourceType::Cluster, CLUSTER_NAME) {
            tracing::info!(principal = %s.principal, host = %s.host, ?op, "ACL request denied: no {} on the cluster", op.name());
            return Some((
                ResponseError::ClusterAuthorizationFailed.code(),
                format!(
                    "{} is not authorized to {} the cluster",
                    s.principal,
                    op.name()
                ),
            ));
        }
    }
    (!authz.enabled()).then(|| {
        (
            ResponseError::SecurityDisabled.code(),
            "no authorizer is configured (set authorizer.enable = true)".to_string(),
        )
    })
}

/// CreateAcls: validates and stores each binding; one result per creation, in order.
pub fn create(
    broker: &Broker,
    request: CreateAclsRequest,
    session: Option<&Session>,
) -> CreateAclsResponse {
    let refused = refusal(broker, session, Operation::Alter);
    let mut results = Vec::with_capacity(request.creations.len());
    let mut valid = Vec::new();
    for creation in request.creations {
        let binding = AclBinding {
            resource_type: ResourceType::from_code(creation.resource_type)
                .unwrap_or(ResourceType::Unknown),
            name: creation.resource_name.to_string(),
            pattern: PatternType::from_code(creation.resource_pattern_type)
                .unwrap_or(PatternType::Unknown),
            principal: creation.principal.to_string(),
            host: creation.host.to_string(),
            operation: Operation::from_code(creation.operation).unwrap_or(Operation::Unknown),
            permission: Permission::from_code(creation.permission_type)
                .unwrap_or(Permission::Unknown),
        };
        let outcome = match (&refused, binding.validate()) {
            (Some((code, message)), _) => Err((*code, message.clone())),
            (None, Err(invalid)) => {
                tracing::info!(?binding, %invalid, "CreateAcls: invalid binding");
                Err((ResponseError::InvalidRequest.code(), invalid.to_string()))
            }
            (None, Ok(())) => {
                valid.push((results.len(), binding));
                Ok(())
            }
        };
        results.push(creation_result(outcome));
    }
    let bindings: Vec<AclBinding> = valid.iter().map(|(_, b)| b.clone()).collect();
    if let Err(error) = broker.authorizer.create(&bindings) {
        tracing::error!(%error, "CreateAcls: storing bindings failed");
        for (index, _) in &valid {
            if let Some(result) = results.get_mut(*index) {
                *result = creation_result(Err((
                    ResponseError::UnknownServerError.code(),
                    error.to_string(),
                )));
            }
        }
    } else if !bindings.is_empty() {
        tracing::info!(count = bindings.len(), principal = ?session.map(|s| &s.principal), "ACLs created");
    }
    CreateAclsResponse::default().with_results(results)
}

fn creation_result(outcome: Result<(), (i16, String)>) -> AclCreationResult {
    match outcome {
        Ok(()) => AclCreationResult::default(),
        Err((code, message)) => AclCreationResult::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(&message))),
    }
}

/// DescribeAcls: the bindings the filter matches, grouped by resource pattern.
pub fn describe(
    broker: &Broker,
    request: DescribeAclsRequest,
    session: Option<&Session>,
) -> DescribeAclsResponse {
    let filter = acl_filter(
        [
            request.resource_type_filter,
            request.pattern_type_filter,
            request.operation,
            request.permission_type,
        ],
        request.resource_name_filter,
        request.principal_filter,
        request.host_filter,
    );
    let error = refusal(broker, session, Operation::Describe).or_else(|| {
        filter.is_unknown().then(|| {
            (
                ResponseError::InvalidRequest.code(),
                "the filter has an unknown resource type, pattern type, operation or permission"
                    .to_string(),
            )
        })
    });
    if let Some((code, message)) = error {
        return DescribeAclsResponse::default()
            .with_error_code(code)
            .with_error_message(Some(str_bytes(&message)));
    }
    let mut grouped: BTreeMap<(ResourceType, String, PatternType), Vec<AclDescription>> =
        BTreeMap::new();
    for b in broker.authorizer.describe(&filter) {
        grouped
            .entry((b.resource_type, b.name.clone(), b.pattern))
            .or_default()
            .push(
                AclDescription::default()
                    .with_principal(StrBytes::from_string(b.principal))
                    .with_host(StrBytes::from_string(b.host))
                    .with_operation(b.operation.code())
                    .with_permission_type(b.permission.code()),
            );
    }
    let resources = grouped
        .into_iter()
        .map(|((kind, name, pattern), acls)| {
            DescribeAclsResource::default()
                .with_resource_type(kind.code())
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pattern.code())
                .with_acls(acls)
        })
        .collect();
    DescribeAclsResponse::default().with_resources(resources)
}

/// DeleteAcls: removes what each filter matches; one result per filter, listing what
/// it removed.
pub fn delete(
    broker: &Broker,
    request: DeleteAclsRequest,
    session: Option<&Session>,
) -> DeleteAclsResponse {
    let refused = refusal(broker, session, Operation::Alter);
    let results = request
        .filters
        .into_iter()
        .map(|f| {
            let filter = delete_filter(f);
            let outcome = match &refused {
                Some(error) => Err(error.clone()),
                None if filter.is_unknown() => Err((
                    ResponseError::InvalidRequest.code(),
                    "the filter has an unknown resource type, pattern type, operation or permission"
                        .to_string(),
                )),
                None => broker.authorizer.delete(&filter).map_err(|error| {
                    tracing::error!(%error, "DeleteAcls: removing bindings failed");
                    (ResponseError::UnknownServerError.code(), error.to_string())
                }),
            };
            match outcome {
                Ok(gone) => {
                    if !gone.is_empty() {
                        tracing::info!(count = gone.len(), principal = ?session.map(|s| &s.principal), "ACLs deleted");
                    }
                    DeleteAclsFilterResult::default()
                        .with_matching_acls(gone.into_iter().map(matching_acl).collect())
                }
                Err((code, message)) => DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(Some(str_bytes(&message))),
            }
        })
        .collect();
    DeleteAclsResponse::default().with_filter_results(results)
}

fn delete_filter(f: DeleteAclsFilter) -> AclFilter {
    acl_filter(
        [
            f.resource_type_filter,
            f.pattern_type_filter,
            f.operation,
            f.permission_type,
        ],
        f.resource_name_filter,
        f.principal_filter,
        f.host_filter,
    )
}

/// A filter from its wire form (DescribeAcls and DeleteAcls carry the same fields):
/// codes `[resource type, pattern type, operation, permission]`, then the strings.
fn acl_filter(
    [kind, pattern, op, permission]: [i8; 4],
    name: Option<StrBytes>,
    principal: Option<StrBytes>,
    host: Option<StrBytes>,
) -> AclFilter {
    AclFilter {
        resource_type: ResourceType::from_code(kind).unwrap_or(ResourceType::Unknown),
        name: name.map(|n| n.to_string()),
        pattern: PatternType::from_code(pattern).unwrap_or(PatternType::Unknown),
        principal: principal.map(|p| p.to_string()),
        host: host.map(|h| h.to_string()),
        operation: Operation::from_code(op).unwrap_or(Operation::Unknown),
        permission: Permission::from_code(permission).unwrap_or(Permission::Unknown),
    }
}

fn matching_acl(b: AclBinding) -> DeleteAclsMatchingAcl {
    DeleteAclsMatchingAcl::default()
        .with_resource_type(b.resource_type.code())
        .with_resource_name(StrBytes::from_string(b.name))
        .with_pattern_type(b.pattern.code())
        .with_principal(StrBytes::from_string(b.principal))
        .with_host(StrBytes::from_string(b.host))
        .with_operation(b.operation.code())
        .with_permission_type(b.permission.code())
}
