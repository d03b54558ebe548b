//! Per-agent counters, kept as atomics so the hot path never locks, in a shape the
//! Prometheus endpoint (`serve --http`) reads directly (counters plus a cumulative latency
//! histogram with fixed buckets).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the handling-latency histogram buckets, in microseconds.
pub const LATENCY_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 100_000, 1_000_000, 10_000_000,
];

/// Counters of one agent (all its instances), labelled by its kind.
#[derive(Debug, Default)]
pub struct AgentMetrics {
    /// The agent's kind (`router`, `dlq_replayer`, or a user type): the metrics label.
    pub kind: String,
    /// Events handled successfully (after any retries).
    pub events_processed: AtomicU64,
    /// Handler (or emit) failures, counting every failed attempt.
    pub errors: AtomicU64,
    /// Attempts after the first.
    pub retries: AtomicU64,
    /// Records emitted (not counting decisions and state writes).
    pub emits: AtomicU64,
    /// Decisions recorded to the audit log.
    pub decisions: AtomicU64,
    /// Events sent to a dead-letter topic.
    pub dead_lettered: AtomicU64,
    /// Attempts that failed because a dependency (model server, tool) was
    /// unavailable; such events wait instead of being dead-lettered.
    pub unavailable: AtomicU64,
    /// Handling latency: count per bucket of [`LATENCY_BUCKETS_US`], plus one overflow.
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
    custom: Mutex<BTreeMap<String, u64>>,
}

/// A point-in-time copy of an agent's metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// See [`AgentMetrics::kind`].
    pub kind: String,
    /// See [`AgentMetrics::events_processed`].
    pub events_processed: u64,
    /// See [`AgentMetrics::errors`].
    pub errors: u64,
    /// See [`AgentMetrics::retries`].
    pub retries: u64,
    /// See [`AgentMetrics::emits`].
    pub emits: u64,
    /// See [`AgentMetrics::decisions`].
    pub decisions: u64,
    /// See [`AgentMetrics::dead_lettered`].
    pub dead_lettered: u64,
    /// See [`AgentMetrics::unavailable`].
    pub unavailable: u64,
    /// Cumulative counts per latency bucket (Prometheus `le` semantics), then `+Inf`.
    pub latency_buckets: Vec<u64>,
    /// Sum of handling latencies in microseconds.
    pub latency_sum_us: u64,
    /// Counters agents reported through their context.
    pub custom: BTreeMap<String, u64>,
}

impl AgentMetrics {
    /// Fresh counters for an agent of `kind`.
    pub fn new(kind: &str) -> AgentMetrics {
        AgentMetrics {
            kind: kind.to_string(),
            ..AgentMetrics::default()
        }
    }

    /// Records one handling latency.
    pub fn observe_latency(&self, latency: Duration) {
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Adds to a custom counter.
    pub fn add_custom(&self, name: &str, delta: u64) {
        let mut custom = self.custom.lock().unwrap_or_else(|p| p.into_inner());
        *custom.entry(name.to_string()).or_default() += delta;
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let mut cumulative = 0;
        let latency_buckets = self
            .latency_buckets
            .iter()
            .map(|b| {
                cumulative += b.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        MetricsSnapshot {
            kind: self.kind.clone(),
            events_processed: self.events_processed.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            emits: self.emits.load(Ordering::Relaxed),
            decisions: self.decisions.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            unavailable: self.unavailable.load(Ordering::Relaxed),
            latency_buckets,
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
            custom: self
                .custom
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        }
    }
}

/// Adds one to a counter.
pub(crate) fn inc(counter: &AtomicU64, delta: u64) {
    counter.fetch_add(delta, Ordering::Relaxed);
}
