//! What an uplink reports while it runs: link state, progress and lag, read by
//! `/metrics` and `/health` on every scrape (atomics and short locks, never held
//! across an await).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;

use super::settings::Direction;

/// The state of the link to the remote cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Connecting: initialising the producer, loading progress.
    Connecting,
    /// Forwarding (or caught up and waiting for local records).
    Up,
    /// The remote is unreachable or a transaction failed; retrying with backoff.
    Down(String),
    /// The remote refuses the uplink as configured (authorization, a missing progress
    /// topic that cannot be created); retrying with backoff, but a human must look.
    Error(String),
}

impl fmt::Display for LinkState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkState::Connecting => f.write_str("connecting"),
            LinkState::Up => f.write_str("up"),
            LinkState::Down(reason) => write!(f, "down: {reason}"),
            LinkState::Error(reason) => write!(f, "error: {reason}"),
        }
    }
}

/// The live counters of one uplink.
#[derive(Debug)]
pub struct UplinkStatus {
    name: String,
    direction: Direction,
    state: Mutex<LinkState>,
    records_forwarded: AtomicU64,
    bytes_forwarded: AtomicU64,
    transactions: AtomicU64,
    last_send_ms: AtomicI64,
    records_behind: AtomicU64,
    bytes_behind: AtomicU64,
    records_lost: AtomicU64,
    oldest_unforwarded_ms: AtomicI64,
    topic_errors: Mutex<BTreeMap<String, String>>,
}

/// A point-in-time copy of an uplink's status, for `/health` and `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UplinkSnapshot {
    /// The uplink's name.
    pub name: String,
    /// `up` (local to remote) or `down` (remote to local).
    pub direction: &'static str,
    /// `connecting`, `up`, `down: ...` or `error: ...`.
    pub state: String,
    /// Records forwarded (committed on the remote) since start.
    pub records_forwarded: u64,
    /// Key and value bytes forwarded since start.
    pub bytes_forwarded: u64,
    /// Remote transactions (or acknowledged batches) committed since start.
    pub transactions: u64,
    /// When the last batch was committed on the remote (ms since the epoch, 0: never).
    pub last_send_ms: i64,
    /// Records not yet forwarded, over every forwarded partition.
    pub records_behind: u64,
    /// Stored bytes not yet forwarded (going up: estimated from each log's average
    /// stored record size; coming down: from the average mirrored record).
    pub bytes_behind: u64,
    /// Records deleted locally before they were forwarded (retention forced by the
    /// disk, DeleteRecords): counted and logged with their offsets, never silent.
    pub records_lost: u64,
    /// Timestamp of the oldest local record not yet forwarded (0: none waiting).
    pub oldest_unforwarded_ms: i64,
    /// Local topics not forwarded because the remote refuses them, with why.
    pub topic_errors: BTreeMap<String, String>,
}

impl UplinkStatus {
    /// Fresh status of uplink `name`, connecting.
    pub fn new(name: &str, direction: Direction) -> UplinkStatus {
        UplinkStatus {
            name: name.to_string(),
            direction,
            state: Mutex::new(LinkState::Connecting),
            records_forwarded: AtomicU64::new(0),
            bytes_forwarded: AtomicU64::new(0),
            transactions: AtomicU64::new(0),
            last_send_ms: AtomicI64::new(0),
            records_behind: AtomicU64::new(0),
            bytes_behind: AtomicU64::new(0),
            records_lost: AtomicU64::new(0),
            oldest_unforwarded_ms: AtomicI64::new(0),
            topic_errors: Mutex::new(BTreeMap::new()),
        }
    }

    /// Moves to `state`, logging the change once (not on every retry in one state).
    pub fn set_state(&self, state: LinkState) {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *current == state {
            return;
        }
        match &state {
            LinkState::Up | LinkState::Connecting => {
                tracing::info!(uplink = %self.name, from = %current, to = %state, "uplink link state")
            }
            LinkState::Down(_) | LinkState::Error(_) => {
                tracing::warn!(uplink = %self.name, from = %current, to = %state, "uplink link state")
            }
        }
        *current = state;
    }

