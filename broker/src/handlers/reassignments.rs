//! Replica placement on a one-broker KRaft cluster: ElectLeaders (v0-2),
//! AlterPartitionReassignments (v0-1) and ListPartitionReassignments (v0). This broker
//! leads every partition and is its only replica, so an election is never needed, the
//! only valid assignment is `[this broker]`, and no reassignment is ever in progress.
//! Errors and messages are those of Kafka's controller (`ReplicationControlManager`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse,
};

use super::str_bytes;
use crate::broker::Broker;

/// Whether this broker hosts the partition.
fn hosted(broker: &Broker, topic: &str, partition: i32) -> bool {
    broker
        .topics
        .get(topic)
        .is_some_and(|t| t.partition(partition).is_some())
}

/// Preferred or unclean, the leader is already this broker: ELECTION_NOT_NEEDED for
/// each named partition; with no partitions named (all of them), Kafka leaves out the
/// partitions that need no election, so the list is empty.
pub fn elect_leaders(broker: &Broker, request: ElectLeadersRequest) -> ElectLeadersResponse {
    let Some(topics) = request.topic_partitions else {
        return ElectLeadersResponse::default();
    };
    let results = topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&index| {
                    let result = PartitionResult::default().with_partition_id(index);
                    if hosted(broker, &t.topic, index) {
                        result
                            .with_error_code(ResponseError::ElectionNotNeeded.code())
                            .with_error_message(Some(str_bytes(
                                "Leader election not needed for topic partition.",
                            )))
                    } else {
                        result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(str_bytes(
                                "This server does not host this topic-partition.",
                            )))
                    }
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(t.topic)
                .with_partition_result(partitions)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// Why one partition's reassignment was refused.
#[derive(Debug, thiserror::Error)]
enum ReassignError {
    #[error("This server does not host this topic-partition.")]
    Unknown,
    #[error("No reassignment is in progress for this partition.")]
    NoneInProgress,
    #[error("The manual partition assignment includes an empty replica list.")]
    Empty,
    #[error(
        "The manual partition assignment includes broker {0}, but no such broker is registered."
    )]
    NoSuchBroker(i32),
    #[error("The manual partition assignment includes the broker {0} more than once.")]
    Duplicate(i32),
    #[error("The replication factor is changed from 1 to {0}")]
    ReplicationFactor(usize),
}

impl ReassignError {
    fn code(&self) -> ResponseError {
        match self {
            ReassignError::Unknown => ResponseError::UnknownTopicOrPartition,
            ReassignError::NoneInProgress => ResponseError::NoReassignmentInProgress,
            ReassignError::Empty | ReassignError::NoSuchBroker(_) | ReassignError::Duplicate(_) => {
                ResponseError::InvalidReplicaAssignment
            }
            ReassignError::ReplicationFactor(_) => ResponseError::InvalidReplicationFactor,
        }
    }
}

fn reassign(
    broker: &Broker,
    topic: &str,
    partition: i32,
    replicas: Option<&[BrokerId]>,
    allow_rf_change: bool,
) -> Result<(), ReassignError> {
    if !hosted(broker, topic, partition) {
        return Err(ReassignError::Unknown);
    }
    // A null replica list cancels the partition's reassignment: there is none.
    let replicas = replicas.ok_or(ReassignError::NoneInProgress)?;
    if !allow_rf_change && replicas.len() != 1 {
        return Err(ReassignError::ReplicationFactor(replicas.len()));
    }
    let Some(first) = replicas.first() else {
        return Err(ReassignError::Empty);
    };
    if let Some(other) = replicas.iter().find(|id| id.0 != broker.node_id) {
        return Err(ReassignError::NoSuchBroker(other.0));
    }
    if replicas.len() > 1 {
        return Err(ReassignError::Duplicate(first.0));
    }
    Ok(())
}

/// Each partition's reassignment: to `[this broker]` it is a no-op (NONE), anything
/// else is refused as Kafka's controller refuses it. v1 (Kafka 4.1) refuses a change
/// of replication factor unless the request allows one.
pub fn alter(
    broker: &Broker,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let allow_rf_change = version < 1 || request.allow_replication_factor_change;
    let responses = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    let outcome = reassign(
                        broker,
                        &t.name,
                        p.partition_index,
                        p.replicas.as_deref(),
                        allow_rf_change,
                    );
                    let response = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index);
                    match outcome {
                        Ok(()) => response.with_error_message(None),
                        Err(error) => response
                            .with_error_code(error.code().code())
                            .with_error_message(Some(str_bytes(&error.to_string()))),
                    }
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_allow_replication_factor_change(allow_rf_change)
        .with_error_message(None)
        .with_responses(responses)
}

/// No reassignment is ever in progress; requested topics that do not exist are left
/// out, as Kafka's controller leaves them out.
pub fn list(
    _broker: &Broker,
    _request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default().with_error_message(None)
}
