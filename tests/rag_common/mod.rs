//! Helpers of `tests/rag.rs`: a small corpus with known topics, configurations of an
//! index with its agents, and reading an index's state through the runtime or over
//! HTTP from the real binary.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use agentlog_agents::{Envelope, Event, OutRecord};
use bytes::Bytes;
use serde_json::{json, Value};

pub const WAIT: Duration = Duration::from_secs(120);

/// Documents with one clear subject each, and metadata to filter on.
pub const CORPUS: [(&str, &str, &str); 6] = [
    ("bees", "science", "Honey bees make honey from the nectar of flowers. They carry nectar to the hive, where it is stored in wax combs and fanned by their wings until the water evaporates."),
    ("volcanoes", "science", "A volcano erupts when molten rock called magma rises through cracks in the crust. Lava, ash and gas escape from the vent during an eruption."),
    ("tides", "science", "Ocean tides are caused mainly by the gravitational pull of the moon. Most coasts see two high tides and two low tides every day."),
    ("kafka", "software", "Apache Kafka is a distributed log for event streaming. Producers append records to partitioned topics and consumers read them in order, tracking offsets."),
    ("rust", "software", "Rust is a programming language that guarantees memory safety without a garbage collector, through ownership and borrowing checked at compile time."),
    ("bread", "cooking", "Bread dough rises because yeast ferments sugars and releases carbon dioxide gas, which the gluten network traps as bubbles."),
];

/// Document `i` of the corpus as a JSON record keyed by its id.
pub fn document(i: usize) -> OutRecord {
    let (id, topic, text) = CORPUS[i];
    json_record(id, json!({"text": text, "topic": topic, "title": id}))
}

pub fn json_record(key: &str, value: Value) -> OutRecord {
    OutRecord {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from(value.to_string())),
        headers: Vec::new(),
        timestamp: 0,
    }
}

pub fn raw_record(key: Option<&str>, value: Option<&[u8]>) -> OutRecord {
    OutRecord {
        key: key.map(|k| Bytes::copy_from_slice(k.as_bytes())),
        value: value.map(Bytes::copy_from_slice),
        headers: Vec::new(),
        timestamp: 0,
    }
}

/// `[rag.docs]` and a `rag_ingest` agent reading `docs`, plus `extra`.
pub fn ingest_config(chunk_size: usize, extra: &str) -> String {
    format!(
        r#"
[rag.docs]
poll_ms = 20
snapshot_interval_ms = 500

[[agents]]
name = "ingest"
kind = "rag_ingest"
topics = ["docs"]
max_in_flight = 8
[agents.options]
index = "docs"
chunk_size = {chunk_size}
chunk_overlap = 20
max_document_chars = 2000
{extra}
"#
    )
}

/// The decisions of `events` (an audit log) as (decision, details).
pub fn decisions(events: &[Event]) -> Vec<(String, Value)> {
    events
        .iter()
        .filter_map(|e| e.envelope())
        .map(|e| {
            (
                e.data["decision"].as_str().unwrap_or_default().to_string(),
                e.data["details"].clone(),
            )
        })
        .collect()
}

/// An envelope's data, or the JSON value.
pub fn data(event: &Event) -> Value {
    match event.envelope() {
        Some(Envelope { data, .. }) => data,
        None => serde_json::from_slice(event.value.as_deref().unwrap_or_default())
            .unwrap_or(Value::Null),
    }
}

/// Waits until `check` returns something, or panics naming `what`.
pub async fn until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One HTTP/1.1 request; the status and the JSON body.
pub fn http(addr: &str, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let json = response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, json)
}

/// The stats of index `name` from `GET /v1/indexes` (None while it is not up yet).
pub fn index_stats(http_addr: &str, name: &str) -> Option<Value> {
    let (status, body) = http(http_addr, "GET", "/v1/indexes", None);
    (status == 200).then(|| body.get(name).cloned()).flatten()
}
