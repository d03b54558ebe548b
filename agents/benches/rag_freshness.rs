//! RAG freshness and ingest throughput with the real MiniLM encoder (not a timed test:
//! it prints what it measures).
//!
//! 1. Freshness: short documents (one chunk each) produced at a steady `RATE` per second
//!    for `SECONDS` to an embedded broker; for each, the time from the produce call to
//!    the moment its chunk is in the index (searchable), p50/p99/max.
//! 2. Ingest throughput: a backlog of `BACKLOG` documents of about three chunks each,
//!    from the first produce to the last chunk indexed: chunks/s and documents/s.
//!
//! `cargo bench -p agentlog-agents --bench rag_freshness` (needs `bash scripts/models.sh`).
//! `RATE` (default 50), `BENCH_SECONDS` (default 20), `BACKLOG` (default 500), `MAX_IN_FLIGHT`
//! (default 8) and `FLUSH` (`none` for `log.flush.policy = "none"`) change the run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::{Backend, EmbeddedBackend, OutRecord, Runtime, Sink};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn config(in_flight: u64) -> String {
    let models = root().join(".models");
    format!(
        r#"
[inference]
library = "{lib}"

[rag.docs]
model = "{model}"
tokenizer = "{tokenizer}"
intra_op_threads = 2
snapshot_interval_ms = 3600000

[[agents]]
name = "ingest"
kind = "rag_ingest"
topics = ["docs"]
max_in_flight = {in_flight}
[agents.options]
index = "docs"
chunk_size = 400
chunk_overlap = 0
"#,
        lib = models.join("libonnxruntime.so").display(),
        model = models.join("minilm/model.onnx").display(),
        tokenizer = models.join("minilm/tokenizer.json").display(),
    )
}

const SUBJECTS: [&str; 8] = [
    "pump",
    "valve",
    "compressor",
    "generator",
    "crane",
    "separator",
    "flare",
    "winch",
];

/// A short maintenance note (one chunk at 400 characters).
fn note(i: usize) -> String {
    let subject = SUBJECTS[i % SUBJECTS.len()];
    format!(
        "Report {i}: the {subject} on deck {} was inspected at {:02}:00. Vibration was {} mm/s \
         and the oil temperature {} degrees. The crew logged the readings and scheduled the \
         next check in {} days.",
        i % 5,
        i % 24,
        (i * 7) % 13,
        60 + i % 30,
        1 + i % 14
    )
}

/// A longer report: `note` three times over with different numbers (about three chunks).
fn report(i: usize) -> String {
    (0..3)
        .map(|n| note(i * 3 + n))
        .collect::<Vec<_>>()
        .join("\n\n")
}

fn record(key: &str, text: String) -> OutRecord {
    OutRecord {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from(text)),
        headers: Vec::new(),
        timestamp: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

async fn run() {
    let rate = env_or("RATE", 50).max(1);
    let seconds = env_or("BENCH_SECONDS", 20);
    let backlog = env_or("BACKLOG", 500) as usize;
    let in_flight = env_or("MAX_IN_FLIGHT", 8);
    let flush_none = std::env::var("FLUSH").is_ok_and(|v| v == "none");
    let broker = EmbeddedBroker::start_with(|config| {
        let _ = config.set("num.partitions", "1");
        // The agent's group forms at once, not after Kafka's 3 s initial delay.
        let _ = config.set(
            "group.initial.rebalance.delay.ms",
            std::env::var("GROUP_DELAY").unwrap_or("0".into()).as_str(),
        );
        if flush_none {
            let _ = config.set("log.flush.policy", "none");
        }
    })
    .await
    .expect("broker");
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    let runtime = Runtime::new(backend.clone());
    let config = AgentsConfig::from_toml(&config(in_flight)).expect("config");
    let handles = start_declared(&runtime, &config).await.expect("agents");
    let index = runtime.indexes().get("docs").expect("index");

    // 1. Freshness at a steady rate.
    let total = (rate * seconds) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let producer = {
        let backend = backend.clone();
        tokio::spawn(async move {
            let start = Instant::now();
            let mut sent = HashMap::with_capacity(total);
            for i in 0..total {
                let due = start + interval * i as u32;
                tokio::time::sleep_until(due.into()).await;
                sent.insert(i, Instant::now());
                backend
                    .produce("docs", vec![record(&format!("f{i}"), note(i))])
                    .await
                    .expect("produce");
            }
            sent
        })
    };
    let mut seen: HashMap<usize, Instant> = HashMap::with_capacity(total);
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while seen.len() < total && Instant::now() < deadline {
        for i in 0..total {
            if !seen.contains_key(&i) && index.contains(&format!("f{i}#0")) {
                seen.insert(i, Instant::now());
            }
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let sent = producer.await.expect("producer");
    let mut latencies: Vec<Duration> = seen
        .iter()
        .filter_map(|(i, at)| sent.get(i).map(|s| at.saturating_duration_since(*s)))
        .collect();
    latencies.sort();
    println!(
        "freshness at {rate} documents/s for {seconds} s ({} of {total} searchable, max_in_flight {in_flight}, flush {}): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (2 ms polling granularity)",
        latencies.len(),
        if flush_none { "none" } else { "fsync" },
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );

    let dead = match backend
        .read_topic("docs.dlq", agentlog_agents::StartAt::Earliest)
        .await
    {
        Ok(stream) => stream.collect_all().await.map(|e| e.len()).unwrap_or(0),
        Err(_) => 0,
    };
    let missing: Vec<usize> = (0..total)
        .filter(|i| !seen.contains_key(i))
        .take(5)
        .collect();
    println!("dead-lettered documents: {dead}; skipped chunk records: {}; not seen (first 5): {missing:?}", index.stats().skipped_records);

    // 2. Throughput from a backlog.
    let before = index.stats().chunks;
    let expected: usize = (0..backlog)
        .map(|i| agentlog_agents::rag::chunking::chunk(&report(i), 400, 0).len())
        .sum();
    let start = Instant::now();
    let records: Vec<OutRecord> = (0..backlog)
        .map(|i| record(&format!("r{i}"), report(i)))
        .collect();
    for batch in records.chunks(100) {
        backend
            .produce("docs", batch.to_vec())
            .await
            .expect("produce");
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while index.stats().chunks < before + expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let done = index.stats().chunks - before;
    println!(
        "ingest backlog: {backlog} documents, {done} of {expected} chunks in {elapsed:.1} s: {:.0} chunks/s, {:.0} documents/s",
        done as f64 / elapsed,
        backlog as f64 / elapsed,
    );
    if done < expected {
        let topic = backend
            .read_topic("rag.docs.chunks", agentlog_agents::StartAt::Earliest)
            .await
            .expect("read")
            .collect_all()
            .await
            .map(|e| e.len())
            .unwrap_or(0);
        println!(
            "incomplete: chunk records {topic}, index {:?}, metrics {:?}",
            index.stats(),
            runtime.metrics()
        );
    }
    for handle in handles {
        handle.stop().await;
    }
}

fn main() {
    if let Ok(filter) = std::env::var("BENCH_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio");
    runtime.block_on(run());
}
