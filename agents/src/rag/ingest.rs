//! Kind `rag_ingest`: documents in, chunk records out.
//!
//! Each record of the documents topic is a version of one document (key = document
//! id): plain UTF-8 text, or JSON with the text in `text_field` and every other field
//! as metadata (a `metadata` object contributes its fields instead). The text is cut
//! into chunks on sentence boundaries, embedded in micro-batches shared by all events
//! in flight, and written to the index's embeddings topic keyed `doc#no`. The agent
//! remembers each document's chunk count in its keyed state, so a shorter new version
//! also tombstones the chunks it no longer has, and a tombstone removes them all.
//!
//! ```toml
//! [[agents]]
//! name = "ingest"
//! kind = "rag_ingest"
//! topics = ["docs"]
//! max_in_flight = 8
//! [agents.options]
//! index = "docs"               # the [rag.docs] index to feed
//! text_field = "text"          # for JSON documents
//! chunk_size = 500             # characters
//! chunk_overlap = 100
//! max_document_chars = 200000  # longer documents are truncated (with a decision)
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::chunking::chunk;
use super::index::Chunk;
use super::live::LiveIndex;
use super::record::{remove_record, upsert_record};
use crate::agent::{Agent, Context, HandlerError};
use crate::event::Event;
use crate::inference::batcher::{BatchError, Batcher};
use crate::inference::embed::EmbedRunner;

/// `[agents.options]` of a `rag_ingest` agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestOptions {
    /// The `[rag.<name>]` index whose embeddings topic the chunks go to.
    pub index: String,
    /// Field of a JSON document holding its text.
    #[serde(default = "defaults::text_field")]
    pub text_field: String,
    /// Most characters per chunk.
    #[serde(default = "defaults::chunk_size")]
    pub chunk_size: usize,
    /// Characters of whole sentences repeated from the previous chunk.
    #[serde(default = "defaults::chunk_overlap")]
    pub chunk_overlap: usize,
    /// Longer documents are truncated to this many characters.
    #[serde(default = "defaults::max_document_chars")]
    pub max_document_chars: usize,
    /// Most chunks per encoder run.
    #[serde(default = "defaults::batch_size")]
    pub batch_size: usize,
    /// Longest a chunk waits for others to fill its batch, in ms.
    #[serde(default = "defaults::max_wait_ms")]
    pub max_wait_ms: u64,
}

mod defaults {
    pub fn text_field() -> String {
        "text".to_string()
    }
    pub fn chunk_size() -> usize {
        500
    }
    pub fn chunk_overlap() -> usize {
        100
    }
    pub fn max_document_chars() -> usize {
        200_000
    }
    pub fn batch_size() -> usize {
        32
    }
    pub fn max_wait_ms() -> u64 {
        5
    }
}

impl IngestOptions {
    /// Parses and checks an agent's options table.
    pub fn from_table(table: &toml::Table) -> Result<IngestOptions, String> {
        let options: IngestOptions = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        if options.chunk_size < 20 {
            return Err("options.chunk_size must be at least 20 characters".to_string());
        }
        if options.chunk_overlap >= options.chunk_size {
            return Err("options.chunk_overlap must be less than chunk_size".to_string());
        }
        if options.batch_size == 0 || options.max_document_chars == 0 {
            return Err("options.batch_size and max_document_chars must be positive".to_string());
        }
        Ok(options)
    }
}

/// One version of a document, read from its record.
struct Document {
    text: String,
    metadata: Map<String, Value>,
}

/// The `rag_ingest` kind (see the module documentation).
pub struct RagIngest {
    options: IngestOptions,
    index: Arc<LiveIndex>,
    batcher: Batcher<EmbedRunner>,
}

impl std::fmt::Debug for RagIngest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagIngest")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The state entry of a document: how many chunks its indexed version has.
fn chunk_count(ctx: &Context, doc: &str) -> u32 {
    ctx.state_get(doc)
        .and_then(|v| v.get("chunks").and_then(Value::as_u64))
        .map_or(0, |n| n as u32)
}

impl RagIngest {
    /// An agent feeding `index`, batching chunks across `callers` events in flight.
    pub fn new(
        name: &str,
        options: IngestOptions,
        index: Arc<LiveIndex>,
        callers: usize,
    ) -> std::io::Result<RagIngest> {
        let batcher = Batcher::start(
            name,
            EmbedRunner {
                embedder: index.embedder().clone(),
            },
            options.batch_size,
            Duration::from_millis(options.max_wait_ms),
            // A document submits many chunks at once: never assume a batch is full.
            callers.max(options.batch_size),
        )?;
        Ok(RagIngest {
            options,
            index,
            batcher,
        })
    }

