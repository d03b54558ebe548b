//! Committed offset APIs: OffsetCommit, OffsetFetch, OffsetDelete, over the
//! [`crate::groups::GroupCoordinator`]'s durable store.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;

use super::{str_bytes, topic_name, ReplyBody};
use crate::broker::Broker;
use crate::groups::{CommitOffset, CommitParams, CommittedOffset};

/// OffsetCommit: validated and written now, acknowledged once durable. Partitions of
/// unknown topics get UNKNOWN_TOPIC_OR_PARTITION, as in Kafka.
pub fn offset_commit(
    broker: &Arc<Broker>,
    request: OffsetCommitRequest,
    version: i16,
) -> ReplyBody {
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    // (topic, partition, Some(index into offsets) or the error code).
    let mut slots: Vec<(TopicName, i32, Result<usize, i16>)> = Vec::new();
    let mut offsets = Vec::new();
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let topic_known = broker.topics.get(&name);
        for p in &topic.partitions {
            let known = topic_known
                .as_ref()
                .is_some_and(|t| t.partition(p.partition_index).is_some());
            if known {
                slots.push((topic.name.clone(), p.partition_index, Ok(offsets.len())));
                offsets.push(CommitOffset {
                    topic: name.clone(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: if version >= 6 {
                        p.committed_leader_epoch
                    } else {
                        -1
                    },
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                slots.push((topic.name.clone(), p.partition_index, Err(unknown)));
            }
        }
    }
    let params = CommitParams {
        group_id: request.group_id.0.to_string(),
        generation_id: request.generation_id_or_member_epoch,
        member_id: request.member_id.to_string(),
        group_instance_id: request.group_instance_id.as_ref().map(|i| i.to_string()),
        offsets,
    };
    let pending = broker.groups.begin_commit(params);
    ReplyBody::Later(tokio::spawn(async move {
        let results: Result<Vec<i16>, i16> = match pending {
            Err(error) => Err(error.code()),
            Ok(pending) => match pending.durable().await {
                Ok(results) => Ok(results
                    .into_iter()
                    .map(|r| r.err().map_or(0, |e| e.code()))
                    .collect()),
                Err(error) => Err(error.code()),
            },
        };
        let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
        for (name, partition, slot) in slots {
            let code = match (&results, slot) {
                (_, Err(code)) => code,
                (Err(code), Ok(_)) => *code,
                (Ok(codes), Ok(index)) => codes.get(index).copied().unwrap_or(0),
            };
            let entry = OffsetCommitResponsePartition::default()
                .with_partition_index(partition)
                .with_error_code(code);
            match topics.iter_mut().find(|t| t.name == name) {
                Some(topic) => topic.partitions.push(entry),
                None => topics.push(
                    OffsetCommitResponseTopic::default()
                        .with_name(name)
                        .with_partitions(vec![entry]),
                ),
            }
        }
        Some(ResponseKind::OffsetCommit(
            OffsetCommitResponse::default().with_topics(topics),
        ))
    }))
}

type Asked = Option<Vec<(String, Vec<i32>)>>;

fn group_offsets(broker: &Broker, group: &str, asked: Asked) -> Result<Vec<CommittedOffset>, i16> {
    broker
        .groups
        .fetch_offsets_now(group, asked)
        .map_err(|e| e.code())
}

/// Groups offsets by topic, in first-seen order.
fn by_topic(offsets: Vec<CommittedOffset>) -> Vec<(String, Vec<CommittedOffset>)> {
    let mut out: Vec<(String, Vec<CommittedOffset>)> = Vec::new();
    for offset in offsets {
        match out.iter_mut().find(|(t, _)| *t == offset.topic) {
            Some((_, list)) => list.push(offset),
            None => out.push((offset.topic.clone(), vec![offset])),
        }
    }
    out
}

/// OffsetFetch: v1-7 one group, v8+ several; with `require_stable` (v7+) a partition
/// whose offset an open transaction is about to commit answers UNSTABLE_OFFSET_COMMIT
/// (the client retries) instead of an offset that may be about to change.
pub fn offset_fetch(
    broker: &Broker,
    request: OffsetFetchRequest,
    version: i16,
) -> OffsetFetchResponse {
    let require_stable = version >= 7 && request.require_stable;
    let unstable = |group: &str, topic: &str, partition: i32| {
        require_stable
            && broker
                .transactions
                .has_pending_offsets(group, topic, partition)
    };
    if version >= 8 {
        let groups = request
            .groups
            .into_iter()
            .map(|g| {
                let asked: Asked = g.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let group = OffsetFetchResponseGroup::default().with_group_id(g.group_id.clone());
                let member = g.member_id.as_deref().map(|m| m.to_string());
                let checked = broker
                    .groups
                    .check_offset_fetch_member(&g.group_id.0, member.as_deref(), g.member_epoch)
                    .map_err(|e| e.code());
                match checked.and_then(|()| group_offsets(broker, &g.group_id.0, asked)) {
                    Err(code) => group.with_error_code(code),
                    Ok(offsets) => group.with_topics(
                        by_topic(offsets)
                            .into_iter()
                            .map(|(topic, list)| {
                                OffsetFetchResponseTopics::default()
                                    .with_name(topic_name(&topic))
                                    .with_partitions(
                                        list.into_iter()
                                            .map(|o| {
                                                if unstable(&g.group_id.0, &topic, o.partition) {
                                                    return OffsetFetchResponsePartitions::default(
                                                    )
                                                    .with_partition_index(o.partition)
                                                    .with_committed_offset(-1)
                                                    .with_error_code(
                                                        ResponseError::UnstableOffsetCommit.code(),
                                                    );
                                                }
                                                OffsetFetchResponsePartitions::default()
                                                    .with_partition_index(o.partition)
                                                    .with_committed_offset(o.offset)
                                                    .with_committed_leader_epoch(o.leader_epoch)
                                                    .with_metadata(
                                                        o.metadata.map(|m| str_bytes(&m)),
                                                    )
                                            })
                                            .collect(),
                                    )
                            })
                            .collect(),
                    ),
                }
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(groups);
    }
    let asked: Asked = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|t| (t.name.0.to_string(), t.partition_indexes))
            .collect()
    });
    match group_offsets(broker, &request.group_id.0, asked) {
        Err(code) if version >= 2 => OffsetFetchResponse::default().with_error_code(code),
        Err(_) => OffsetFetchResponse::default(),
        Ok(offsets) => OffsetFetchResponse::default().with_topics(
            by_topic(offsets)
                .into_iter()
                .map(|(topic, list)| {
                    OffsetFetchResponseTopic::default()
                        .with_name(topic_name(&topic))
                        .with_partitions(
                            list.into_iter()
                                .map(|o| {
                                    if unstable(&request.group_id.0, &topic, o.partition) {
                                        return OffsetFetchResponsePartition::default()
                                            .with_partition_index(o.partition)
                                            .with_committed_offset(-1)
                                            .with_error_code(
                                                ResponseError::UnstableOffsetCommit.code(),
                                            );
                                    }
                                    let p = OffsetFetchResponsePartition::default()
                                        .with_partition_index(o.partition)
                                        .with_committed_offset(o.offset)
                                        .with_metadata(Some(str_bytes(
                                            o.metadata.as_deref().unwrap_or(""),
                                        )));
                                    if version >= 5 {
                                        p.with_committed_leader_epoch(o.leader_epoch)
                                    } else {
                                        p
                                    }
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    }
}

/// OffsetDelete: removes offsets unless an active member subscribes to the topic;
/// applied now, acknowledged once the store is flushed.
pub fn offset_delete(broker: &Arc<Broker>, request: OffsetDeleteRequest) -> ReplyBody {
    let asked: Vec<(String, Vec<i32>)> = request
        .topics
        .iter()
        .map(|t| {
            (
                t.name.0.to_string(),
                t.partitions.iter().map(|p| p.partition_index).collect(),
            )
        })
        .collect();
    let outcome = broker
        .groups
        .begin_delete_offsets(&request.group_id.0, asked);
    let broker = broker.clone();
    ReplyBody::Later(tokio::spawn(async move {
        let outcome = match outcome {
            Ok(results) => match broker.groups.flush().await {
                Ok(()) => Ok(results),
                Err(_) => Err(ResponseError::KafkaStorageError.code()),
            },
            Err(error) => Err(error.code()),
        };
        let response = match outcome {
            Err(code) => OffsetDeleteResponse::default().with_error_code(code),
            Ok(results) => {
                let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
                for (topic, partition, result) in results {
                    let entry = OffsetDeleteResponsePartition::default()
                        .with_partition_index(partition)
                        .with_error_code(result.err().map_or(0, |e| e.code()));
                    match topics.iter_mut().find(|t| t.name.0.as_str() == topic) {
                        Some(t) => t.partitions.push(entry),
                        None => topics.push(
                            OffsetDeleteResponseTopic::default()
                                .with_name(topic_name(&topic))
                                .with_partitions(vec![entry]),
                        ),
                    }
                }
                OffsetDeleteResponse::default().with_topics(topics)
            }
        };
        Some(ResponseKind::OffsetDelete(response))
    }))
}
