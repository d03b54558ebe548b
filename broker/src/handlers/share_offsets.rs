//! DescribeShareGroupOffsets, AlterShareGroupOffsets and DeleteShareGroupOffsets
//! (KIP-932's admin APIs): a share group's start offsets per partition, which can be
//! changed or forgotten while the group has no members.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_share_group_offsets_response::{
    AlterShareGroupOffsetsResponsePartition, AlterShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_response::DeleteShareGroupOffsetsResponseTopic;
use kafka_protocol::messages::describe_share_group_offsets_response::{
    DescribeShareGroupOffsetsResponseGroup, DescribeShareGroupOffsetsResponsePartition,
    DescribeShareGroupOffsetsResponseTopic,
};
use kafka_protocol::messages::{
    AlterShareGroupOffsetsRequest, AlterShareGroupOffsetsResponse, DeleteShareGroupOffsetsRequest,
    DeleteShareGroupOffsetsResponse, DescribeShareGroupOffsetsRequest,
    DescribeShareGroupOffsetsResponse,
};
use uuid::Uuid;

use super::str_bytes;
use super::topic_name;
use crate::broker::Broker;
use crate::share::ShareError;

/// DescribeShareGroupOffsets: the start offset of each share-partition (-1 where the
/// group never consumed the partition); all of them when `topics` is null.
pub fn describe(
    broker: &Broker,
    request: DescribeShareGroupOffsetsRequest,
) -> DescribeShareGroupOffsetsResponse {
    let groups = request
        .groups
        .into_iter()
        .map(|group| {
            let id = group.group_id.0.to_string();
            let out =
                DescribeShareGroupOffsetsResponseGroup::default().with_group_id(group.group_id);
            if !broker.shares.exists(&id) {
                return out
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(str_bytes(&format!("Group {id} not found."))));
            }
            let wanted: Vec<(String, Vec<i32>)> = match group.topics {
                Some(topics) => topics
                    .into_iter()
                    .map(|t| (t.topic_name.0.to_string(), t.partitions))
                    .collect(),
                None => {
                    let mut by_topic: Vec<(String, Vec<i32>)> = Vec::new();
                    for (topic, partition, _) in broker.shares.offsets(&id) {
                        let Some(found) = broker.topics.get_by_id(topic) else {
                            continue;
                        };
                        match by_topic.iter_mut().find(|(n, _)| n == found.name()) {
                            Some((_, partitions)) => partitions.push(partition),
                            None => by_topic.push((found.name().to_string(), vec![partition])),
                        }
                    }
                    by_topic
                }
            };
            let topics = wanted
                .into_iter()
                .map(|(name, partitions)| {
                    let topic = broker.topics.get(&name);
                    let topic_id = topic.as_ref().map_or(Uuid::nil(), |t| t.id());
                    let partitions = partitions
                        .into_iter()
                        .map(|p| {
                            let out = DescribeShareGroupOffsetsResponsePartition::default()
                                .with_partition_index(p)
                                .with_leader_epoch(0);
                            match &topic {
                                Some(t) if t.partition(p).is_some() => out.with_start_offset(
                                    broker.shares.start_offset(&id, t.id(), p).unwrap_or(-1),
                                ),
                                _ => out
                                    .with_start_offset(-1)
                                    .with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                            }
                        })
                        .collect();
                    DescribeShareGroupOffsetsResponseTopic::default()
                        .with_topic_name(topic_name(&name))
                        .with_topic_id(topic_id)
                        .with_partitions(partitions)
                })
                .collect();
            out.with_topics(topics)
        })
        .collect();
    DescribeShareGroupOffsetsResponse::default().with_groups(groups)
}

/// AlterShareGroupOffsets: restarts delivery of each partition at the given offset
/// (clamped to the log); only while the group has no members.
pub async fn alter(
    broker: &Broker,
    request: AlterShareGroupOffsetsRequest,
) -> AlterShareGroupOffsetsResponse {
    let group = request.group_id.0.to_string();
    let mut stored = false;
    let mut responses = Vec::new();
    for topic in request.topics {
        let name = topic.topic_name.0.to_string();
        let found = broker.topics.get(&name);
        let mut partitions = Vec::new();
        for p in topic.partitions {
            let result = match &found {
                Some(t) => broker
                    .shares
                    .alter_offset(&group, t, p.partition_index, p.start_offset),
                None => Err(ShareError::UnknownTopicOrPartition),
            };
            let out = AlterShareGroupOffsetsResponsePartition::default()
                .with_partition_index(p.partition_index);
            partitions.push(match result {
                Ok(()) => {
                    stored = true;
                    out
                }
                Err(error @ (ShareError::NonEmptyGroup(_) | ShareError::GroupNotFound(_))) => {
                    return AlterShareGroupOffsetsResponse::default()
                        .with_error_code(error.code().code())
                        .with_error_message(Some(str_bytes(&error.to_string())));
                }
                Err(error) => out
                    .with_error_code(error.code().code())
                    .with_error_message(Some(str_bytes(&error.to_string()))),
            });
        }
        responses.push(
            AlterShareGroupOffsetsResponseTopic::default()
                .with_topic_name(topic.topic_name)
                .with_topic_id(found.map_or(Uuid::nil(), |t| t.id()))
                .with_partitions(partitions),
        );
    }
    if stored {
        if let Err(error) = broker.groups.flush().await {
            return AlterShareGroupOffsetsResponse::default()
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_error_message(Some(str_bytes(&error.to_string())));
        }
    }
    AlterShareGroupOffsetsResponse::default().with_responses(responses)
}

/// DeleteShareGroupOffsets: forgets the group's share-partitions of each topic (it
/// starts again from `latest` there); only while the group has no members.
pub async fn delete(
    broker: &Broker,
    request: DeleteShareGroupOffsetsRequest,
) -> DeleteShareGroupOffsetsResponse {
    let group = request.group_id.0.to_string();
    let mut responses = Vec::new();
    for topic in request.topics {
        let name = topic.topic_name.0.to_string();
        let found = broker.topics.get(&name);
        let result = match &found {
            Some(t) => broker.shares.delete_offsets(&group, t.id()),
            None => Err(ShareError::UnknownTopicOrPartition),
        };
        let out = DeleteShareGroupOffsetsResponseTopic::default()
            .with_topic_name(topic.topic_name)
            .with_topic_id(found.map_or(Uuid::nil(), |t| t.id()));
        responses.push(match result {
            Ok(()) => out,
            Err(error @ (ShareError::NonEmptyGroup(_) | ShareError::GroupNotFound(_))) => {
                return DeleteShareGroupOffsetsResponse::default()
                    .with_error_code(error.code().code())
                    .with_error_message(Some(str_bytes(&error.to_string())));
            }
            Err(error) => out
                .with_error_code(error.code().code())
                .with_error_message(Some(str_bytes(&error.to_string()))),
        });
    }
    if let Err(error) = broker.groups.flush().await {
        return DeleteShareGroupOffsetsResponse::default()
            .with_error_code(ResponseError::KafkaStorageError.code())
            .with_error_message(Some(str_bytes(&error.to_string())));
    }
    DeleteShareGroupOffsetsResponse::default().with_responses(responses)
}
