//! Fetch: whole stored batches, handed out as they were appended; long-polls park on
//! the partitions' high-watermark notifications until `min_bytes` arrive or
//! `max_wait_ms` passes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId, TopicName};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::broker::Broker;
use crate::storage::{PartitionLog, ReadError};
use crate::topics::Topic;

/// Consumers asking for committed data only: nothing at or past the last stable offset,
/// and the aborted transactions of the returned range so they can skip aborted records.
const READ_COMMITTED: i8 = 1;

/// One requested partition, resolved once per request.
struct Wanted {
    topic_index: usize,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    log: Result<Arc<PartitionLog>, ResponseError>,
    /// The topic, for the partition's transaction state (read_committed).
    topic: Option<Arc<Topic>>,
}

/// Serves a fetch, waiting up to `max_wait_ms` for `min_bytes`.
pub async fn handle(broker: Arc<Broker>, request: FetchRequest, version: i16) -> FetchResponse {
    let read_committed = version >= 4 && request.isolation_level == READ_COMMITTED;
    let mut topics: Vec<(TopicName, Uuid)> = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for fetch_topic in &request.topics {
        let topic: Result<Arc<Topic>, ResponseError> = if version >= 13 {
            broker
                .topics
                .get_by_id(fetch_topic.topic_id)
                .ok_or(ResponseError::UnknownTopicId)
        } else {
            broker
                .topics
                .get(&fetch_topic.topic)
                .ok_or(ResponseError::UnknownTopicOrPartition)
        };
        topics.push((fetch_topic.topic.clone(), fetch_topic.topic_id));
        let owner = topic.as_ref().ok().cloned();
        for partition in &fetch_topic.partitions {
            let log = topic.as_ref().map_err(|e| *e).and_then(|topic| {
                topic
                    .partition(partition.partition)
                    .map(|p| p.log.clone())
                    .ok_or(ResponseError::UnknownTopicOrPartition)
            });
            let log = log.and_then(|log| {
                // We are leader epoch 0 forever; a newer epoch means the client knows a
                // leader we are not.
                if version >= 9 && partition.current_leader_epoch > 0 {
                    Err(ResponseError::UnknownLeaderEpoch)
                } else {
                    Ok(log)
                }
            });
            wanted.push(Wanted {
                topic_index: topics.len() - 1,
                partition: partition.partition,
                fetch_offset: partition.fetch_offset,
                max_bytes: usize::try_from(partition.partition_max_bytes).unwrap_or(0),
                log,
                topic: owner.clone(),
            });
        }
    }

    let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let deadline = Instant::now() + max_wait;
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let max_bytes = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };

    let mut stopping = broker.shutdown_signal();
    loop {
        // Subscribe before reading, so an append between the read and the wait still
        // wakes us.
        let mut watchers: Vec<watch::Receiver<i64>> = wanted
            .iter()
            .filter_map(|w| w.log.as_ref().ok().map(|log| log.subscribe()))
            .collect();
        let (partitions, total, failed) = read_all(&wanted, max_bytes, read_committed);
        if total >= min_bytes || failed || watchers.is_empty() || Instant::now() >= deadline {
            return respond(topics, partitions, version);
        }
        let changed = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
        let woken = tokio::select! {
            woken = tokio::time::timeout_at(deadline, changed) => woken.is_ok(),
            // A stopping broker answers parked fetches now rather than at max_wait.
            () = crate::server::stopped(&mut stopping) => false,
        };
        if !woken {
            let (partitions, _, _) = read_all(&wanted, max_bytes, read_committed);
            return respond(topics, partitions, version);
        }
    }
}

