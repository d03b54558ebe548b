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
        self.observe_latencies(latency, 1);
    }

    /// Records `count` handler latencies of `each` (the events of one batch, which are
    /// timed together), with one update of the histogram.
    pub fn observe_latencies(&self, each: Duration, count: u64) {
        let us = each.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.latency_buckets[bucket].fetch_add(count, Ordering::Relaxed);
        self.latency_sum_us
            .fetch_add(us.saturating_mul(count), Ordering::Relaxed);
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

/// What went wrong with an LLM call, as the `kind` label of the error counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmErrorKind {
    /// The endpoint was unreachable, failing or its breaker open (the event waits).
    Unavailable,
    /// The endpoint refused the request.
    Refused,
    /// The call could not be recorded.
    Record,
    /// A replay found no recording.
    NotRecorded,
    /// The answer did not satisfy the requested schema or routes.
    InvalidAnswer,
}

impl LlmErrorKind {
    /// Every kind, in label order.
    pub const ALL: [LlmErrorKind; 5] = [
        LlmErrorKind::Unavailable,
        LlmErrorKind::Refused,
        LlmErrorKind::Record,
        LlmErrorKind::NotRecorded,
        LlmErrorKind::InvalidAnswer,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            LlmErrorKind::Unavailable => "unavailable",
            LlmErrorKind::Refused => "refused",
            LlmErrorKind::Record => "record",
            LlmErrorKind::NotRecorded => "not_recorded",
            LlmErrorKind::InvalidAnswer => "invalid_answer",
        }
    }
}

/// LLM call counters of one agent and model, lock-free on the hot path.
#[derive(Debug, Default)]
pub struct LlmCallMetrics {
    /// Calls sent to the endpoint and answered.
    pub requests: AtomicU64,
    /// Answers served from the call log instead of the endpoint (no cost incurred).
    pub replayed: AtomicU64,
    errors: [AtomicU64; LlmErrorKind::ALL.len()],
    /// Prompt tokens of answered calls.
    pub tokens_in: AtomicU64,
    /// Completion tokens of answered calls.
    pub tokens_out: AtomicU64,
    /// Cost of answered calls, in millionths of the configured currency.
    pub cost_micros: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    latency_sum_us: AtomicU64,
}

/// A copy of one agent and model's LLM counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LlmMetricsSnapshot {
    /// See [`LlmCallMetrics::requests`].
    pub requests: u64,
    /// See [`LlmCallMetrics::replayed`].
    pub replayed: u64,
    /// Errors by [`LlmErrorKind::label`].
    pub errors: BTreeMap<&'static str, u64>,
    /// See [`LlmCallMetrics::tokens_in`].
    pub tokens_in: u64,
    /// See [`LlmCallMetrics::tokens_out`].
    pub tokens_out: u64,
    /// Total cost of answered calls.
    pub cost: f64,
    /// Cumulative counts per bucket of [`LATENCY_BUCKETS_US`], then `+Inf`.
    pub latency_buckets: Vec<u64>,
    /// Sum of call latencies in microseconds.
    pub latency_sum_us: u64,
}

impl LlmCallMetrics {
    /// Counts one call answered by the endpoint.
    pub fn observe_call(&self, tokens_in: u64, tokens_out: u64, cost: f64, latency: Duration) {
        inc(&self.requests, 1);
        inc(&self.tokens_in, tokens_in);
        inc(&self.tokens_out, tokens_out);
        inc(&self.cost_micros, (cost * 1e6).round().max(0.0) as u64);
        let us = latency.as_micros().min(u128::from(u64::MAX)) as u64;
        let bucket = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        inc(&self.latency_buckets[bucket], 1);
        inc(&self.latency_sum_us, us);
    }

    /// Counts one failed call (or answer) by kind.
    pub fn observe_error(&self, kind: LlmErrorKind) {
        let index = LlmErrorKind::ALL
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(0);
        inc(&self.errors[index], 1);
    }

    /// Copies every counter.
    pub fn snapshot(&self) -> LlmMetricsSnapshot {
        let mut cumulative = 0;
        LlmMetricsSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            replayed: self.replayed.load(Ordering::Relaxed),
            errors: LlmErrorKind::ALL
                .iter()
                .zip(&self.errors)
                .map(|(k, v)| (k.label(), v.load(Ordering::Relaxed)))
                .collect(),
            tokens_in: self.tokens_in.load(Ordering::Relaxed),
            tokens_out: self.tokens_out.load(Ordering::Relaxed),
            cost: self.cost_micros.load(Ordering::Relaxed) as f64 / 1e6,
            latency_buckets: self
                .latency_buckets
                .iter()
                .map(|b| {
                    cumulative += b.load(Ordering::Relaxed);
                    cumulative
                })
                .collect(),
            latency_sum_us: self.latency_sum_us.load(Ordering::Relaxed),
        }
    }
}

/// Every agent's LLM counters, by `(agent, model)`.
///
/// Process-wide because LLM agents are built from configuration by
/// `config::start_declared`, whose signature (shared with every other kind) carries no
/// registry, while `/metrics` must find them; agent names are unique per process, so
/// one registry cannot mix two agents' series.
#[derive(Debug, Default)]
pub struct LlmMetricsRegistry {
    by_agent: Mutex<BTreeMap<(String, String), std::sync::Arc<LlmCallMetrics>>>,
}

impl LlmMetricsRegistry {
    /// The counters of `agent` calling `model`, created on first use.
    pub fn of(&self, agent: &str, model: &str) -> std::sync::Arc<LlmCallMetrics> {
        self.by_agent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((agent.to_string(), model.to_string()))
            .or_default()
            .clone()
    }

    /// Every `(agent, model)`'s counters now.
    pub fn snapshot(&self) -> BTreeMap<(String, String), LlmMetricsSnapshot> {
        self.by_agent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, m)| (k.clone(), m.snapshot()))
            .collect()
    }
}

/// The process's LLM counters (see [`LlmMetricsRegistry`]).
pub fn llm_metrics() -> &'static LlmMetricsRegistry {
    static REGISTRY: std::sync::OnceLock<LlmMetricsRegistry> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(LlmMetricsRegistry::default)
}
