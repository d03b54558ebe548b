//! The transactional APIs a producer uses (AddPartitionsToTxn, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn) and the ones operators use (DescribeProducers,
//! ListTransactions, DescribeTransactions), over the
//! [`crate::transactions::TransactionCoordinator`].
//!
//! PRODUCER_FENCED arrived with KIP-588; older versions of each request get
//! INVALID_PRODUCER_EPOCH for the same condition, as Kafka answers them.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState as DescribedTxn,
};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedTxn;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::*;

use super::{str_bytes, topic_name, ReplyBody};
use crate::broker::Broker;
use crate::transactions::{
    AddOffsetsError, AddPartitionsError, EndTxnError, Persist, StagedOffset, TxnOffsetCommitError,
    TxnOffsetPartitionError,
};

/// AddPartitionsToTxn v0-3 (one transaction per request, as clients send it). Unknown
/// partitions fail the request: they get UNKNOWN_TOPIC_OR_PARTITION and the others
/// OPERATION_NOT_ATTEMPTED, as in Kafka.
pub fn add_partitions(
    broker: &Broker,
    request: AddPartitionsToTxnRequest,
    version: i16,
) -> AddPartitionsToTxnResponse {
    let wanted: Vec<(String, i32)> = request
        .v3_and_below_topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.0.to_string(), *p))
                .collect::<Vec<_>>()
        })
        .collect();
    let unknown = |topic: &str, partition: i32| {
        broker
            .topics
            .get(topic)
            .and_then(|t| t.partition(partition).map(|_| ()))
            .is_none()
    };
    let any_unknown = wanted.iter().any(|(t, p)| unknown(t, *p));
    let outcome: Result<(), ResponseError> = if any_unknown {
        Err(ResponseError::OperationNotAttempted)
    } else {
        broker
            .transactions
            .add_partitions(
                &request.v3_and_below_transactional_id.0,
                request.v3_and_below_producer_id.0,
                request.v3_and_below_producer_epoch,
                &wanted,
            )
            .map_err(|error| {
                tracing::debug!(%error, "AddPartitionsToTxn refused");
                match error {
                    AddPartitionsError::Check(check) => check.code(version < 2),
                }
            })
    };
    let results = request
        .v3_and_below_topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.to_string();
            AddPartitionsToTxnTopicResult::default()
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let code = match &outcome {
                                Ok(()) => 0,
                                Err(_) if unknown(&name, *p) => {
                                    ResponseError::UnknownTopicOrPartition.code()
                                }
                                Err(code) => code.code(),
                            };
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
                .with_name(topic.name)
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}

/// AddOffsetsToTxn: the transaction will commit offsets of this group.
pub fn add_offsets(
    broker: &Broker,
    request: AddOffsetsToTxnRequest,
    version: i16,
) -> AddOffsetsToTxnResponse {
    let code = match broker.transactions.add_offsets(
        &request.transactional_id.0,
        request.producer_id.0,
        request.producer_epoch,
        &request.group_id.0,
        Persist::Durable,
    ) {
        Ok(()) => 0,
        Err(AddOffsetsError::InvalidGroupId) => ResponseError::InvalidGroupId.code(),
        Err(AddOffsetsError::Check(check)) => check.code(version < 2).code(),
    };
    AddOffsetsToTxnResponse::default().with_error_code(code)
}

/// EndTxn v0-4: commit or abort; answered once the markers are durable, so that a
/// read_committed consumer asked right after sees the outcome.
pub fn end_txn(broker: &Broker, request: EndTxnRequest, version: i16) -> ReplyBody {
    let markers = match broker.transactions.end_txn(
        broker,
        &request.transactional_id.0,
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    ) {
        Ok(markers) => markers,
        Err(EndTxnError::Check(check)) => {
            tracing::debug!(error = %check, "EndTxn refused");
            let code = check.code(version < 2).code();
            return ReplyBody::ready(ResponseKind::EndTxn(
                EndTxnResponse::default().with_error_code(code),
            ));
        }
    };
    ReplyBody::Later(tokio::spawn(async move {
        let mut code = 0;
        for (log, end) in markers {
            if let Err(error) = log.wait_durable(end).await {
                // The outcome is decided and recorded; recovery rewrites a lost marker.
                // The client retries and gets the recorded outcome.
                tracing::error!(%error, "flushing a transaction marker failed");
                code = ResponseError::CoordinatorNotAvailable.code();
            }
        }
        Some(ResponseKind::EndTxn(
            EndTxnResponse::default().with_error_code(code),
        ))
    }))
}

