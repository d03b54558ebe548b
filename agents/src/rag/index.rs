//! The vector index of real-time RAG: chunk embeddings searchable by cosine similarity,
//! with exact-match metadata filters.
//!
//! Approximate nearest neighbours come from USearch (the `usearch` crate, Unum's
//! single-header C++ HNSW with a maintained Rust binding): on 100k 384-d vectors it
//! keeps recall@10 well above 0.95 at sub-millisecond queries, supports removal
//! (documents are replaced and deleted on the log), filtered search (the filter runs
//! inside the graph walk, so a selective filter still fills `k`), and saves and loads
//! its graph as one file, which is what a snapshot needs. Pure-Rust alternatives were
//! weighed: `instant-distance` cannot remove points, `hnsw_rs` marks deletions only by
//! filtering and has no filtered walk of its own.
//!
//! The index holds what the embeddings topic says, nothing more: one entry per chunk
//! id (`doc#no`), replaced when the chunk is written again, removed by its tombstone.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

/// One chunk of a document, as the embeddings topic carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// The document's id (the documents topic's key).
    pub doc: String,
    /// The chunk's number within its document, from 0.
    pub no: u32,
    /// The chunk's text, returned with hits so answers can quote and cite it.
    pub text: String,
    /// The document's metadata, matched exactly by filters.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl Chunk {
    /// The chunk's id on the log: `doc#no`.
    pub fn id(&self) -> String {
        chunk_id(&self.doc, self.no)
    }
}

/// The id of chunk `no` of `doc`: the embeddings topic's record key.
pub fn chunk_id(doc: &str, no: u32) -> String {
    format!("{doc}#{no}")
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hit {
    /// The chunk, with its text and metadata.
    #[serde(flatten)]
    pub chunk: Chunk,
    /// Cosine similarity to the query, 1 being identical.
    pub score: f32,
}

/// Exact-match conditions on metadata fields, all of which a hit must meet.
pub type Filter = BTreeMap<String, serde_json::Value>;

/// The index could not be built or changed.
#[derive(Debug, Error)]
pub enum IndexError {
    /// A vector has the wrong number of dimensions.
    #[error("vector has {got} dimensions, the index {expected}")]
    Dimensions {
        /// The index's dimensions.
        expected: usize,
        /// The vector's.
        got: usize,
    },
    /// USearch refused the operation.
    #[error("vector index: {0}")]
    Native(String),
}

/// A search could not run.
#[derive(Debug, Error)]
pub enum SearchError {
    /// The query vector has the wrong number of dimensions.
    #[error("query has {got} dimensions, the index {expected}")]
    Dimensions {
        /// The index's dimensions.
        expected: usize,
        /// The query's.
        got: usize,
    },
    /// USearch failed.
    #[error("vector index: {0}")]
    Native(String),
}

/// Chunk embeddings and their chunks, searchable by similarity.
pub struct VectorIndex {
    native: Index,
    dimensions: usize,
    /// Native key of every chunk id.
    keys: HashMap<String, u64>,
    /// The chunk behind every native key.
    chunks: HashMap<u64, Chunk>,
    next_key: u64,
}

impl std::fmt::Debug for VectorIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VectorIndex")
            .field("dimensions", &self.dimensions)
            .field("chunks", &self.chunks.len())
            .finish_non_exhaustive()
    }
}

/// Concurrent searches the native index keeps scratch space for.
const SEARCH_THREADS: usize = 8;

/// Candidates kept while walking the graph: USearch's defaults (128 when adding, 64
/// when searching) lose recall on 384-d text embeddings; these keep recall@10 above
/// 0.95 at 100k chunks (see the `rag_index` bench).
const EXPANSION_ADD: usize = 128;
const EXPANSION_SEARCH: usize = 128;

fn native_failure(error: impl std::fmt::Display) -> IndexError {
    IndexError::Native(error.to_string())
}

