//! DescribeLogDirs (v1-4) and AlterReplicaLogDirs (v1-2), answered as a one-broker
//! cluster with one log directory (the data directory) would: every partition lives
//! there, with its size on disk and no lag; moving a replica to that same directory is
//! a no-op, and any other directory is not one of ours.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_replica_log_dirs_response::{
    AlterReplicaLogDirPartitionResult, AlterReplicaLogDirTopicResult,
};
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    AlterReplicaLogDirsRequest, AlterReplicaLogDirsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse,
};

use super::{str_bytes, topic_name};
use crate::broker::Broker;
use crate::topics::Topic;

/// The broker's one log directory, as Kafka names a log dir: its absolute path.
pub fn log_dir(broker: &Broker) -> String {
    let dir = &broker.config.data_dir;
    std::fs::canonicalize(dir)
        .unwrap_or_else(|_| dir.clone())
        .display()
        .to_string()
}

fn describe_topic(topic: &Topic, wanted: Option<&[i32]>) -> DescribeLogDirsTopic {
    let partitions = topic
        .partitions
        .iter()
        .filter(|p| wanted.is_none_or(|w| w.contains(&p.index)))
        .map(|p| {
            DescribeLogDirsPartition::default()
                .with_partition_index(p.index)
                .with_partition_size(i64::try_from(p.log.size_bytes()).unwrap_or(i64::MAX))
                .with_offset_lag(0)
                .with_is_future_key(false)
        })
        .collect();
    DescribeLogDirsTopic::default()
        .with_name(topic_name(topic.name()))
        .with_partitions(partitions)
}

/// Sizes of the requested partitions (all when `topics` is null); unknown topics and
/// partitions are left out, as Kafka leaves out what a log dir does not hold.
pub fn describe(broker: &Broker, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let topics = match request.topics {
        None => broker
            .topics
            .list()
            .iter()
            .map(|t| describe_topic(t, None))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|w| {
                let topic = broker.topics.get(&w.topic)?;
                let described = describe_topic(&topic, Some(&w.partitions));
                (!described.partitions.is_empty()).then_some(described)
            })
            .collect(),
    };
    let mut result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(&log_dir(broker)))
        .with_topics(topics)
        .with_total_bytes(-1)
        .with_usable_bytes(-1);
    match crate::lifecycle::disk_bytes(&broker.config.data_dir) {
        Ok((total, usable)) => {
            result = result
                .with_total_bytes(i64::try_from(total).unwrap_or(i64::MAX))
                .with_usable_bytes(i64::try_from(usable).unwrap_or(i64::MAX));
        }
        Err(error) => tracing::warn!(%error, "statvfs of the data directory failed"),
    }
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Moving replicas between log dirs: to our one directory every hosted partition is
/// already there (NONE); a partition we do not host is REPLICA_NOT_AVAILABLE; any other
/// path is LOG_DIR_NOT_FOUND, as Kafka answers for a directory not in `log.dirs`.
pub fn alter(broker: &Broker, request: AlterReplicaLogDirsRequest) -> AlterReplicaLogDirsResponse {
    let ours = log_dir(broker);
    let results = request
        .dirs
        .into_iter()
        .flat_map(|dir| {
            let same = dir.path.as_str() == ours
                || std::fs::canonicalize(dir.path.as_str())
                    .is_ok_and(|p| p.display().to_string() == ours);
            dir.topics.into_iter().map(move |t| {
                let topic = broker.topics.get(&t.name);
                let partitions = t
                    .partitions
                    .iter()
                    .map(|&index| {
                        let hosted = topic.as_ref().is_some_and(|t| t.partition(index).is_some());
                        let error = match (same, hosted) {
                            (false, _) => ResponseError::LogDirNotFound.code(),
                            (true, false) => ResponseError::ReplicaNotAvailable.code(),
                            (true, true) => 0,
                        };
                        AlterReplicaLogDirPartitionResult::default()
                            .with_partition_index(index)
                            .with_error_code(error)
                    })
                    .collect();
                AlterReplicaLogDirTopicResult::default()
                    .with_topic_name(t.name)
                    .with_partitions(partitions)
            })
        })
        .collect();
    AlterReplicaLogDirsResponse::default().with_results(results)
}
