//! Models through the log (the Kafka-ML pattern): a compacted topic, `agent.models` by
//! default, keyed by model name. A deploy writes the ONNX bytes in chunks small enough
//! for any broker's `message.max.bytes`; every chunk carries the model's name, version,
//! SHA-256, chunk index and count in headers. Earlier chunks are keyed
//! `name@version#index` (so compaction never merges two chunks), the last one is keyed by
//! the bare name (so compaction keeps the newest version of each model). Readers buffer
//! chunks and reassemble a version when its last chunk arrives, checking the size and
//! the digest.

use std::collections::{BTreeMap, HashMap};

use bytes::{Bytes, BytesMut};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::event::{Event, OutRecord};

/// The default models topic.
pub const DEFAULT_MODELS_TOPIC: &str = "agent.models";
/// Chunk size `agentlog models deploy` uses by default: well under Kafka's 1 MiB
/// `message.max.bytes` once headers and batch framing are added.
pub const DEFAULT_CHUNK_BYTES: usize = 512 * 1024;

/// Header: the model's name.
pub const H_NAME: &str = "model.name";
/// Header: the version label.
pub const H_VERSION: &str = "model.version";
/// Header: hex SHA-256 of the whole ONNX file.
pub const H_SHA256: &str = "model.sha256";
/// Header: total size in bytes.
pub const H_SIZE: &str = "model.size";
/// Header: this chunk's index, from 0.
pub const H_CHUNK: &str = "model.chunk.index";
/// Header: how many chunks the version has.
pub const H_CHUNKS: &str = "model.chunk.count";
/// Header: when it was deployed (ms since the epoch).
pub const H_DEPLOYED: &str = "model.deployed_at";

/// Hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A complete, verified model version read from the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployedModel {
    /// Model name.
    pub name: String,
    /// Version label.
    pub version: String,
    /// Hex SHA-256 (verified against the bytes).
    pub sha256: String,
    /// The ONNX file.
    pub bytes: Bytes,
    /// Offset of its last chunk in the models topic.
    pub offset: i64,
    /// When it was deployed (ms since the epoch).
    pub deployed_at: i64,
}

/// A version on the topic cannot be reassembled; it is refused.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum AssembleError {
    /// A chunk of the version never arrived (or was compacted away).
    #[error("model `{name}` version `{version}`: chunk {index} of {count} is missing")]
    MissingChunk {
        /// Model.
        name: String,
        /// Version.
        version: String,
        /// The missing chunk.
        index: usize,
        /// Chunks expected.
        count: usize,
    },
    /// The bytes do not match the announced size or digest (corrupted on the way).
    #[error("model `{name}` version `{version}`: {reason}")]
    Corrupt {
        /// Model.
        name: String,
        /// Version.
        version: String,
        /// What did not match.
        reason: String,
    },
    /// The record lacks the model headers.
    #[error("record at offset {offset} is not a model chunk: {reason}")]
    NotAChunk {
        /// Its offset.
        offset: i64,
        /// What is missing.
        reason: String,
    },
}

/// The records that deploy `bytes` as `name` version `version`, in write order (write
/// them in order to one partition; the last one completes the version).
pub fn deploy_records(
    name: &str,
    version: &str,
    bytes: &[u8],
    chunk_bytes: usize,
) -> Vec<OutRecord> {
    let sha = sha256_hex(bytes);
    let now = crate::event::now_ms();
    let chunks: Vec<&[u8]> = if bytes.is_empty() {
        vec![&[][..]]
    } else {
        bytes.chunks(chunk_bytes.max(1)).collect()
    };
    let count = chunks.len();
    let text = |s: String| Bytes::from(s);
    chunks
        .into_iter()
        .enumerate()
        .map(|(index, chunk)| {
            let key = if index + 1 == count {
                name.to_string()
            } else {
                chunk_key(name, version, index)
            };
            OutRecord {
                key: Some(Bytes::from(key)),
                value: Some(Bytes::copy_from_slice(chunk)),
                headers: vec![
                    (H_NAME.to_string(), text(name.to_string())),
                    (H_VERSION.to_string(), text(version.to_string())),
                    (H_SHA256.to_string(), text(sha.clone())),
                    (H_SIZE.to_string(), text(bytes.len().to_string())),
                    (H_CHUNK.to_string(), text(index.to_string())),
                    (H_CHUNKS.to_string(), text(count.to_string())),
                    (H_DEPLOYED.to_string(), text(now.to_string())),
                    (
                        "content-type".to_string(),
                        text("application/onnx".to_string()),
                    ),
                ],
                timestamp: now,
            }
        })
        .collect()
}

/// The key of a non-final chunk.
pub fn chunk_key(name: &str, version: &str, index: usize) -> String {
    format!("{name}@{version}#{index}")
}

struct Header {
    name: String,
    version: String,
    sha256: String,
    size: usize,
    index: usize,
    count: usize,
    deployed_at: i64,
}

fn header(event: &Event) -> Result<Header, AssembleError> {
    let missing = |h: &str| AssembleError::NotAChunk {
        offset: event.offset,
        reason: format!("no valid `{h}` header"),
    };
    let text = |h: &'static str| event.header_str(h).ok_or_else(|| missing(h));
    let number = |h: &'static str| text(h)?.parse::<usize>().map_err(|_| missing(h));
    let header = Header {
        name: text(H_NAME)?.to_string(),
        version: text(H_VERSION)?.to_string(),
        sha256: text(H_SHA256)?.to_string(),
        size: number(H_SIZE)?,
        index: number(H_CHUNK)?,
        count: number(H_CHUNKS)?,
        deployed_at: event
            .header_str(H_DEPLOYED)
            .and_then(|t| t.parse().ok())
            .unwrap_or(event.timestamp),
    };
    if header.index >= header.count {
        return Err(missing(H_CHUNK));
    }
    Ok(header)
}

