//! `[rag.<name>]` tables: the vector indexes a process keeps, each following its own
//! embeddings topic.
//!
//! ```toml
//! [rag.docs]
//! embeddings_topic = "docs.chunks"     # default rag.<name>.chunks (one partition, compacted)
//! model = ".models/minilm/model.onnx"  # the sentence encoder (default: MiniLM)
//! tokenizer = ".models/minilm/tokenizer.json"
//! intra_op_threads = 2                 # threads per encoder run
//! snapshot_dir = "data/rag/docs"       # default <data-dir>/rag/<name>
//! snapshot_interval_ms = 60000         # how often a changed index is snapshotted
//! poll_ms = 50                         # how often the topic's tail is read
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[rag.<name>]` tables by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct RagSettings {
    /// Index definitions by name.
    pub indexes: BTreeMap<String, IndexSettings>,
}

/// One `[rag.<name>]` table. Unknown keys are refused, naming the key, so a typo does
/// not silently leave a default in place.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSettings {
    /// The topic of chunk records this index is built from (default
    /// `rag.<name>.chunks`).
    pub embeddings_topic: Option<String>,
    /// The ONNX sentence encoder shared by ingest, queries and the index (default
    /// MiniLM, where `bash scripts/models.sh` links it).
    pub model: Option<String>,
    /// Its `tokenizer.json`.
    pub tokenizer: Option<String>,
    /// Threads per encoder run (default: `[inference] intra_op_threads`).
    pub intra_op_threads: Option<usize>,
    /// Where snapshots go (default `<data-dir>/rag/<name>`; none without a data dir).
    pub snapshot_dir: Option<String>,
    /// How often a changed index is snapshotted, in ms (default 60,000).
    pub snapshot_interval_ms: Option<u64>,
    /// How often the topic's tail is read, in ms (default 50): the floor of freshness.
    pub poll_ms: Option<u64>,
}

impl IndexSettings {
    /// The embeddings topic of index `name`.
    pub fn embeddings_topic(&self, name: &str) -> String {
        self.embeddings_topic
            .clone()
            .unwrap_or_else(|| format!("rag.{name}.chunks"))
    }

    /// Where index `name` keeps its snapshots, if anywhere.
    pub fn snapshot_dir(&self, name: &str, data_dir: Option<&Path>) -> Option<PathBuf> {
        match (&self.snapshot_dir, data_dir) {
            (Some(dir), _) => Some(PathBuf::from(dir)),
            (None, Some(data)) => Some(data.join("rag").join(name)),
            (None, None) => None,
        }
    }

    /// The snapshot interval.
    pub fn snapshot_interval_ms(&self) -> u64 {
        self.snapshot_interval_ms.unwrap_or(60_000).max(100)
    }

    /// The tail polling interval.
    pub fn poll_ms(&self) -> u64 {
        self.poll_ms.unwrap_or(50).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_keys() {
        let settings: RagSettings = toml::from_str("[docs]\npoll_ms = 10").unwrap();
        let docs = &settings.indexes["docs"];
        assert_eq!(docs.embeddings_topic("docs"), "rag.docs.chunks");
        assert_eq!(docs.poll_ms(), 10);
        assert_eq!(
            docs.snapshot_dir("docs", Some(Path::new("/d"))),
            Some(PathBuf::from("/d/rag/docs"))
        );
        assert_eq!(docs.snapshot_dir("docs", None), None);
        let error = toml::from_str::<RagSettings>("[docs]\npoll = 10")
            .unwrap_err()
            .to_string();
        assert!(error.contains("poll"), "{error}");
    }
}
