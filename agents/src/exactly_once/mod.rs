//! Exactly-once agents (`processing = "exactly_once"`): an instance's outputs, state
//! writes, decisions and input offsets commit atomically, as Kafka Streams' EOS v2 does.
//!
//! Each instance owns one transactional producer whose id is derived from the group,
//! the process and the instance number ([`transactional_id`]), stable across restarts,
//! so a restarted instance fences the transaction its previous incarnation left open.
//! Every batch is one transaction: begin, the batch's outputs (emits, dead letters,
//! decisions, state) produced into it, the batch's input offsets sent with the
//! consumer's group metadata (member id and generation, so a member rebalanced out
//! cannot commit, KIP-447), commit. On any failure (fenced, rebalanced, a write
//! refused) the transaction is aborted, the producer re-initialised and the member
//! rejoins: it reads again from the committed offsets. A member taking over a
//! partition waits while another's transaction still holds offsets of it
//! (`require_stable`), so its work is either committed before or redone after.
//!
//! The embedded backend calls the broker's own transaction coordinator (the state
//! machine wire clients use, so groups mixing rdkafka members keep working) with no
//! wire hop ([`embedded`]); the Kafka backend uses a transactional librdkafka producer
//! and `send_offsets_to_transaction` ([`kafka`]).
//!
//! State writes reach the in-memory store only when their transaction commits; an
//! aborted batch's state is never seen.

pub mod embedded;
pub mod kafka;
pub(crate) mod run;

use std::future::Future;
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use thiserror::Error;

use crate::backend::{Position, Sink, Source};
use crate::state::StateStore;

/// How an agent's work is committed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Processing {
    /// Outputs are durable before the input offsets are committed: after a crash some
    /// inputs are handled again and their outputs written twice (the default).
    #[default]
    AtLeastOnce,
    /// Outputs, state, decisions and input offsets commit in one transaction: a
    /// read_committed consumer sees each input's outputs exactly once.
    ExactlyOnce,
}

/// `transaction.timeout.ms` of agents' transactions: Kafka Streams' default. A
/// transaction left open by a crashed instance that does not come back (scaled down)
/// holds its partitions' readers back at most this long before the broker aborts it.
pub const TRANSACTION_TIMEOUT_MS: i32 = 10_000;

/// The transactional id of instance `instance` of the agent consuming in `group`, in
/// the process tagged `process` (see [`crate::runtime::Runtime::with_process_tag`]):
/// the same after a restart, so the new incarnation fences the old one.
pub fn transactional_id(group: &str, process: &str, instance: usize) -> String {
    format!("agentlog-agent-{group}-{process}-{instance}")
}

/// A process tag for [`transactional_id`] from the process's data directory: the same
/// across restarts on that directory, different for another process with its own.
pub fn process_tag(data_dir: &std::path::Path) -> String {
    let path = std::path::absolute(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
    let hash = crate::backend::embedded::murmur2(path.as_os_str().as_encoded_bytes());
    format!("{hash:08x}")
}

/// A transaction could not be begun or committed; its work is aborted and redone.
#[derive(Debug, Error)]
pub enum TxnError {
    /// Another producer with the same transactional id took over (or the transaction
    /// timed out): this one must re-initialise.
    #[error("producer fenced: {0}")]
    Fenced(String),
    /// The member was rebalanced out since it read the records.
    #[error("group rebalanced: {0}")]
    Rebalanced(String),
    /// A write of the transaction failed: the whole transaction aborts.
    #[error("transaction failed: {0}")]
    Failed(String),
}

/// One instance's transactional producer on a backend, for members of type `S`.
///
/// As a [`Sink`] it writes into the open transaction: nothing it writes is visible to
/// read_committed readers before [`Transaction::commit`].
pub trait Transaction<S: Source>: Sink + Sized + Send + Sync + 'static {
    /// Starts a transaction: what is produced until commit or abort belongs to it.
    fn begin(&self) -> Result<(), TxnError>;

    /// Commits the transaction together with `positions` of `source`'s group, checked
    /// against the member's generation.
    fn commit(
        &self,
        source: &S,
        positions: Vec<Position>,
    ) -> impl Future<Output = Result<(), TxnError>> + Send;

    /// Aborts the open transaction (best effort: re-initialising aborts it too).
    fn abort(&self) -> impl Future<Output = ()> + Send;

    /// Releases the producer (librdkafka's drop blocks, so it goes off the workers).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// State writes of the open transaction, applied to their stores when it commits and
/// dropped when it aborts.
#[derive(Debug, Default)]
pub(crate) struct PendingState(Mutex<Vec<StateWrites>>);

type StateWrites = (Arc<StateStore>, Vec<(String, Option<serde_json::Value>)>);

impl PendingState {
    /// Keeps `writes` until the transaction ends.
    pub(crate) fn stage(
        &self,
        store: &Arc<StateStore>,
        writes: &[(String, Option<serde_json::Value>)],
    ) {
        self.lock().push((store.clone(), writes.to_vec()));
    }

    /// The transaction committed: the writes are the state now.
    pub(crate) fn apply(&self) {
        for (store, writes) in std::mem::take(&mut *self.lock()) {
            store.apply(&writes);
        }
    }

    /// The transaction aborted: its writes never happened.
    pub(crate) fn discard(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<StateWrites>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