/// TxnOffsetCommit: stages the offsets with the transaction.
pub fn txn_offset_commit(
    broker: &Broker,
    request: TxnOffsetCommitRequest,
    version: i16,
) -> TxnOffsetCommitResponse {
    let offsets: Vec<StagedOffset> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| StagedOffset {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
            })
        })
        .collect();
    let member = broker.groups.check_txn_member(
        &request.group_id.0,
        request.generation_id,
        &request.member_id,
        request.group_instance_id.as_deref(),
    );
    // Per-partition results when the offsets were staged, else one code for them all.
    let (mut results, whole) = match member {
        Err(error) => (Vec::new().into_iter(), error.code()),
        Ok(()) => match broker.transactions.stage_offsets(
            &request.transactional_id.0,
            &request.group_id.0,
            request.producer_id.0,
            request.producer_epoch,
            offsets,
            Persist::Durable,
        ) {
            Ok(results) => (results.into_iter(), 0),
            Err(TxnOffsetCommitError::InvalidGroupId) => {
                (Vec::new().into_iter(), ResponseError::InvalidGroupId.code())
            }
            Err(TxnOffsetCommitError::Check(check)) => {
                (Vec::new().into_iter(), check.code(version < 3).code())
            }
        },
    };
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            TxnOffsetCommitResponseTopic::default()
                .with_partitions(
                    topic
                        .partitions
                        .iter()
                        .map(|p| {
                            let code = match results.next() {
                                Some(Ok(())) => 0,
                                Some(Err(TxnOffsetPartitionError::MetadataTooLarge)) => {
                                    ResponseError::OffsetMetadataTooLarge.code()
                                }
                                None => whole,
                            };
                            TxnOffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect(),
                )
                .with_name(topic.name)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}

/// DescribeProducers: the producers each partition knows, with their open transaction.
pub fn describe_producers(
    broker: &Broker,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|wanted| {
            let topic = broker.topics.get(&wanted.name);
            let partitions = wanted
                .partition_indexes
                .iter()
                .map(|index| {
                    let response = PartitionResponse::default().with_partition_index(*index);
                    let Some(partition) = topic.as_ref().and_then(|t| t.partition(*index)) else {
                        return response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    response.with_active_producers(
                        partition
                            .producers()
                            .into_iter()
                            .map(|(id, entry, ongoing)| {
                                ProducerState::default()
                                    .with_producer_id(ProducerId(id))
                                    .with_producer_epoch(i32::from(entry.epoch))
                                    .with_last_sequence(
                                        entry.batches.back().map_or(-1, |b| b.last_sequence),
                                    )
                                    .with_last_timestamp(-1)
                                    .with_coordinator_epoch(0)
                                    .with_current_txn_start_offset(ongoing.unwrap_or(-1))
                            })
                            .collect(),
                    )
                })
                .collect();
            TopicResponse::default()
                .with_name(wanted.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// ListTransactions v0-1: filtered by state names, producer ids and (v1) how long the
/// transaction has been open.
pub fn list_transactions(
    broker: &Broker,
    request: ListTransactionsRequest,
    version: i16,
) -> ListTransactionsResponse {
    const STATES: [&str; 6] = [
        "Empty",
        "Ongoing",
        "PrepareCommit",
        "PrepareAbort",
        "CompleteCommit",
        "CompleteAbort",
    ];
    let unknown: Vec<_> = request
        .state_filters
        .iter()
        .filter(|s| !STATES.contains(&s.as_str()))
        .cloned()
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    let duration = if version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    let states = broker
        .transactions
        .list()
        .into_iter()
        .filter(|t| {
            request.state_filters.is_empty()
                || request
                    .state_filters
                    .iter()
                    .any(|s| s.as_str() == t.state.name())
        })
        .filter(|t| {
            request.producer_id_filters.is_empty()
                || request
                    .producer_id_filters
                    .iter()
                    .any(|p| p.0 == t.producer_id)
        })
        .filter(|t| duration < 0 || (t.start_ms >= 0 && now - t.start_ms > duration))
        .map(|t| {
            ListedTxn::default()
                .with_transactional_id(TransactionalId(str_bytes(&t.transactional_id)))
                .with_producer_id(ProducerId(t.producer_id))
                .with_transaction_state(str_bytes(t.state.name()))
        })
        .collect();
    ListTransactionsResponse::default()
        .with_unknown_state_filters(unknown)
        .with_transaction_states(states)
}

/// DescribeTransactions: each id's state, producer, timeout and partitions.
pub fn describe_transactions(
    broker: &Broker,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let states = request
        .transactional_ids
        .into_iter()
        .map(|id| {
            let described = DescribedTxn::default().with_transactional_id(id.clone());
            let Some(meta) = broker.transactions.describe(&id.0) else {
                return described.with_error_code(ResponseError::TransactionalIdNotFound.code());
            };
            let mut topics: Vec<TopicData> = Vec::new();
            for (topic, partition) in &meta.partitions {
                match topics.iter_mut().find(|t| t.topic.0.as_str() == topic) {
                    Some(t) => t.partitions.push(*partition),
                    None => topics.push(
                        TopicData::default()
                            .with_topic(topic_name(topic))
                            .with_partitions(vec![*partition]),
                    ),
                }
            }
            described
                .with_transaction_state(str_bytes(meta.state.name()))
                .with_transaction_timeout_ms(meta.timeout_ms)
                .with_transaction_start_time_ms(meta.start_ms)
                .with_producer_id(ProducerId(meta.producer_id))
                .with_producer_epoch(meta.epoch)
                .with_topics(if meta.state == crate::transactions::TxnState::Ongoing {
                    topics
                } else {
                    Vec::new()
                })
        })
        .collect();
    DescribeTransactionsResponse::default().with_transaction_states(states)
}
