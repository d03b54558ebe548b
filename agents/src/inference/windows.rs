//! Sliding-window features per key (e.g. per card: transactions and amount spent in
//! the last minute and hour), kept in the agent's keyed state so they survive restarts
//! and rebalances. The runtime hands same-key events to one handler at a time, in
//! offset order, so a key's window is never updated concurrently.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::mapping::{lookup, MappingError};
use crate::agent::Context;
use crate::event::Event;

/// `[agents.options.windows]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Dotted path of the key (e.g. `card`); default: the record key.
    pub key: Option<String>,
    /// Dotted path of the amount to sum.
    pub amount: String,
    /// Dotted path of the event time in ms; default: the record timestamp.
    pub time_field: Option<String>,
    /// Window lengths in seconds (default 60 and 3600).
    #[serde(default = "default_spans")]
    pub spans_s: Vec<u64>,
    /// Most events kept per key (the oldest go first), bounding state per key.
    #[serde(default = "default_max_events")]
    pub max_events: usize,
}

fn default_spans() -> Vec<u64> {
    vec![60, 3600]
}

fn default_max_events() -> usize {
    1000
}

/// The feature names a spec provides: `window.count_<s>s` and `window.sum_<s>s`.
pub fn feature_names(spec: &WindowSpec) -> Vec<String> {
    spec.spans_s
        .iter()
        .flat_map(|s| [format!("window.count_{s}s"), format!("window.sum_{s}s")])
        .collect()
}

fn field_f64(payload: &Value, path: &str) -> Result<f64, MappingError> {
    match lookup(payload, path) {
        None | Some(Value::Null) => Err(MappingError::MissingField {
            input: "windows".to_string(),
            field: path.to_string(),
        }),
        Some(v) => v.as_f64().ok_or_else(|| MappingError::WrongType {
            input: "windows".to_string(),
            field: path.to_string(),
            found: v.to_string(),
        }),
    }
}

impl WindowSpec {
    /// Adds the current event to its key's window, stages the new window in `ctx`'s
    /// state, and returns the features (the current event included).
    pub fn update(
        &self,
        event: &Event,
        payload: &Value,
        ctx: &mut Context,
    ) -> Result<BTreeMap<String, f64>, MappingError> {
        let key = match &self.key {
            Some(path) => match lookup(payload, path) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => {
                    return Err(MappingError::MissingField {
                        input: "windows".to_string(),
                        field: path.clone(),
                    })
                }
                Some(other) => other.to_string(),
            },
            None => String::from_utf8_lossy(event.key.as_deref().unwrap_or_default()).into_owned(),
        };
        let amount = field_f64(payload, &self.amount)?;
        let now = match &self.time_field {
            Some(path) => field_f64(payload, path)? as i64,
            None => event.timestamp,
        };
        let state_key = format!("window:{key}");
        let mut entries: Vec<(i64, f64)> = ctx
            .state_get(&state_key)
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default();
        let longest = self.spans_s.iter().max().copied().unwrap_or(0) as i64 * 1000;
        entries.retain(|(t, _)| now - *t < longest);
        entries.push((now, amount));
        if entries.len() > self.max_events {
            let excess = entries.len() - self.max_events;
            entries.drain(..excess);
        }
        let mut features = BTreeMap::new();
        for span in &self.spans_s {
            let since = now - *span as i64 * 1000;
            let (count, sum) = entries
                .iter()
                .filter(|(t, _)| *t > since && *t <= now)
                .fold((0.0, 0.0), |(c, s), (_, a)| (c + 1.0, s + a));
            features.insert(format!("window.count_{span}s"), count);
            features.insert(format!("window.sum_{span}s"), sum);
        }
        ctx.state_put(&state_key, json!(entries));
        Ok(features)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::metrics::AgentMetrics;
    use crate::state::StateStore;

    #[test]
    fn counts_and_sums_per_key_over_each_span() {
        let spec: WindowSpec = toml::from_str(
            "key = 'card'\namount = 'amount'\ntime_field = 'ts'\nspans_s = [60, 3600]",
        )
        .unwrap();
        assert_eq!(feature_names(&spec)[0], "window.count_60s");
        let state = Arc::new(StateStore::default());
        let event = Event {
            topic: Arc::from("t"),
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: Vec::new(),
            undecodable: None,
        };
        let run = |card: &str, ts: i64, amount: f64| {
            let mut ctx = Context::new(
                Arc::from("a"),
                None,
                1,
                state.clone(),
                Arc::new(AgentMetrics::new("onnx")),
            );
            let payload = json!({"card": card, "ts": ts, "amount": amount});
            let features = spec.update(&event, &payload, &mut ctx).unwrap();
            state.apply(&ctx.state_writes);
            (
                features["window.count_60s"],
                features["window.sum_60s"],
                features["window.count_3600s"],
                features["window.sum_3600s"],
            )
        };
        assert_eq!(run("a", 0, 10.0), (1.0, 10.0, 1.0, 10.0));
        assert_eq!(run("a", 30_000, 5.0), (2.0, 15.0, 2.0, 15.0));
        assert_eq!(run("b", 40_000, 1.0), (1.0, 1.0, 1.0, 1.0), "keys apart");
        // 70 s after the first: it has left the minute, not the hour.
        assert_eq!(run("a", 70_000, 2.0), (2.0, 7.0, 3.0, 17.0));
        // Two hours later only the current event counts.
        assert_eq!(run("a", 7_270_000, 4.0), (1.0, 4.0, 1.0, 4.0));
        let missing = spec.update(
            &event,
            &json!({"card": "a", "ts": 1}),
            &mut Context::new(
                Arc::from("a"),
                None,
                1,
                state.clone(),
                Arc::new(AgentMetrics::new("onnx")),
            ),
        );
        assert!(matches!(missing, Err(MappingError::MissingField { .. })));
    }
}
