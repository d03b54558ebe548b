//! Record batch (magic v2) headers: the only part of a batch the broker reads or writes.
//!
//! Batches are stored and served exactly as producers sent them. The broker reads the
//! fixed 61-byte header to validate a batch and to index it, and writes two fields in
//! place when it appends: the base offset and the partition leader epoch. Neither is
//! covered by the CRC (which starts at `attributes`), so rewriting them never invalidates
//! a batch and never requires touching the records.

use thiserror::Error;

/// Length of the fixed v2 record batch header, in bytes.
pub const HEADER_LEN: usize = 61;
/// Bytes before `batchLength` ends: base offset (8) + batch length (4). The batch length
/// counts every byte after these twelve.
pub const LOG_OVERHEAD: usize = 12;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const PARTITION_LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
pub(crate) const CRC: usize = 17;
pub(crate) const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORDS_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_FLAG: i16 = 0x08;
const TRANSACTIONAL_FLAG: i16 = 0x10;
const CONTROL_FLAG: i16 = 0x20;

/// Why bytes are not a usable record batch.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than the header's own length field claims.
    #[error("record batch truncated: need {needed} bytes, have {available}")]
    Truncated {
        /// Bytes the batch needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// The batch length field is smaller than a header or negative.
    #[error("record batch length {0} is invalid")]
    InvalidLength(i32),
    /// Only magic 2 batches are accepted (Kafka 0.11+ clients, and every client we serve).
    #[error("unsupported record batch magic {0}")]
    UnsupportedMagic(i8),
    /// The stored CRC32C does not match the batch contents.
    #[error("record batch crc mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC in the header.
        stored: u32,
        /// CRC computed over the batch.
        computed: u32,
    },
}

/// Compression codec named by a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Records stored as they are.
    None,
    /// gzip (codec 1).
    Gzip,
    /// snappy, xerial framing (codec 2).
    Snappy,
    /// lz4 frame (codec 3).
    Lz4,
    /// zstd (codec 4).
    Zstd,
    /// A codec id that Kafka does not define.
    Unknown(u8),
}

/// The decoded fixed header of one v2 record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Offset of the first record (0 as sent by a producer, assigned on append).
    pub base_offset: i64,
    /// Bytes after the first [`LOG_OVERHEAD`] bytes.
    pub batch_length: i32,
    /// Leader epoch of the partition when the batch was appended.
    pub partition_leader_epoch: i32,
    /// Record format version; always 2 for batches that parse.
    pub magic: i8,
    /// CRC32C of everything from `attributes` to the end of the batch.
    pub crc: u32,
    /// Compression, timestamp type, transactional and control flags.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record.
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records the batch holds.
    pub records_count: i32,
}

impl BatchHeader {
    /// Parses the header at the start of `buf`; checks the magic and that the length field
    /// is plausible, but not that the whole batch is present.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let header = BatchHeader {
            base_offset: read_i64(buf, BASE_OFFSET),
            batch_length: read_i32(buf, BATCH_LENGTH),
            partition_leader_epoch: read_i32(buf, PARTITION_LEADER_EPOCH),
            magic: buf[MAGIC] as i8,
            crc: read_i32(buf, CRC) as u32,
            attributes: read_i16(buf, ATTRIBUTES),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP),
            producer_id: read_i64(buf, PRODUCER_ID),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH),
            base_sequence: read_i32(buf, BASE_SEQUENCE),
            records_count: read_i32(buf, RECORDS_COUNT),
        };
        if header.magic != 2 {
            return Err(BatchError::UnsupportedMagic(header.magic));
        }
        if header.batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::InvalidLength(header.batch_length));
        }
        Ok(header)
    }

    /// Total size of the batch on the wire and on disk.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset + i64::from(self.last_offset_delta)
    }

    /// Offset one past the last record: where the next batch starts.
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }

    /// The codec the records are compressed with.
    pub fn compression(&self) -> Compression {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    /// Whether timestamps were set by the broker on append (LogAppendTime).
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_FLAG != 0
    }

    /// Whether the batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_FLAG != 0
    }

    /// Whether the batch holds transaction markers rather than user records.
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_FLAG != 0
    }
}

/// Checks that `batch` is exactly one whole batch whose CRC32C matches its contents.
pub fn verify(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if batch.len() < header.total_len() {
        return Err(BatchError::Truncated {
            needed: header.total_len(),
            available: batch.len(),
        });
    }
    let computed = crc32c::crc32c(&batch[ATTRIBUTES..header.total_len()]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    Ok(header)
}

/// Writes the base offset into a batch header in place (not covered by the CRC).
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(BASE_OFFSET..BASE_OFFSET + 8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Writes the partition leader epoch into a batch header in place (not covered by the CRC).
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    if let Some(field) = batch.get_mut(PARTITION_LEADER_EPOCH..PARTITION_LEADER_EPOCH + 4) {
        field.copy_from_slice(&epoch.to_be_bytes());
    }
}

/// Stamps a batch with the broker's append time (topics with
/// `message.timestamp.type=LogAppendTime`): sets the timestamp-type flag and the max
/// timestamp, which consumers then report for every record, and recomputes the CRC,
/// which covers both. The records themselves are not touched.
pub fn set_log_append_time(batch: &mut [u8], timestamp: i64) -> Result<(), BatchError> {
    let header = BatchHeader::parse(batch)?;
    let end = header.total_len();
    if batch.len() < end {
        return Err(BatchError::Truncated {
            needed: end,
            available: batch.len(),
        });
    }
    let attributes = header.attributes | TIMESTAMP_TYPE_FLAG;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp.to_be_bytes());
    let crc = crc32c::crc32c(&batch[ATTRIBUTES..end]);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(())
}

