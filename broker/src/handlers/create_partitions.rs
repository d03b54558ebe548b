//! CreatePartitions (v0-3): grows topics (never shrinks them); clients see the new
//! partitions in their next Metadata. Manual assignments are accepted and ignored (a
//! single node holds every replica).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::str_bytes;
use crate::broker::Broker;
use crate::topics::CreatePartitionsError;

/// Grows each named topic, each with its own result.
pub fn handle(broker: &Broker, request: CreatePartitionsRequest) -> CreatePartitionsResponse {
    let results = request
        .topics
        .into_iter()
        .map(|topic| {
            let outcome =
                broker
                    .topics
                    .create_partitions(&topic.name, topic.count, request.validate_only);
            let result = CreatePartitionsTopicResult::default().with_name(topic.name);
            let code = match &outcome {
                Ok(_) => return result,
                Err(CreatePartitionsError::Unknown) => ResponseError::UnknownTopicOrPartition,
                Err(CreatePartitionsError::InvalidPartitions { .. }) => {
                    ResponseError::InvalidPartitions
                }
                Err(CreatePartitionsError::Storage(_)) => ResponseError::KafkaStorageError,
            };
            let message = outcome.err().map(|e| str_bytes(&e.to_string()));
            result
                .with_error_code(code.code())
                .with_error_message(message)
        })
        .collect();
    CreatePartitionsResponse::default().with_results(results)
}
