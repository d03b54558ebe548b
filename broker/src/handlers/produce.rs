//! Produce: validate each partition's batches, append them as they came, and answer
//! per acks (0: nothing; 1 and all: once consumers can read the data, which under the
//! default flush policy means once it is fsynced).

use std::sync::Arc;
use std::time::Duration;

use agentlog_protocol::batch::{self, BatchError, Batches, Compression};
use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind, TopicName};
use thiserror::Error;

use super::record_checks::{self, RecordFault};
use super::{str_bytes, topic_name, ReplyBody};
use crate::broker::Broker;
use crate::partition::PartitionAppendError;
use crate::producers::SequenceError;
use crate::storage::{AppendError, FlushError, PartitionLog};
use crate::topics::Topic;

/// Why one partition's records were refused; each maps to one Kafka error code.
#[derive(Debug, Error)]
pub enum ProduceError {
    /// UNKNOWN_TOPIC_OR_PARTITION (or UNKNOWN_TOPIC_ID when addressed by id).
    #[error("unknown topic or partition")]
    UnknownPartition,
    /// CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    Corrupt(BatchError),
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT.
    #[error("record batch magic {0} is not supported (only v2 batches)")]
    OldMagic(i8),
    /// INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
    /// UNSUPPORTED_COMPRESSION_TYPE.
    #[error("unknown compression codec {0}")]
    UnknownCodec(u8),
    /// MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge {
        /// Batch size.
        size: usize,
        /// The topic's limit.
        limit: usize,
    },
    /// KAFKA_STORAGE_ERROR.
    #[error("storage error: {0}")]
    Storage(#[from] AppendError),
    /// OUT_OF_ORDER_SEQUENCE_NUMBER or INVALID_PRODUCER_EPOCH.
    #[error(transparent)]
    Sequence(#[from] SequenceError),
    /// KAFKA_STORAGE_ERROR: written, but fsync failed, so it is not acknowledged.
    #[error("flush failed: {0}")]
    Flush(#[from] FlushError),
    /// REQUEST_TIMED_OUT: written, but not durable within the request's timeout.
    #[error("not durable within the request timeout")]
    TimedOut,
    /// INVALID_REQUIRED_ACKS.
    #[error("acks must be -1, 0 or 1, not {0}")]
    InvalidAcks(i16),
    /// INVALID_RECORD: records failed Kafka's per-record checks (listed by index in
    /// Produce v8+'s `record_errors`); nothing of the partition's append was written.
    #[error("{}", record_checks::summary(.0))]
    Records(Vec<RecordFault>),
    /// INVALID_TIMESTAMP: CreateTime records outside the topic's
    /// `message.timestamp.before.max.ms` / `after.max.ms` (listed as for `Records`).
    #[error("{}", record_checks::summary(.0))]
    Timestamps(Vec<RecordFault>),
    /// KAFKA_STORAGE_ERROR (retriable): free space on the data directory's filesystem
    /// is below `log.disk.free.min.bytes`.
    #[error("not enough free disk space (below log.disk.free.min.bytes)")]
    DiskFull,
}

impl ProduceError {
    fn code(&self) -> ResponseError {
        match self {
            ProduceError::UnknownPartition => ResponseError::UnknownTopicOrPartition,
            ProduceError::Corrupt(_) => ResponseError::CorruptMessage,
            ProduceError::OldMagic(_) => ResponseError::UnsupportedForMessageFormat,
            ProduceError::Invalid(_) | ProduceError::Records(_) => ResponseError::InvalidRecord,
            ProduceError::Timestamps(_) => ResponseError::InvalidTimestamp,
            ProduceError::UnknownCodec(_) => ResponseError::UnsupportedCompressionType,
            ProduceError::TooLarge { .. } => ResponseError::MessageTooLarge,
            ProduceError::Storage(_) | ProduceError::Flush(_) | ProduceError::DiskFull => {
                ResponseError::KafkaStorageError
            }
            ProduceError::TimedOut => ResponseError::RequestTimedOut,
            ProduceError::Sequence(SequenceError::OutOfOrder { .. }) => {
                ResponseError::OutOfOrderSequenceNumber
            }
            ProduceError::Sequence(SequenceError::StaleEpoch { .. }) => {
                ResponseError::InvalidProducerEpoch
            }
            ProduceError::InvalidAcks(_) => ResponseError::InvalidRequiredAcks,
        }
    }
}

/// The smallest encoding of a v2 record: length, attributes, timestamp delta, offset
/// delta, key length, value length and header count, one byte each.
const MIN_RECORD_BYTES: usize = 7;

/// Checks that `records` is a sequence of whole, intact v2 batches a client may send.
pub fn validate_batches(records: &[u8], max_batch_bytes: usize) -> Result<(), ProduceError> {
    if records.is_empty() {
        return Err(ProduceError::Invalid("no record batches"));
    }
    let mut batches = Batches::new(records);
    for (header, range) in batches.by_ref() {
        let bytes = &records[range];
        if bytes.len() > max_batch_bytes {
            return Err(ProduceError::TooLarge {
                size: bytes.len(),
                limit: max_batch_bytes,
            });
        }
        batch::verify(bytes).map_err(ProduceError::Corrupt)?;
        if header.base_offset != 0 {
            return Err(ProduceError::Invalid("base offset must be 0"));
        }
        if header.records_count <= 0 {
            return Err(ProduceError::Invalid("batch holds no records"));
        }
        // A v2 record takes at least seven bytes; an uncompressed batch cannot hold
        // more records than that allows (readers must not trust the count either, but
        // nothing that lies about it belongs in the log).
        if header.compression() == Compression::None
            && (header.records_count as usize).saturating_mul(MIN_RECORD_BYTES)
                > bytes.len() - batch::HEADER_LEN
        {
            return Err(ProduceError::Invalid(
                "record count exceeds what the batch can hold",
            ));
        }
        if header.last_offset_delta != header.records_count - 1 {
            return Err(ProduceError::Invalid(
                "last offset delta does not match the record count",
            ));
        }
        if header.is_control() {
            return Err(ProduceError::Invalid(
                "clients may not append control batches",
            ));
        }
        if let Compression::Unknown(codec) = header.compression() {
            return Err(ProduceError::UnknownCodec(codec));
        }
    }
    match batches.stop_reason() {
        None => Ok(()),
        Some(BatchError::UnsupportedMagic(magic)) => Err(ProduceError::OldMagic(*magic)),
        Some(error) => Err(ProduceError::Corrupt(error.clone())),
    }
}

/// Where an accepted partition's records went.
struct Accepted {
    base_offset: i64,
    log_start_offset: i64,
    /// The stamped append time, or -1 for CreateTime topics.
    log_append_time: i64,
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// One partition's fate: where its records went or an error, and what to wait on
/// before the data counts as durable.
struct Outcome {
    index: i32,
    result: Result<Accepted, ProduceError>,
    durable: Option<(Arc<PartitionLog>, i64)>,
}

impl Outcome {
    fn failed(index: i32, error: ProduceError) -> Self {
        Outcome {
            index,
            result: Err(error),
            durable: None,
        }
    }
}

fn append(
    broker: &Broker,
    topic: &Topic,
    index: i32,
    records: Option<Bytes>,
    sole_partition: bool,
) -> Outcome {
    let fail = |error| Outcome::failed(index, error);
    let Some(partition) = topic.partition(index) else {
        return fail(ProduceError::UnknownPartition);
    };
    if broker.lifecycle.disk_low() {
        return fail(ProduceError::DiskFull);
    }
    let records = records.unwrap_or_default();
    let max = broker.config.max_message_bytes(&topic.record.configs);
    if let Err(error) = validate_batches(&records, max) {
        tracing::debug!(topic = topic.name(), partition = index, %error, "produce refused");
        return fail(error);
    }
    if crate::lifecycle::has_policy(&broker.config, &topic.record.configs, "compact") {
        let faults = record_checks::keyless_in_compacted(&records, topic.name(), index);
        if !faults.is_empty() {
            tracing::debug!(
                topic = topic.name(),
                partition = index,
                "keyless records refused"
            );
            return fail(ProduceError::Records(faults));
        }
    }
    let log_append_time = broker
        .config
        .topic_value(&topic.record.configs, "message.timestamp.type")
        .filter(|(value, _)| value == "LogAppendTime")
        .map(|_| now_ms());
    if log_append_time.is_none() {
        let limit = |name| {
            broker
                .config
                .topic_number(&topic.record.configs, name, i64::MAX)
        };
        let bounds = record_checks::TimestampBounds {
            now: now_ms(),
            before_max_ms: limit("message.timestamp.before.max.ms"),
            after_max_ms: limit("message.timestamp.after.max.ms"),
        };
        let faults = record_checks::timestamps_out_of_range(&records, bounds);
        if !faults.is_empty() {
            tracing::debug!(
                topic = topic.name(),
                partition = index,
                "timestamps out of range"
            );
            return fail(ProduceError::Timestamps(faults));
        }
    }
    // Appending patches headers in place, so it needs the bytes to itself. `records` is
    // a slice of the request frame; when it is the request's only partition it is most
    // of the frame, and nothing else holds the frame any more (see `handle`), so taking
    // the frame over is free. Otherwise it costs the wire path's one copy: the tail cache
    // keeps what it is given alive, and a frame held for one small partition of a large
    // request would cost memory far beyond the cache's bound.
    let owned = |shared: Bytes| BytesMut::from(&shared[..]);
    let records = match sole_partition {
        true => records.try_into_mut().unwrap_or_else(owned),
        false => owned(records),
    };
    match partition.append(records, log_append_time) {
        Ok(appended) => Outcome {
            index,
            result: Ok(Accepted {
                base_offset: appended.base_offset,
                log_start_offset: partition.log.log_start_offset(),
                log_append_time: log_append_time.unwrap_or(-1),
            }),
            durable: Some((partition.log.clone(), appended.last_offset + 1)),
        },
        Err(PartitionAppendError::Sequence(error)) => {
            tracing::debug!(topic = topic.name(), partition = index, %error, "idempotent batch refused");
            fail(ProduceError::Sequence(error))
        }
        Err(PartitionAppendError::Storage(error)) => {
            tracing::error!(topic = topic.name(), partition = index, %error, "append failed");
            fail(ProduceError::Storage(error))
        }
    }
}

/// Appends every partition's batches now; the answer follows per acks (none for 0;
/// otherwise once the data is visible to consumers, which is after the fsync under the
/// batch flush policy).
pub fn handle(broker: &Arc<Broker>, request: ProduceRequest, version: i16) -> ReplyBody {
    // Every string and records field decoded from the frame is a slice of it. Keeping
    // only the records (topic names copied, the rest dropped here) leaves the records of
    // a one-partition request the frame's sole holder, so `append` can patch them in
    // place.
    let (acks, timeout_ms, topic_data) = {
        let request = request;
        let topic_data: Vec<_> = request
            .topic_data
            .into_iter()
            .map(|t| {
                let partitions: Vec<_> = t
                    .partition_data
                    .into_iter()
                    .map(|p| (p.index, p.records))
                    .collect();
                (topic_name(&t.name), partitions)
            })
            .collect();
        (request.acks, request.timeout_ms, topic_data)
    };
    let sole_partition = matches!(&topic_data[..], [(_, partitions)] if partitions.len() == 1);
    let mut topics = Vec::with_capacity(topic_data.len());
    for (name, partitions) in topic_data {
        let topic = broker.topics.get(&name);
        let outcomes: Vec<Outcome> = partitions
            .into_iter()
            .map(|(index, records)| match &topic {
                _ if !matches!(acks, -1..=1) => {
                    Outcome::failed(index, ProduceError::InvalidAcks(acks))
                }
                Some(topic) => append(broker, topic, index, records, sole_partition),
                None => Outcome::failed(index, ProduceError::UnknownPartition),
            })
            .collect();
        topics.push((name, outcomes));
    }

    if acks == 0 {
        // Nobody waits, but under the batch flush policy the high watermark only moves
        // once the data is durable, so the flush still has to happen.
        for outcome in topics.iter().flat_map(|(_, outcomes)| outcomes) {
            if let Some((log, end)) = outcome.durable.clone() {
                tokio::spawn(async move {
                    if let Err(error) = log.wait_durable(end).await {
                        tracing::error!(%error, "flush after append failed");
                    }
                });
            }
        }
        return ReplyBody::None;
    }

    // acks=1 and acks=all are both answered once the data is visible: a client that
    // reads right after its acknowledged write must find it, as on a one-node Kafka.
    // Under the batch flush policy visible means durable.
    let visible = topics
        .iter()
        .flat_map(|(_, outcomes)| outcomes)
        .filter_map(|o| o.durable.as_ref())
        .all(|(log, end)| log.high_watermark() >= *end);
    if visible {
        return ReplyBody::ready(ResponseKind::Produce(respond(topics, version)));
    }

    let timeout = Duration::from_millis(u64::try_from(timeout_ms).unwrap_or(0));
    ReplyBody::Later(tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        for outcome in topics
            .iter_mut()
            .flat_map(|(_, outcomes)| outcomes.iter_mut())
        {
            let Some((log, end)) = outcome.durable.take() else {
                continue;
            };
            match tokio::time::timeout_at(deadline, log.wait_durable(end)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(%error, "flush failed; acks=all produce fails");
                    outcome.result = Err(ProduceError::Flush(error));
                }
                Err(_) => outcome.result = Err(ProduceError::TimedOut),
            }
        }
        Some(ResponseKind::Produce(respond(topics, version)))
    }))
}

