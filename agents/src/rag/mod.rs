//! Real-time RAG on the log: chunk embeddings kept in an in-process vector index that
//! the embeddings topic is the source of truth for, snapshotted with the offsets it
//! covers so a restart replays only the tail.

pub mod index;
pub mod snapshot;

pub use index::{chunk_id, Chunk, Filter, Hit, IndexError, SearchError, VectorIndex};
