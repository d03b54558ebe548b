//! Partial joins: the results of one correlation id gathered so far, and how they are
//! kept in the agent's state topic.
//!
//! Each result is its own state record (`r/<correlation id>/<slot>`), so writes by
//! handlers running concurrently commute (no read-modify-write of one shared value
//! whose last writer would win). A finished join leaves a `done/<correlation id>`
//! marker so late duplicates are dropped instead of starting a new join; markers are
//! removed after a retention period.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::event::{Event, OutRecord};

/// The slot of a result in its join: its zero-padded fan-out index, so slots sort in
/// index order; results without one sort after, by where they were read.
pub fn slot(index: Option<u64>, event: &Event) -> String {
    match index {
        Some(index) => format!("{index:010}"),
        None => format!("~{}/{}/{:020}", event.topic, event.partition, event.offset),
    }
}

/// One correlation id's results so far.
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// When the first result arrived (ms since the epoch): the timeout runs from here.
    pub first_ms: i64,
    /// Results expected, when known.
    pub count: Option<usize>,
    /// The trace of the first result, continued by the joined event.
    pub trace_id: String,
    /// Payloads by slot.
    pub results: BTreeMap<String, Value>,
    /// A handler or the ticker is emitting this join now.
    pub emitting: bool,
}

impl Pending {
    /// Whether every expected result is here.
    pub fn complete(&self) -> bool {
        self.count.is_some_and(|count| self.results.len() >= count)
    }

    /// The joined event's data.
    pub fn joined(&self, correlation_id: &str) -> Value {
        json!({
            "correlation_id": correlation_id,
            "results": self.results.values().cloned().collect::<Vec<_>>(),
            "complete": self.complete(),
        })
    }
}

/// The state key of one result.
pub fn result_key(correlation_id: &str, slot: &str) -> String {
    format!("r/{correlation_id}/{slot}")
}

/// The state key of a finished join's marker.
pub fn done_key(correlation_id: &str) -> String {
    format!("done/{correlation_id}")
}

fn record(key: String, value: Option<Value>) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(key)),
        value: value.map(|v| Bytes::from(v.to_string())),
        headers: Vec::new(),
        timestamp: crate::event::now_ms(),
    }
}

/// The state record of one result.
pub fn result_record(
    correlation_id: &str,
    slot: &str,
    pending: &Pending,
    payload: &Value,
) -> OutRecord {
    record(
        result_key(correlation_id, slot),
        Some(json!({
            "correlation_id": correlation_id,
            "slot": slot,
            "first_ms": pending.first_ms,
            "count": pending.count,
            "trace_id": pending.trace_id,
            "payload": payload,
        })),
    )
}

/// The state records that close a join: its results' tombstones, then its marker.
pub fn finish_records<'a>(
    correlation_id: &str,
    slots: impl Iterator<Item = &'a String>,
    at_ms: i64,
) -> Vec<OutRecord> {
    let mut records: Vec<OutRecord> = slots
        .map(|slot| record(result_key(correlation_id, slot), None))
        .collect();
    records.push(record(
        done_key(correlation_id),
        Some(json!({ "correlation_id": correlation_id, "at_ms": at_ms })),
    ));
    records
}

/// A tombstone for `key`.
pub fn tombstone(key: String) -> OutRecord {
    record(key, None)
}

/// The joins a state topic holds.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Unfinished joins by correlation id.
    pub pending: HashMap<String, Pending>,
    /// Finished joins by correlation id, with when they finished.
    pub done: HashMap<String, i64>,
    /// Result keys of finished joins (written after their join finished): to delete.
    pub orphans: Vec<String>,
}

