//! DeleteTopics, by name (v1-5) or by name or id (v6+).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::topics::DeleteTopicError;

/// Deletes every named topic, each with its own result.
pub fn handle(broker: &Broker, request: DeleteTopicsRequest, version: i16) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .into_iter()
            .map(|t| (t.name, t.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .into_iter()
            .map(|name| (Some(name), Uuid::nil()))
            .collect()
    };
    let responses = wanted
        .into_iter()
        .map(|(name, id)| {
            let by_id = name.is_none();
            let topic = match &name {
                Some(name) => broker.topics.get(name),
                None => broker.topics.get_by_id(id),
            };
            let result = match &topic {
                Some(topic) => broker.topics.delete(topic),
                None => Err(DeleteTopicError::Unknown),
            };
            let mut response = DeletableTopicResult::default().with_name(name.clone());
            if version >= 6 {
                response = response.with_topic_id(topic.as_ref().map_or(id, |t| t.id()));
                if by_id {
                    response =
                        response.with_name(topic.as_ref().map(|t| super::topic_name(t.name())));
                }
            }
            let code = match &result {
                Ok(()) => return response,
                Err(DeleteTopicError::Unknown) if by_id => ResponseError::UnknownTopicId,
                Err(DeleteTopicError::Unknown) => ResponseError::UnknownTopicOrPartition,
                Err(DeleteTopicError::Storage(_)) => ResponseError::KafkaStorageError,
            };
            response = response.with_error_code(code.code());
            if let (Err(error), true) = (&result, version >= 5) {
                response = response.with_error_message(Some(str_bytes(&error.to_string())));
            }
            response
        })
        .collect();
    DeleteTopicsResponse::default().with_responses(responses)
}
