//! Topic APIs: Metadata (DESCRIBE, CREATE for auto-creation), Produce (WRITE), Fetch
//! (READ), ListOffsets (DESCRIBE), CreateTopics (CREATE on the cluster or topic),
//! DeleteTopics and DeleteRecords (DELETE), CreatePartitions (ALTER).

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, ProduceResponse,
    ResponseKind,
};

use super::{split_off, Check, Fixup, Refused, TOPIC_DENIED};
use crate::authz::Operation::{Alter, Create, Delete, Describe, Read, Write};
use crate::authz::ResourceType;
use crate::broker::Broker;
use crate::handlers::str_bytes;

/// The message every refused topic carries where the response has room for one.
const DENIED_MESSAGE: &str = "not authorized to access this topic";

/// Metadata: explicitly named topics the caller may not DESCRIBE (or may not CREATE
/// when they would be auto-created) answer TOPIC_AUTHORIZATION_FAILED; a listing of all
/// topics leaves them out.
pub(super) fn metadata(check: &Check, broker: &Broker, req: &mut MetadataRequest) -> Fixup {
    let auto_create = req.allow_auto_topic_creation && broker.config.auto_create_topics();
    let may_create_any =
        auto_create && check.visible(Create, ResourceType::Cluster, super::CLUSTER_NAME);
    let refused = match &mut req.topics {
        Some(topics) => split_off(topics, |t| {
            let Some(name) = &t.name else {
                return true; // by id: the handler answers for unknown ids
            };
            check.topic(Describe, name)
                && (!auto_create
                    || may_create_any
                    || broker.topics.get(name).is_some()
                    || check.topic(Create, name))
        }),
        None => Vec::new(),
    };
    let session = check.session.clone();
    Fixup::none().and(move |broker, response| {
        let ResponseKind::Metadata(response) = response else {
            return;
        };
        response.topics.retain(|t| {
            t.name.as_ref().is_none_or(|name| {
                broker
                    .authorizer
                    .authorize(&session, Describe, ResourceType::Topic, name)
            })
        });
        response.topics.extend(refused.into_iter().map(|t| {
            MetadataResponseTopic::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
                .with_error_code(TOPIC_DENIED)
        }));
    })
}

/// Produce: WRITE on the transactional id for a transactional producer (else the whole
/// request is refused), WRITE on each topic.
pub(super) fn produce(check: &Check, req: &mut ProduceRequest) -> Refused {
    if let Some(id) = &req.transactional_id {
        if !check.transactional_id(Write, id) {
            if req.acks == 0 {
                return Err(None);
            }
            let mut response = ProduceResponse::default();
            push_produce_errors(
                &mut response,
                std::mem::take(&mut req.topic_data),
                super::TXN_DENIED,
            );
            return Err(Some(Box::new(ResponseKind::Produce(response))));
        }
    }
    let refused = split_off(&mut req.topic_data, |t| check.topic(Write, &t.name));
    if refused.is_empty() {
        return Ok(Fixup::none());
    }
    Ok(Fixup::none().and(move |_, response| {
        if let ResponseKind::Produce(response) = response {
            push_produce_errors(response, refused, TOPIC_DENIED);
        }
    }))
}

fn push_produce_errors(
    response: &mut ProduceResponse,
    topics: Vec<kafka_protocol::messages::produce_request::TopicProduceData>,
    code: i16,
) {
    response.responses.extend(topics.into_iter().map(|t| {
        TopicProduceResponse::default()
            .with_name(t.name)
            .with_topic_id(t.topic_id)
            .with_partition_responses(
                t.partition_data
                    .iter()
                    .map(|p| {
                        PartitionProduceResponse::default()
                            .with_index(p.index)
                            .with_error_code(code)
                            .with_base_offset(-1)
                            .with_log_append_time_ms(-1)
                            .with_log_start_offset(-1)
                    })
                    .collect(),
            )
    }));
}

/// Fetch: READ on each topic (named, or by id from v13).
pub(super) fn fetch(check: &Check, broker: &Broker, req: &mut FetchRequest) -> Fixup {
    let refused = split_off(&mut req.topics, |t| {
        let name = if t.topic.is_empty() {
            match broker.topics.get_by_id(t.topic_id) {
                Some(topic) => topic.name().to_string(),
                None => return true, // the handler answers UNKNOWN_TOPIC_ID
            }
        } else {
            t.topic.to_string()
        };
        check.topic(Read, &name)
    });
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        let ResponseKind::Fetch(response) = response else {
            return;
        };
        response.responses.extend(refused.into_iter().map(|t| {
            FetchableTopicResponse::default()
                .with_topic(t.topic)
                .with_topic_id(t.topic_id)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(TOPIC_DENIED)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect(),
                )
        }));
    })
}

