//! Transaction APIs: WRITE on the transactional id for everything a transactional
//! producer sends, plus WRITE on the topics it adds and READ on the group whose offsets
//! it commits; idempotent producers need IDEMPOTENT_WRITE on the cluster or WRITE on
//! some topic (KIP-679); the admin views need DESCRIBE (READ for producers).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeProducersRequest, DescribeTransactionsRequest,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ResponseKind,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};

use super::{
    split_off, Check, Fixup, Refused, CLUSTER_DENIED, GROUP_DENIED, TOPIC_DENIED, TXN_DENIED,
};
use crate::authz::Operation::{Describe, IdempotentWrite, Read, Write};
use crate::authz::ResourceType;

/// InitProducerId: WRITE on the transactional id; without one (an idempotent
/// producer), IDEMPOTENT_WRITE on the cluster or WRITE on any topic.
pub(super) fn init_producer_id(check: &Check, req: &InitProducerIdRequest) -> Refused {
    let code = match &req.transactional_id {
        Some(id) if !check.transactional_id(Write, id) => TXN_DENIED,
        Some(_) => return Ok(Fixup::none()),
        None if check.visible(IdempotentWrite, ResourceType::Cluster, super::CLUSTER_NAME)
            || check
                .authz
                .authorize_any(check.session, Write, ResourceType::Topic) =>
        {
            return Ok(Fixup::none())
        }
        None => {
            tracing::info!(principal = %check.session.principal, "authorization denied: idempotent producer without IDEMPOTENT_WRITE on the cluster or WRITE on any topic");
            CLUSTER_DENIED
        }
    };
    Err(Some(Box::new(ResponseKind::InitProducerId(
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    ))))
}

/// AddPartitionsToTxn (v0-v3): WRITE on the transactional id and on every topic; if
/// any topic is refused nothing is added (the refused answer
/// TOPIC_AUTHORIZATION_FAILED, the others OPERATION_NOT_ATTEMPTED), as Kafka does.
pub(super) fn add_partitions(check: &Check, req: &AddPartitionsToTxnRequest) -> Refused {
    let txn_ok = check.transactional_id(Write, &req.v3_and_below_transactional_id);
    let topic_ok: Vec<bool> = req
        .v3_and_below_topics
        .iter()
        .map(|t| txn_ok && check.topic(Write, &t.name))
        .collect();
    if txn_ok && topic_ok.iter().all(|ok| *ok) {
        return Ok(Fixup::none());
    }
    let results = req
        .v3_and_below_topics
        .iter()
        .zip(topic_ok)
        .map(|(t, ok)| {
            let code = match (txn_ok, ok) {
                (false, _) => TXN_DENIED,
                (true, false) => TOPIC_DENIED,
                (true, true) => ResponseError::OperationNotAttempted.code(),
            };
            AddPartitionsToTxnTopicResult::default()
                .with_name(t.name.clone())
                .with_results_by_partition(
                    t.partitions
                        .iter()
                        .map(|p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(*p)
                                .with_partition_error_code(code)
                        })
                        .collect(),
                )
        })
        .collect();
    Err(Some(Box::new(ResponseKind::AddPartitionsToTxn(
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results),
    ))))
}

/// AddOffsetsToTxn: WRITE on the transactional id, READ on the group.
pub(super) fn add_offsets(check: &Check, req: &AddOffsetsToTxnRequest) -> Refused {
    let code = if !check.transactional_id(Write, &req.transactional_id) {
        TXN_DENIED
    } else if !check.group(Read, &req.group_id) {
        GROUP_DENIED
    } else {
        return Ok(Fixup::none());
    };
    Err(Some(Box::new(ResponseKind::AddOffsetsToTxn(
        AddOffsetsToTxnResponse::default().with_error_code(code),
    ))))
}

