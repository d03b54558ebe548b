//! Sentence embeddings with all-MiniLM-L6-v2 (int8 ONNX, `tokenizer.json` through the
//! `tokenizers` crate): token embeddings mean-pooled over the attention mask, then L2
//! normalised, as sentence-transformers does. [`Embedder`] is public for the agents
//! that reuse it (RAG); the `embed` kind writes each event's vector as little-endian
//! f32 bytes with the source record's coordinates in headers.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ort::environment::Environment;
use ort::session::Session;
use ort::value::{Tensor, ValueType};
use serde::Deserialize;
use thiserror::Error;
use tokenizers::Tokenizer;

use super::batcher::{BatchError, BatchRunner, Batcher};
use super::mapping::{lookup, payload};
use super::ort_env::session_from_bytes;
use crate::agent::{Agent, Context, HandlerError};
use crate::event::{Event, OutRecord};

/// Where `bash scripts/models.sh` links MiniLM's model.
pub const DEFAULT_MODEL: &str = ".models/minilm/model.onnx";
/// Where `bash scripts/models.sh` links MiniLM's tokenizer.
pub const DEFAULT_TOKENIZER: &str = ".models/minilm/tokenizer.json";

/// Loading or running the embedder failed.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum EmbedError {
    /// A model or tokenizer file could not be read.
    #[error("reading `{path}`: {reason} (run `bash scripts/models.sh` for MiniLM)")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The tokenizer file is not a usable `tokenizer.json`.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The model is not a BERT-style encoder (inputs or outputs differ).
    #[error("model: {0}")]
    Model(String),
    /// ONNX Runtime failed.
    #[error("ONNX Runtime: {0}")]
    Run(String),
}