/// ListOffsets: DESCRIBE on each topic.
pub(super) fn list_offsets(check: &Check, req: &mut ListOffsetsRequest) -> Fixup {
    let refused = split_off(&mut req.topics, |t| check.topic(Describe, &t.name));
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        let ResponseKind::ListOffsets(response) = response else {
            return;
        };
        response.topics.extend(refused.into_iter().map(|t| {
            ListOffsetsTopicResponse::default()
                .with_name(t.name)
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_DENIED)
                                .with_timestamp(-1)
                                .with_offset(-1)
                                .with_leader_epoch(-1)
                        })
                        .collect(),
                )
        }));
    })
}

/// CreateTopics: CREATE on the cluster, or else on each topic.
pub(super) fn create_topics(check: &Check, req: &mut CreateTopicsRequest) -> Fixup {
    if check.visible(Create, ResourceType::Cluster, super::CLUSTER_NAME) {
        return Fixup::none();
    }
    let refused = split_off(&mut req.topics, |t| check.topic(Create, &t.name));
    Fixup::none().and(move |_, response| {
        if let ResponseKind::CreateTopics(response) = response {
            response.topics.extend(refused.into_iter().map(|t| {
                CreatableTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(str_bytes(DENIED_MESSAGE)))
            }));
        }
    })
}

/// DeleteTopics: DELETE on each topic (named in v0-v5, by name or id from v6).
pub(super) fn delete_topics(
    check: &Check,
    broker: &Broker,
    req: &mut DeleteTopicsRequest,
) -> Fixup {
    let mut refused: Vec<DeletableTopicResult> =
        split_off(&mut req.topic_names, |name| check.topic(Delete, name))
            .into_iter()
            .map(|name| DeletableTopicResult::default().with_name(Some(name)))
            .collect();
    refused.extend(
        split_off(&mut req.topics, |t| {
            let name = match &t.name {
                Some(name) => name.to_string(),
                None => match broker.topics.get_by_id(t.topic_id) {
                    Some(topic) => topic.name().to_string(),
                    None => return true,
                },
            };
            check.topic(Delete, &name)
        })
        .into_iter()
        .map(|t| {
            DeletableTopicResult::default()
                .with_name(t.name)
                .with_topic_id(t.topic_id)
        }),
    );
    Fixup::none().and(move |_, response| {
        if let ResponseKind::DeleteTopics(response) = response {
            response.responses.extend(refused.into_iter().map(|r| {
                r.with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(str_bytes(DENIED_MESSAGE)))
            }));
        }
    })
}

/// CreatePartitions: ALTER on each topic.
pub(super) fn create_partitions(check: &Check, req: &mut CreatePartitionsRequest) -> Fixup {
    let refused = split_off(&mut req.topics, |t| check.topic(Alter, &t.name));
    Fixup::none().and(move |_, response| {
        if let ResponseKind::CreatePartitions(response) = response {
            response.results.extend(refused.into_iter().map(|t| {
                CreatePartitionsTopicResult::default()
                    .with_name(t.name)
                    .with_error_code(TOPIC_DENIED)
                    .with_error_message(Some(str_bytes(DENIED_MESSAGE)))
            }));
        }
    })
}

/// DeleteRecords: DELETE on each topic.
pub(super) fn delete_records(check: &Check, req: &mut DeleteRecordsRequest) -> Fixup {
    let refused = split_off(&mut req.topics, |t| check.topic(Delete, &t.name));
    Fixup::none().and(move |_, response| {
        if let ResponseKind::DeleteRecords(response) = response {
            response.topics.extend(refused.into_iter().map(|t| {
                DeleteRecordsTopicResult::default()
                    .with_name(t.name)
                    .with_partitions(
                        t.partitions
                            .iter()
                            .map(|p| {
                                DeleteRecordsPartitionResult::default()
                                    .with_partition_index(p.partition_index)
                                    .with_low_watermark(-1)
                                    .with_error_code(TOPIC_DENIED)
                            })
                            .collect(),
                    )
            }));
        }
    })
}
