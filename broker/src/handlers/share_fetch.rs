//! ShareFetch and ShareAcknowledge (KIP-932): acknowledgements are applied and made
//! durable first, then records are acquired for the member from its session's
//! partitions, waiting up to `max_wait_ms` (on the logs' high watermarks and on
//! records being given back) when none are available.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::share_acknowledge_response::{
    LeaderIdAndEpoch as AckLeader, PartitionData as AckPartition, ShareAcknowledgeTopicResponse,
};
use kafka_protocol::messages::share_fetch_response::{
    AcquiredRecords, LeaderIdAndEpoch, PartitionData, ShareFetchableTopicResponse,
};
use kafka_protocol::messages::{
    GroupId, ShareAcknowledgeRequest, ShareAcknowledgeResponse, ShareFetchRequest,
    ShareFetchResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;
use uuid::Uuid;

use super::str_bytes;
use crate::broker::Broker;
use crate::share::partition::{AckBatch, AckError, AckType};
use crate::share::session::SessionError;
use crate::share::{ShareError, StartFrom, Want};

/// Records per fetch when the request sets no positive `max_records` (the Java share
/// consumer's `max.poll.records` default).
const DEFAULT_MAX_RECORDS: usize = 500;

/// One partition's outcome in a response.
#[derive(Debug, Default)]
struct Outcome {
    error: Option<(ResponseError, String)>,
    ack_error: Option<(ResponseError, String)>,
    records: Option<crate::share::Acquired>,
}

type Key = (Uuid, i32);

/// A raw acknowledgement range from either request.
type RawAck = (i64, i64, Vec<i8>);

/// Turns wire ranges into typed ones; unknown type codes are INVALID_REQUEST.
fn ack_batches(raw: &[RawAck]) -> Result<Vec<AckBatch>, AckError> {
    raw.iter()
        .map(|(first, last, codes)| {
            let types = codes
                .iter()
                .map(|c| {
                    AckType::from_code(*c)
                        .ok_or_else(|| AckError::Invalid(format!("acknowledge type {c}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(AckBatch {
                first: *first,
                last: *last,
                types,
            })
        })
        .collect()
}

fn session_error_code(error: &SessionError) -> ResponseError {
    match error {
        SessionError::NotFound => ResponseError::ShareSessionNotFound,
        SessionError::Epoch { .. } => ResponseError::InvalidShareSessionEpoch,
        SessionError::Invalid(_) => ResponseError::InvalidRequest,
    }
}

/// Applies every partition's acknowledgements; durable before returning.
async fn acknowledge_all(
    broker: &Broker,
    group: &str,
    member: &str,
    acks: &[(Key, Vec<RawAck>)],
) -> BTreeMap<Key, Option<(ResponseError, String)>> {
    let mut results = BTreeMap::new();
    let mut stored = false;
    for ((topic, partition), raw) in acks {
        let applied = ack_batches(raw)
            .map_err(ShareError::from)
            .and_then(|batches| {
                if broker.topics.get_by_id(*topic).is_none() {
                    return Err(ShareError::UnknownTopicOrPartition);
                }
                broker
                    .shares
                    .acknowledge(group, member, *topic, *partition, &batches)
            });
        let result = match applied {
            Ok(()) => {
                stored = true;
                None
            }
            Err(error) => {
                tracing::info!(%group, %member, %topic, partition, %error, "share acknowledgement refused");
                Some((error.code(), error.to_string()))
            }
        };
        results.insert((*topic, *partition), result);
    }
    if stored {
        if let Err(error) = broker.groups.flush().await {
            tracing::error!(%error, "cannot make share acknowledgements durable");
            for result in results.values_mut() {
                if result.is_none() {
                    *result = Some((ResponseError::KafkaStorageError, error.to_string()));
                }
            }
        }
    }
    results
}

/// The group and member a request names, once checked (both set, the member in the
/// group); the top-level error and its message otherwise.
fn requester(
    broker: &Broker,
    group: &Option<GroupId>,
    member: &Option<StrBytes>,
) -> Result<(String, String), (ResponseError, String)> {
    let group = group.as_ref().map(|g| g.0.to_string()).unwrap_or_default();
    let member = member.as_ref().map(|m| m.to_string()).unwrap_or_default();
    if group.is_empty() || member.is_empty() {
        return Err((
            ResponseError::InvalidRequest,
            "GroupId and MemberId must be set".to_string(),
        ));
    }
    match broker.shares.check_member(&group, &member) {
        Ok(()) => Ok((group, member)),
        Err(error) => Err((error.code(), format!("{error} in group {group:?}"))),
    }
}

/// Serves a ShareFetch.
pub async fn fetch(broker: Arc<Broker>, request: ShareFetchRequest) -> ShareFetchResponse {
    let lock_ms =
        i32::try_from(broker.shares.settings().record_lock.as_millis()).unwrap_or(i32::MAX);
    let response = ShareFetchResponse::default().with_acquisition_lock_timeout_ms(lock_ms);
    let top_error = |code: ResponseError, message: String| {
        ShareFetchResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(&message)))
    };
    let (group, member) = match requester(&broker, &request.group_id, &request.member_id) {
        Ok(named) => named,
        Err((code, message)) => return top_error(code, message),
    };
    let mut add = Vec::new();
    let mut acks: Vec<(Key, Vec<RawAck>)> = Vec::new();
    for topic in &request.topics {
        for p in &topic.partitions {
            add.push((topic.topic_id, p.partition_index));
            if !p.acknowledgement_batches.is_empty() {
                let raw = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                    .collect();
                acks.push(((topic.topic_id, p.partition_index), raw));
            }
        }
    }
    let forget: Vec<Key> = request
        .forgotten_topics_data
        .iter()
        .flat_map(|t| t.partitions.iter().map(move |p| (t.topic_id, *p)))
        .collect();
    let session = match broker.shares.sessions.fetch(
        &group,
        &member,
        request.share_session_epoch,
        &add,
        &forget,
        !acks.is_empty(),
    ) {
        Ok(session) => session,
        Err(error) => {
            tracing::info!(%group, %member, %error, "share fetch session refused");
            return top_error(session_error_code(&error), error.to_string());
        }
    };
    let acked = acknowledge_all(&broker, &group, &member, &acks).await;
    let mut outcomes: BTreeMap<Key, Outcome> = BTreeMap::new();
    for (key, ack_error) in acked {
        outcomes.entry(key).or_default().ack_error = ack_error;
    }
    if session.closing {
        broker.shares.release(&group, &member, &session.partitions);
        return respond(&broker, response, outcomes);
    }
    if session.full {
        for key in &session.partitions {
            outcomes.entry(*key).or_default();
        }
    }
    let max_records = usize::try_from(request.max_records)
        .ok()
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_RECORDS);
    let max_bytes = usize::try_from(request.max_bytes).unwrap_or(0).max(1);
    let deadline =
        Instant::now() + Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let member: Arc<str> = Arc::from(member.as_str());
    let mut stopping = broker.shutdown_signal();
    let mut released = broker.shares.released();
    loop {
        released.borrow_and_update();
        let mut watchers = Vec::new();
        for key in &session.partitions {
            if let Some(log) = broker
                .topics
                .get_by_id(key.0)
                .and_then(|t| t.partition(key.1).map(|p| p.log.clone()))
            {
                watchers.push(log.subscribe());
            }
        }
        let found = acquire_all(
            &broker,
            &group,
            &member,
            &session.partitions,
            max_records,
            max_bytes,
            &mut outcomes,
        );
        if found || Instant::now() >= deadline || watchers.is_empty() {
            return respond(&broker, response, outcomes);
        }
        let moved = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        let woken = tokio::select! {
            woken = tokio::time::timeout_at(deadline, moved) => woken.is_ok(),
            _ = released.changed() => true,
            // Lock expiries make records available without an event: look again soon.
            () = tokio::time::sleep(Duration::from_millis(250)) => true,
            () = crate::server::stopped(&mut stopping) => false,
        };
        if !woken {
            return respond(&broker, response, outcomes);
        }
    }
}

/// Acquires from each session partition in turn until `max_records` are taken;
/// whether anything was acquired or failed.
fn acquire_all(
    broker: &Broker,
    group: &str,
    member: &Arc<str>,
    partitions: &[Key],
    max_records: usize,
    max_bytes: usize,
    outcomes: &mut BTreeMap<Key, Outcome>,
) -> bool {
    let mut left_records = max_records;
    let mut left_bytes = max_bytes;
    let mut found = false;
    for key in partitions {
        if left_records == 0 || left_bytes == 0 {
            break;
        }
        let Some(topic) = broker.topics.get_by_id(key.0) else {
            outcomes.entry(*key).or_default().error = Some((
                ResponseError::UnknownTopicId,
                format!("unknown topic id {}", key.0),
            ));
            found = true;
            continue;
        };
        let want = Want {
            max_records: left_records,
            max_bytes: left_bytes,
            start: StartFrom::Latest,
        };
        match broker.shares.acquire(group, member, &topic, key.1, want) {
            Ok(Some(acquired)) => {
                let count: i64 = acquired.ranges.iter().map(|r| r.last - r.first + 1).sum();
                left_records =
                    left_records.saturating_sub(usize::try_from(count).unwrap_or(usize::MAX));
                left_bytes = left_bytes.saturating_sub(acquired.bytes.len());
                outcomes.entry(*key).or_default().records = Some(acquired);
                found = true;
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%group, topic = %topic.name(), partition = key.1, %error, "share fetch failed");
                outcomes.entry(*key).or_default().error = Some((error.code(), error.to_string()));
                found = true;
            }
        }
    }
    found
}

