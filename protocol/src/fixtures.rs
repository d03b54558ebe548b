//! Record batches for tests and benches, encoded the way a producer would encode them.
//!
//! One place for what every test needs: a client-style batch (base offset 0, and base
//! sequence -1 unless a producer id is set, as clients send). `kafka-protocol`'s encoder
//! starts a new batch wherever `offset - sequence` changes, so sequences here always
//! advance with offsets.
//! Compiled only for this crate's tests and with the `fixtures` feature.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// The `index`-th record of a plain producer's batch (no producer id, CreateTime).
pub fn record(index: i32, key: Option<Bytes>, value: Option<Bytes>, timestamp: i64) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: i64::from(index),
        sequence: index - 1,
        timestamp,
        key,
        value,
        headers: Default::default(),
    }
}

/// The same record sent by an idempotent (and, with `transactional`, transactional)
/// producer whose batch starts at `first_sequence`.
pub fn from_producer(
    record: Record,
    producer_id: i64,
    producer_epoch: i16,
    first_sequence: i32,
    transactional: bool,
) -> Record {
    Record {
        producer_id,
        producer_epoch,
        sequence: first_sequence + record.sequence + 1,
        transactional,
        ..record
    }
}

/// Encodes `records` as one v2 batch (several if their producer fields differ).
///
/// # Panics
/// If `kafka-protocol` cannot encode them (a fixture bug, never input).
pub fn encode(records: &[Record], compression: Compression) -> BytesMut {
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, records, &options)
        .unwrap_or_else(|error| panic!("encoding a fixture batch: {error}"));
    buf
}

/// Marks a valid uncompressed batch as zstd-compressed and recomputes its CRC: a batch
/// the broker stores (it checks only the CRC, as Kafka does for v2 batches) but that no
/// consumer can decode, since its records are not zstd.
pub fn undecompressable(mut batch: BytesMut) -> BytesMut {
    use crate::batch::{ATTRIBUTES, CRC};
    const ZSTD: i16 = 4;
    let attributes = i16::from_be_bytes([batch[ATTRIBUTES], batch[ATTRIBUTES + 1]]) | ZSTD;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    batch
}
