//! Real-time RAG on the log: documents are chunked and embedded into an embeddings
//! topic (`rag_ingest`), which in-process vector indexes follow (`[rag.<name>]`), and
//! questions are answered from what they retrieve (`rag`), searched over HTTP
//! (`POST /v1/search`) or by a `tool_agent`'s `search` tool.
//!
//! The embeddings topic is the source of truth: an index is snapshotted with the
//! offsets it covers, so a restart replays only the tail, and a lost or damaged
//! snapshot is rebuilt from the topic.
//!
//! Module map: `chunking` (sentence-bounded chunks), `record` (chunk records on the
//! topic), `index` (the HNSW index and its filters), `snapshot` (on disk), `live` (an
//! index following its topic), `query` (the registry and search requests), `settings`
//! (`[rag.<name>]`), `ingest` and `answer` (the kinds).

pub mod answer;
pub mod chunking;
pub mod index;
pub mod ingest;
pub mod live;
pub mod query;
pub mod record;
pub mod settings;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

pub use answer::{AnswerOptions, RagAnswer};
pub use index::{chunk_id, Chunk, Filter, Hit, IndexError, SearchError, VectorIndex};
pub use ingest::{IngestOptions, RagIngest};
pub use live::{IndexStats, LiveIndex, LiveIndexConfig, QueryError, StartIndexError};
pub use query::{Indexes, SearchRequest, SearchRequestError, SearchResponse};
pub use settings::{IndexSettings, RagSettings};

use crate::backend::Backend;
use crate::config::{AgentDef, AgentsConfig, ConfigError, StartAgentsError};
use crate::inference::embed::{self, Embedder};
use crate::inference::{InferenceSettings, StartInferenceError};
use crate::runtime::{AgentHandle, Runtime};

/// The agent kinds this module builds.
pub const KINDS: &[&str] = &["rag_ingest", "rag"];

/// The index an agent definition names, checked to be declared.
fn declared_index(def: &AgentDef, index: &str, rag: &RagSettings) -> Result<(), ConfigError> {
    if rag.indexes.contains_key(index) {
        Ok(())
    } else {
        Err(ConfigError::Options {
            name: def.name.clone(),
            reason: format!("options.index `{index}` is not declared (add a [rag.{index}] table)"),
        })
    }
}

/// Checks a RAG agent's definition against the declared indexes and endpoints.
pub(crate) fn validate(def: &AgentDef, config: &AgentsConfig) -> Result<(), ConfigError> {
    match def.kind.as_str() {
        "rag_ingest" => {
            let options =
                IngestOptions::from_table(&def.options).map_err(|reason| ConfigError::Options {
                    name: def.name.clone(),
                    reason,
                })?;
            declared_index(def, &options.index, &config.rag)
        }
        _ => {
            let options = AnswerOptions::from_def(def)?;
            declared_index(def, &options.index, &config.rag)?;
            config
                .llm
                .endpoint(&options.llm)
                .map(|_| ())
                .map_err(|e| ConfigError::Options {
                    name: def.name.clone(),
                    reason: e.to_string(),
                })
        }
    }
}

/// Loads index `name`'s encoder (ONNX Runtime from `[inference]`).
async fn encoder(
    name: &str,
    settings: &IndexSettings,
    inference: &InferenceSettings,
) -> Result<Arc<Embedder>, StartInferenceError> {
    let environment = inference.environment()?;
    let threads = settings
        .intra_op_threads
        .unwrap_or(inference.intra_op_threads());
    embed::load_embedder(
        environment,
        settings.model.clone(),
        settings.tokenizer.clone(),
        threads,
    )
    .await
    .map_err(|reason| StartInferenceError::Model {
        agent: format!("[rag.{name}]"),
        reason,
    })
}

/// Starts every declared index and makes it reachable through the runtime's
/// [`Indexes`] (agents, the `search` tool and `POST /v1/search` find it there).
pub(crate) async fn start_indexes<B: Backend>(
    runtime: &Runtime<B>,
    config: &AgentsConfig,
) -> Result<(), StartAgentsError> {
    for (name, settings) in &config.rag.indexes {
        let embedder = encoder(name, settings, &config.inference).await?;
        let live = LiveIndex::start(
            runtime.backend(),
            LiveIndexConfig {
                name: name.clone(),
                topic: settings.embeddings_topic(name),
                snapshot_dir: settings.snapshot_dir(name, config.data_dir.as_deref()),
                snapshot_interval: Duration::from_millis(settings.snapshot_interval_ms()),
                poll: Duration::from_millis(settings.poll_ms()),
            },
            embedder,
        )
        .await?;
        runtime.indexes().insert(live);
    }
    Ok(())
}

/// Starts a RAG agent (its index is running: [`start_indexes`] came first).
pub(crate) async fn start<B: Backend>(
    runtime: &Runtime<B>,
    def: &AgentDef,
    config: &AgentsConfig,
) -> Result<AgentHandle, StartAgentsError> {
    validate(def, config)?;
    let not_running = |index: &str| ConfigError::Options {
        name: def.name.clone(),
        reason: format!("index `{index}` is not running"),
    };
    if def.kind == "rag_ingest" {
        let options =
            IngestOptions::from_table(&def.options).map_err(|reason| ConfigError::Options {
                name: def.name.clone(),
                reason,
            })?;
        let index = runtime
            .indexes()
            .get(&options.index)
            .ok_or_else(|| not_running(&options.index))?;
        let callers = def.instances.unwrap_or(1).max(1) * def.max_in_flight.unwrap_or(1).max(1);
        let agent = RagIngest::new(&def.name, options, index, callers)
            .map_err(StartInferenceError::from)?;
        return Ok(runtime.start(def.spec(), agent).await?);
    }
    let options = AnswerOptions::from_def(def)?;
    let index = runtime
        .indexes()
        .get(&options.index)
        .ok_or_else(|| not_running(&options.index))?;
    let model = crate::llm::live_model(runtime.backend(), &def.name, &options.llm, &config.llm)
        .await
        .map_err(|e| crate::llm::setup_error(def, e))?;
    let agent = RagAnswer::new(options, index, model);
    Ok(runtime.start(def.spec(), agent).await?)
}
