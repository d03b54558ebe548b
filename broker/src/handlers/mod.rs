//! Request handlers: one module per API, each turning a decoded request into a response
//! (or a pending response) against the shared [`Broker`].

pub mod acls;
pub mod alter_configs;
pub mod api_versions;
pub mod client_quotas;
pub mod consumer_groups;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_cluster;
pub mod describe_configs;
pub mod describe_quorum;
pub mod describe_topic_partitions;
pub mod fetch;
pub mod groups;
pub mod incremental_alter_configs;
pub mod init_producer_id;
pub mod list_offsets;
pub mod log_dirs;
pub mod metadata;
pub mod offsets;
pub mod produce;
pub mod reassignments;
pub mod record_checks;
pub mod scram_users;
pub mod share_fetch;
pub mod share_group;
pub mod share_offsets;
pub mod throttle;
pub mod transactions;

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
    // Groups and offsets (see the README's compatibility notes for the caps).
    ApiRange::new(ApiKey::FindCoordinator, 0, 6),
    ApiRange::new(ApiKey::JoinGroup, 0, 9),
    ApiRange::new(ApiKey::SyncGroup, 0, 5),
    ApiRange::new(ApiKey::Heartbeat, 0, 4),
    ApiRange::new(ApiKey::LeaveGroup, 0, 5),
    // v9 carries KIP-848 member epochs; v10 (topic ids instead of names) is not served.
    ApiRange::new(ApiKey::OffsetCommit, 2, 9),
    // v9 carries KIP-848 member epochs; v10 (topic ids) is not served.
    ApiRange::new(ApiKey::OffsetFetch, 1, 9),
    ApiRange::new(ApiKey::ListGroups, 0, 5),
    // v6 only adds KIP-1043 error reporting for the new protocol's groups.
    ApiRange::new(ApiKey::DescribeGroups, 0, 5),
    ApiRange::new(ApiKey::DeleteGroups, 0, 2),
    // KIP-848's consumer group protocol; v1 has the client choose its member id.
    ApiRange::new(ApiKey::ConsumerGroupHeartbeat, 0, 1),
    ApiRange::new(ApiKey::ConsumerGroupDescribe, 0, 1),
    ApiRange::new(ApiKey::OffsetDelete, 0, 0),
    ApiRange::new(ApiKey::DeleteRecords, 0, 2),
    ApiRange::new(ApiKey::AlterConfigs, 0, 2),
    ApiRange::new(ApiKey::IncrementalAlterConfigs, 0, 1),
    ApiRange::new(ApiKey::CreatePartitions, 0, 3),
    // Transactions (KIP-98), capped below KIP-890 "transactions v2": AddPartitionsToTxn
    // v4+ is broker-to-broker; EndTxn v5, TxnOffsetCommit v5 and Produce v12 carry TV2
    // semantics; InitProducerId v5+ adds TRANSACTION_ABORTABLE and v6 KIP-939 2PC.
    ApiRange::new(ApiKey::AddPartitionsToTxn, 0, 3),
    ApiRange::new(ApiKey::AddOffsetsToTxn, 0, 3),
    ApiRange::new(ApiKey::EndTxn, 0, 4),
    ApiRange::new(ApiKey::TxnOffsetCommit, 0, 3),
    ApiRange::new(ApiKey::DescribeProducers, 0, 0),
    ApiRange::new(ApiKey::DescribeTransactions, 0, 0),
    // v2 adds a transactional id regex filter (KIP-1152), not implemented.
    ApiRange::new(ApiKey::ListTransactions, 0, 1),
    // Security. SaslHandshake v0 would be followed by raw (unframed) SASL tokens, which
    // no maintained client still sends; v1 moves them into SaslAuthenticate.
    ApiRange::new(ApiKey::SaslHandshake, 1, 1),
    ApiRange::new(ApiKey::SaslAuthenticate, 0, 2),
    ApiRange::new(ApiKey::DescribeUserScramCredentials, 0, 0),
    ApiRange::new(ApiKey::AlterUserScramCredentials, 0, 0),
    // Cluster administration, answered as a one-broker KRaft cluster would.
    ApiRange::new(ApiKey::DescribeLogDirs, 1, 4),
    ApiRange::new(ApiKey::AlterReplicaLogDirs, 1, 2),
    ApiRange::new(ApiKey::ElectLeaders, 0, 2),
    ApiRange::new(ApiKey::AlterPartitionReassignments, 0, 1),
    ApiRange::new(ApiKey::ListPartitionReassignments, 0, 0),
    ApiRange::new(ApiKey::DescribeQuorum, 0, 2),
    ApiRange::new(ApiKey::DescribeTopicPartitions, 0, 0),
    ApiRange::new(ApiKey::DescribeClientQuotas, 0, 1),
    ApiRange::new(ApiKey::AlterClientQuotas, 0, 1),
    // ACLs: v1 added PREFIXED patterns (v0 is gone since Kafka 4.0, KIP-896), v2 is
    // the flexible encoding, v3 allows USER resources.
    ApiRange::new(ApiKey::CreateAcls, 1, 3),
    ApiRange::new(ApiKey::DescribeAcls, 1, 3),
    ApiRange::new(ApiKey::DeleteAcls, 1, 3),
    // Share groups (KIP-932) at the versions Kafka 4.1+ clients send; v0 was the 4.0
    // early-access protocol.
    ApiRange::new(ApiKey::ShareGroupHeartbeat, 1, 1),
    ApiRange::new(ApiKey::ShareGroupDescribe, 1, 1),
    ApiRange::new(ApiKey::ShareFetch, 1, 1),
    ApiRange::new(ApiKey::ShareAcknowledge, 1, 1),
    ApiRange::new(ApiKey::DescribeShareGroupOffsets, 0, 0),
    ApiRange::new(ApiKey::AlterShareGroupOffsets, 0, 0),
    ApiRange::new(ApiKey::DeleteShareGroupOffsets, 0, 0),
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

