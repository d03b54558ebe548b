//! Records inside stored batches, read without copying.
//!
//! In-process readers (agents) get each record's key, value and headers as `Bytes`
//! slices of the batch they came from: for an uncompressed batch that is the very memory
//! the log holds, so reading allocates nothing per record. A compressed batch is
//! decompressed once, into one buffer that every record of the batch then slices, and
//! never past a size limit (a batch is a producer's input, and may be a zip bomb).
//!
//! Nothing here trusts a count or a length from the bytes: the record count in the
//! header only bounds the iteration, every length is checked against what is there, and
//! nothing is allocated from a length before the bytes are seen.

use std::io::Read;

use bytes::{Buf, Bytes};
use thiserror::Error;

use crate::batch::{BatchError, BatchHeader, Batches, Compression, HEADER_LEN};

/// Why records could not be read from a batch.
#[derive(Debug, Error)]
pub enum RecordError {
    /// The batch header is unusable.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A record's fields run past its end, or a varint is malformed.
    #[error("malformed record at index {index}: {what}")]
    Malformed {
        /// The record's position in its batch.
        index: i32,
        /// What was wrong.
        what: &'static str,
    },
    /// The batch did not decompress.
    #[error("cannot decompress {codec:?} batch: {message}")]
    Decompress {
        /// The codec.
        codec: Compression,
        /// What the decoder said.
        message: String,
    },
    /// The batch decompresses to more than the caller allows.
    #[error("batch decompresses to more than {limit} bytes")]
    TooLarge {
        /// The limit in force.
        limit: usize,
    },
}

/// One record, its byte fields slicing the batch it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The record's offset in its partition.
    pub offset: i64,
    /// Its timestamp (the batch's append time for LogAppendTime topics).
    pub timestamp: i64,
    /// Its key; `None` is a null key.
    pub key: Option<Bytes>,
    /// Its value; `None` is a null value (a tombstone).
    pub value: Option<Bytes>,
    headers: Bytes,
    header_count: usize,
}

impl Record {
    /// The record's headers, parsed as they are iterated.
    pub fn headers(&self) -> Headers {
        Headers {
            buf: self.headers.clone(),
            remaining: self.header_count,
        }
    }

    /// The value of the first header named `key`.
    pub fn header(&self, key: &str) -> Option<Bytes> {
        self.headers()
            .find(|(name, _)| name.as_ref() == key.as_bytes())
            .and_then(|(_, value)| value)
    }
}

/// Iterates a record's headers as (name, value) pairs; stops at the first malformed one.
#[derive(Debug, Clone)]
pub struct Headers {
    buf: Bytes,
    remaining: usize,
}

impl Iterator for Headers {
    type Item = (Bytes, Option<Bytes>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let name = read_bytes(&mut self.buf).ok().flatten()?;
        let value = read_bytes(&mut self.buf).ok()?;
        Some((name, value))
    }
}

/// The records of one batch, in order.
#[derive(Debug)]
pub struct BatchRecords {
    header: BatchHeader,
    body: Bytes,
    index: i32,
    failed: bool,
}

impl BatchRecords {
    /// Opens one whole batch (as stored, base offset assigned). Control batches yield no
    /// records. A compressed batch is decompressed here, once, up to `max_decompressed`
    /// bytes.
    pub fn new(batch: Bytes, max_decompressed: usize) -> Result<BatchRecords, RecordError> {
        let header = BatchHeader::parse(&batch)?;
        let end = header.total_len();
        if batch.len() < end {
            return Err(BatchError::Truncated {
                needed: end,
                available: batch.len(),
            }
            .into());
        }
        let compressed = batch.slice(HEADER_LEN..end);
        let body = if header.is_control() {
            Bytes::new()
        } else {
            decompress(header.compression(), compressed, max_decompressed)?
        };
        Ok(BatchRecords {
            header,
            body,
            index: 0,
            failed: false,
        })
    }

    /// The batch's header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    fn next_record(&mut self) -> Result<Record, RecordError> {
        let index = self.index;
        let malformed = |what| RecordError::Malformed { index, what };
        let length = read_varint(&mut self.body).ok_or(malformed("length"))?;
        let length = usize::try_from(length).map_err(|_| malformed("negative length"))?;
        if length > self.body.len() {
            return Err(malformed("length past the end of the batch"));
        }
        let mut record = self.body.split_to(length);
        if !record.has_remaining() {
            return Err(malformed("empty record"));
        }
        record.advance(1); // attributes: unused in v2
        let timestamp_delta = read_varlong(&mut record).ok_or(malformed("timestamp delta"))?;
        let offset_delta = read_varint(&mut record).ok_or(malformed("offset delta"))?;
        let key = read_bytes(&mut record).map_err(|_| malformed("key"))?;
        let value = read_bytes(&mut record).map_err(|_| malformed("value"))?;
        let header_count = read_varint(&mut record).ok_or(malformed("header count"))?;
        let header_count = usize::try_from(header_count).map_err(|_| malformed("header count"))?;
        let timestamp = if self.header.is_log_append_time() {
            self.header.max_timestamp
        } else {
            self.header.base_timestamp.wrapping_add(timestamp_delta)
        };
        Ok(Record {
            offset: self
                .header
                .base_offset
                .wrapping_add(i64::from(offset_delta)),
            timestamp,
            key,
            value,
            headers: record,
            header_count,
        })
    }
}

