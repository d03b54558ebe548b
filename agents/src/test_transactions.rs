//! A partition holding every transaction outcome, for the tests of in-process readers
//! (the embedded backend, the uplink): each must see what a read_committed Kafka
//! consumer sees.

use agentlog_broker::partition::Partition;
use agentlog_protocol::fixtures::{encode, from_producer, record};
use bytes::Bytes;
use kafka_protocol::records::Compression;

/// What [`write_outcomes`] leaves for a read_committed reader, in order.
pub const COMMITTED: [&str; 2] = ["plain", "committed"];

/// The value of the record in the transaction [`write_outcomes`] leaves open.
pub const OPEN: &str = "open";

/// The producer whose transaction [`write_outcomes`] leaves open.
pub const OPEN_PRODUCER: i64 = 9;

fn transactional(partition: &Partition, producer_id: i64, values: &[&str]) {
    let records: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(i, value)| {
            let plain = record(
                i32::try_from(i).unwrap(),
                None,
                Some(Bytes::copy_from_slice(value.as_bytes())),
                1_700_000_000_000,
            );
            from_producer(plain, producer_id, 0, 0, true)
        })
        .collect();
    partition
        .append(encode(&records, Compression::None), None)
        .unwrap();
}

/// Writes, interleaved as concurrent producers would: a plain record, an aborted
/// transaction of two records, a committed one, and a transaction left open (by
/// [`OPEN_PRODUCER`]) after them.
pub fn write_outcomes(partition: &Partition) {
    let plain = record(
        0,
        None,
        Some(Bytes::from_static(b"plain")),
        1_700_000_000_000,
    );
    partition
        .append(encode(&[plain], Compression::None), None)
        .unwrap();
    transactional(partition, 7, &["aborted-1", "aborted-2"]);
    transactional(partition, 8, &["committed"]);
    partition
        .append_marker(7, 0, false, 0, 1_700_000_000_001)
        .unwrap();
    partition
        .append_marker(8, 0, true, 0, 1_700_000_000_002)
        .unwrap();
    transactional(partition, OPEN_PRODUCER, &[OPEN]);
    // The high watermark moves once appends are durable (under every flush policy).
    partition.log.flush().unwrap();
}

/// Commits [`OPEN_PRODUCER`]'s transaction.
pub fn commit_open(partition: &Partition) {
    partition
        .append_marker(OPEN_PRODUCER, 0, true, 0, 1_700_000_000_003)
        .unwrap();
    partition.log.flush().unwrap();
}

/// The values of `events`, as text.
pub fn values(events: &[crate::event::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}
