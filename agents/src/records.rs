//! Records out of stored batches, and batches out of records.
//!
//! Reading is zero-copy for uncompressed batches: every key, value and header handed to
//! an agent is a `Bytes` slice of the batch the log returned (so of the tail cache or of
//! one positioned read), never a copy. A compressed batch is decompressed once, and its
//! records are slices of that one decompressed buffer. Everything here parses bytes that
//! a producer wrote, so malformed input is an error, never a panic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use agentlog_broker::partition::CommittedRead;
use agentlog_protocol::batch::{BatchHeader, Batches, Compression};
use agentlog_protocol::records::BatchRecords;
use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as Codec, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use thiserror::Error;

use crate::event::{Event, Header, OutRecord};

static DECOMPRESSIONS: AtomicU64 = AtomicU64::new(0);

/// How many compressed batches this process has decompressed for agents: tests use it
/// to prove decompression happens once per batch, never once per record.
pub fn decompressions() -> u64 {
    DECOMPRESSIONS.load(Ordering::Relaxed)
}

/// Why stored bytes did not yield records.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// A record's framing is inconsistent with its batch.
    #[error("malformed record number {position} of the batch at offset {base_offset}")]
    Malformed {
        /// Base offset of the batch.
        base_offset: i64,
        /// The record's index in the batch.
        position: usize,
    },
    /// The codec is unknown or the data does not decompress.
    #[error("cannot decompress batch at offset {base_offset}: {reason}")]
    Decompress {
        /// Base offset of the batch.
        base_offset: i64,
        /// Why.
        reason: String,
    },
}

/// Why records could not be encoded into a batch.
#[derive(Debug, Error)]
#[error("cannot encode record batch: {0}")]
pub struct EncodeError(String);

/// The most a compressed batch may decompress to before it is refused: a producer could
/// store a zip bomb, and an agent must not be the one to explode it.
pub const MAX_DECOMPRESSED_BATCH: usize = 64 << 20;

/// Appends to `out` every record of the whole batches in `bytes` whose offset is at least
/// `from`, and returns the offset after the last batch seen (the next position to read).
/// Control batches (transaction markers) are skipped, as consumers do. Record parsing is
/// `agentlog_protocol::records`: keys, values and headers stay slices of the batch.
///
/// A batch that cannot be decoded becomes one [`Event::undecodable`] event carrying its
/// raw bytes instead of its records (none of which are emitted), so reading goes on.
///
/// This is what a read_uncommitted consumer sees; in-process readers of a broker's
/// partitions use [`decode_committed`].
pub fn decode_batches(
    topic: &Arc<str>,
    partition: i32,
    bytes: &Bytes,
    from: i64,
    out: &mut Vec<Event>,
) -> i64 {
    decode_skipping(topic, partition, bytes, from..=i64::MAX, out, |_| false)
}

/// [`decode_batches`] of the records in `offsets` only: a share-group member acquiring
/// a few records of a large batch decodes those, not the whole batch.
pub fn decode_range(
    topic: &Arc<str>,
    partition: i32,
    bytes: &Bytes,
    offsets: std::ops::RangeInclusive<i64>,
    out: &mut Vec<Event>,
) {
    decode_skipping(topic, partition, bytes, offsets, out, |_| false);
}

/// [`decode_batches`] as a read_committed consumer sees a read: the batches of aborted
/// transactions are skipped (the read already ends at the last stable offset). Agents
/// and the uplink read this way, as the Kafka backend's consumers do, so an aborted
/// transaction's records never reach a handler or the remote cluster.
pub fn decode_committed(
    topic: &Arc<str>,
    partition: i32,
    read: &CommittedRead,
    from: i64,
    out: &mut Vec<Event>,
) -> i64 {
    decode_skipping(
        topic,
        partition,
        &read.read.bytes,
        from..=i64::MAX,
        out,
        |header| read.is_aborted(header),
    )
}

