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
                    let log = found
                        .as_ref()
                        .and_then(|t| t.partition(wanted.partition_index))
                        .map(|p| &p.log);
                    let Some(log) = log else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match lookup(log, wanted.timestamp) {
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

/// Kafka's answer for one target timestamp. Special targets report timestamp -1.
fn lookup(log: &PartitionLog, target: i64) -> Result<Option<TimestampOffset>, ReadError> {
    let at = |offset| {
        Some(TimestampOffset {
            offset,
            timestamp: -1,
        })
    };
    // Until transactions exist the last stable offset is the high watermark, so both
    // isolation levels get the same answer.
    let high_watermark = log.high_watermark();
    Ok(match target {
        LATEST => at(high_watermark),
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
