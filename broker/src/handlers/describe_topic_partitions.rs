//! DescribeTopicPartitions (v0, KIP-966): Metadata's topic description, paginated by
//! partitions, which Kafka 4's admin client uses for `describeTopics`. Topics are
//! answered sorted by name from the cursor on, at most `response_partition_limit`
//! partitions per response (capped by Kafka's `max.request.partition.size.limit`,
//! 2000), with `next_cursor` where the next page starts. This broker leads every
//! partition and is its only replica and its ELR is empty.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName,
};

use super::{topic_name, AUTHORIZED_OPERATIONS_OMITTED};
use crate::broker::Broker;
use crate::topics::validate_topic_name;

/// Kafka's `max.request.partition.size.limit` default: the most partitions one
/// response describes, whatever the request asks.
pub const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

/// Why the request as a whole was refused (Kafka fails it with INVALID_REQUEST).
#[derive(Debug, thiserror::Error)]
pub enum DescribeTopicPartitionsError {
    /// A cursor naming a topic outside the requested list.
    #[error("DescribeTopicPartitionsRequest topic list should contain the cursor topic: {0}")]
    CursorTopicNotListed(String),
    /// A negative cursor partition.
    #[error("DescribeTopicPartitionsRequest cursor partition must be valid: {0}")]
    CursorPartition(i32),
}

fn unknown(name: &str) -> DescribeTopicPartitionsResponseTopic {
    let code = match validate_topic_name(name) {
        Ok(()) => ResponseError::UnknownTopicOrPartition,
        Err(_) => ResponseError::InvalidTopicException,
    };
    DescribeTopicPartitionsResponseTopic::default()
        .with_error_code(code.code())
        .with_name(Some(topic_name(name)))
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

/// One page of topic descriptions; a bad cursor fails every requested topic with
/// INVALID_REQUEST, as Kafka's error response for this API does.
pub fn handle(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let requested: Vec<TopicName> = request.topics.iter().map(|t| t.name.clone()).collect();
    match page(broker, request) {
        Ok(response) => response,
        Err(error) => {
            tracing::debug!(%error, "DescribeTopicPartitions refused");
            let topics = requested
                .into_iter()
                .map(|name| {
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_name(Some(name))
                        .with_error_code(ResponseError::InvalidRequest.code())
                        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
                })
                .collect();
            DescribeTopicPartitionsResponse::default().with_topics(topics)
        }
    }
}

fn page(
    broker: &Broker,
    request: DescribeTopicPartitionsRequest,
) -> Result<DescribeTopicPartitionsResponse, DescribeTopicPartitionsError> {
    let cursor = request
        .cursor
        .as_ref()
        .map(|c| (c.topic_name.as_str().to_string(), c.partition_index));
    let cursor_topic = cursor.as_ref().map_or("", |(t, _)| t.as_str());
    let all = request.topics.is_empty();
    let names: BTreeSet<String> = if all {
        broker
            .topics
            .list()
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|t| t.name.as_str().to_string())
            .collect()
    };
    let names: Vec<String> = names
        .into_iter()
        .filter(|n| n.as_str() >= cursor_topic)
        .collect();
    if let Some((topic, partition)) = &cursor {
        if !all && !names.contains(topic) {
            return Err(DescribeTopicPartitionsError::CursorTopicNotListed(
                topic.clone(),
            ));
        }
        if *partition < 0 {
            return Err(DescribeTopicPartitionsError::CursorPartition(*partition));
        }
    }
    let limit = request
        .response_partition_limit
        .clamp(1, MAX_PARTITIONS_PER_RESPONSE);
    let mut remaining = usize::try_from(limit).unwrap_or(1);
    let node = BrokerId(broker.node_id);
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // The page is full: the next one starts at this topic's first partition.
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(0),
            );
            break;
        }
        let Some(topic) = broker.topics.get(&name) else {
            if !all {
                response.topics.push(unknown(&name));
            }
            continue;
        };
        let start = match &cursor {
            Some((t, p)) if *t == name => usize::try_from(*p).unwrap_or_default(),
            _ => 0,
        };
        let partitions: Vec<_> = topic
            .partitions
            .iter()
            .skip(start)
            .take(remaining)
            .map(|p| {
                DescribeTopicPartitionsResponsePartition::default()
                    .with_partition_index(p.index)
                    .with_leader_id(node)
                    .with_leader_epoch(0)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
                    .with_eligible_leader_replicas(Some(Vec::new()))
                    .with_last_known_elr(Some(Vec::new()))
            })
            .collect();
        let next = start + partitions.len();
        remaining -= partitions.len();
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id())
                .with_is_internal(false)
                .with_partitions(partitions)
                .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
        );
        if next < topic.partitions.len() {
            response.next_cursor = Some(
                Cursor::default()
                    .with_topic_name(topic_name(&name))
                    .with_partition_index(i32::try_from(next).unwrap_or(i32::MAX)),
            );
            break;
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    use kafka_protocol::messages::DescribeTopicPartitionsRequest;

    use super::handle;
    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::handlers::topic_name;

    fn pages(broker: &Broker, topics: &[&str], limit: i32) -> Vec<Vec<(String, i32)>> {
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let request = DescribeTopicPartitionsRequest::default()
                .with_topics(
                    topics
                        .iter()
                        .map(|t| TopicRequest::default().with_name(topic_name(t)))
                        .collect(),
                )
                .with_response_partition_limit(limit)
                .with_cursor(cursor.take());
            let response = handle(broker, request);
            pages.push(
                response
                    .topics
                    .iter()
                    .flat_map(|t| {
                        let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                        let codes =
                            (t.error_code != 0).then(|| (name.clone(), -i32::from(t.error_code)));
                        t.partitions
                            .iter()
                            .map(move |p| (name.clone(), p.partition_index))
                            .chain(codes)
                    })
                    .collect(),
            );
            match response.next_cursor {
                Some(next) => {
                    cursor = Some(
                        Cursor::default()
                            .with_topic_name(next.topic_name)
                            .with_partition_index(next.partition_index),
                    )
                }
                None => return pages,
            }
        }
    }

    /// Kafka's pagination: sorted by name, a page ends at the limit (mid-topic or at a
    /// topic's start), the next resumes at the cursor; unknown topics are named when
    /// asked for and skipped when describing all.
    #[test]
    fn pages_follow_the_cursor_across_topics() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::open(BrokerConfig::with_data_dir(dir.path())).unwrap();
        broker.topics.create("b", 3, Default::default()).unwrap();
        broker.topics.create("a", 2, Default::default()).unwrap();
        let p = |t: &str, i| (t.to_string(), i);
        assert_eq!(
            pages(&broker, &[], 2),
            vec![
                vec![p("a", 0), p("a", 1)],
                vec![p("b", 0), p("b", 1)],
                vec![p("b", 2)]
            ]
        );
        assert_eq!(
            pages(&broker, &["b", "zz", "a"], 4),
            vec![
                vec![p("a", 0), p("a", 1), p("b", 0), p("b", 1)],
                vec![p("b", 2), p("zz", -3)]
            ]
        );
        let bad = DescribeTopicPartitionsRequest::default()
            .with_topics(vec![TopicRequest::default().with_name(topic_name("a"))])
            .with_cursor(Some(Cursor::default().with_topic_name(topic_name("b"))));
        assert_eq!(
            handle(&broker, bad).topics[0].error_code,
            42,
            "INVALID_REQUEST"
        );
    }
}