impl Iterator for BatchRecords {
    type Item = Result<Record, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.index >= self.header.records_count || self.body.is_empty() {
            return None;
        }
        let record = self.next_record();
        self.index += 1;
        self.failed = record.is_err();
        Some(record)
    }
}

/// Every record in a buffer of whole batches (a fetch or log read), batch after batch.
pub fn records(
    log_bytes: Bytes,
    max_decompressed: usize,
) -> impl Iterator<Item = Result<Record, RecordError>> {
    let ranges: Vec<_> = Batches::new(&log_bytes).map(|(_, range)| range).collect();
    ranges.into_iter().flat_map(move |range| {
        let batch: Box<dyn Iterator<Item = Result<Record, RecordError>>> =
            match BatchRecords::new(log_bytes.slice(range), max_decompressed) {
                Ok(batch) => Box::new(batch),
                Err(error) => Box::new(std::iter::once(Err(error))),
            };
        batch
    })
}

fn decompress(codec: Compression, compressed: Bytes, limit: usize) -> Result<Bytes, RecordError> {
    let fail = |message: String| RecordError::Decompress { codec, message };
    let mut out = Vec::new();
    match codec {
        Compression::None => return Ok(compressed),
        Compression::Gzip => read_limited(
            flate2::read::GzDecoder::new(&compressed[..]),
            limit,
            &mut out,
        )
        .map_err(|e| fail(e.to_string()))?,
        Compression::Lz4 => {
            let decoder = lz4::Decoder::new(&compressed[..]).map_err(|e| fail(e.to_string()))?;
            read_limited(decoder, limit, &mut out).map_err(|e| fail(e.to_string()))?
        }
        Compression::Zstd => {
            let decoder = zstd::stream::read::Decoder::new(&compressed[..])
                .map_err(|e| fail(e.to_string()))?;
            read_limited(decoder, limit, &mut out).map_err(|e| fail(e.to_string()))?
        }
        Compression::Snappy => snappy(&compressed, limit, &mut out).map_err(|e| match e {
            SnappyError::TooLarge => RecordError::TooLarge { limit },
            SnappyError::Invalid(message) => fail(message),
        })?,
        Compression::Unknown(id) => return Err(fail(format!("unknown codec id {id}"))),
    }
    if out.len() > limit {
        return Err(RecordError::TooLarge { limit });
    }
    Ok(Bytes::from(out))
}

/// Reads at most `limit + 1` bytes, so that "exactly at the limit" and "over it" differ.
fn read_limited(reader: impl Read, limit: usize, out: &mut Vec<u8>) -> std::io::Result<()> {
    reader.take(limit as u64 + 1).read_to_end(out).map(|_| ())
}

enum SnappyError {
    TooLarge,
    Invalid(String),
}

/// Kafka's snappy: xerial-framed blocks (what the Java client and librdkafka send), or a
/// single raw snappy block.
fn snappy(compressed: &[u8], limit: usize, out: &mut Vec<u8>) -> Result<(), SnappyError> {
    const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
    const XERIAL_HEADER_LEN: usize = 16;
    let decode_block = |block: &[u8], out: &mut Vec<u8>| -> Result<(), SnappyError> {
        let len =
            snap::raw::decompress_len(block).map_err(|e| SnappyError::Invalid(e.to_string()))?;
        if out.len().saturating_add(len) > limit {
            return Err(SnappyError::TooLarge);
        }
        let start = out.len();
        out.resize(start + len, 0);
        snap::raw::Decoder::new()
            .decompress(block, &mut out[start..])
            .map_err(|e| SnappyError::Invalid(e.to_string()))?;
        Ok(())
    };
    if !compressed.starts_with(XERIAL_MAGIC) {
        return decode_block(compressed, out);
    }
    let mut rest = compressed.get(XERIAL_HEADER_LEN..).unwrap_or_default();
    while !rest.is_empty() {
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(SnappyError::Invalid("truncated block length".into()));
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some(block) = tail.get(..len) else {
            return Err(SnappyError::Invalid("truncated block".into()));
        };
        decode_block(block, out)?;
        rest = &tail[len..];
    }
    Ok(())
}