impl VectorIndex {
    /// An empty index of `dimensions`-d vectors (cosine).
    pub fn new(dimensions: usize) -> Result<VectorIndex, IndexError> {
        let options = IndexOptions {
            dimensions,
            metric: MetricKind::Cos,
            quantization: ScalarKind::F32,
            connectivity: 16,
            expansion_add: EXPANSION_ADD,
            expansion_search: EXPANSION_SEARCH,
            multi: false,
        };
        let native = Index::new(&options).map_err(native_failure)?;
        native
            .reserve_capacity_and_threads(1024, SEARCH_THREADS)
            .map_err(native_failure)?;
        Ok(VectorIndex {
            native,
            dimensions,
            keys: HashMap::new(),
            chunks: HashMap::new(),
            next_key: 0,
        })
    }

    /// Dimensions of the vectors.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Chunks indexed.
    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    /// Whether nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// Whether chunk `id` (`doc#no`) is indexed.
    pub fn contains(&self, id: &str) -> bool {
        self.keys.contains_key(id)
    }

    /// Bytes the native index holds (graph and vectors), for the memory figure.
    pub fn native_memory_bytes(&self) -> usize {
        self.native.memory_usage()
    }

    /// Adds a chunk, replacing the one with the same id.
    pub fn upsert(&mut self, chunk: Chunk, vector: &[f32]) -> Result<(), IndexError> {
        if vector.len() != self.dimensions {
            return Err(IndexError::Dimensions {
                expected: self.dimensions,
                got: vector.len(),
            });
        }
        self.remove(&chunk.id())?;
        let capacity = self.native.capacity();
        if self.native.size() + 1 > capacity {
            self.native
                .reserve_capacity_and_threads(capacity.max(1024) * 2, SEARCH_THREADS)
                .map_err(native_failure)?;
        }
        let key = self.next_key;
        self.native.add(key, vector).map_err(native_failure)?;
        self.next_key += 1;
        self.keys.insert(chunk.id(), key);
        self.chunks.insert(key, chunk);
        Ok(())
    }

    /// Removes the chunk `id` (`doc#no`) if indexed.
    pub fn remove(&mut self, id: &str) -> Result<(), IndexError> {
        if let Some(key) = self.keys.remove(id) {
            self.chunks.remove(&key);
            self.native.remove(key).map_err(native_failure)?;
        }
        Ok(())
    }

    /// The `k` chunks most similar to `query` that meet `filter`, best first.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        filter: &Filter,
    ) -> Result<Vec<Hit>, SearchError> {
        if query.len() != self.dimensions {
            return Err(SearchError::Dimensions {
                expected: self.dimensions,
                got: query.len(),
            });
        }
        if k == 0 || self.chunks.is_empty() {
            return Ok(Vec::new());
        }
        let matches = if filter.is_empty() {
            self.native.search(query, k)
        } else {
            self.native.filtered_search(query, k, |key| {
                self.chunks
                    .get(&key)
                    .is_some_and(|chunk| matches_filter(chunk, filter))
            })
        }
        .map_err(|e| SearchError::Native(e.to_string()))?;
        Ok(matches
            .keys
            .iter()
            .zip(&matches.distances)
            .filter_map(|(key, distance)| {
                let chunk = self.chunks.get(key)?;
                Some(Hit {
                    chunk: chunk.clone(),
                    score: 1.0 - distance,
                })
            })
            .collect())
    }

    /// Every indexed chunk with its native key, for snapshots.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (u64, &Chunk)> {
        self.chunks.iter().map(|(key, chunk)| (*key, chunk))
    }

    /// The native index, for snapshots.
    pub(crate) fn native(&self) -> &Index {
        &self.native
    }

    /// An index from a loaded native index and its chunks (a snapshot), checked to
    /// agree with each other.
    pub(crate) fn from_parts(
        native: Index,
        chunks: HashMap<u64, Chunk>,
    ) -> Result<VectorIndex, IndexError> {
        if native.size() != chunks.len() || chunks.keys().any(|key| !native.contains(*key)) {
            return Err(IndexError::Native(format!(
                "snapshot disagrees with itself: {} vectors, {} chunks",
                native.size(),
                chunks.len()
            )));
        }
        native
            .reserve_capacity_and_threads(native.capacity().max(1024), SEARCH_THREADS)
            .map_err(native_failure)?;
        let keys = chunks.iter().map(|(key, c)| (c.id(), *key)).collect();
        let next_key = chunks.keys().max().map_or(0, |k| k + 1);
        Ok(VectorIndex {
            dimensions: native.dimensions(),
            native,
            keys,
            chunks,
            next_key,
        })
    }
}