/// Reassembles versions from the models topic read in offset order.
#[derive(Debug, Default)]
pub struct Assembler {
    /// Chunks of versions not complete yet, by (name, version).
    pending: HashMap<(String, String), BTreeMap<usize, Bytes>>,
}

impl Assembler {
    /// Takes one record; returns a version when this record completes one (or why the
    /// version it completes is unusable). Tombstones and foreign records are skipped.
    pub fn push(&mut self, event: &Event) -> Option<Result<DeployedModel, AssembleError>> {
        let value = event.value.clone()?;
        let header = match header(event) {
            Ok(header) => header,
            Err(error) => return Some(Err(error)),
        };
        let id = (header.name.clone(), header.version.clone());
        if header.index + 1 < header.count {
            self.pending
                .entry(id)
                .or_default()
                .insert(header.index, value);
            return None;
        }
        let mut chunks = self.pending.remove(&id).unwrap_or_default();
        chunks.insert(header.index, value);
        Some(assemble(header, chunks, event.offset))
    }
}

fn assemble(
    header: Header,
    chunks: BTreeMap<usize, Bytes>,
    offset: i64,
) -> Result<DeployedModel, AssembleError> {
    // Sized from what arrived, not from the announced size: a header must not be able
    // to make a reader allocate.
    let mut bytes = BytesMut::with_capacity(chunks.values().map(Bytes::len).sum());
    for index in 0..header.count {
        let chunk = chunks
            .get(&index)
            .ok_or_else(|| AssembleError::MissingChunk {
                name: header.name.clone(),
                version: header.version.clone(),
                index,
                count: header.count,
            })?;
        bytes.extend_from_slice(chunk);
    }
    let corrupt = |reason: String| AssembleError::Corrupt {
        name: header.name.clone(),
        version: header.version.clone(),
        reason,
    };
    if bytes.len() != header.size {
        return Err(corrupt(format!(
            "{} bytes, {} announced",
            bytes.len(),
            header.size
        )));
    }
    let sha = sha256_hex(&bytes);
    if sha != header.sha256 {
        return Err(corrupt(format!(
            "sha256 {sha}, {} announced",
            header.sha256
        )));
    }
    Ok(DeployedModel {
        name: header.name,
        version: header.version,
        sha256: sha,
        bytes: bytes.freeze(),
        offset,
        deployed_at: header.deployed_at,
    })
}

/// The (name, version) of a chunk record, for listing and tombstoning old chunks.
pub fn chunk_identity(event: &Event) -> Option<(String, String)> {
    header(event).ok().map(|h| (h.name, h.version))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn events(records: Vec<OutRecord>) -> Vec<Event> {
        records
            .into_iter()
            .enumerate()
            .map(|(i, r)| Event {
                topic: Arc::from(DEFAULT_MODELS_TOPIC),
                partition: 0,
                offset: i as i64,
                timestamp: r.timestamp,
                key: r.key,
                value: r.value,
                headers: r
                    .headers
                    .into_iter()
                    .map(|(k, v)| crate::event::Header {
                        name: Bytes::from(k),
                        value: Some(v),
                    })
                    .collect(),
                undecodable: None,
            })
            .collect()
    }

    #[test]
    fn chunks_reassemble_and_keys_survive_compaction() {
        let bytes: Vec<u8> = (0..2500u32).map(|i| (i % 251) as u8).collect();
        let records = deploy_records("fraud", "v2", &bytes, 1000);
        assert_eq!(records.len(), 3);
        let keys: Vec<_> = records.iter().map(|r| r.key.clone().unwrap()).collect();
        assert_eq!(keys[0], "fraud@v2#0");
        assert_eq!(
            keys[2], "fraud",
            "the last chunk is keyed by the model name"
        );
        let mut assembler = Assembler::default();
        let mut done = Vec::new();
        for event in events(records) {
            if let Some(result) = assembler.push(&event) {
                done.push(result.unwrap());
            }
        }
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].bytes.as_ref(), &bytes[..]);
        assert_eq!(done[0].version, "v2");
        assert_eq!(done[0].sha256, sha256_hex(&bytes));
    }

    #[test]
    fn corrupt_or_incomplete_versions_are_refused() {
        let bytes = vec![7u8; 3000];
        let mut evs = events(deploy_records("m", "1", &bytes, 1000));
        let mut flipped = evs[1].value.clone().unwrap().to_vec();
        flipped[0] ^= 1;
        evs[1].value = Some(Bytes::from(flipped));
        let mut assembler = Assembler::default();
        let results: Vec<_> = evs.iter().filter_map(|e| assembler.push(e)).collect();
        assert!(matches!(results[..], [Err(AssembleError::Corrupt { .. })]));

        let evs = events(deploy_records("m", "2", &bytes, 1000));
        let mut assembler = Assembler::default();
        let results: Vec<_> = [&evs[0], &evs[2]]
            .into_iter()
            .filter_map(|e| assembler.push(e))
            .collect();
        assert!(matches!(
            results[..],
            [Err(AssembleError::MissingChunk { index: 1, .. })]
        ));
    }
}