/// A sentence embedder: tokenizer plus encoder session. Thread-safe; one run at a time.
pub struct Embedder {
    tokenizer: Tokenizer,
    session: Mutex<Session>,
    inputs: Vec<String>,
    output: String,
    dim: usize,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("inputs", &self.inputs)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, EmbedError> {
    std::fs::read(path).map_err(|e| EmbedError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl Embedder {
    /// Loads the model and tokenizer files.
    pub fn from_files(
        environment: &Environment,
        model: &Path,
        tokenizer: &Path,
        intra_op_threads: usize,
    ) -> Result<Embedder, EmbedError> {
        let bytes = read(model)?;
        read(tokenizer)?;
        let mut tokenizer =
            Tokenizer::from_file(tokenizer).map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        // Pad per batch to its longest sentence (the file pads everything to 128).
        tokenizer.with_padding(None);
        let session =
            session_from_bytes(environment, &bytes, intra_op_threads).map_err(EmbedError::Run)?;
        let inputs: Vec<String> = session
            .inputs()
            .iter()
            .map(|i| i.name().to_string())
            .collect();
        for name in &inputs {
            if !["input_ids", "attention_mask", "token_type_ids"].contains(&name.as_str()) {
                return Err(EmbedError::Model(format!("unexpected input `{name}`")));
            }
        }
        if !inputs.iter().any(|n| n == "input_ids") {
            return Err(EmbedError::Model("no `input_ids` input".to_string()));
        }
        let outlet = session
            .outputs()
            .iter()
            .find(|o| o.name() == "last_hidden_state")
            .or_else(|| session.outputs().first())
            .ok_or_else(|| EmbedError::Model("no outputs".to_string()))?;
        let dim = match outlet.dtype() {
            ValueType::Tensor { shape, .. } if shape.len() == 3 && shape[2] > 0 => {
                shape[2] as usize
            }
            other => {
                return Err(EmbedError::Model(format!(
                    "output `{}` is {other:?}; expected [batch, tokens, dim]",
                    outlet.name()
                )))
            }
        };
        let output = outlet.name().to_string();
        Ok(Embedder {
            tokenizer,
            session: Mutex::new(session),
            inputs,
            output,
            dim,
        })
    }

    /// The embedding size (384 for MiniLM).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Unit-length embeddings of `texts`, in order, in one session run.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = texts
            .iter()
            .map(|t| self.tokenizer.encode(*t, true))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EmbedError::Tokenizer(e.to_string()))?;
        let batch = encodings.len();
        let width = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let mut ids = vec![0i64; batch * width];
        let mut mask = vec![0i64; batch * width];
        let mut types = vec![0i64; batch * width];
        for (row, encoding) in encodings.iter().enumerate() {
            let at = row * width;
            for (i, ((id, m), t)) in encoding
                .get_ids()
                .iter()
                .zip(encoding.get_attention_mask())
                .zip(encoding.get_type_ids())
                .enumerate()
            {
                ids[at + i] = i64::from(*id);
                mask[at + i] = i64::from(*m);
                types[at + i] = i64::from(*t);
            }
        }
        let shape = vec![batch as i64, width as i64];
        let tensor = |data: &Vec<i64>| {
            Tensor::from_array((shape.clone(), data.clone()))
                .map(Tensor::into_dyn)
                .map_err(|e| EmbedError::Run(e.to_string()))
        };
        let mut values = Vec::with_capacity(self.inputs.len());
        for name in &self.inputs {
            let data = match name.as_str() {
                "input_ids" => &ids,
                "attention_mask" => &mask,
                _ => &types,
            };
            values.push((name.clone(), tensor(data)?));
        }
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(values)
            .map_err(|e| EmbedError::Run(e.to_string()))?;
        let (out_shape, hidden) = outputs
            .get(&self.output)
            .ok_or_else(|| EmbedError::Run(format!("no output `{}`", self.output)))?
            .try_extract_tensor::<f32>()
            .map_err(|e| EmbedError::Run(e.to_string()))?;
        if out_shape[..] != [batch as i64, width as i64, self.dim as i64] {
            return Err(EmbedError::Run(format!(
                "output shape {:?}, expected [{batch}, {width}, {}]",
                &out_shape[..],
                self.dim
            )));
        }
        Ok((0..batch)
            .map(|row| {
                pool(
                    &hidden[row * width * self.dim..],
                    &mask[row * width..(row + 1) * width],
                    self.dim,
                )
            })
            .collect())
    }
}

/// Loads an encoder on a blocking thread (MiniLM where `scripts/models.sh` links it
/// when `model` or `tokenizer` is `None`): what the `embed` kind and RAG indexes share.
pub async fn load_embedder(
    environment: &'static Environment,
    model: Option<String>,
    tokenizer: Option<String>,
    intra_op_threads: usize,
) -> Result<Arc<Embedder>, String> {
    let model = model.unwrap_or_else(|| DEFAULT_MODEL.to_string());
    let tokenizer = tokenizer.unwrap_or_else(|| DEFAULT_TOKENIZER.to_string());
    tokio::task::spawn_blocking(move || {
        Embedder::from_files(
            environment,
            Path::new(&model),
            Path::new(&tokenizer),
            intra_op_threads,
        )
        .map(Arc::new)
        .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Mean over the tokens the mask keeps, then L2 normalisation.
fn pool(hidden: &[f32], mask: &[i64], dim: usize) -> Vec<f32> {
    let mut sum = vec![0f32; dim];
    let mut kept = 0f32;
    for (token, m) in mask.iter().enumerate() {
        if *m != 0 {
            kept += 1.0;
            for (s, h) in sum.iter_mut().zip(&hidden[token * dim..(token + 1) * dim]) {
                *s += h;
            }
        }
    }
    let kept = kept.max(1e-9);
    sum.iter_mut().for_each(|s| *s /= kept);
    let norm = sum.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|s| *s /= norm);
    sum
}

/// Embeds a batch of texts; a batch that fails is retried row by row so one bad text
/// fails alone. Shared with RAG ingest, which batches chunks the same way.
pub(crate) struct EmbedRunner {
    pub(crate) embedder: Arc<Embedder>,
}

impl BatchRunner for EmbedRunner {
    type Row = String;
    type Out = Vec<f32>;
    type Swap = Arc<Embedder>;

    fn run(&mut self, rows: Vec<String>) -> Vec<Result<Vec<f32>, String>> {
        let texts: Vec<&str> = rows.iter().map(String::as_str).collect();
        match self.embedder.embed(&texts) {
            Ok(vectors) => vectors.into_iter().map(Ok).collect(),
            Err(_) if rows.len() > 1 => texts
                .iter()
                .map(|t| {
                    self.embedder
                        .embed(&[t])
                        .map_err(|e| e.to_string())
                        .and_then(|mut v| v.pop().ok_or_else(|| "no vector".to_string()))
                })
                .collect(),
            Err(error) => vec![Err(error.to_string())],
        }
    }

    fn swap(&mut self, embedder: Arc<Embedder>) {
        self.embedder = embedder;
    }
}

/// `[agents.options]` of an `embed` agent.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedOptions {
    /// Dotted path of the text in the event's JSON; without it the raw value (UTF-8).
    pub field: Option<String>,
    /// Where the vectors go.
    pub output_topic: String,
    /// The ONNX encoder (default [`DEFAULT_MODEL`]).
    pub model: Option<String>,
    /// Its `tokenizer.json` (default [`DEFAULT_TOKENIZER`]).
    pub tokenizer: Option<String>,
    /// Most texts per session run (default 32).
    #[serde(default = "default_batch")]
    pub batch_size: usize,
    /// Longest a text waits for others to fill its batch, in ms (default 5).
    #[serde(default = "default_wait")]
    pub max_wait_ms: u64,
    /// Threads per run for this encoder, over `[inference] intra_op_threads` (a
    /// transformer gains from a second core where a tabular model does not).
    pub intra_op_threads: Option<usize>,
}

fn default_batch() -> usize {
    32
}

fn default_wait() -> u64 {
    5
}

impl EmbedOptions {
    /// Parses an agent's options table.
    pub fn from_table(table: &toml::Table) -> Result<EmbedOptions, String> {
        let options: EmbedOptions = table
            .clone()
            .try_into()
            .map_err(|e: toml::de::Error| e.message().to_string())?;
        if options.batch_size == 0 {
            return Err("options.batch_size must be at least 1".to_string());
        }
        Ok(options)
    }
}

/// An `embed` agent.
pub struct EmbedAgent {
    options: EmbedOptions,
    dim: usize,
    batcher: Batcher<EmbedRunner>,
}

impl std::fmt::Debug for EmbedAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbedAgent")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// Header: the embedding's dimension.
pub const H_DIM: &str = "embedding.dim";

impl EmbedAgent {
    /// An agent batching texts into `embedder`; `callers` bounds the texts outstanding
    /// at once (instances × `max_in_flight`).
    pub fn new(
        name: &str,
        options: EmbedOptions,
        embedder: Arc<Embedder>,
        callers: usize,
    ) -> std::io::Result<EmbedAgent> {
        let dim = embedder.dim();
        let batcher = Batcher::start(
            name,
            EmbedRunner { embedder },
            options.batch_size,
            Duration::from_millis(options.max_wait_ms),
            callers,
        )?;
        Ok(EmbedAgent {
            options,
            dim,
            batcher,
        })
    }

    fn text(&self, event: &Event) -> Result<String, HandlerError> {
        let Some(field) = &self.options.field else {
            return String::from_utf8(event.value.as_deref().unwrap_or_default().to_vec())
                .map_err(|_| HandlerError::new("value is not UTF-8 text"));
        };
        let payload = payload(event).map_err(|e| HandlerError::new(e.to_string()))?;
        match lookup(&payload, field) {
            Some(serde_json::Value::String(text)) => Ok(text.clone()),
            None | Some(serde_json::Value::Null) => {
                Err(HandlerError::new(format!("missing field `{field}`")))
            }
            Some(other) => Err(HandlerError::new(format!(
                "field `{field}` is {other}, expected text"
            ))),
        }
    }
}

impl Agent for EmbedAgent {
    fn kind(&self) -> &str {
        "embed"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let text = self.text(event)?;
        let vector = match self.batcher.submit(text).await {
            Ok(vector) => vector,
            Err(BatchError::Failed(reason)) => return Err(HandlerError::new(reason)),
            Err(BatchError::Stopped) => return Err(HandlerError::unavailable("agent stopping")),
        };
        let bytes: Vec<u8> = vector.iter().flat_map(|v| v.to_le_bytes()).collect();
        let text = |s: String| Bytes::from(s);
        let mut headers = vec![
            ("source.topic".to_string(), text(event.topic.to_string())),
            (
                "source.partition".to_string(),
                text(event.partition.to_string()),
            ),
            ("source.offset".to_string(), text(event.offset.to_string())),
            (H_DIM.to_string(), text(self.dim.to_string())),
            (
                "content-type".to_string(),
                text("application/x-f32le".to_string()),
            ),
            ("ce_traceid".to_string(), text(ctx.trace_id().to_string())),
        ];
        if let Some(key) = &event.key {
            headers.push(("source.key".to_string(), key.clone()));
        }
        ctx.emit_raw(
            &self.options.output_topic,
            OutRecord {
                key: event.key.clone(),
                value: Some(Bytes::from(bytes)),
                headers,
                timestamp: event.timestamp,
            },
        );
        ctx.metric("embedded", 1);
        Ok(())
    }
}

/// Reads an `embed` agent's output value back into floats.
pub fn decode_vector(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}