/// Whether `chunk`'s metadata has every field of `filter` with exactly that value.
fn matches_filter(chunk: &Chunk, filter: &Filter) -> bool {
    filter
        .iter()
        .all(|(field, value)| chunk.metadata.get(field) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chunk(doc: &str, no: u32, lang: &str) -> Chunk {
        Chunk {
            doc: doc.to_string(),
            no,
            text: format!("{doc} {no}"),
            metadata: json!({ "lang": lang })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }

    fn unit(dims: usize, hot: usize) -> Vec<f32> {
        let mut v = vec![0.01; dims];
        v[hot] = 1.0;
        v
    }

    #[test]
    fn finds_the_nearest_replaces_and_removes() {
        let mut index = VectorIndex::new(8).unwrap();
        for i in 0..8 {
            index
                .upsert(chunk("d", i, "en"), &unit(8, i as usize))
                .unwrap();
        }
        let hits = index.search(&unit(8, 3), 1, &Filter::new()).unwrap();
        assert_eq!(hits[0].chunk.id(), "d#3");
        assert!(hits[0].score > 0.99);
        // Replaced: chunk 3 now points elsewhere; one entry per id.
        index.upsert(chunk("d", 3, "en"), &unit(8, 5)).unwrap();
        assert_eq!(index.len(), 8);
        let hits = index.search(&unit(8, 3), 1, &Filter::new()).unwrap();
        assert_ne!(hits[0].chunk.id(), "d#3");
        index.remove("d#5").unwrap();
        let ids: Vec<String> = index
            .search(&unit(8, 5), 8, &Filter::new())
            .unwrap()
            .iter()
            .map(|h| h.chunk.id())
            .collect();
        assert!(!ids.contains(&"d#5".to_string()));
        assert_eq!(ids[0], "d#3");
    }

    #[test]
    fn filters_match_metadata_exactly() {
        let mut index = VectorIndex::new(8).unwrap();
        for i in 0..8 {
            let lang = if i % 2 == 0 { "en" } else { "de" };
            index
                .upsert(chunk("d", i, lang), &unit(8, i as usize))
                .unwrap();
        }
        let filter = Filter::from([("lang".to_string(), json!("de"))]);
        let hits = index.search(&unit(8, 2), 3, &filter).unwrap();
        assert_eq!(hits.len(), 3);
        assert!(hits.iter().all(|h| h.chunk.metadata["lang"] == "de"));
    }

    #[test]
    fn wrong_dimensions_are_errors_not_panics() {
        let mut index = VectorIndex::new(8).unwrap();
        assert!(matches!(
            index.upsert(chunk("d", 0, "en"), &[1.0; 3]),
            Err(IndexError::Dimensions { .. })
        ));
        assert!(matches!(
            index.search(&[1.0; 9], 1, &Filter::new()),
            Err(SearchError::Dimensions { .. })
        ));
    }

    #[test]
    fn grows_past_its_first_capacity() {
        let mut index = VectorIndex::new(4).unwrap();
        for i in 0..3000u32 {
            let v = [(i as f32).sin(), (i as f32).cos(), 1.0, (i % 7) as f32];
            index.upsert(chunk(&format!("d{i}"), 0, "en"), &v).unwrap();
        }
        assert_eq!(index.len(), 3000);
    }
}
