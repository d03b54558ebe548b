//! Request handlers: one module per API, each turning a decoded request into a response
//! (or a pending response) against the shared [`Broker`].

pub mod alter_configs;
pub mod api_versions;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod fetch;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::sync::Arc;

use agentlog_protocol::request::Request;
use agentlog_protocol::versions::{ApiRange, ApiVersionTable};
use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind, TopicName};
use kafka_protocol::protocol::StrBytes;
use tokio::task::JoinHandle;

use crate::broker::Broker;

/// Every API this broker answers, with the versions implemented and tested. Anything
/// else closes the connection, as Kafka does.
pub static SUPPORTED: ApiVersionTable = ApiVersionTable::new(&[
    ApiRange::new(ApiKey::Produce, 3, 11),
    ApiRange::new(ApiKey::Fetch, 4, 16),
    ApiRange::new(ApiKey::ListOffsets, 1, 10),
    ApiRange::new(ApiKey::Metadata, 0, 13),
    ApiRange::new(ApiKey::ApiVersions, 0, 4),
    ApiRange::new(ApiKey::CreateTopics, 2, 7),
    ApiRange::new(ApiKey::DeleteTopics, 1, 6),
    ApiRange::new(ApiKey::DescribeConfigs, 1, 4),
    ApiRange::new(ApiKey::DescribeCluster, 0, 2),
    ApiRange::new(ApiKey::InitProducerId, 0, 4),
    ApiRange::new(ApiKey::DeleteRecords, 0, 2),
    ApiRange::new(ApiKey::AlterConfigs, 0, 2),
    ApiRange::new(ApiKey::IncrementalAlterConfigs, 0, 1),
    ApiRange::new(ApiKey::CreatePartitions, 0, 3),
]);

/// What goes back for one request, in the connection's request order.
#[derive(Debug)]
pub struct Reply {
    /// The API answered.
    pub api_key: ApiKey,
    /// The version to encode at.
    pub version: i16,
    /// Echoed to the client.
    pub correlation_id: i32,
    /// The body, now or later.
    pub body: ReplyBody,
}

/// A response body that may not be ready yet.
#[derive(Debug)]
pub enum ReplyBody {
    /// No response at all (produce with acks=0).
    None,
    /// Ready to send.
    Ready(Box<ResponseKind>),
    /// Being computed (a long-poll fetch, an acks=all produce); `None` means no response.
    Later(JoinHandle<Option<ResponseKind>>),
}

impl ReplyBody {
    /// A response that is ready now.
    pub fn ready(body: ResponseKind) -> Self {
        ReplyBody::Ready(Box::new(body))
    }
}

/// Applies a request's side effects now and returns its (possibly pending) response.
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> Reply {
    let version = request.version;
    let body = match request.body {
        RequestKind::ApiVersions(_) => {
            ReplyBody::ready(ResponseKind::ApiVersions(api_versions::handle()))
        }
        RequestKind::Metadata(req) => ReplyBody::ready(ResponseKind::Metadata(metadata::handle(
            broker, req, version,
        ))),
        RequestKind::Produce(req) => produce::handle(broker, req, version),
        RequestKind::Fetch(req) => {
            let broker = broker.clone();
            ReplyBody::Later(tokio::spawn(async move {
                Some(ResponseKind::Fetch(
                    fetch::handle(broker, req, version).await,
                ))
            }))
        }
        RequestKind::ListOffsets(req) => ReplyBody::ready(ResponseKind::ListOffsets(
            list_offsets::handle(broker, req, version),
        )),
        RequestKind::CreateTopics(req) => ReplyBody::ready(ResponseKind::CreateTopics(
            create_topics::handle(broker, req, version),
        )),
        RequestKind::DeleteTopics(req) => ReplyBody::ready(ResponseKind::DeleteTopics(
            delete_topics::handle(broker, req, version),
        )),
        RequestKind::DescribeConfigs(req) => ReplyBody::ready(ResponseKind::DescribeConfigs(
            describe_configs::handle(broker, req, version),
        )),
        RequestKind::DescribeCluster(req) => ReplyBody::ready(ResponseKind::DescribeCluster(
            describe_cluster::handle(broker, req, version),
        )),
        RequestKind::InitProducerId(req) => ReplyBody::ready(ResponseKind::InitProducerId(
            init_producer_id::handle(broker, req),
        )),
        RequestKind::DeleteRecords(req) => ReplyBody::ready(ResponseKind::DeleteRecords(
            delete_records::handle(broker, req),
        )),
        RequestKind::AlterConfigs(req) => ReplyBody::ready(ResponseKind::AlterConfigs(
            alter_configs::handle(broker, req),
        )),
        RequestKind::IncrementalAlterConfigs(req) => ReplyBody::ready(
            ResponseKind::IncrementalAlterConfigs(incremental_alter_configs::handle(broker, req)),
        ),
        RequestKind::CreatePartitions(req) => ReplyBody::ready(ResponseKind::CreatePartitions(
            create_partitions::handle(broker, req),
        )),
        other => {
            // Unreachable while SUPPORTED and this match agree; answer nothing rather
            // than panic if they ever drift.
            tracing::error!(api = ?request.api_key, "no handler for advertised api: {other:?}");
            ReplyBody::None
        }
    };
    Reply {
        api_key: request.api_key,
        version,
        correlation_id: request.correlation_id,
        body,
    }
}

/// Owned protocol string from text.
pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

/// Owned protocol topic name from text.
pub(crate) fn topic_name(text: &str) -> TopicName {
    TopicName(str_bytes(text))
}

/// The value Kafka sends when authorized operations were not asked for.
pub(crate) const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

#[cfg(test)]
mod tests;
