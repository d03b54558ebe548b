//! ListOffsets: earliest, latest, max timestamp, or the first record at or after a time.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use crate::broker::Broker;
use crate::storage::{PartitionLog, ReadError, TimestampOffset};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
const READ_COMMITTED: i8 = 1;

/// Answers every partition of the request.
pub fn handle(broker: &Broker, request: ListOffsetsRequest, version: i16) -> ListOffsetsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.topics.get(&topic.name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|wanted| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(wanted.partition_index);
                    let partition = found
                        .as_ref()
                        .and_then(|t| t.partition(wanted.partition_index));
                    let Some(partition) = partition else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    // read_committed consumers must not be sent past the last stable
                    // offset: LATEST is the LSO for them.
                    let latest = if version >= 2 && request.isolation_level == READ_COMMITTED {
                        partition.last_stable_offset()
                    } else {
                        partition.log.high_watermark()
                    };
                    match lookup(&partition.log, wanted.timestamp, latest) {
                        Ok(Some(found)) => {
                            let response = response
                                .with_offset(found.offset)
                                .with_timestamp(found.timestamp);
                            if version >= 4 {
                                response.with_leader_epoch(0)
                            } else {
                                response
                            }
                        }
                        Ok(None) => response.with_offset(-1).with_timestamp(-1),
                        Err(error) => {
                            tracing::error!(%error, "list offsets failed");
                            response.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// Kafka's answer for one target timestamp. Special targets report timestamp -1;
/// `latest` is the high watermark, or the last stable offset for read_committed.
fn lookup(
    log: &PartitionLog,
    target: i64,
    latest: i64,
) -> Result<Option<TimestampOffset>, ReadError> {
    let at = |offset| {
        Some(TimestampOffset {
            offset,
            timestamp: -1,
        })
    };
    let high_watermark = log.high_watermark();
    Ok(match target {
        LATEST => at(latest),
        EARLIEST | EARLIEST_LOCAL => at(log.log_start_offset()),
        // No tiered storage: nothing has been tiered.
        LATEST_TIERED => None,
        MAX_TIMESTAMP => log
            .max_timestamp()?
            .filter(|found| found.offset < high_watermark),
        target if target >= 0 => log
            .offset_for_timestamp(target)?
            .filter(|found| found.offset < high_watermark),
        _ => None,
    })
}