    /// The document in `value`, or why it is skipped.
    fn document(&self, event: &Event, value: &[u8]) -> Result<Document, String> {
        if let Some(envelope) = event.envelope() {
            return self.json_document(envelope.data);
        }
        let text = std::str::from_utf8(value).map_err(|e| format!("not UTF-8 text: {e}"))?;
        match serde_json::from_str::<Value>(text) {
            Ok(json @ Value::Object(_)) => self.json_document(json),
            _ => Ok(Document {
                text: text.to_string(),
                metadata: Map::new(),
            }),
        }
    }

    fn json_document(&self, json: Value) -> Result<Document, String> {
        let Value::Object(mut fields) = json else {
            return Err("a JSON document must be an object".to_string());
        };
        let field = &self.options.text_field;
        let text = match fields.remove(field) {
            Some(Value::String(text)) => text,
            Some(other) => return Err(format!("field `{field}` is {other}, expected text")),
            None => return Err(format!("no `{field}` field")),
        };
        let metadata = match fields.remove("metadata") {
            Some(Value::Object(metadata)) => metadata,
            Some(other) => {
                fields.insert("metadata".to_string(), other);
                fields
            }
            None => fields,
        };
        Ok(Document { text, metadata })
    }

    /// Writes tombstones for chunks `from..to` of `doc`.
    fn remove_chunks(&self, ctx: &mut Context, event: &Event, doc: &str, from: u32, to: u32) {
        for no in from..to {
            ctx.emit_raw(self.index.topic(), remove_record(doc, no, event));
        }
    }
}

impl Agent for RagIngest {
    fn kind(&self) -> &str {
        "rag_ingest"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let Some(doc) = event
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .filter(|k| !k.is_empty())
            .map(str::to_string)
        else {
            ctx.decide(
                "document.skipped",
                json!({"reason": "no UTF-8 key (the key is the document id)", "offset": event.offset}),
            );
            ctx.metric("documents_skipped", 1);
            return Ok(());
        };
        let previous = chunk_count(ctx, &doc);
        let Some(value) = event.value.as_deref() else {
            self.remove_chunks(ctx, event, &doc, 0, previous);
            ctx.state_delete(&doc);
            ctx.decide("document.deleted", json!({"doc": doc, "removed": previous}));
            return Ok(());
        };
        let document = match self.document(event, value) {
            Ok(document) => document,
            Err(reason) => {
                // The version in the index stays: a broken record must not erase it.
                ctx.decide(
                    "document.skipped",
                    json!({"doc": doc, "reason": reason, "offset": event.offset}),
                );
                ctx.metric("documents_skipped", 1);
                return Ok(());
            }
        };
        let mut text = document.text;
        let mut truncated = None;
        if let Some((cut, _)) = text.char_indices().nth(self.options.max_document_chars) {
            truncated = Some(text.chars().count());
            text.truncate(cut);
        }
        let pieces = chunk(&text, self.options.chunk_size, self.options.chunk_overlap);
        let vectors = futures::future::join_all(
            pieces
                .iter()
                .map(|piece| self.batcher.submit(piece.clone())),
        )
        .await;
        let mut count = 0u32;
        for (no, (piece, vector)) in pieces.into_iter().zip(vectors).enumerate() {
            let vector = match vector {
                Ok(vector) => vector,
                Err(BatchError::Stopped) => {
                    return Err(HandlerError::unavailable("agent stopping"))
                }
                Err(BatchError::Failed(reason)) => {
                    return Err(HandlerError::new(format!("embedding chunk {no}: {reason}")))
                }
            };
            let chunk = Chunk {
                doc: doc.clone(),
                no: no as u32,
                text: piece,
                metadata: document.metadata.clone(),
            };
            ctx.emit_raw(self.index.topic(), upsert_record(&chunk, &vector, event));
            count += 1;
        }
        self.remove_chunks(ctx, event, &doc, count, previous);
        if count == 0 {
            ctx.state_delete(&doc);
        } else {
            ctx.state_put(&doc, json!({ "chunks": count }));
        }
        ctx.metric("chunks_written", u64::from(count));
        let mut details = json!({
            "doc": doc,
            "chunks": count,
            "removed": previous.saturating_sub(count),
            "chars": text.chars().count(),
        });
        let decision = match truncated {
            Some(original) => {
                details["truncated_from_chars"] = json!(original);
                "document.truncated"
            }
            None if count == 0 => "document.empty",
            None => "document.indexed",
        };
        ctx.decide(decision, details);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_defaults_and_refuse_mistakes() {
        let table: toml::Table = toml::from_str("index = 'docs'").unwrap();
        let options = IngestOptions::from_table(&table).unwrap();
        assert_eq!((options.chunk_size, options.chunk_overlap), (500, 100));
        for (text, expected) in [
            ("index = 'd'\nchunk_size = 5", "at least 20"),
            (
                "index = 'd'\nchunk_size = 100\nchunk_overlap = 100",
                "less than",
            ),
            ("index = 'd'\nchunk = 5", "chunk"),
            ("text_field = 'x'", "index"),
        ] {
            let table: toml::Table = toml::from_str(text).unwrap();
            let error = IngestOptions::from_table(&table).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
