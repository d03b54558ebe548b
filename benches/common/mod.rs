//! Fixtures shared by the criterion benches: record batches encoded once, the way a
//! client would send them, so the benches time agentlog's work and not the encoder.

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// One uncompressed v2 batch of `records` records with `value_size`-byte values and
/// short keys. Offsets and sequences advance together (`offset - sequence` constant),
/// as the encoder requires of one batch.
pub fn batch(records: usize, value_size: usize) -> Bytes {
    let value: Bytes = vec![b'x'; value_size].into();
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            transactional: false,
            delete_horizon: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(value.clone()),
            headers: Default::default(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encoding a bench batch");
    buf.freeze()
}