impl Loaded {
    /// Builds the joins from the state topic's records, in offset order (the last
    /// value of a key wins, a tombstone deletes it: what compaction keeps).
    pub fn from_records(events: impl IntoIterator<Item = Event>) -> Loaded {
        let mut latest: HashMap<String, Option<Value>> = HashMap::new();
        for event in events {
            let Some(key) = event
                .key
                .as_deref()
                .and_then(|k| std::str::from_utf8(k).ok())
            else {
                continue;
            };
            let value = event
                .value
                .as_deref()
                .filter(|v| !v.is_empty())
                .and_then(|v| serde_json::from_slice(v).ok());
            latest.insert(key.to_string(), value);
        }
        let mut loaded = Loaded::default();
        for (key, value) in &latest {
            if let (Some(id), Some(at)) = (key.strip_prefix("done/"), value) {
                loaded
                    .done
                    .insert(id.to_string(), at["at_ms"].as_i64().unwrap_or(0));
            }
        }
        for (key, value) in latest {
            let Some(value) = value.filter(|_| key.starts_with("r/")) else {
                continue;
            };
            let (Some(id), Some(slot)) = (value["correlation_id"].as_str(), value["slot"].as_str())
            else {
                continue;
            };
            if loaded.done.contains_key(id) {
                loaded.orphans.push(key);
                continue;
            }
            let first_ms = value["first_ms"].as_i64().unwrap_or(0);
            let pending = loaded
                .pending
                .entry(id.to_string())
                .or_insert_with(|| Pending {
                    first_ms,
                    count: None,
                    trace_id: value["trace_id"].as_str().unwrap_or_default().to_string(),
                    results: BTreeMap::new(),
                    emitting: false,
                });
            if first_ms < pending.first_ms {
                pending.first_ms = first_ms;
                pending.trace_id = value["trace_id"].as_str().unwrap_or_default().to_string();
            }
            if let Some(count) = value["count"].as_u64() {
                pending.count = Some(count as usize);
            }
            pending
                .results
                .insert(slot.to_string(), value["payload"].clone());
        }
        loaded
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn event(record: OutRecord) -> Event {
        Event {
            topic: Arc::from("agent.state.agg"),
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: record.key,
            value: record.value,
            headers: Vec::new(),
            undecodable: None,
        }
    }

    fn pending(first_ms: i64, count: Option<usize>) -> Pending {
        Pending {
            first_ms,
            count,
            trace_id: format!("t{first_ms}"),
            results: BTreeMap::new(),
            emitting: false,
        }
    }

    #[test]
    fn slots_sort_by_index_and_results_join_in_order() {
        let mut join = pending(1, Some(3));
        let e = event(tombstone("x".to_string()));
        for i in [10u64, 2, 0] {
            join.results.insert(slot(Some(i), &e), json!(i));
        }
        assert!(join.complete());
        assert_eq!(join.joined("c")["results"], json!([0, 2, 10]));
        join.count = Some(4);
        assert_eq!(join.joined("c")["complete"], false);
    }

    #[test]
    fn loads_pending_done_and_orphans_from_the_state_log() {
        let early = pending(100, Some(2));
        let late = pending(50, None);
        let records = vec![
            result_record("a", "0000000001", &early, &json!("one")),
            result_record("a", "0000000000", &late, &json!("zero")),
            result_record("b", "0000000000", &early, &json!("b0")),
            result_record("c", "0000000000", &early, &json!("c0")),
        ];
        let mut all: Vec<OutRecord> = records;
        all.extend(finish_records("b", [String::from("0000000000")].iter(), 7));
        // A result written after its join finished (a concurrent handler's late write).
        all.push(result_record("b", "0000000001", &early, &json!("b1")));
        let loaded = Loaded::from_records(all.into_iter().map(event));
        let a = &loaded.pending["a"];
        assert_eq!(
            (a.first_ms, a.count, a.trace_id.as_str()),
            (50, Some(2), "t50")
        );
        assert_eq!(a.joined("a")["results"], json!(["zero", "one"]));
        assert!(loaded.pending.contains_key("c"));
        assert!(!loaded.pending.contains_key("b"));
        assert_eq!(loaded.done["b"], 7);
        assert_eq!(loaded.orphans, vec![result_key("b", "0000000001")]);
    }
}