fn respond(topics: Vec<(TopicName, Vec<Outcome>)>, version: i16) -> ProduceResponse {
    let responses = topics
        .into_iter()
        .map(|(name, outcomes)| {
            let partitions = outcomes
                .into_iter()
                .map(|outcome| {
                    let response = PartitionProduceResponse::default().with_index(outcome.index);
                    match outcome.result {
                        Ok(accepted) => {
                            let response = response
                                .with_base_offset(accepted.base_offset)
                                .with_log_append_time_ms(accepted.log_append_time);
                            if version >= 5 {
                                response.with_log_start_offset(accepted.log_start_offset)
                            } else {
                                response
                            }
                        }
                        Err(error) if version >= 8 => {
                            let record_errors = match &error {
                                ProduceError::Records(faults)
                                | ProduceError::Timestamps(faults) => faults
                                    .iter()
                                    .map(|f| {
                                        BatchIndexAndErrorMessage::default()
                                            .with_batch_index(f.index)
                                            .with_batch_index_error_message(Some(str_bytes(
                                                &f.message,
                                            )))
                                    })
                                    .collect(),
                                _ => Vec::new(),
                            };
                            response
                                .with_error_code(error.code().code())
                                .with_base_offset(-1)
                                .with_error_message(Some(str_bytes(&error.to_string())))
                                .with_record_errors(record_errors)
                        }
                        Err(error) => response
                            .with_error_code(error.code().code())
                            .with_base_offset(-1),
                    }
                })
                .collect();
            TopicProduceResponse::default()
                .with_name(name)
                .with_partition_responses(partitions)
        })
        .collect();
    ProduceResponse::default().with_responses(responses)
}