/// Reads every wanted partition: (responses, bytes gathered, whether any failed).
fn read_all(
    wanted: &[Wanted],
    max_bytes: usize,
    read_committed: bool,
) -> (Vec<(usize, PartitionData)>, usize, bool) {
    let mut total = 0usize;
    let mut failed = false;
    let mut out = Vec::with_capacity(wanted.len());
    for w in wanted {
        let data = PartitionData::default().with_partition_index(w.partition);
        let log = match &w.log {
            Ok(log) => log,
            Err(code) => {
                failed = true;
                out.push((
                    w.topic_index,
                    with_empty(data.with_error_code(code.code()), read_committed),
                ));
                continue;
            }
        };
        let budget = w.max_bytes.min(max_bytes.saturating_sub(total));
        let partition = w.topic.as_ref().and_then(|t| t.partition(w.partition));
        let read = match partition.filter(|_| read_committed) {
            Some(partition) => partition
                .read_committed(w.fetch_offset, budget.max(1))
                .map(|c| (c.read, c.last_stable_offset, c.aborted)),
            None => log.read(w.fetch_offset, budget.max(1)).map(|read| {
                let stable = partition.map_or(read.high_watermark, |p| p.last_stable_offset());
                (read, stable, Vec::new())
            }),
        };
        let data = match read {
            Ok((read, last_stable, aborted)) => {
                let bytes = read.bytes;
                let mut aborted: Vec<AbortedTransaction> = aborted
                    .into_iter()
                    .map(|a| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(a.producer_id))
                            .with_first_offset(a.first_offset)
                    })
                    .collect();
                // Only the first partition with data may exceed the limits (KIP-74),
                // so that a batch larger than max_bytes can still be consumed.
                let records = if total > 0 && bytes.len() > budget {
                    Bytes::new()
                } else {
                    bytes
                };
                if records.is_empty() {
                    aborted.clear();
                }
                total += records.len();
                let data = data
                    .with_high_watermark(read.high_watermark)
                    .with_last_stable_offset(last_stable.min(read.high_watermark))
                    .with_log_start_offset(read.log_start_offset)
                    .with_records(Some(records));
                with_aborted(data, read_committed, aborted)
            }
            Err(ReadError::OffsetOutOfRange {
                high_watermark,
                log_start_offset,
                ..
            }) => {
                failed = true;
                let data = data
                    .with_error_code(ResponseError::OffsetOutOfRange.code())
                    .with_high_watermark(high_watermark)
                    .with_last_stable_offset(high_watermark)
                    .with_log_start_offset(log_start_offset)
                    .with_records(Some(Bytes::new()));
                with_aborted(data, read_committed, Vec::new())
            }
            Err(error) => {
                tracing::error!(%error, "fetch read failed");
                failed = true;
                with_empty(
                    data.with_error_code(ResponseError::KafkaStorageError.code()),
                    read_committed,
                )
            }
        };
        out.push((w.topic_index, data));
    }
    (out, total, failed)
}

fn with_empty(data: PartitionData, read_committed: bool) -> PartitionData {
    let data = data
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(Bytes::new()));
    with_aborted(data, read_committed, Vec::new())
}

/// read_committed answers always carry an aborted-transactions list (empty or not);
/// read_uncommitted ones never do.
fn with_aborted(
    data: PartitionData,
    read_committed: bool,
    aborted: Vec<AbortedTransaction>,
) -> PartitionData {
    if read_committed {
        data.with_aborted_transactions(Some(aborted))
    } else {
        data
    }
}

fn respond(
    topics: Vec<(TopicName, Uuid)>,
    partitions: Vec<(usize, PartitionData)>,
    version: i16,
) -> FetchResponse {
    let mut responses: Vec<FetchableTopicResponse> = topics
        .into_iter()
        .map(|(name, id)| {
            if version >= 13 {
                FetchableTopicResponse::default().with_topic_id(id)
            } else {
                FetchableTopicResponse::default().with_topic(name)
            }
        })
        .collect();
    for (topic_index, data) in partitions {
        if let Some(topic) = responses.get_mut(topic_index) {
            topic.partitions.push(data);
        }
    }
    FetchResponse::default().with_responses(responses)
}
