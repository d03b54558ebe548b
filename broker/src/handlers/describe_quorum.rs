//! DescribeQuorum (v0-2, KIP-595/KIP-853): the KRaft metadata quorum is this node alone,
//! its single voter and leader, so `kafka-metadata-quorum --describe --status` and the
//! admin clients' `describeMetadataQuorum` see a healthy one-voter quorum.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::{str_bytes, topic_name};
use crate::broker::Broker;

/// The KRaft metadata log's topic, the only one DescribeQuorum asks about.
pub const METADATA_TOPIC: &str = "__cluster_metadata";
/// The quorum's epoch: one election ever, when the node first started.
const LEADER_EPOCH: i32 = 1;

/// This node as the quorum's one voter and leader; any other topic or partition is
/// UNKNOWN_TOPIC_OR_PARTITION for the whole request, as Kafka's Raft client answers.
pub fn handle(
    broker: &Broker,
    request: DescribeQuorumRequest,
    version: i16,
    (host, port): (&str, u16),
) -> DescribeQuorumResponse {
    let only_metadata = request.topics.iter().all(|t| {
        t.topic_name.as_str() == METADATA_TOPIC
            && t.partitions.iter().all(|p| p.partition_index == 0)
    });
    if !only_metadata || request.topics.is_empty() {
        return DescribeQuorumResponse::default()
            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
            .with_error_message(Some(str_bytes(
                "DescribeQuorum is only for partition 0 of __cluster_metadata",
            )));
    }
    let node = BrokerId(broker.node_id);
    let now = crate::lifecycle::now_ms();
    // Metadata changes are applied as they are made: the voter is always caught up.
    let end_offset = 0;
    let mut voter = ReplicaState::default()
        .with_replica_id(node)
        .with_log_end_offset(end_offset);
    if version >= 1 {
        voter = voter
            .with_last_fetch_timestamp(now)
            .with_last_caught_up_timestamp(now);
    }
    if version >= 2 {
        voter = voter.with_replica_directory_id(Uuid::nil());
    }
    let partition = PartitionData::default()
        .with_partition_index(0)
        .with_leader_id(node)
        .with_leader_epoch(LEADER_EPOCH)
        .with_high_watermark(end_offset)
        .with_current_voters(vec![voter])
        .with_observers(Vec::new());
    let partition = if version >= 2 {
        partition.with_error_message(None)
    } else {
        partition
    };
    let mut response = DescribeQuorumResponse::default().with_topics(vec![TopicData::default()
        .with_topic_name(topic_name(METADATA_TOPIC))
        .with_partitions(vec![partition])]);
    if version >= 2 {
        response = response
            .with_error_message(None)
            .with_nodes(vec![Node::default().with_node_id(node).with_listeners(
                vec![Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(str_bytes(host))
                    .with_port(port)],
            )]);
    }
    response
}