    /// The current link state.
    pub fn state(&self) -> LinkState {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Counts one committed batch.
    pub fn record_sent(&self, records: u64, bytes: u64, now_ms: i64) {
        self.records_forwarded.fetch_add(records, Ordering::Relaxed);
        self.bytes_forwarded.fetch_add(bytes, Ordering::Relaxed);
        self.transactions.fetch_add(1, Ordering::Relaxed);
        self.last_send_ms.store(now_ms, Ordering::Relaxed);
    }

    /// Sets the lag figures: records and bytes behind, and the timestamp of the oldest
    /// record waiting.
    pub fn set_lag(&self, (records, bytes): (u64, u64), oldest_unforwarded_ms: i64) {
        self.set_behind((records, bytes));
        self.oldest_unforwarded_ms
            .store(oldest_unforwarded_ms, Ordering::Relaxed);
    }

    /// Sets the records and bytes behind alone (between sessions, when no batch is
    /// read).
    pub fn set_behind(&self, (records, bytes): (u64, u64)) {
        self.records_behind.store(records, Ordering::Relaxed);
        self.bytes_behind.store(bytes, Ordering::Relaxed);
    }

    /// Counts records deleted before they were forwarded.
    pub fn add_lost(&self, records: u64) {
        self.records_lost.fetch_add(records, Ordering::Relaxed);
    }

    /// Marks a local topic as refused by the remote (`None`: forwarding again), logging
    /// the change.
    pub fn set_topic_error(&self, topic: &str, error: Option<String>) {
        let mut errors = self.topic_errors.lock().unwrap_or_else(|p| p.into_inner());
        match error {
            Some(reason) => {
                if errors.get(topic) != Some(&reason) {
                    tracing::warn!(uplink = %self.name, %topic, %reason, "uplink topic not forwarded; local data kept");
                    errors.insert(topic.to_string(), reason);
                }
            }
            None => {
                if errors.remove(topic).is_some() {
                    tracing::info!(uplink = %self.name, %topic, "uplink topic forwarding again");
                }
            }
        }
    }

    /// A copy of every figure now.
    pub fn snapshot(&self) -> UplinkSnapshot {
        UplinkSnapshot {
            name: self.name.clone(),
            direction: match self.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            },
            state: self.state().to_string(),
            records_forwarded: self.records_forwarded.load(Ordering::Relaxed),
            bytes_forwarded: self.bytes_forwarded.load(Ordering::Relaxed),
            transactions: self.transactions.load(Ordering::Relaxed),
            last_send_ms: self.last_send_ms.load(Ordering::Relaxed),
            records_behind: self.records_behind.load(Ordering::Relaxed),
            bytes_behind: self.bytes_behind.load(Ordering::Relaxed),
            records_lost: self.records_lost.load(Ordering::Relaxed),
            oldest_unforwarded_ms: self.oldest_unforwarded_ms.load(Ordering::Relaxed),
            topic_errors: self
                .topic_errors
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_text_and_counters() {
        let status = UplinkStatus::new("c", Direction::Up);
        assert_eq!(status.snapshot().state, "connecting");
        status.set_state(LinkState::Error("TopicAuthorizationFailed".into()));
        assert_eq!(status.snapshot().state, "error: TopicAuthorizationFailed");
        status.set_state(LinkState::Up);
        status.record_sent(3, 30, 7);
        status.set_lag((2, 20), 5);
        status.add_lost(4);
        status.set_topic_error("t", Some("too large".into()));
        let snapshot = status.snapshot();
        assert_eq!(snapshot.state, "up");
        assert_eq!(
            (snapshot.records_forwarded, snapshot.bytes_forwarded),
            (3, 30)
        );
        assert_eq!((snapshot.transactions, snapshot.last_send_ms), (1, 7));
        assert_eq!(
            (snapshot.records_behind, snapshot.oldest_unforwarded_ms),
            (2, 5)
        );
        assert_eq!((snapshot.bytes_behind, snapshot.records_lost), (20, 4));
        assert_eq!(snapshot.topic_errors["t"], "too large");
        status.set_topic_error("t", None);
        assert!(status.snapshot().topic_errors.is_empty());
    }
}