fn read_unsigned_varint(buf: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        if !buf.has_remaining() {
            return None;
        }
        let byte = buf.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// A zigzag varint, as record fields are encoded.
fn read_varint(buf: &mut Bytes) -> Option<i32> {
    let raw = read_unsigned_varint(buf)?;
    let raw = u32::try_from(raw).ok()?;
    Some(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// A zigzag varlong.
fn read_varlong(buf: &mut Bytes) -> Option<i64> {
    let raw = read_unsigned_varint(buf)?;
    Some(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// A varint-length-prefixed byte field; length -1 is null.
fn read_bytes(buf: &mut Bytes) -> Result<Option<Bytes>, ()> {
    let len = read_varint(buf).ok_or(())?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if len > buf.len() {
        return Err(());
    }
    Ok(Some(buf.split_to(len)))
}

/// Bytes of a buffer that `records` will slice, for tests that prove nothing was copied.
pub fn contains(outer: &[u8], inner: &[u8]) -> bool {
    let outer = outer.as_ptr_range();
    let inner = inner.as_ptr_range();
    outer.start <= inner.start && inner.end <= outer.end
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use bytes::BytesMut;
    use kafka_protocol::records::Compression as KpCompression;

    fn encode(compression: KpCompression, count: i32) -> Bytes {
        let records: Vec<_> = (0..count)
            .map(|i| {
                let mut record = fixtures::record(
                    i,
                    (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                    Some(Bytes::from(format!("value number {i} {}", "x".repeat(50)))),
                    1_000 + i64::from(i) * 10,
                );
                record.headers.insert(
                    "trace".to_string().into(),
                    Some(Bytes::from(format!("t{i}"))),
                );
                record.headers.insert("empty".to_string().into(), None);
                record
            })
            .collect();
        let mut batch = fixtures::encode(&records, compression).to_vec();
        crate::batch::set_base_offset(&mut batch, 100);
        Bytes::from(batch)
    }

    fn check(compression: KpCompression) -> Vec<Record> {
        let batch = encode(compression, 20);
        let records: Vec<Record> = BatchRecords::new(batch, 1 << 20)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        assert_eq!(records.len(), 20);
        for (i, record) in records.iter().enumerate() {
            let i = i as i64;
            assert_eq!(record.offset, 100 + i);
            assert_eq!(record.timestamp, 1_000 + i * 10);
            assert_eq!(
                record.key,
                (i % 2 == 0).then(|| Bytes::from(format!("key-{i}")))
            );
            assert_eq!(
                record.value.as_deref(),
                Some(format!("value number {i} {}", "x".repeat(50)).as_bytes())
            );
            assert_eq!(record.header("trace"), Some(Bytes::from(format!("t{i}"))));
            assert_eq!(record.headers().count(), 2);
        }
        records
    }

    #[test]
    fn uncompressed_values_are_slices_of_the_stored_batch() {
        let batch = encode(KpCompression::None, 5);
        for record in BatchRecords::new(batch.clone(), 1 << 20).unwrap() {
            let value = record.unwrap().value.unwrap();
            assert!(contains(&batch, &value), "value was copied");
        }
        check(KpCompression::None);
    }

    #[test]
    fn every_codec_decodes_to_the_same_records() {
        let plain = check(KpCompression::None);
        for codec in [
            KpCompression::Gzip,
            KpCompression::Snappy,
            KpCompression::Lz4,
            KpCompression::Zstd,
        ] {
            assert_eq!(check(codec), plain, "{codec:?}");
        }
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        for codec in [
            KpCompression::Gzip,
            KpCompression::Snappy,
            KpCompression::Lz4,
            KpCompression::Zstd,
        ] {
            let batch = encode(codec, 50);
            assert!(
                matches!(
                    BatchRecords::new(batch, 100),
                    Err(RecordError::TooLarge { .. }) | Err(RecordError::Decompress { .. })
                ),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn a_lying_record_count_or_length_is_an_error_not_an_allocation() {
        let mut batch = encode(KpCompression::None, 3).to_vec();
        // Claim 2^31-1 records: iteration ends with the bytes, nothing is preallocated.
        batch[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let read: Vec<_> = BatchRecords::new(Bytes::from(batch), 1 << 20)
            .unwrap()
            .collect();
        assert_eq!(read.len(), 3);
        assert!(read.iter().all(Result::is_ok));

        let mut batch = encode(KpCompression::None, 3).to_vec();
        // First record's length: zigzag 0x1ffffe = 1 MiB, far past the end.
        batch[HEADER_LEN..HEADER_LEN + 3].copy_from_slice(&[0xfe, 0xff, 0x7f]);
        let mut records = BatchRecords::new(Bytes::from(batch), 1 << 20).unwrap();
        assert!(matches!(
            records.next(),
            Some(Err(RecordError::Malformed { .. }))
        ));
        assert!(records.next().is_none());
    }

    #[test]
    fn records_walks_every_batch_of_a_log_read() {
        let mut log = BytesMut::new();
        log.extend_from_slice(&encode(KpCompression::None, 3));
        log.extend_from_slice(&encode(KpCompression::Zstd, 2));
        let offsets: Vec<i64> = records(log.freeze(), 1 << 20)
            .map(|r| r.unwrap().offset)
            .collect();
        assert_eq!(offsets, vec![100, 101, 102, 100, 101]);
    }
}
