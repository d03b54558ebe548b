//! Looking inside one batch for the first record at or after a timestamp (ListOffsets).
//!
//! Only the record prefix that matters is parsed: length (varint), attributes (i8),
//! timestampDelta (varlong), offsetDelta (varint). Compressed batches are decompressed
//! with kafka-protocol's codecs first. This runs for ListOffsets only, never on the
//! produce or fetch path.

use agentlog_protocol::batch::{BatchHeader, Compression, HEADER_LEN};
use bytes::Bytes;
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

use super::TimestampOffset;

/// Why a batch's records could not be searched.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RecordsError {
    /// A record's framing is inconsistent with the batch.
    #[error("malformed record at byte {0} of the batch's records")]
    Malformed(usize),
    /// The codec is unknown or the data does not decompress.
    #[error("cannot decompress batch: {0}")]
    Decompress(String),
}

/// The first record in `batch` (one whole batch) whose timestamp is at least `ts`.
pub(crate) fn first_record_at_or_after(
    header: &BatchHeader,
    batch: &[u8],
    ts: i64,
) -> Result<Option<TimestampOffset>, RecordsError> {
    if header.is_log_append_time() {
        // Every record carries the broker's append time, stored as the max timestamp.
        return Ok((header.max_timestamp >= ts).then_some(TimestampOffset {
            offset: header.base_offset,
            timestamp: header.max_timestamp,
        }));
    }
    let end = header.total_len().min(batch.len());
    let body = batch.get(HEADER_LEN..end).unwrap_or_default();
    let decompressed;
    let records: &[u8] = match header.compression() {
        Compression::None => body,
        codec => {
            decompressed = decompress(codec, body)?;
            &decompressed
        }
    };
    let mut pos = 0usize;
    for _ in 0..header.records_count.max(0) {
        let start = pos;
        let malformed = || RecordsError::Malformed(start);
        let len = read_varint(records, &mut pos).ok_or_else(malformed)?;
        let body_start = pos;
        let len = usize::try_from(len).map_err(|_| malformed())?;
        let next = body_start.checked_add(len).ok_or_else(malformed)?;
        if next > records.len() {
            return Err(malformed());
        }
        pos += 1; // attributes
        let ts_delta = read_varint(records, &mut pos).ok_or_else(malformed)?;
        let offset_delta = read_varint(records, &mut pos).ok_or_else(malformed)?;
        if pos > next {
            return Err(malformed());
        }
        let timestamp = header.base_timestamp.wrapping_add(ts_delta);
        if timestamp >= ts {
            return Ok(Some(TimestampOffset {
                offset: header.base_offset.wrapping_add(offset_delta),
                timestamp,
            }));
        }
        pos = next;
    }
    Ok(None)
}

pub(crate) fn decompress(codec: Compression, body: &[u8]) -> Result<Bytes, RecordsError> {
    let mut src = Bytes::copy_from_slice(body);
    let take = |b: &mut Bytes| Ok(std::mem::take(b));
    let out = match codec {
        Compression::Gzip => Gzip::decompress(&mut src, take),
        Compression::Snappy => Snappy::decompress(&mut src, take),
        Compression::Lz4 => Lz4::decompress(&mut src, take),
        Compression::Zstd => Zstd::decompress(&mut src, take),
        Compression::None => Ok(src),
        Compression::Unknown(id) => {
            return Err(RecordsError::Decompress(format!("unknown codec {id}")));
        }
    };
    out.map_err(|e| RecordsError::Decompress(e.to_string()))
}

/// Reads a zigzag-encoded varint/varlong; `None` when truncated or over-long.
pub(crate) fn read_varint(buf: &[u8], pos: &mut usize) -> Option<i64> {
    let mut value: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((value >> 1) as i64) ^ -((value & 1) as i64))
}

#[cfg(test)]
mod tests {
    use super::read_varint;

    #[test]
    fn zigzag_varints() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x01], &mut pos), Some(-1));
        pos = 0;
        assert_eq!(read_varint(&[0xac, 0x02], &mut pos), Some(150));
        pos = 0;
        assert_eq!(read_varint(&[0x80], &mut pos), None);
        pos = 0;
        assert_eq!(read_varint(&[0xff; 11], &mut pos), None);
    }
}
