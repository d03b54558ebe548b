//! Multi-agent workflow kinds. `aggregate` is the fan-in: it joins the results of a
//! fan-out (an `llm` agent's `fan_out`, or anything that sets the workflow headers) by
//! correlation id and emits one event per join.
//!
//! ```toml
//! [[agents]]
//! name = "join"
//! kind = "aggregate"
//! topics = ["findings"]
//! [agents.options]
//! output_topic = "joined"
//! timeout_ms = 30000            # emit what arrived (complete = false) after this
//! # count = 3                   # default: the `fanout.count` header
//! # correlation_field = "job.id" # default: the `correlation_id` header
//! # event_type = "joined"        # default "aggregate.joined"
//! # done_retention_ms = 600000   # how long finished joins are remembered
//! ```
//!
//! A join completes when `count` (or `fanout.count`) results arrived, or `timeout_ms`
//! after its first result; it is emitted as
//! `{"correlation_id", "results": [payloads by fanout.index], "complete"}`. Duplicates
//! (same correlation id and `fanout.index`, as at-least-once re-runs produce) count
//! once; results of a join that already finished are dropped. Partial joins live in
//! the agent's state topic and survive restarts, and the timeout is driven by a
//! ticker, not by new events, so a join whose last result never comes is still
//! emitted, after a restart too.
//!
//! Results of one correlation id should share a partition (key them by it, or keep
//! the key of the event that fanned out): then one process sees all of them. When they
//! do not, each process still refreshes a join from the state topic before expiring
//! it, but two processes may both emit a timed-out join (at least once).

mod aggregate;
mod join;

use std::time::Duration;

pub use aggregate::{Aggregate, CORRELATION_ID, FANOUT_COUNT, FANOUT_INDEX};

use crate::backend::Backend;
use crate::config::{AgentDef, ConfigError, StartAgentsError};
use crate::runtime::{AgentHandle, Runtime, StartError};

/// The agent kinds this module builds.
pub const KINDS: &[&str] = &["aggregate"];

/// How long a join waits for its missing results by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a finished join is remembered (to drop late duplicates) by default.
pub const DEFAULT_DONE_RETENTION: Duration = Duration::from_secs(600);

/// An `aggregate` agent's options, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Where joined events go.
    pub output_topic: String,
    /// Dotted path of the correlation id in the payload; `None`: the header.
    pub correlation_field: Option<String>,
    /// Results per join; `None`: the `fanout.count` header.
    pub count: Option<usize>,
    /// Longest wait after a join's first result.
    pub timeout: Duration,
    /// `event_type` of joined events.
    pub event_type: String,
    /// How long finished joins are remembered.
    pub done_retention: Duration,
}

impl Options {
    /// Reads and checks `def.options`.
    pub fn from_def(def: &AgentDef) -> Result<Options, ConfigError> {
        let bad = |reason: String| ConfigError::Options {
            name: def.name.clone(),
            reason,
        };
        const KNOWN: [&str; 6] = [
            "output_topic",
            "correlation_field",
            "count",
            "timeout_ms",
            "event_type",
            "done_retention_ms",
        ];
        if let Some(unknown) = def.options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown option `{unknown}` (an aggregate takes {})",
                KNOWN.join(", ")
            )));
        }
        let text = |key: &str| -> Result<Option<String>, ConfigError> {
            match def.options.get(key) {
                None => Ok(None),
                Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
                Some(_) => Err(bad(format!("options.{key} must be a non-empty string"))),
            }
        };
        let positive = |key: &str| -> Result<Option<u64>, ConfigError> {
            match def.options.get(key) {
                None => Ok(None),
                Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
                Some(_) => Err(bad(format!("options.{key} must be a positive integer"))),
            }
        };
        Ok(Options {
            output_topic: text("output_topic")?
                .ok_or_else(|| bad("an aggregate needs options.output_topic".to_string()))?,
            correlation_field: text("correlation_field")?,
            count: positive("count")?.map(|n| n as usize),
            timeout: positive("timeout_ms")?.map_or(DEFAULT_TIMEOUT, Duration::from_millis),
            event_type: text("event_type")?.unwrap_or_else(|| "aggregate.joined".to_string()),
            done_retention: positive("done_retention_ms")?
                .map_or(DEFAULT_DONE_RETENTION, Duration::from_millis),
        })
    }
}

/// Checks a workflow agent's definition.
pub(crate) fn validate(def: &AgentDef) -> Result<(), ConfigError> {
    Options::from_def(def).map(|_| ())
}

/// Starts a workflow agent: restores its joins, starts its ticker, then its swarm.
pub async fn start<B: Backend>(
    runtime: &Runtime<B>,
    def: &AgentDef,
) -> Result<AgentHandle, StartAgentsError> {
    let options = Options::from_def(def)?;
    let agent = Aggregate::restore(runtime.backend().clone(), &def.name, options)
        .await
        .map_err(|source| StartError::State {
            agent: def.name.clone(),
            source,
        })?;
    Ok(runtime.start(def.spec(), agent).await?)
}

#[cfg(test)]
mod tests;
