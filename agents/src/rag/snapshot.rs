//! Snapshots of the vector index, so a restart loads the index and replays only the
//! tail of the embeddings topic instead of re-reading all of it.
//!
//! A snapshot is a folder `snapshot-<n>/` holding the native index (`index.usearch`)
//! and `chunks.json`: the chunks by native key, the embeddings topic offsets the
//! snapshot covers, and the crc32c of the index file. `CURRENT` names the live
//! folder; it is replaced atomically (temp file, fsync, rename, directory fsync) only
//! after the new folder is complete and synced, so a crash at any point leaves the
//! previous snapshot whole. Anything that does not check out on load (a missing file,
//! a checksum or count that disagrees) is reported, and the caller rebuilds from the
//! topic: the log, not the snapshot, is the source of truth.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use usearch::{Index, IndexOptions, MetricKind, ScalarKind};

use super::index::{Chunk, VectorIndex};

/// Offsets of the embeddings topic a snapshot covers: partition → next offset to read.
pub type Covered = BTreeMap<i32, i64>;

/// A snapshot could not be written.
#[derive(Debug, Error)]
pub enum SaveError {
    /// A file could not be written or synced.
    #[error("writing snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The native index could not be saved.
    #[error("saving the vector index: {0}")]
    Native(String),
}

/// A snapshot could not be loaded; the index must be rebuilt from the topic.
#[derive(Debug, Error)]
pub enum LoadError {
    /// A file could not be read.
    #[error("reading snapshot {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The files disagree with each other or with their checksum.
    #[error("snapshot {path} is damaged: {reason}")]
    Damaged {
        /// The snapshot folder.
        path: PathBuf,
        /// What does not check out.
        reason: String,
    },
}

/// A loaded snapshot.
#[derive(Debug)]
pub struct Snapshot {
    /// The index as it was saved.
    pub index: VectorIndex,
    /// What of the embeddings topic it covers.
    pub covered: Covered,
}

#[derive(Serialize, Deserialize)]
struct Manifest {
    dimensions: usize,
    covered: Covered,
    index_crc32c: u32,
    chunks: Vec<(u64, Chunk)>,
}

const CURRENT: &str = "CURRENT";
const INDEX_FILE: &str = "index.usearch";
const CHUNKS_FILE: &str = "chunks.json";

fn io_save(path: &Path) -> impl FnOnce(std::io::Error) -> SaveError + '_ {
    move |source| SaveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn io_load(path: &Path) -> impl FnOnce(std::io::Error) -> LoadError + '_ {
    move |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sync_file(path: &Path) -> std::io::Result<()> {
    fs::File::open(path)?.sync_all()
}

/// Writes a snapshot of `index` covering `covered` into `dir` and makes it current;
/// older snapshots are removed once it is.
pub fn save(dir: &Path, index: &VectorIndex, covered: &Covered) -> Result<(), SaveError> {
    fs::create_dir_all(dir).map_err(io_save(dir))?;
    let previous = current_name(dir);
    let sequence = previous
        .as_deref()
        .and_then(|name| name.strip_prefix("snapshot-"))
        .and_then(|n| n.parse::<u64>().ok())
        .map_or(0, |n| n + 1);
    let name = format!("snapshot-{sequence}");
    let folder = dir.join(&name);
    let _ = fs::remove_dir_all(&folder);
    fs::create_dir_all(&folder).map_err(io_save(&folder))?;
    let index_path = folder.join(INDEX_FILE);
    let index_text = index_path.to_string_lossy().into_owned();
    index
        .native()
        .save(&index_text)
        .map_err(|e| SaveError::Native(e.to_string()))?;
    sync_file(&index_path).map_err(io_save(&index_path))?;
    let index_bytes = fs::read(&index_path).map_err(io_save(&index_path))?;
    let manifest = Manifest {
        dimensions: index.dimensions(),
        covered: covered.clone(),
        index_crc32c: crc32c::crc32c(&index_bytes),
        chunks: index.entries().map(|(key, c)| (key, c.clone())).collect(),
    };
    let chunks_path = folder.join(CHUNKS_FILE);
    let mut file = fs::File::create(&chunks_path).map_err(io_save(&chunks_path))?;
    serde_json::to_writer(&mut file, &manifest)
        .map_err(|e| io_save(&chunks_path)(std::io::Error::other(e)))?;
    file.sync_all().map_err(io_save(&chunks_path))?;
    sync_file(&folder).map_err(io_save(&folder))?;

    let temp = dir.join("CURRENT.tmp");
    let mut pointer = fs::File::create(&temp).map_err(io_save(&temp))?;
    pointer.write_all(name.as_bytes()).map_err(io_save(&temp))?;
    pointer.sync_all().map_err(io_save(&temp))?;
    fs::rename(&temp, dir.join(CURRENT)).map_err(io_save(dir))?;
    sync_file(dir).map_err(io_save(dir))?;
    if let Some(previous) = previous.filter(|p| *p != name) {
        let _ = fs::remove_dir_all(dir.join(previous));
    }
    Ok(())
}