fn respond(
    broker: &Broker,
    response: ShareFetchResponse,
    outcomes: BTreeMap<Key, Outcome>,
) -> ShareFetchResponse {
    let leader = LeaderIdAndEpoch::default()
        .with_leader_id(broker.node_id)
        .with_leader_epoch(0);
    let mut topics: Vec<ShareFetchableTopicResponse> = Vec::new();
    for ((topic, partition), outcome) in outcomes {
        let (error, error_message) = split(outcome.error);
        let (ack_error, ack_message) = split(outcome.ack_error);
        let (bytes, ranges) = match outcome.records {
            Some(acquired) => (acquired.bytes, acquired.ranges),
            None => (Bytes::new(), Vec::new()),
        };
        let data = PartitionData::default()
            .with_partition_index(partition)
            .with_error_code(error)
            .with_error_message(error_message)
            .with_acknowledge_error_code(ack_error)
            .with_acknowledge_error_message(ack_message)
            .with_current_leader(leader.clone())
            .with_records(Some(bytes))
            .with_acquired_records(
                ranges
                    .iter()
                    .map(|r| {
                        AcquiredRecords::default()
                            .with_first_offset(r.first)
                            .with_last_offset(r.last)
                            .with_delivery_count(r.deliveries)
                    })
                    .collect(),
            );
        match topics.last_mut() {
            Some(last) if last.topic_id == topic => last.partitions.push(data),
            _ => topics.push(
                ShareFetchableTopicResponse::default()
                    .with_topic_id(topic)
                    .with_partitions(vec![data]),
            ),
        }
    }
    response.with_responses(topics)
}

