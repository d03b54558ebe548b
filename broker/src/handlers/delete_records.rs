//! DeleteRecords (v0-2): moves each partition's log start offset forward (-1: to the
//! high watermark); whole segments below it are deleted at once, and fetches below it
//! answer OFFSET_OUT_OF_RANGE from then on.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use crate::broker::Broker;
use crate::storage::DeleteRecordsError;

/// Deletes records per partition, each with its own result and low watermark.
pub fn handle(broker: &Broker, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.topics.get(&topic.name);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|wanted| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(wanted.partition_index)
                        .with_low_watermark(-1);
                    let Some(partition) = found
                        .as_ref()
                        .and_then(|t| t.partition(wanted.partition_index))
                    else {
                        return result
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    match partition.log.delete_records(wanted.offset) {
                        Ok(low_watermark) => {
                            tracing::info!(topic = %topic.name.as_str(), partition = wanted.partition_index, low_watermark, "deleted records");
                            result.with_low_watermark(low_watermark)
                        }
                        Err(DeleteRecordsError::OffsetOutOfRange { .. }) => {
                            result.with_error_code(ResponseError::OffsetOutOfRange.code())
                        }
                        Err(DeleteRecordsError::Io(error)) => {
                            tracing::error!(topic = %topic.name.as_str(), partition = wanted.partition_index, %error, "delete records failed");
                            result.with_error_code(ResponseError::KafkaStorageError.code())
                        }
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}
