//! CreateTopics: a topic per entry, each with its own result; replicas can only ever be
//! this one broker.

use std::collections::{BTreeMap, HashSet};

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::describe_configs::describe_topic;
use super::str_bytes;
use crate::broker::Broker;
use crate::topics::CreateTopicError;

fn error_code(error: &CreateTopicError) -> ResponseError {
    match error {
        CreateTopicError::AlreadyExists(_) => ResponseError::TopicAlreadyExists,
        CreateTopicError::InvalidName { .. } => ResponseError::InvalidTopicException,
        CreateTopicError::InvalidPartitions(_) => ResponseError::InvalidPartitions,
        CreateTopicError::InvalidReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        CreateTopicError::InvalidConfig(_) => ResponseError::InvalidConfig,
        CreateTopicError::Storage(_) => ResponseError::KafkaStorageError,
    }
}

/// The partition count and settings a CreatableTopic asks for, or why it can't be had.
fn plan(
    broker: &Broker,
    topic: &CreatableTopic,
) -> Result<(i32, BTreeMap<String, String>), (ResponseError, String)> {
    let invalid = |code: ResponseError, why: String| Err((code, why));
    let replication = topic.replication_factor;
    if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || replication != -1 {
            return invalid(
                ResponseError::InvalidRequest,
                "give either assignments or num_partitions/replication_factor".into(),
            );
        }
        let only_us = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == broker.node_id);
        if !only_us {
            return invalid(
                ResponseError::InvalidReplicaAssignment,
                format!("every replica must be on broker {}", broker.node_id),
            );
        }
    } else if replication != -1 && replication != 1 {
        return invalid(
            ResponseError::InvalidReplicationFactor,
            CreateTopicError::InvalidReplicationFactor(replication).to_string(),
        );
    }
    let partitions = match (topic.assignments.len(), topic.num_partitions) {
        (0, -1) => broker.config.num_partitions(),
        (0, n) => n,
        (n, _) => i32::try_from(n).unwrap_or(i32::MAX),
    };
    let configs = topic
        .configs
        .iter()
        .filter_map(|c| {
            c.value
                .as_ref()
                .map(|v| (c.name.to_string(), v.to_string()))
        })
        .collect();
    Ok((partitions, configs))
}

/// Creates (or, with validate_only, checks) every topic.
pub fn handle(broker: &Broker, request: CreateTopicsRequest, version: i16) -> CreateTopicsResponse {
    let mut seen = HashSet::new();
    let duplicated: HashSet<String> = request
        .topics
        .iter()
        .filter(|t| !seen.insert(t.name.to_string()))
        .map(|t| t.name.to_string())
        .collect();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let result = CreatableTopicResult::default().with_name(topic.name.clone());
            let outcome = if duplicated.contains(topic.name.as_str()) {
                Err((
                    ResponseError::InvalidRequest,
                    "topic named more than once".to_string(),
                ))
            } else {
                plan(broker, topic).and_then(|(partitions, configs)| {
                    let done = if request.validate_only {
                        broker
                            .topics
                            .validate_new(&topic.name, partitions, &configs)
                            .map(|()| (partitions, configs, None))
                    } else {
                        broker
                            .topics
                            .create(&topic.name, partitions, configs.clone())
                            .map(|created| (partitions, configs, Some(created.id())))
                    };
                    done.map_err(|e| (error_code(&e), e.to_string()))
                })
            };
            match outcome {
                Ok((partitions, configs, id)) => {
                    let mut result = result;
                    if version >= 7 {
                        result = result.with_topic_id(id.unwrap_or_default());
                    }
                    if version >= 5 {
                        let described = describe_topic(broker, &configs)
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(c.def.name))
                                    .with_value(Some(str_bytes(&c.value)))
                                    .with_config_source(c.source.kafka_code())
                            })
                            .collect();
                        result = result
                            .with_num_partitions(partitions)
                            .with_replication_factor(1)
                            .with_configs(Some(described));
                    }
                    result
                }
                Err((code, message)) => {
                    let result = result
                        .with_error_code(code.code())
                        .with_error_message(Some(str_bytes(&message)));
                    if version >= 5 {
                        result.with_num_partitions(-1).with_replication_factor(-1)
                    } else {
                        result
                    }
                }
            }
        })
        .collect();
    CreateTopicsResponse::default().with_topics(topics)
}
