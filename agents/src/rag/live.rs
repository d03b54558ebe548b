//! A live index: the vector index of one `[rag.<name>]`, kept up to date from its
//! embeddings topic and snapshotted with the offsets it covers.
//!
//! At start the newest snapshot is loaded (a missing, damaged or mismatching one is
//! rebuilt from the topic) and only the tail after the offsets it covers is replayed;
//! then the tail is read every `poll_ms`, so a chunk is searchable that long after it
//! is written. Every record is applied in topic order and by chunk id, so a record
//! written twice (at-least-once ingest after a crash) is still one entry.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Serialize;
use thiserror::Error;

use super::index::{Filter, Hit, IndexError, SearchError, VectorIndex};
use super::record::{decode, Change};
use super::snapshot::{self, Covered};
use crate::backend::{Backend, ReadError, StartAt, TopicError};
use crate::inference::embed::{EmbedError, Embedder};

/// Starting an index failed.
#[derive(Debug, Error)]
pub enum StartIndexError {
    /// Its embeddings topic could not be created.
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// Its embeddings topic could not be read.
    #[error("index `{index}`: reading its embeddings topic: {source}")]
    Read {
        /// The index.
        index: String,
        /// Why.
        source: ReadError,
    },
    /// The empty index could not be made.
    #[error("index `{index}`: {source}")]
    Index {
        /// The index.
        index: String,
        /// Why.
        source: IndexError,
    },
}

/// A text query could not be answered.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The encoder failed on the query text.
    #[error("embedding the query: {0}")]
    Embed(#[from] EmbedError),
    /// The search itself failed.
    #[error(transparent)]
    Search(#[from] SearchError),
    /// The embedding task died.
    #[error("embedding the query: {0}")]
    Task(String),
}

/// What an index holds and where it stands, for `GET /v1/indexes` and tests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IndexStats {
    /// Chunks indexed.
    pub chunks: usize,
    /// Distinct documents among them.
    pub documents: usize,
    /// The embeddings topic.
    pub topic: String,
    /// Next offset to read, by partition.
    pub covered: Covered,
    /// Records of the topic that were not chunk records (skipped).
    pub skipped_records: u64,
    /// Whether the running index started from a snapshot.
    pub from_snapshot: bool,
    /// Records replayed at start (the tail after the snapshot, or the whole topic).
    pub replayed_at_start: u64,
    /// How long start-up took (snapshot load and tail replay), in ms.
    pub start_ms: u64,
    /// Bytes the native index holds.
    pub native_memory_bytes: usize,
}

struct Indexed {
    index: VectorIndex,
    covered: Covered,
    changed: bool,
    skipped: u64,
}

/// One named index, shared by the agents and the HTTP listener of a process.
pub struct LiveIndex {
    name: String,
    topic: String,
    embedder: Arc<Embedder>,
    state: RwLock<Indexed>,
    snapshot_dir: Option<PathBuf>,
    from_snapshot: bool,
    replayed_at_start: u64,
    start_ms: u64,
}

impl std::fmt::Debug for LiveIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveIndex")
            .field("name", &self.name)
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

/// How a live index is set up.
#[derive(Debug, Clone)]
pub struct LiveIndexConfig {
    /// Its name (`[rag.<name>]`).
    pub name: String,
    /// Its embeddings topic.
    pub topic: String,
    /// Where snapshots go, if anywhere.
    pub snapshot_dir: Option<PathBuf>,
    /// How often a changed index is snapshotted.
    pub snapshot_interval: Duration,
    /// How often the topic's tail is read.
    pub poll: Duration,
}

impl LiveIndex {
    /// Loads the snapshot, replays the topic's tail and starts following it. The
    /// follower stops when the last handle to the index is dropped.
    pub async fn start<B: Backend>(
        backend: &B,
        config: LiveIndexConfig,
        embedder: Arc<Embedder>,
    ) -> Result<Arc<LiveIndex>, StartIndexError> {
        let started = Instant::now();
        // One partition: the index applies the topic in one order (a replacement after
        // its original), and a restart resumes from one offset.
        backend.ensure_topic(&config.topic, 1, true).await?;
        let loaded = match &config.snapshot_dir {
            Some(dir) => load_snapshot(dir.clone(), &config.name, embedder.dim()).await,
            None => None,
        };
        let from_snapshot = loaded.is_some();
        let (index, covered) = match loaded {
            Some(snapshot) => (snapshot.index, snapshot.covered),
            None => (
                VectorIndex::new(embedder.dim()).map_err(|source| StartIndexError::Index {
                    index: config.name.clone(),
                    source,
                })?,
                Covered::new(),
            ),
        };
        let mut live = LiveIndex {
            name: config.name.clone(),
            topic: config.topic.clone(),
            embedder,
            state: RwLock::new(Indexed {
                index,
                covered,
                changed: false,
                skipped: 0,
            }),
            snapshot_dir: config.snapshot_dir.clone(),
            from_snapshot,
            replayed_at_start: 0,
            start_ms: 0,
        };
        live.replayed_at_start =
            live.catch_up(backend)
                .await
                .map_err(|source| StartIndexError::Read {
                    index: config.name.clone(),
                    source,
                })?;
        live.start_ms = started.elapsed().as_millis() as u64;
        let live = Arc::new(live);
        tracing::info!(
            index = %live.name,
            chunks = live.stats().chunks,
            from_snapshot,
            replayed = live.replayed_at_start,
            start_ms = live.start_ms,
            "vector index ready"
        );
        if !from_snapshot && live.replayed_at_start > 0 {
            // The next start should not replay the whole topic again.
            live.clone().snapshot().await;
        }
        follow(
            backend.clone(),
            Arc::downgrade(&live),
            config.poll,
            config.snapshot_interval,
        );
        Ok(live)
    }

