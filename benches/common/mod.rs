//! Fixtures shared by the criterion benches: record batches encoded once, the way a
//! client would send them, so the benches time agentlog's work and not the encoder.

use agentlog_protocol::fixtures;
use bytes::Bytes;
use kafka_protocol::records::Compression;

/// One uncompressed v2 batch of `records` records with `value_size`-byte values and
/// short keys.
pub fn batch(records: usize, value_size: usize) -> Bytes {
    let value: Bytes = vec![b'x'; value_size].into();
    let records: Vec<_> = (0..records as i32)
        .map(|i| {
            fixtures::record(
                i,
                Some(Bytes::from(format!("key-{i}"))),
                Some(value.clone()),
                1_700_000_000_000 + i64::from(i),
            )
        })
        .collect();
    fixtures::encode(&records, Compression::None).freeze()
}
