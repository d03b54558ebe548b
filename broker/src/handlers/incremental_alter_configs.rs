//! IncrementalAlterConfigs (v0-1): SET, DELETE, APPEND and SUBTRACT on single settings
//! of a topic, of the broker or of a group (resource type 32); APPEND and SUBTRACT
//! only for list settings (`cleanup.policy`), starting from the effective value.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_request::AlterableConfig;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};

use super::alter_configs::{current, replace, resource, AlterError, Resource};
use super::str_bytes;
use crate::broker::Broker;
use crate::config::group::{find_group_def, group_value, load_group_configs};
use crate::config::{find_topic_def, ConfigType, BROKER_CONFIGS};

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn kind_of(resource: &Resource, name: &str) -> Option<ConfigType> {
    match resource {
        Resource::Topic(_) => find_topic_def(name).map(|(d, _)| d.kind),
        Resource::Broker => BROKER_CONFIGS
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.kind),
        Resource::Group(_) => find_group_def(name).map(|(d, _, _)| d.kind),
    }
}

fn effective(broker: &Broker, resource: &Resource, name: &str) -> Option<String> {
    match resource {
        Resource::Topic(topic) => {
            let configs = broker.topics.get(topic)?.record.configs.clone();
            broker.config.topic_value(&configs, name).map(|(v, _)| v)
        }
        Resource::Broker => broker.config.value(name).map(|(v, _)| v),
        Resource::Group(group) => {
            let configs = load_group_configs(broker.metadata_db(), group).ok()?;
            group_value(&broker.config, &configs, name).map(|(v, _)| v)
        }
    }
}

/// The resource's new set of settings after the operations.
fn apply(
    broker: &Broker,
    target: &Resource,
    ops: &[AlterableConfig],
) -> Result<BTreeMap<String, String>, AlterError> {
    let mut configs = current(broker, target)?;
    for op in ops {
        let name = op.name.to_string();
        let value = op.value.as_ref().map(|v| v.to_string());
        let kind = kind_of(target, &name)
            .ok_or_else(|| AlterError::InvalidConfig(format!("unknown setting `{name}`")))?;
        let list_op = |configs: &BTreeMap<String, String>| -> Result<Vec<String>, AlterError> {
            if kind != ConfigType::List {
                return Err(AlterError::InvalidConfig(format!(
                    "`{name}` is not a list; APPEND and SUBTRACT need one"
                )));
            }
            let now = configs
                .get(&name)
                .cloned()
                .or_else(|| effective(broker, target, &name))
                .unwrap_or_default();
            Ok(now
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect())
        };
        match op.config_operation {
            SET => {
                let value = value.ok_or_else(|| {
                    AlterError::InvalidConfig(format!("SET of `{name}` needs a value"))
                })?;
                configs.insert(name, value);
            }
            DELETE => {
                configs.remove(&name);
            }
            APPEND => {
                let mut items = list_op(&configs)?;
                for item in value.unwrap_or_default().split(',').map(str::trim) {
                    if !item.is_empty() && !items.iter().any(|i| i == item) {
                        items.push(item.to_string());
                    }
                }
                configs.insert(name, items.join(","));
            }
            SUBTRACT => {
                let mut items = list_op(&configs)?;
                let gone: Vec<String> = value
                    .unwrap_or_default()
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .collect();
                items.retain(|i| !gone.contains(i));
                configs.insert(name, items.join(","));
            }
            other => {
                return Err(AlterError::InvalidRequest(format!(
                    "unknown config operation {other}"
                )))
            }
        }
    }
    Ok(configs)
}

/// Applies each resource's operations, each with its own result.
pub fn handle(
    broker: &Broker,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let responses = request
        .resources
        .into_iter()
        .map(|r| {
            let outcome = (|| {
                let target = resource(broker, r.resource_type, &r.resource_name)?;
                let configs = apply(broker, &target, &r.configs)?;
                replace(broker, &target, configs, request.validate_only)
            })();
            let response = AlterConfigsResourceResponse::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name);
            match outcome {
                Ok(()) => response,
                Err(error) => response
                    .with_error_code(error.code().code())
                    .with_error_message(Some(str_bytes(&error.to_string()))),
            }
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}