/// Decodes the batches `skip` does not reject (control batches are always skipped).
fn decode_skipping(
    topic: &Arc<str>,
    partition: i32,
    bytes: &Bytes,
    offsets: std::ops::RangeInclusive<i64>,
    out: &mut Vec<Event>,
    skip: impl Fn(&BatchHeader) -> bool,
) -> i64 {
    let (from, to) = (*offsets.start(), *offsets.end());
    let mut next = from;
    for (header, range) in Batches::new(bytes) {
        next = next.max(header.next_offset());
        if header.is_control() || header.last_offset() < from || skip(&header) {
            continue;
        }
        if header.base_offset > to {
            break;
        }
        let before = out.len();
        let batch = bytes.slice(range);
        if let Err(error) = decode_batch(
            topic,
            partition,
            &header,
            batch.clone(),
            offsets.clone(),
            out,
        ) {
            out.truncate(before);
            out.push(Event {
                topic: topic.clone(),
                partition,
                offset: header.base_offset.max(from),
                timestamp: header.max_timestamp,
                key: None,
                value: Some(batch),
                headers: Vec::new(),
                undecodable: Some(error.to_string()),
            });
        }
    }
    next
}

/// Appends the records of one batch at or after `from` to `out`.
fn decode_batch(
    topic: &Arc<str>,
    partition: i32,
    header: &BatchHeader,
    batch: Bytes,
    offsets: std::ops::RangeInclusive<i64>,
    out: &mut Vec<Event>,
) -> Result<(), DecodeError> {
    let (from, to) = (*offsets.start(), *offsets.end());
    let base_offset = header.base_offset;
    let records =
        BatchRecords::new(batch, MAX_DECOMPRESSED_BATCH).map_err(|e| DecodeError::Decompress {
            base_offset,
            reason: e.to_string(),
        })?;
    if header.compression() != Compression::None {
        DECOMPRESSIONS.fetch_add(1, Ordering::Relaxed);
    }
    for (position, record) in records.enumerate() {
        let record = record.map_err(|_| DecodeError::Malformed {
            base_offset,
            position,
        })?;
        if record.offset < from {
            continue;
        }
        if record.offset > to {
            break;
        }
        let headers = record
            .headers()
            .map(|(name, value)| Header { name, value })
            .collect();
        out.push(Event {
            topic: topic.clone(),
            partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers,
            undecodable: None,
        });
    }
    Ok(())
}

/// Encodes records as one v2 batch (offsets from 0; the log assigns the real ones), with
/// kafka-protocol's `RecordBatchEncoder`, so in-process emits are stored exactly as a
/// producer's batch would be.
pub fn encode_batch(records: &[OutRecord], compression: Codec) -> Result<BytesMut, EncodeError> {
    encode_batch_as(records, compression, None)
}

/// Who writes a transactional batch: the producer id and epoch the transaction
/// coordinator handed out, and the sequence of the batch's first record in its partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnProducer {
    /// Producer id.
    pub producer_id: i64,
    /// Producer epoch (older epochs are fenced).
    pub epoch: i16,
    /// Sequence of the first record (per partition, from 0 for each epoch).
    pub base_sequence: i32,
}