/// Where a request came from: group members report their host, and Metadata,
/// FindCoordinator and DescribeCluster advertise the listener the client connected to.
#[derive(Debug, Clone, Default)]
pub struct Origin {
    /// The client's address.
    pub peer: Option<std::net::SocketAddr>,
    /// The connection's listener's advertised host and port (the broker's primary one
    /// when absent, as for in-process callers).
    pub advertised: Option<(String, u16)>,
    /// Who is asking, for the authorizer; `None` for in-process callers, which act as
    /// the broker itself.
    pub session: Option<crate::authz::Session>,
}

impl Origin {
    /// The host and port to advertise to this client.
    pub fn endpoint<'a>(&'a self, broker: &'a Broker) -> (&'a str, u16) {
        match &self.advertised {
            Some((host, port)) => (host.as_str(), *port),
            None => broker.advertised(),
        }
    }
}

/// Applies a request's side effects now and returns its (possibly pending) response.
pub async fn dispatch(broker: &Arc<Broker>, request: Request) -> Reply {
    dispatch_from(broker, request, &Origin::default()).await
}

/// [`dispatch`] for a request from a known client connection.
pub async fn dispatch_from(broker: &Arc<Broker>, mut request: Request, origin: &Origin) -> Reply {
    let session = origin.session.as_ref();
    let fixup =
        match crate::authz::enforce::gate(broker, session, &mut request.body, request.version) {
            crate::authz::enforce::Gate::Proceed(fixup) => fixup,
            crate::authz::enforce::Gate::Refuse(body) => {
                return Reply {
                    api_key: request.api_key,
                    version: request.version,
                    correlation_id: request.correlation_id,
                    body: body.map_or(ReplyBody::None, ReplyBody::Ready),
                }
            }
        };
    let peer = origin.peer;
    let endpoint = origin.endpoint(broker);
    let version = request.version;
    let client_id = request.client_id.clone().unwrap_or_default();
    let body = match request.body {
        RequestKind::ApiVersions(_) => {
            ReplyBody::ready(ResponseKind::ApiVersions(api_versions::handle()))
        }
        RequestKind::Metadata(req) => ReplyBody::ready(ResponseKind::Metadata(metadata::handle(
            broker, req, version, endpoint,
        ))),
        RequestKind::Produce(req) => {
            let started = std::time::Instant::now();
            let bytes = throttle::produce_bytes(&req);
            let body = produce::handle(broker, req, version);
            throttle::produce(
                broker,
                throttle::Client::of(session, &client_id),
                bytes,
                started,
                body,
            )
        }
        RequestKind::Fetch(req) => {
            let broker = broker.clone();
            let client = throttle::Client::of(session, &client_id);
            ReplyBody::Later(tokio::spawn(async move {
                let response = fetch::handle(broker.clone(), req, version).await;
                Some(ResponseKind::Fetch(throttle::fetch(
                    &broker, &client, response,
                )))
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
            describe_cluster::handle(broker, req, version, endpoint),
        )),
        RequestKind::InitProducerId(req) => ReplyBody::ready(ResponseKind::InitProducerId(
            init_producer_id::handle(broker, req, version),
        )),
        RequestKind::AddPartitionsToTxn(req) => ReplyBody::ready(ResponseKind::AddPartitionsToTxn(
            transactions::add_partitions(broker, req, version),
        )),
        RequestKind::AddOffsetsToTxn(req) => ReplyBody::ready(ResponseKind::AddOffsetsToTxn(
            transactions::add_offsets(broker, req, version),
        )),
        RequestKind::EndTxn(req) => transactions::end_txn(broker, req, version),
        RequestKind::TxnOffsetCommit(req) => ReplyBody::ready(ResponseKind::TxnOffsetCommit(
            transactions::txn_offset_commit(broker, req, version),
        )),
        RequestKind::DescribeProducers(req) => ReplyBody::ready(ResponseKind::DescribeProducers(
            transactions::describe_producers(broker, req),
        )),
        RequestKind::DescribeTransactions(req) => ReplyBody::ready(
            ResponseKind::DescribeTransactions(transactions::describe_transactions(broker, req)),
        ),
        RequestKind::ListTransactions(req) => ReplyBody::ready(ResponseKind::ListTransactions(
            transactions::list_transactions(broker, req, version),
        )),
        RequestKind::FindCoordinator(req) => ReplyBody::ready(ResponseKind::FindCoordinator(
            groups::find_coordinator(broker, req, version, endpoint),
        )),
        RequestKind::JoinGroup(req) => {
            let host = peer.map(|p| format!("/{}", p.ip())).unwrap_or_default();
            groups::join_group(broker, req, version, &client_id, &host)
        }
        RequestKind::SyncGroup(req) => groups::sync_group(broker, req, version),
        RequestKind::Heartbeat(req) => {
            ReplyBody::ready(ResponseKind::Heartbeat(groups::heartbeat(broker, req)))
        }
        RequestKind::LeaveGroup(req) => ReplyBody::ready(ResponseKind::LeaveGroup(
            groups::leave_group(broker, req, version),
        )),
        RequestKind::ListGroups(req) => ReplyBody::ready(ResponseKind::ListGroups(
            groups::list_groups(broker, req, version),
        )),
        RequestKind::DescribeGroups(req) => ReplyBody::ready(ResponseKind::DescribeGroups(
            groups::describe_groups(broker, req, version),
        )),
        RequestKind::DeleteGroups(req) => groups::delete_groups(broker, req),
        RequestKind::ConsumerGroupHeartbeat(req) => {
            let host = peer.map(|p| format!("/{}", p.ip())).unwrap_or_default();
            ReplyBody::ready(ResponseKind::ConsumerGroupHeartbeat(
                consumer_groups::heartbeat(broker, req, version, &client_id, &host),
            ))
        }
        RequestKind::ConsumerGroupDescribe(req) => ReplyBody::ready(
            ResponseKind::ConsumerGroupDescribe(consumer_groups::describe(broker, req, version)),
        ),
        RequestKind::OffsetCommit(req) => offsets::offset_commit(broker, req, version),
        RequestKind::OffsetFetch(req) => ReplyBody::ready(ResponseKind::OffsetFetch(
            offsets::offset_fetch(broker, req, version),
        )),
        RequestKind::OffsetDelete(req) => offsets::offset_delete(broker, req),
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
        RequestKind::SaslHandshake(_) | RequestKind::SaslAuthenticate(_) => {
            scram_users::sasl_on_unsecured_listener(request.api_key)
        }
        RequestKind::DescribeUserScramCredentials(req) => ReplyBody::ready(
            ResponseKind::DescribeUserScramCredentials(scram_users::describe(broker, req)),
        ),
        RequestKind::AlterUserScramCredentials(req) => ReplyBody::ready(
            ResponseKind::AlterUserScramCredentials(scram_users::alter(broker, req)),
        ),
        RequestKind::DescribeLogDirs(req) => ReplyBody::ready(ResponseKind::DescribeLogDirs(
            log_dirs::describe(broker, req),
        )),
        RequestKind::AlterReplicaLogDirs(req) => ReplyBody::ready(
            ResponseKind::AlterReplicaLogDirs(log_dirs::alter(broker, req)),
        ),
        RequestKind::ElectLeaders(req) => ReplyBody::ready(ResponseKind::ElectLeaders(
            reassignments::elect_leaders(broker, req),
        )),
        RequestKind::AlterPartitionReassignments(req) => ReplyBody::ready(
            ResponseKind::AlterPartitionReassignments(reassignments::alter(broker, req, version)),
        ),
        RequestKind::ListPartitionReassignments(req) => ReplyBody::ready(
            ResponseKind::ListPartitionReassignments(reassignments::list(broker, req)),
        ),
        RequestKind::DescribeQuorum(req) => ReplyBody::ready(ResponseKind::DescribeQuorum(
            describe_quorum::handle(broker, req, version, endpoint),
        )),
        RequestKind::DescribeTopicPartitions(req) => ReplyBody::ready(
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(broker, req)),
        ),
        RequestKind::DescribeClientQuotas(req) => ReplyBody::ready(
            ResponseKind::DescribeClientQuotas(client_quotas::describe(broker, req)),
        ),
        RequestKind::AlterClientQuotas(req) => ReplyBody::ready(ResponseKind::AlterClientQuotas(
            client_quotas::alter(broker, req),
        )),
        RequestKind::CreateAcls(req) => {
            ReplyBody::ready(ResponseKind::CreateAcls(acls::create(broker, req, session)))
        }
        RequestKind::DescribeAcls(req) => ReplyBody::ready(ResponseKind::DescribeAcls(
            acls::describe(broker, req, session),
        )),
        RequestKind::DeleteAcls(req) => {
            ReplyBody::ready(ResponseKind::DeleteAcls(acls::delete(broker, req, session)))
        }
        RequestKind::ShareGroupHeartbeat(req) => {
            let host = peer.map(|p| format!("/{}", p.ip())).unwrap_or_default();
            ReplyBody::ready(ResponseKind::ShareGroupHeartbeat(share_group::heartbeat(
                broker, req, &client_id, &host,
            )))
        }
        RequestKind::ShareGroupDescribe(req) => ReplyBody::ready(ResponseKind::ShareGroupDescribe(
            share_group::describe(broker, req),
        )),
        RequestKind::ShareFetch(req) => {
            let broker = broker.clone();
            ReplyBody::Later(tokio::spawn(async move {
                Some(ResponseKind::ShareFetch(
                    share_fetch::fetch(broker, req).await,
                ))
            }))
        }
        RequestKind::ShareAcknowledge(req) => {
            let broker = broker.clone();
            ReplyBody::Later(tokio::spawn(async move {
                Some(ResponseKind::ShareAcknowledge(
                    share_fetch::acknowledge(broker, req).await,
                ))
            }))
        }
        RequestKind::DescribeShareGroupOffsets(req) => ReplyBody::ready(
            ResponseKind::DescribeShareGroupOffsets(share_offsets::describe(broker, req)),
        ),
        RequestKind::AlterShareGroupOffsets(req) => {
            let broker = broker.clone();
            ReplyBody::Later(tokio::spawn(async move {
                Some(ResponseKind::AlterShareGroupOffsets(
                    share_offsets::alter(&broker, req).await,
                ))
            }))
        }
        RequestKind::DeleteShareGroupOffsets(req) => {
            let broker = broker.clone();
            ReplyBody::Later(tokio::spawn(async move {
                Some(ResponseKind::DeleteShareGroupOffsets(
                    share_offsets::delete(&broker, req).await,
                ))
            }))
        }
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
        body: with_fixup(broker, body, fixup),
    }
}

/// Applies the authorizer's changes to a response, now or when it is ready.
fn with_fixup(
    broker: &Arc<Broker>,
    body: ReplyBody,
    fixup: crate::authz::enforce::Fixup,
) -> ReplyBody {
    if fixup.is_empty() {
        return body;
    }
    match body {
        ReplyBody::None => ReplyBody::None,
        ReplyBody::Ready(mut response) => {
            fixup.apply(broker, &mut response);
            ReplyBody::Ready(response)
        }
        ReplyBody::Later(task) => {
            let broker = broker.clone();
            ReplyBody::Later(tokio::spawn(async move {
                let mut response = match task.await {
                    Ok(response) => response?,
                    // The writer reports a failed handler and closes the connection.
                    Err(error) => std::panic::resume_unwind(error.into_panic()),
                };
                fixup.apply(&broker, &mut response);
                Some(response)
            }))
        }
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