/// EndTxn: WRITE on the transactional id.
pub(super) fn end_txn(check: &Check, req: &EndTxnRequest) -> Refused {
    if check.transactional_id(Write, &req.transactional_id) {
        return Ok(Fixup::none());
    }
    Err(Some(Box::new(ResponseKind::EndTxn(
        EndTxnResponse::default()
            .with_error_code(TXN_DENIED)
            .with_producer_id((-1).into())
            .with_producer_epoch(-1),
    ))))
}

/// TxnOffsetCommit: WRITE on the transactional id and READ on the group (else every
/// partition carries the error), READ on each topic.
pub(super) fn txn_offset_commit(check: &Check, req: &mut TxnOffsetCommitRequest) -> Refused {
    let whole = if !check.transactional_id(Write, &req.transactional_id) {
        Some(TXN_DENIED)
    } else if !check.group(Read, &req.group_id) {
        Some(GROUP_DENIED)
    } else {
        None
    };
    if let Some(code) = whole {
        let mut response = TxnOffsetCommitResponse::default();
        push_errors(&mut response, std::mem::take(&mut req.topics), code);
        return Err(Some(Box::new(ResponseKind::TxnOffsetCommit(response))));
    }
    let refused = split_off(&mut req.topics, |t| check.topic(Read, &t.name));
    if refused.is_empty() {
        return Ok(Fixup::none());
    }
    Ok(Fixup::none().and(move |_, response| {
        if let ResponseKind::TxnOffsetCommit(response) = response {
            push_errors(response, refused, TOPIC_DENIED);
        }
    }))
}

fn push_errors(
    response: &mut TxnOffsetCommitResponse,
    topics: Vec<kafka_protocol::messages::txn_offset_commit_request::TxnOffsetCommitRequestTopic>,
    code: i16,
) {
    response.topics.extend(topics.into_iter().map(|t| {
        TxnOffsetCommitResponseTopic::default()
            .with_name(t.name)
            .with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(code)
                    })
                    .collect(),
            )
    }));
}

/// DescribeTransactions: DESCRIBE on each transactional id.
pub(super) fn describe_transactions(check: &Check, req: &DescribeTransactionsRequest) -> Fixup {
    let refused: Vec<_> = req
        .transactional_ids
        .iter()
        .filter(|id| !check.transactional_id(Describe, id))
        .cloned()
        .collect();
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        if let ResponseKind::DescribeTransactions(response) = response {
            for state in response.transaction_states.iter_mut() {
                if refused.contains(&state.transactional_id) {
                    let id = std::mem::take(&mut state.transactional_id);
                    *state = TransactionState::default()
                        .with_transactional_id(id)
                        .with_error_code(TXN_DENIED);
                }
            }
        }
    })
}

/// ListTransactions: the transactional ids the caller may DESCRIBE.
pub(super) fn list_transactions(check: &Check) -> Fixup {
    let session = check.session.clone();
    Fixup::none().and(move |broker, response| {
        if let ResponseKind::ListTransactions(response) = response {
            response.transaction_states.retain(|t| {
                broker.authorizer.authorize(
                    &session,
                    Describe,
                    ResourceType::TransactionalId,
                    &t.transactional_id,
                )
            });
        }
    })
}

/// DescribeProducers: READ on each topic; refused partitions carry the error.
pub(super) fn describe_producers(check: &Check, req: &DescribeProducersRequest) -> Fixup {
    let refused: Vec<_> = req
        .topics
        .iter()
        .filter(|t| !check.topic(Read, &t.name))
        .map(|t| t.name.clone())
        .collect();
    if refused.is_empty() {
        return Fixup::none();
    }
    Fixup::none().and(move |_, response| {
        if let ResponseKind::DescribeProducers(response) = response {
            for topic in response
                .topics
                .iter_mut()
                .filter(|t| refused.contains(&t.name))
            {
                for partition in topic.partitions.iter_mut() {
                    partition.error_code = TOPIC_DENIED;
                    partition.active_producers.clear();
                }
            }
        }
    })
}