fn split(error: Option<(ResponseError, String)>) -> (i16, Option<StrBytes>) {
    match error {
        Some((code, message)) => (code.code(), Some(str_bytes(&message))),
        None => (0, None),
    }
}

/// Serves a ShareAcknowledge.
pub async fn acknowledge(
    broker: Arc<Broker>,
    request: ShareAcknowledgeRequest,
) -> ShareAcknowledgeResponse {
    let top_error = |code: ResponseError, message: String| {
        ShareAcknowledgeResponse::default()
            .with_error_code(code.code())
            .with_error_message(Some(str_bytes(&message)))
    };
    let (group, member) = match requester(&broker, &request.group_id, &request.member_id) {
        Ok(named) => named,
        Err((code, message)) => return top_error(code, message),
    };
    let closing =
        match broker
            .shares
            .sessions
            .acknowledge(&group, &member, request.share_session_epoch)
        {
            Ok(closing) => closing,
            Err(error) => {
                tracing::info!(%group, %member, %error, "share acknowledge session refused");
                return top_error(session_error_code(&error), error.to_string());
            }
        };
    let acks: Vec<(Key, Vec<RawAck>)> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| {
                let raw = p
                    .acknowledgement_batches
                    .iter()
                    .map(|b| (b.first_offset, b.last_offset, b.acknowledge_types.clone()))
                    .collect();
                ((t.topic_id, p.partition_index), raw)
            })
        })
        .collect();
    let results = acknowledge_all(&broker, &group, &member, &acks).await;
    if let Some(partitions) = closing {
        broker.shares.release(&group, &member, &partitions);
    }
    let leader = AckLeader::default()
        .with_leader_id(broker.node_id)
        .with_leader_epoch(0);
    let mut topics: Vec<ShareAcknowledgeTopicResponse> = Vec::new();
    for ((topic, partition), result) in results {
        let (error, message) = split(result);
        let data = AckPartition::default()
            .with_partition_index(partition)
            .with_error_code(error)
            .with_error_message(message)
            .with_current_leader(leader.clone());
        match topics.last_mut() {
            Some(last) if last.topic_id == topic => last.partitions.push(data),
            _ => topics.push(
                ShareAcknowledgeTopicResponse::default()
                    .with_topic_id(topic)
                    .with_partitions(vec![data]),
            ),
        }
    }
    ShareAcknowledgeResponse::default().with_responses(topics)
}
