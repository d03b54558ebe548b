//! Metadata: the advertised broker, and every requested topic (created on the way when
//! the request allows it and `auto.create.topics.enable` is on; the creating request is
//! answered LEADER_NOT_AVAILABLE, as Kafka does).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};

use super::{str_bytes, topic_name, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::topics::{CreateTopicError, Topic};

/// Answers a Metadata request.
pub fn handle(
    broker: &Broker,
    request: MetadataRequest,
    version: i16,
    (host, port): (&str, u16),
) -> MetadataResponse {
    let mut response =
        MetadataResponse::default().with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.node_id))
            .with_host(str_bytes(host))
            .with_port(i32::from(port))]);
    if version >= 1 {
        response = response.with_controller_id(BrokerId(broker.node_id));
    }
    if version >= 2 {
        response = response.with_cluster_id(Some(str_bytes(&broker.cluster_id)));
    }
    if (8..=10).contains(&version) {
        response = response.with_cluster_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    // v0 has no null: an empty list means every topic.
    let requested = match request.topics {
        Some(topics) if !(version == 0 && topics.is_empty()) => topics,
        _ => {
            let topics = broker
                .topics
                .list()
                .iter()
                .map(|topic| describe(broker.node_id, topic, version))
                .collect();
            return response.with_topics(topics);
        }
    };
    let allow_create =
        (version < 4 || request.allow_auto_topic_creation) && broker.config.auto_create_topics();
    let topics = requested
        .into_iter()
        .map(|wanted| match wanted.name {
            Some(name) => lookup_or_create(broker, &name, allow_create, version),
            None => match broker.topics.get_by_id(wanted.topic_id) {
                Some(topic) => describe(broker.node_id, &topic, version),
                None => MetadataResponseTopic::default()
                    .with_name(None)
                    .with_topic_id(wanted.topic_id)
                    .with_error_code(ResponseError::UnknownTopicId.code()),
            },
        })
        .collect();
    response.with_topics(topics)
}

fn lookup_or_create(
    broker: &Broker,
    name: &str,
    allow_create: bool,
    version: i16,
) -> MetadataResponseTopic {
    if let Some(topic) = broker.topics.get(name) {
        return describe(broker.node_id, &topic, version);
    }
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code.code())
    };
    if !allow_create {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    match broker
        .topics
        .create(name, broker.config.num_partitions(), BTreeMap::new())
    {
        // As Kafka answers the request that creates a topic: LEADER_NOT_AVAILABLE and no
        // partitions (its controller elects leaders after the answer); clients retry
        // metadata and find the topic served from the next request on. Some suites
        // (kafka-go's after DeleteTopics) rely on exactly this answer.
        Ok(topic) => error(ResponseError::LeaderNotAvailable).with_topic_id(topic.id()),
        // Another connection created it between our lookup and our create.
        Err(CreateTopicError::AlreadyExists(_)) => match broker.topics.get(name) {
            Some(topic) => describe(broker.node_id, &topic, version),
            None => error(ResponseError::LeaderNotAvailable),
        },
        Err(CreateTopicError::InvalidName { .. }) => error(ResponseError::InvalidTopicException),
        Err(other) => {
            tracing::warn!(topic = name, error = %other, "auto-create failed");
            error(ResponseError::KafkaStorageError)
        }
    }
}

fn describe(node_id: i32, topic: &Arc<Topic>, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(node_id);
    let partitions = topic
        .partitions
        .iter()
        .map(|partition| {
            let described = MetadataResponsePartition::default()
                .with_partition_index(partition.index)
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if version >= 7 {
                described.with_leader_epoch(0)
            } else {
                described
            }
        })
        .collect::<Vec<_>>();
    let mut described = MetadataResponseTopic::default()
        .with_name(Some(topic_name(topic.name())))
        .with_topic_id(topic.id())
        .with_partitions(partitions);
    if version >= 8 {
        described = described.with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED);
    }
    described
}
