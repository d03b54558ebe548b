//! DescribeConfigs: every topic, broker or group setting with its value, source,
//! synonyms, type and documentation, read from the one settings table in
//! [`crate::config`]. Secrets (PASSWORD settings) are described with a null value and
//! `is_sensitive`, as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::config::group::{group_value, load_group_configs};
use crate::config::{
    BrokerConfig, ConfigDef, ConfigSource, ConfigType, BROKER_CONFIGS, GROUP_CONFIGS, TOPIC_CONFIGS,
};

/// Kafka's resource type code for topics.
pub const RESOURCE_TOPIC: i8 = 2;
/// Kafka's resource type code for brokers.
pub const RESOURCE_BROKER: i8 = 4;
/// Kafka's resource type code for groups (Kafka 4.0, KIP-848).
pub const RESOURCE_GROUP: i8 = 32;

/// One setting as a client sees it.
#[derive(Debug, Clone)]
pub struct DescribedConfig {
    /// The setting's definition.
    pub def: &'static ConfigDef,
    /// Its effective value.
    pub value: String,
    /// Where that value came from.
    pub source: ConfigSource,
    /// Lower-precedence places the setting is also defined, most specific first.
    pub synonyms: Vec<(String, String, ConfigSource)>,
}

/// Every topic-level setting of a topic with these overrides.
pub fn describe_topic(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<DescribedConfig> {
    TOPIC_CONFIGS
        .iter()
        .filter_map(|(def, broker_synonym)| {
            let (value, source) = broker.config.topic_value(overrides, def.name)?;
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push((def.name.to_string(), v.clone(), ConfigSource::DynamicTopic));
            }
            match broker_synonym.and_then(|name| broker.config.value(name).map(|v| (name, v))) {
                Some((name, (v, ConfigSource::DynamicBroker))) => {
                    synonyms.push((name.to_string(), v, ConfigSource::DynamicBroker));
                }
                Some((name, (v, ConfigSource::StaticBroker))) => {
                    synonyms.push((name.to_string(), v, ConfigSource::StaticBroker));
                    let default = BROKER_CONFIGS
                        .iter()
                        .find(|d| d.name == name)
                        .map(|d| d.default);
                    if let Some(default) = default {
                        synonyms.push((
                            name.to_string(),
                            default.to_string(),
                            ConfigSource::Default,
                        ));
                    }
                }
                Some((name, (v, _))) => synonyms.push((name.to_string(), v, ConfigSource::Default)),
                None => synonyms.push((
                    def.name.to_string(),
                    def.default.to_string(),
                    ConfigSource::Default,
                )),
            }
            Some(DescribedConfig {
                def,
                value,
                source,
                synonyms,
            })
        })
        .collect()
}

fn describe_broker(broker: &Broker) -> Vec<DescribedConfig> {
    BROKER_CONFIGS
        .iter()
        .filter_map(|def| {
            let (value, source) = broker.config.value(def.name)?;
            let mut synonyms = Vec::new();
            if source == ConfigSource::DynamicBroker {
                synonyms.push((def.name.to_string(), value.clone(), source));
                if let Some(v) = broker.config.static_value(def.name) {
                    synonyms.push((def.name.to_string(), v, ConfigSource::StaticBroker));
                }
            }
            if source == ConfigSource::StaticBroker {
                synonyms.push((def.name.to_string(), value.clone(), source));
            }
            synonyms.push((
                def.name.to_string(),
                def.default.to_string(),
                ConfigSource::Default,
            ));
            Some(DescribedConfig {
                def,
                value,
                source,
                synonyms,
            })
        })
        .collect()
}

/// Every group-level setting of a group with these overrides.
fn describe_group(broker: &Broker, overrides: &BTreeMap<String, String>) -> Vec<DescribedConfig> {
    GROUP_CONFIGS
        .iter()
        .filter_map(|(def, _, _)| {
            let (value, source) = group_value(&broker.config, overrides, def.name)?;
            Some(DescribedConfig {
                def,
                synonyms: vec![(def.name.to_string(), value.clone(), source)],
                value,
                source,
            })
        })
        .collect()
}

/// Describes each requested resource.
pub fn handle(
    broker: &Broker,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let (configs, read_only) = match resource.resource_type {
                RESOURCE_TOPIC => match broker.topics.get(&resource.resource_name) {
                    Some(topic) => (describe_topic(broker, &topic.record.configs), false),
                    None => {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes("unknown topic")))
                    }
                },
                RESOURCE_BROKER => {
                    let name = resource.resource_name.as_str();
                    if !name.is_empty() && name != broker.node_id.to_string() {
                        return result
                            .with_error_code(ResponseError::InvalidRequest.code())
                            .with_error_message(Some(str_bytes(&format!(
                                "this is broker {}, not {name}",
                                broker.node_id
                            ))));
                    }
                    (describe_broker(broker), true)
                }
                RESOURCE_GROUP if !resource.resource_name.is_empty() => {
                    match load_group_configs(broker.metadata_db(), &resource.resource_name) {
                        Ok(overrides) => (describe_group(broker, &overrides), false),
                        Err(error) => {
                            tracing::error!(%error, "reading group configs failed");
                            return result
                                .with_error_code(ResponseError::KafkaStorageError.code())
                                .with_error_message(Some(str_bytes(&error.to_string())));
                        }
                    }
                }
                other => {
                    return result
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_error_message(Some(str_bytes(&format!(
                            "resource type {other} is not supported"
                        ))))
                }
            };
            let keys = resource.configuration_keys.map(|keys| {
                keys.iter()
                    .map(|k| k.as_str().to_string())
                    .collect::<Vec<_>>()
            });
            let configs = configs
                .into_iter()
                .filter(|c| {
                    keys.as_ref()
                        .is_none_or(|keys| keys.iter().any(|k| k == c.def.name))
                })
                .map(|c| {
                    let secret = c.def.kind == ConfigType::Password;
                    let shown = |value: &str| (!secret).then(|| str_bytes(value));
                    let mut entry = DescribeConfigsResourceResult::default()
                        .with_name(str_bytes(c.def.name))
                        .with_value(shown(&c.value))
                        .with_is_sensitive(secret)
                        .with_read_only(read_only && !BrokerConfig::is_dynamic(c.def.name))
                        .with_config_source(c.source.kafka_code());
                    if request.include_synonyms {
                        entry = entry.with_synonyms(
                            c.synonyms
                                .iter()
                                .map(|(name, value, source)| {
                                    DescribeConfigsSynonym::default()
                                        .with_name(str_bytes(name))
                                        .with_value(shown(value))
                                        .with_source(source.kafka_code())
                                })
                                .collect(),
                        );
                    }
                    if version >= 3 {
                        entry = entry.with_config_type(c.def.kind.kafka_code());
                        if request.include_documentation {
                            entry = entry.with_documentation(Some(str_bytes(c.def.doc)));
                        }
                    }
                    entry
                })
                .collect();
            result.with_configs(configs)
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}