fn current_name(dir: &Path) -> Option<String> {
    let name = fs::read_to_string(dir.join(CURRENT)).ok()?;
    let name = name.trim();
    (name.starts_with("snapshot-") && !name.contains('/')).then(|| name.to_string())
}

/// The current snapshot in `dir`: `Ok(None)` when there is none yet, an error when
/// one exists but does not check out (rebuild from the topic then).
pub fn load(dir: &Path) -> Result<Option<Snapshot>, LoadError> {
    let Some(name) = current_name(dir) else {
        return Ok(None);
    };
    let folder = dir.join(name);
    let damaged = |reason: String| LoadError::Damaged {
        path: folder.clone(),
        reason,
    };
    let chunks_path = folder.join(CHUNKS_FILE);
    let text = fs::read(&chunks_path).map_err(io_load(&chunks_path))?;
    let manifest: Manifest =
        serde_json::from_slice(&text).map_err(|e| damaged(format!("{CHUNKS_FILE}: {e}")))?;
    let index_path = folder.join(INDEX_FILE);
    let index_bytes = fs::read(&index_path).map_err(io_load(&index_path))?;
    if crc32c::crc32c(&index_bytes) != manifest.index_crc32c {
        return Err(damaged(format!("{INDEX_FILE} fails its checksum")));
    }
    let options = IndexOptions {
        dimensions: manifest.dimensions,
        metric: MetricKind::Cos,
        quantization: ScalarKind::F32,
        connectivity: 16,
        expansion_add: 0,
        expansion_search: 0,
        multi: false,
    };
    let native = Index::new(&options).map_err(|e| damaged(e.to_string()))?;
    native
        .load_from_buffer(&index_bytes)
        .map_err(|e| damaged(format!("{INDEX_FILE}: {e}")))?;
    let chunks: HashMap<u64, Chunk> = manifest.chunks.into_iter().collect();
    let index = VectorIndex::from_parts(native, chunks).map_err(|e| damaged(e.to_string()))?;
    Ok(Some(Snapshot {
        index,
        covered: manifest.covered,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rag::Filter;

    fn filled(n: u32) -> VectorIndex {
        let mut index = VectorIndex::new(4).unwrap();
        for i in 0..n {
            let chunk = Chunk {
                doc: format!("d{i}"),
                no: 0,
                text: format!("text {i}"),
                metadata: Default::default(),
            };
            let v = [(i as f32).sin(), (i as f32).cos(), 0.5, (i % 5) as f32];
            index.upsert(chunk, &v).unwrap();
        }
        index
    }

    #[test]
    fn a_saved_snapshot_loads_with_its_offsets_and_answers_alike() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load(dir.path()).unwrap().is_none());
        let index = filled(500);
        let covered = Covered::from([(0, 500), (1, 7)]);
        save(dir.path(), &index, &covered).unwrap();
        save(dir.path(), &index, &covered).unwrap();
        let loaded = load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.covered, covered);
        assert_eq!(loaded.index.len(), 500);
        let query = [0.3, 0.9, 0.5, 2.0];
        let before = index.search(&query, 5, &Filter::new()).unwrap();
        let after = loaded.index.search(&query, 5, &Filter::new()).unwrap();
        assert_eq!(before, after);
        let folders = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count();
        assert_eq!(folders, 1, "the older snapshot is removed");
        // New chunks after the load get fresh keys.
        let mut index = loaded.index;
        let chunk = Chunk {
            doc: "new".to_string(),
            no: 0,
            text: String::new(),
            metadata: Default::default(),
        };
        index.upsert(chunk, &[1.0, 0.0, 0.0, 0.0]).unwrap();
        assert_eq!(index.len(), 501);
    }

    #[test]
    fn a_damaged_snapshot_is_reported_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &filled(50), &Covered::new()).unwrap();
        let name = current_name(dir.path()).unwrap();
        let index_path = dir.path().join(&name).join(INDEX_FILE);
        let mut bytes = fs::read(&index_path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        fs::write(&index_path, bytes).unwrap();
        assert!(matches!(load(dir.path()), Err(LoadError::Damaged { .. })));
        fs::remove_file(dir.path().join(&name).join(CHUNKS_FILE)).unwrap();
        assert!(matches!(load(dir.path()), Err(LoadError::Io { .. })));
    }
}
