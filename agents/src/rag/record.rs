//! Chunk records: what the embeddings topic holds, the one source of truth of an index.
//!
//! Key `doc#no`; value JSON `{"doc", "no", "text", "metadata", "vector": [f32; dim]}`,
//! readable by any Kafka consumer; a tombstone (no value) removes the chunk. The topic is
//! compacted, so it keeps exactly the chunks that exist.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::index::{chunk_id, Chunk};
use crate::event::{Event, OutRecord};

/// Header on chunk records: the source document's coordinates, for audits.
pub const SOURCE_OFFSET_HEADER: &str = "source.offset";

#[derive(Serialize, Deserialize)]
struct Wire {
    doc: String,
    no: u32,
    text: String,
    #[serde(default)]
    metadata: serde_json::Map<String, serde_json::Value>,
    vector: Vec<f32>,
}

/// What one record of the embeddings topic does to the index.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Adds or replaces a chunk.
    Upsert(Chunk, Vec<f32>),
    /// Removes the chunk with this id.
    Remove(String),
}

/// The record that puts `chunk` with `vector` into every index following the topic.
pub fn upsert_record(chunk: &Chunk, vector: &[f32], source: &Event) -> OutRecord {
    let wire = Wire {
        doc: chunk.doc.clone(),
        no: chunk.no,
        text: chunk.text.clone(),
        metadata: chunk.metadata.clone(),
        vector: vector.to_vec(),
    };
    // Serialising plain strings, maps and finite floats cannot fail; an empty value
    // would only ever be skipped by the index.
    let value = serde_json::to_vec(&wire).unwrap_or_default();
    OutRecord {
        key: Some(Bytes::from(chunk.id())),
        value: Some(Bytes::from(value)),
        headers: source_headers(source),
        timestamp: source.timestamp,
    }
}

/// The tombstone that removes chunk `no` of `doc`.
pub fn remove_record(doc: &str, no: u32, source: &Event) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(chunk_id(doc, no))),
        value: None,
        headers: source_headers(source),
        timestamp: source.timestamp,
    }
}

fn source_headers(source: &Event) -> Vec<(String, Bytes)> {
    vec![
        (
            "source.topic".to_string(),
            Bytes::from(source.topic.to_string()),
        ),
        (
            "source.partition".to_string(),
            Bytes::from(source.partition.to_string()),
        ),
        (
            SOURCE_OFFSET_HEADER.to_string(),
            Bytes::from(source.offset.to_string()),
        ),
    ]
}

/// Reads one record of the embeddings topic; the error says why it is not a chunk
/// record (it is then skipped, never fatal: the topic may be shared or hand-written).
pub fn decode(event: &Event) -> Result<Change, String> {
    let key = event
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .ok_or("no UTF-8 key")?;
    let Some(value) = event.value.as_deref() else {
        return Ok(Change::Remove(key.to_string()));
    };
    let wire: Wire = serde_json::from_slice(value).map_err(|e| format!("not a chunk: {e}"))?;
    let chunk = Chunk {
        doc: wire.doc,
        no: wire.no,
        text: wire.text,
        metadata: wire.metadata,
    };
    if chunk.id() != key {
        return Err(format!(
            "key `{key}` is not the chunk's id `{}`",
            chunk.id()
        ));
    }
    Ok(Change::Upsert(chunk, wire.vector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn source() -> Event {
        Event {
            topic: Arc::from("docs"),
            partition: 0,
            offset: 7,
            timestamp: 5,
            key: None,
            value: None,
            headers: Vec::new(),
            undecodable: None,
        }
    }

    fn as_event(record: OutRecord) -> Event {
        Event {
            key: record.key,
            value: record.value,
            ..source()
        }
    }

    #[test]
    fn round_trips_upserts_and_tombstones() {
        let chunk = Chunk {
            doc: "a#b".to_string(),
            no: 2,
            text: "t".to_string(),
            metadata: serde_json::Map::new(),
        };
        let change = decode(&as_event(upsert_record(&chunk, &[0.5, 1.0], &source()))).unwrap();
        assert_eq!(change, Change::Upsert(chunk, vec![0.5, 1.0]));
        let change = decode(&as_event(remove_record("a#b", 2, &source()))).unwrap();
        assert_eq!(change, Change::Remove("a#b#2".to_string()));
        let mut bad = as_event(remove_record("x", 1, &source()));
        bad.value = Some(Bytes::from_static(b"{}"));
        assert!(decode(&bad).is_err());
    }
}
