//! Kafka's per-record produce checks: what must hold of every record, not just of its
//! batch. A failure refuses the partition's whole append (nothing of it is written, as
//! in Kafka) and names each offending record by its index in its batch, which Produce
//! v8+ returns as `record_errors` so a client can tell the user which record was bad.

use agentlog_protocol::batch::Batches;
use agentlog_protocol::records::BatchRecords;
use bytes::Bytes;

/// The most a compressed batch may decompress to while its records are checked: a
/// producer's batch may be a zip bomb, and a check must not be the one to explode it.
/// A batch past it is left unchecked (stored, as its CRC is good).
const MAX_DECOMPRESSED: usize = 64 << 20;

/// One record that failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFault {
    /// The record's index in its batch (Kafka's `batch_index`).
    pub index: i32,
    /// Kafka's message for it.
    pub message: String,
}

/// The summary Kafka gives for record faults, as the partition's error message.
pub fn summary(faults: &[RecordFault]) -> String {
    let shown: Vec<String> = faults
        .iter()
        .take(3)
        .map(|f| format!("{{batchIndex={}, message={}}}", f.index, f.message))
        .collect();
    format!(
        "One or more records have been rejected due to {} record errors in total, and only \
         showing the first three errors at most: [{}]",
        faults.len(),
        shown.join(", ")
    )
}

/// A compacted topic keeps the latest record *per key*, so a keyless record there has
/// no meaning: Kafka refuses it, and so do we. `records` is already validated as whole
/// v2 batches; a batch whose records cannot be read (a bad compressed payload) is left
/// to the batch checks, which have accepted it as Kafka does (by CRC).
pub fn keyless_in_compacted(records: &Bytes, topic: &str, partition: i32) -> Vec<RecordFault> {
    let mut faults = Vec::new();
    for (_, range) in Batches::new(records) {
        let Ok(batch) = BatchRecords::new(records.slice(range), MAX_DECOMPRESSED) else {
            continue;
        };
        for (index, record) in (0i32..).zip(batch) {
            if record.is_ok_and(|r| r.key.is_none()) {
                faults.push(RecordFault {
                    index,
                    message: format!(
                        "Compacted topic cannot accept message without key in topic \
                         partition {topic}-{partition}."
                    ),
                });
            }
        }
    }
    faults
}

/// The timestamps a CreateTime topic accepts, from `message.timestamp.before.max.ms`
/// and `message.timestamp.after.max.ms` around the broker's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampBounds {
    /// The broker's clock, in ms since the epoch.
    pub now: i64,
    /// How far in the past a record may be.
    pub before_max_ms: i64,
    /// How far in the future a record may be.
    pub after_max_ms: i64,
}

impl TimestampBounds {
    fn lowest(&self) -> i64 {
        self.now.saturating_sub(self.before_max_ms)
    }

    fn highest(&self) -> i64 {
        self.now.saturating_add(self.after_max_ms)
    }
}

/// Kafka's timestamp check of CreateTime records: a record stamped further than the
/// topic allows from the broker's clock is refused with INVALID_TIMESTAMP. The batch
/// header's max timestamp settles the usual case (no lower bound set, nothing in the
/// future) without reading a record; otherwise records are read, as Kafka does.
pub fn timestamps_out_of_range(records: &Bytes, bounds: TimestampBounds) -> Vec<RecordFault> {
    let (lowest, highest) = (bounds.lowest(), bounds.highest());
    let mut faults = Vec::new();
    for (header, range) in Batches::new(records) {
        let lower_bound_set = bounds.before_max_ms != i64::MAX;
        if header.max_timestamp <= highest && !lower_bound_set {
            continue;
        }
        let Ok(batch) = BatchRecords::new(records.slice(range), MAX_DECOMPRESSED) else {
            continue;
        };
        for (index, record) in (0i32..).zip(batch) {
            let Ok(record) = record else { continue };
            let ts = record.timestamp;
            if ts != NO_TIMESTAMP && (ts < lowest || ts > highest) {
                faults.push(RecordFault {
                    index,
                    message: format!(
                        "Timestamp {ts} of message with offset {} is out of range. The \
                         timestamp should be within [{lowest}, {highest}]",
                        record.offset
                    ),
                });
            }
        }
    }
    faults
}