/// [`encode_batch`], as a transactional producer's batch when `producer` is given: the
/// exactly-once agent path appends batches a wire client's transaction would send.
pub fn encode_batch_as(
    records: &[OutRecord],
    compression: Codec,
    producer: Option<TxnProducer>,
) -> Result<BytesMut, EncodeError> {
    let (producer_id, epoch, base_sequence) =
        producer.map_or((-1, -1, -1), |p| (p.producer_id, p.epoch, p.base_sequence));
    let encoded: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(i, r)| Record {
            transactional: producer.is_some(),
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder starts a new batch whenever `offset - sequence` changes; keeping
            // it constant (and the base sequence at -1, "none", without a producer)
            // gives one batch.
            sequence: base_sequence.wrapping_add(i as i32),
            timestamp: r.timestamp,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r
                .headers
                .iter()
                .map(|(name, value)| (StrBytes::from_string(name.clone()), Some(value.clone())))
                .collect(),
        })
        .collect();
    let mut buf = BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression,
    };
    RecordBatchEncoder::encode(&mut buf, &encoded, &options)
        .map_err(|e| EncodeError(e.to_string()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(value: &str) -> OutRecord {
        OutRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers: vec![("h".to_string(), Bytes::from_static(b"v"))],
            timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn round_trips_and_slices_the_batch() {
        let batch = encode_batch(&[out("a"), out("bb")], Codec::None)
            .unwrap()
            .freeze();
        let topic: Arc<str> = Arc::from("t");
        let mut events = Vec::new();
        let next = decode_batches(&topic, 0, &batch, 0, &mut events);
        assert_eq!(next, 2);
        let headers: Vec<_> = Batches::new(&batch).map(|(h, _)| h).collect();
        assert_eq!(headers.len(), 1, "one batch per emit");
        assert_eq!(headers[0].base_sequence, -1);
        assert_eq!(headers[0].records_count, 2);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].value.as_deref(), Some(&b"bb"[..]));
        assert_eq!(events[1].offset, 1);
        assert_eq!(events[0].headers[0].name, Bytes::from_static(b"h"));
        let value = events[1].value.clone().unwrap();
        let range = batch.as_ptr() as usize..batch.as_ptr() as usize + batch.len();
        assert!(range.contains(&(value.as_ptr() as usize)));
        // Skipping records below `from`.
        events.clear();
        decode_batches(&topic, 0, &batch, 1, &mut events);
        assert_eq!(events.len(), 1);
    }

    /// A batch whose CRC is right but whose zstd payload is not zstd at all.
    fn undecompressable(values: &[&str]) -> BytesMut {
        let records: Vec<_> = values.iter().map(|v| out(v)).collect();
        agentlog_protocol::fixtures::undecompressable(encode_batch(&records, Codec::None).unwrap())
    }

    #[test]
    fn an_undecodable_batch_becomes_one_event_and_reading_goes_on() {
        let mut bytes = BytesMut::new();
        for (base, part) in [
            (0i64, encode_batch(&[out("a")], Codec::None).unwrap()),
            (1, undecompressable(&["x", "y"])),
            (3, encode_batch(&[out("b")], Codec::None).unwrap()),
        ] {
            let mut part = part;
            agentlog_protocol::batch::set_base_offset(&mut part, base);
            bytes.extend_from_slice(&part);
        }
        let bytes = bytes.freeze();
        let topic: Arc<str> = Arc::from("t");
        let mut events = Vec::new();
        assert_eq!(decode_batches(&topic, 0, &bytes, 0, &mut events), 4);
        let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
        assert_eq!(offsets, vec![0, 1, 3]);
        assert!(events[0].undecodable.is_none() && events[2].undecodable.is_none());
        let bad = &events[1];
        assert!(
            bad.undecodable
                .as_deref()
                .is_some_and(|r| r.contains("decompress")),
            "{:?}",
            bad.undecodable
        );
        // The raw batch, untouched, so a dead-letter consumer can inspect or repair it.
        let raw: Vec<(_, _)> = Batches::new(&bytes).collect();
        assert_eq!(bad.value.as_deref(), Some(&bytes[raw[1].1.clone()]));
        // Read from inside the bad batch: its event starts at the read position.
        events.clear();
        decode_batches(&topic, 0, &bytes, 2, &mut events);
        assert_eq!(
            events.iter().map(|e| e.offset).collect::<Vec<_>>(),
            vec![2, 3]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let batch = encode_batch(&[out("a"), out("bb")], Codec::None).unwrap();
        let topic: Arc<str> = Arc::from("t");
        for cut in 0..batch.len() {
            let mut bytes = batch.clone();
            // Corrupt one byte of the records section at a time.
            if cut >= agentlog_protocol::batch::HEADER_LEN {
                bytes[cut] = 0xff;
            }
            let _ = decode_batches(&topic, 0, &bytes.freeze(), 0, &mut Vec::new());
            let _ = decode_batches(
                &topic,
                0,
                &batch.clone().freeze().slice(..cut),
                0,
                &mut Vec::new(),
            );
        }
    }
}