/// Walks a buffer of concatenated batches, yielding each header with its byte range.
///
/// Stops at the first batch that is incomplete or whose header does not parse; the
/// iterator's [`Batches::valid_len`] then says how many leading bytes were whole batches,
/// which is what log recovery truncates to. CRCs are not checked here (see [`verify`]).
pub struct Batches<'a> {
    buf: &'a [u8],
    position: usize,
    stopped: Option<BatchError>,
}

impl<'a> Batches<'a> {
    /// Starts walking at the beginning of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Batches {
            buf,
            position: 0,
            stopped: None,
        }
    }

    /// Bytes consumed by the whole batches yielded so far.
    pub fn valid_len(&self) -> usize {
        self.position
    }

    /// Why the walk stopped before the end of the buffer, if it did.
    pub fn stop_reason(&self) -> Option<&BatchError> {
        self.stopped.as_ref()
    }
}

impl Iterator for Batches<'_> {
    type Item = (BatchHeader, std::ops::Range<usize>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped.is_some() || self.position >= self.buf.len() {
            return None;
        }
        let rest = &self.buf[self.position..];
        let header = match BatchHeader::parse(rest) {
            Ok(header) => header,
            Err(error) => {
                self.stopped = Some(error);
                return None;
            }
        };
        let len = header.total_len();
        if rest.len() < len {
            self.stopped = Some(BatchError::Truncated {
                needed: len,
                available: rest.len(),
            });
            return None;
        }
        let range = self.position..self.position + len;
        self.position += len;
        Some((header, range))
    }
}

fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures;
    use kafka_protocol::records::Compression as KpCompression;

    fn encoded(records: usize, compression: KpCompression) -> Vec<u8> {
        let records: Vec<_> = (0..records as i32)
            .map(|i| {
                fixtures::record(
                    i,
                    Some(format!("k{i}").into()),
                    Some(format!("value {i}").into()),
                    1_700_000_000_000 + i64::from(i),
                )
            })
            .collect();
        fixtures::encode(&records, compression).to_vec()
    }

    #[test]
    fn parses_and_verifies_a_client_encoded_batch() {
        let batch = encoded(3, KpCompression::None);
        let header = verify(&batch).unwrap();
        assert_eq!(header.records_count, 3);
        assert_eq!(header.last_offset_delta, 2);
        assert_eq!(header.total_len(), batch.len());
        assert_eq!(header.compression(), Compression::None);
        assert_eq!(header.max_timestamp, 1_700_000_000_002);
    }

    #[test]
    fn rewriting_offset_and_epoch_keeps_the_crc_valid() {
        let mut batch = encoded(2, KpCompression::None);
        set_base_offset(&mut batch, 4242);
        set_partition_leader_epoch(&mut batch, 7);
        let header = verify(&batch).unwrap();
        assert_eq!(header.base_offset, 4242);
        assert_eq!(header.partition_leader_epoch, 7);
        assert_eq!(header.last_offset(), 4243);
    }

    #[test]
    fn log_append_time_stamps_the_header_and_keeps_the_crc_valid() {
        let mut batch = encoded(3, KpCompression::None);
        set_log_append_time(&mut batch, 1_800_000_000_000).unwrap();
        let header = verify(&batch).unwrap();
        assert!(header.is_log_append_time());
        assert_eq!(header.max_timestamp, 1_800_000_000_000);
        assert_eq!(header.base_timestamp, 1_700_000_000_000);
    }

    #[test]
    fn a_flipped_record_byte_fails_the_crc() {
        let mut batch = encoded(2, KpCompression::None);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            verify(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn walking_stops_at_a_torn_tail() {
        let mut log = encoded(2, KpCompression::None);
        let first_len = log.len();
        log.extend(encoded(5, KpCompression::None));
        let torn = log.len() - 3;
        let mut batches = Batches::new(&log[..torn]);
        let (first, range) = batches.next().unwrap();
        assert_eq!(first.records_count, 2);
        assert_eq!(range, 0..first_len);
        assert!(batches.next().is_none());
        assert_eq!(batches.valid_len(), first_len);
        assert!(matches!(
            batches.stop_reason(),
            Some(BatchError::Truncated { .. })
        ));
    }

    #[test]
    fn short_or_foreign_bytes_are_errors_not_panics() {
        assert!(BatchHeader::parse(&[0u8; 10]).is_err());
        let mut batch = encoded(1, KpCompression::None);
        batch[MAGIC] = 1;
        assert_eq!(
            BatchHeader::parse(&batch),
            Err(BatchError::UnsupportedMagic(1))
        );
        let mut batch = encoded(1, KpCompression::None);
        batch[BATCH_LENGTH..BATCH_LENGTH + 4].copy_from_slice(&(-5i32).to_be_bytes());
        assert_eq!(
            BatchHeader::parse(&batch),
            Err(BatchError::InvalidLength(-5))
        );
    }
}