/// Kafka's "no timestamp" (a record from before timestamps existed).
const NO_TIMESTAMP: i64 = -1;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use agentlog_protocol::fixtures::{encode, record};
    use bytes::Bytes;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, ResponseKind};
    use kafka_protocol::records::Compression;

    use crate::broker::Broker;
    use crate::config::BrokerConfig;
    use crate::handlers::{produce, topic_name, ReplyBody};

    /// A batch of a keyed record, a keyless one, and a keyed tombstone, `codec`-encoded.
    fn batch(codec: Compression) -> Bytes {
        let key = || Some(Bytes::from_static(b"k"));
        let records = [
            record(0, key(), Some(Bytes::from_static(b"v")), 1),
            record(1, None, Some(Bytes::from_static(b"no key")), 1),
            record(2, key(), None, 1),
        ];
        encode(&records, codec).freeze()
    }

    #[test]
    fn out_of_range_timestamps_are_named_by_index() {
        let now = 1_700_000_000_000;
        let records = [
            record(0, None, None, now),
            record(1, None, None, now + 7_200_000),
            record(2, None, None, now - 1_000_000),
        ];
        let batch = encode(&records, Compression::None).freeze();
        let bounds = |before_max_ms, after_max_ms| super::TimestampBounds {
            now,
            before_max_ms,
            after_max_ms,
        };
        let faults = super::timestamps_out_of_range(&batch, bounds(i64::MAX, 3_600_000));
        assert_eq!(faults.len(), 1);
        assert_eq!(faults[0].index, 1);
        assert!(faults[0].message.starts_with(&format!(
            "Timestamp {} of message with offset 1 is out of range.",
            now + 7_200_000
        )));
        let faults = super::timestamps_out_of_range(&batch, bounds(1000, i64::MAX));
        assert_eq!(faults.iter().map(|f| f.index).collect::<Vec<_>>(), [2]);
        assert!(super::timestamps_out_of_range(&batch, bounds(i64::MAX, i64::MAX)).is_empty());
    }

    #[test]
    fn keyless_records_are_named_by_index_even_when_compressed() {
        for codec in [Compression::None, Compression::Zstd] {
            let faults = super::keyless_in_compacted(&batch(codec), "c", 3);
            let indexes: Vec<i32> = faults.iter().map(|f| f.index).collect();
            assert_eq!(indexes, [1], "{codec:?}");
            assert_eq!(
                faults[0].message,
                "Compacted topic cannot accept message without key in topic partition c-3."
            );
        }
    }

    async fn produce(broker: &Arc<Broker>, topic: &str, version: i16) -> ResponseKind {
        let request = ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch(Compression::None)))])]);
        match produce::handle(broker, request, version) {
            ReplyBody::Ready(body) => *body,
            ReplyBody::Later(task) => task.await.unwrap().unwrap(),
            ReplyBody::None => panic!("no answer"),
        }
    }

    /// Kafka's answer to a keyless record on a compacted topic: INVALID_RECORD for the
    /// partition, the record's index in `record_errors` (v8+), and nothing written; a
    /// topic that only deletes takes the same batch.
    #[tokio::test]
    async fn a_compacted_topic_refuses_the_whole_batch_and_names_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(Broker::open(BrokerConfig::with_data_dir(dir.path())).unwrap());
        let compacted = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        let topic = broker.topics.create("c", 1, compacted).unwrap();
        broker.topics.create("d", 1, BTreeMap::new()).unwrap();

        for version in [3, 8, 9] {
            let ResponseKind::Produce(response) = produce(&broker, "c", version).await else {
                panic!("wrong response kind")
            };
            let partition = &response.responses[0].partition_responses[0];
            assert_eq!(partition.error_code, 87, "INVALID_RECORD, v{version}");
            let indexes: Vec<i32> = partition
                .record_errors
                .iter()
                .map(|e| e.batch_index)
                .collect();
            let expected: &[i32] = if version >= 8 { &[1] } else { &[] };
            assert_eq!(indexes, expected, "v{version}");
        }
        assert_eq!(
            topic.partitions[0].log.log_end_offset(),
            0,
            "nothing written"
        );

        let ResponseKind::Produce(response) = produce(&broker, "d", 9).await else {
            panic!("wrong response kind")
        };
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
}