    /// The index's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The embeddings topic it follows.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The encoder of its chunks, which queries must use too.
    pub fn embedder(&self) -> &Arc<Embedder> {
        &self.embedder
    }

    /// The `k` chunks nearest to `vector` that meet `filter`.
    pub fn search(
        &self,
        vector: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, SearchError> {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.index.search(vector, k, filter)
    }

    /// Embeds `text` with the index's encoder (on a blocking thread), then searches.
    pub async fn search_text(
        &self,
        text: &str,
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, QueryError> {
        let embedder = self.embedder.clone();
        let text = text.to_string();
        let mut vectors = tokio::task::spawn_blocking(move || embedder.embed(&[&text]))
            .await
            .map_err(|e| QueryError::Task(e.to_string()))??;
        let vector = vectors
            .pop()
            .ok_or_else(|| QueryError::Task("the encoder returned no vector".to_string()))?;
        Ok(self.search(&vector, k, filter)?)
    }

    /// What it holds now.
    pub fn stats(&self) -> IndexStats {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        let documents: std::collections::HashSet<&str> =
            state.index.entries().map(|(_, c)| c.doc.as_str()).collect();
        IndexStats {
            chunks: state.index.len(),
            documents: documents.len(),
            topic: self.topic.clone(),
            covered: state.covered.clone(),
            skipped_records: state.skipped,
            from_snapshot: self.from_snapshot,
            replayed_at_start: self.replayed_at_start,
            start_ms: self.start_ms,
            native_memory_bytes: state.index.native_memory_bytes(),
        }
    }

    /// Whether chunk `id` (`doc#no`) is indexed.
    pub fn contains(&self, id: &str) -> bool {
        let state = self.state.read().unwrap_or_else(|p| p.into_inner());
        state.index.contains(id)
    }

    /// Reads the topic from where the index stands to its end; returns the records
    /// applied.
    async fn catch_up<B: Backend>(&self, backend: &B) -> Result<u64, ReadError> {
        let from = {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            match state.covered.values().min() {
                Some(next) => StartAt::Offset(*next),
                None => StartAt::Earliest,
            }
        };
        let mut stream = backend.read_topic(&self.topic, from).await?;
        let mut applied = 0;
        while let Some(event) = stream.next().await {
            let event = event?;
            let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
            let next = state.covered.get(&event.partition).copied().unwrap_or(0);
            if event.offset < next {
                continue;
            }
            state.covered.insert(event.partition, event.offset + 1);
            state.changed = true;
            applied += 1;
            let outcome = match decode(&event) {
                Ok(Change::Upsert(chunk, vector)) => state
                    .index
                    .upsert(chunk, &vector)
                    .map_err(|e| e.to_string()),
                Ok(Change::Remove(id)) => state.index.remove(&id).map_err(|e| e.to_string()),
                Err(reason) => Err(reason),
            };
            if let Err(reason) = outcome {
                state.skipped += 1;
                tracing::warn!(index = %self.name, offset = event.offset, %reason, "record skipped");
            }
        }
        Ok(applied)
    }

    /// Writes a snapshot if the index changed since the last one (on a blocking
    /// thread: saving 100k vectors takes seconds, searches go on meanwhile).
    async fn snapshot(self: Arc<Self>) {
        let Some(dir) = self.snapshot_dir.clone() else {
            return;
        };
        let live = self.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            let mut state = live.state.write().unwrap_or_else(|p| p.into_inner());
            if !state.changed {
                return Ok(false);
            }
            // Marked first: a failed save is retried at the next interval.
            state.changed = false;
            let state = std::sync::RwLockWriteGuard::downgrade(state);
            snapshot::save(&dir, &state.index, &state.covered).map(|_| true)
        })
        .await;
        match outcome {
            Ok(Ok(true)) => tracing::debug!(index = %self.name, "snapshot written"),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => {
                let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
                state.changed = true;
                tracing::warn!(index = %self.name, %error, "snapshot failed; retried later");
            }
            Err(error) => tracing::warn!(index = %self.name, %error, "snapshot task failed"),
        }
    }
}

/// The snapshot in `dir` if it loads and fits; otherwise `None` (rebuild).
async fn load_snapshot(dir: PathBuf, name: &str, dimensions: usize) -> Option<snapshot::Snapshot> {
    let loaded = tokio::task::spawn_blocking(move || snapshot::load(&dir)).await;
    match loaded {
        Ok(Ok(Some(snapshot))) if snapshot.index.dimensions() == dimensions => Some(snapshot),
        Ok(Ok(Some(snapshot))) => {
            tracing::warn!(index = %name, got = snapshot.index.dimensions(), dimensions, "snapshot of another encoder; rebuilding from the topic");
            None
        }
        Ok(Ok(None)) => None,
        Ok(Err(error)) => {
            tracing::warn!(index = %name, %error, "snapshot unusable; rebuilding from the topic");
            None
        }
        Err(error) => {
            tracing::warn!(index = %name, %error, "snapshot load failed; rebuilding from the topic");
            None
        }
    }
}

/// Reads the tail every `poll` and snapshots every `interval`, until the index is
/// dropped.
fn follow<B: Backend>(backend: B, live: Weak<LiveIndex>, poll: Duration, interval: Duration) {
    tokio::spawn(async move {
        let mut last_snapshot = Instant::now();
        loop {
            tokio::time::sleep(poll).await;
            let Some(index) = live.upgrade() else {
                return;
            };
            if let Err(error) = index.catch_up(&backend).await {
                tracing::warn!(index = %index.name, %error, "cannot read the embeddings topic");
            }
            if last_snapshot.elapsed() >= interval {
                last_snapshot = Instant::now();
                index.snapshot().await;
            }
        }
    });
}
