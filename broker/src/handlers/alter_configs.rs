//! AlterConfigs (v0-2): replaces the whole set of dynamic settings of a topic, of the
//! broker or of a group, as Kafka does (settings not named return to their defaults). The
//! helpers here are shared with IncrementalAlterConfigs.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};
use super::str_bytes;
use crate::broker::Broker;
use crate::config::group::{load_group_configs, store_group_configs, validate_group_configs};
use crate::lifecycle::{self, AlterBrokerError};
use crate::topics::AlterTopicError;

/// Why one resource's change was refused; each maps to one Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum AlterError {
    /// INVALID_CONFIG.
    #[error("{0}")]
    InvalidConfig(String),
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("unknown topic")]
    UnknownTopic,
    /// INVALID_REQUEST: an unsupported resource type or another broker's id.
    #[error("{0}")]
    InvalidRequest(String),
    /// KAFKA_STORAGE_ERROR.
    #[error("storage: {0}")]
    Storage(String),
}

impl AlterError {
    /// The Kafka error code.
    pub fn code(&self) -> ResponseError {
        match self {
            AlterError::InvalidConfig(_) => ResponseError::InvalidConfig,
            AlterError::UnknownTopic => ResponseError::UnknownTopicOrPartition,
            AlterError::InvalidRequest(_) => ResponseError::InvalidRequest,
            AlterError::Storage(_) => ResponseError::KafkaStorageError,
        }
    }
}

impl From<AlterTopicError> for AlterError {
    fn from(error: AlterTopicError) -> Self {
        match error {
            AlterTopicError::Unknown => AlterError::UnknownTopic,
            AlterTopicError::InvalidConfig(e) => AlterError::InvalidConfig(e.to_string()),
            AlterTopicError::Storage(e) => AlterError::Storage(e),
        }
    }
}

impl From<AlterBrokerError> for AlterError {
    fn from(error: AlterBrokerError) -> Self {
        match error {
            AlterBrokerError::Invalid(e) => AlterError::InvalidConfig(e.to_string()),
            AlterBrokerError::Storage(e) => AlterError::Storage(e.to_string()),
        }
    }
}

/// Which resource a request names.
pub(crate) enum Resource {
    /// A topic, by name.
    Topic(String),
    /// This broker (its id, or "" for the cluster-wide default).
    Broker,
    /// A group, by name (it need not exist).
    Group(String),
}

/// Resolves a resource type and name.
pub(crate) fn resource(broker: &Broker, kind: i8, name: &str) -> Result<Resource, AlterError> {
    match kind {
        RESOURCE_TOPIC => Ok(Resource::Topic(name.to_string())),
        RESOURCE_BROKER if name.is_empty() || name == broker.node_id.to_string() => {
            Ok(Resource::Broker)
        }
        RESOURCE_GROUP if name.is_empty() => Err(AlterError::InvalidRequest(
            "a group resource needs a group name".to_string(),
        )),
        RESOURCE_GROUP => Ok(Resource::Group(name.to_string())),
        RESOURCE_BROKER => Err(AlterError::InvalidRequest(format!(
            "this is broker {}, not {name}",
            broker.node_id
        ))),
        other => Err(AlterError::InvalidRequest(format!(
            "resource type {other} is not supported"
        ))),
    }
}

/// The current dynamic settings of a resource.
pub(crate) fn current(
    broker: &Broker,
    resource: &Resource,
) -> Result<BTreeMap<String, String>, AlterError> {
    match resource {
        Resource::Topic(name) => broker
            .topics
            .get(name)
            .map(|t| t.record.configs.clone())
            .ok_or(AlterError::UnknownTopic),
        Resource::Broker => Ok(broker.config.dynamic_values()),
        Resource::Group(group) => load_group_configs(broker.metadata_db(), group)
            .map_err(|e| AlterError::Storage(e.to_string())),
    }
}

/// Validates and (unless `validate_only`) applies a resource's new set of settings.
pub(crate) fn replace(
    broker: &Broker,
    resource: &Resource,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), AlterError> {
    match resource {
        Resource::Topic(name) => {
            broker.topics.alter_configs(name, configs, validate_only)?;
        }
        Resource::Broker => lifecycle::set_dynamic_configs(broker, &configs, validate_only)?,
        Resource::Group(group) => {
            validate_group_configs(&broker.config, &configs)
                .map_err(|e| AlterError::InvalidConfig(e.to_string()))?;
            if !validate_only {
                store_group_configs(broker.metadata_db(), group, &configs)
                    .map_err(|e| AlterError::Storage(e.to_string()))?;
            }
        }
    }
    Ok(())
}

/// One resource's response entry.
fn result(
    kind: i8,
    name: kafka_protocol::protocol::StrBytes,
    outcome: Result<(), AlterError>,
) -> AlterConfigsResourceResponse {
    let response = AlterConfigsResourceResponse::default()
        .with_resource_type(kind)
        .with_resource_name(name);
    match outcome {
        Ok(()) => response,
        Err(error) => response
            .with_error_code(error.code().code())
            .with_error_message(Some(str_bytes(&error.to_string()))),
    }
}

/// Applies each resource's new settings, each with its own result.
pub fn handle(broker: &Broker, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|r| {
            let outcome = (|| {
                let target = resource(broker, r.resource_type, &r.resource_name)?;
                let mut configs = BTreeMap::new();
                for config in &r.configs {
                    let value = config.value.as_ref().ok_or_else(|| {
                        AlterError::InvalidConfig(format!("null value for `{}`", config.name))
                    })?;
                    configs.insert(config.name.to_string(), value.to_string());
                }
                replace(broker, &target, configs, request.validate_only)
            })();
            result(r.resource_type, r.resource_name, outcome)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}
