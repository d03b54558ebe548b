//! Inference throughput and latency on the real ONNX Runtime (not a timed test: it
//! prints what it measures).
//!
//! 1. The `onnx` kind end to end on the embedded backend: a 20-feature logistic
//!    regression (`examples/fraud-scoring/model.onnx`), events/s from a backlog with
//!    micro-batching and with `batch_size = 1`, then event→prediction latency
//!    percentiles at a paced rate.
//! 2. The scorer alone (`OnnxAgent::score_row` from many concurrent callers): what the
//!    model and batcher sustain without the log around them.
//! 3. MiniLM sentence embeddings: sentences/s batched and one at a time, p50/p99.
//!
//! `cargo bench -p agentlog-agents --bench inference` (needs `bash scripts/models.sh`).
//! `MAX_IN_FLIGHT=N` runs each instance of the end-to-end runs with N events in flight.
//! `BENCH_EVENTS` sets the backlog size (default 20000).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::inference::{Embedder, InferenceSettings, OnnxAgent, OnnxOptions};
use agentlog_agents::{Backend, EmbeddedBackend, OutRecord, Runtime, Sink, StartAt};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn library() -> String {
    root()
        .join(".models/libonnxruntime.so")
        .display()
        .to_string()
}

fn model_path() -> PathBuf {
    root().join("examples/fraud-scoring/model.onnx")
}

fn fields() -> String {
    (0..20)
        .map(|i| format!("\"f{i}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

fn config(name: &str, topic: &str, instances: usize, batch: usize, wait_ms: u64) -> String {
    format!(
        r#"
[inference]
library = "{library}"

[[agents]]
name = "{name}"
kind = "onnx"
topics = ["{topic}"]
instances = {instances}
max_in_flight = {in_flight}
[agents.options]
model = "fraud"
path = "{model}"
output_topic = "{topic}.scores"
threshold = 0.99
alert_topic = "{topic}.alerts"
batch_size = {batch}
max_wait_ms = {wait_ms}
[[agents.options.inputs]]
name = "features"
fields = [{fields}]
"#,
        library = library(),
        model = model_path().display(),
        fields = fields(),
        in_flight = max_in_flight(),
    )
}

/// Events each instance handles at once (`MAX_IN_FLIGHT`, default 1): with more, one
/// instance's events share micro-batches.
fn max_in_flight() -> usize {
    std::env::var("MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn event(i: u64, timestamp: i64) -> OutRecord {
    let mut value = serde_json::Map::new();
    for f in 0..20u64 {
        value.insert(
            format!("f{f}"),
            serde_json::json!(((i * 31 + f * 7) % 100) as f64 / 10.0),
        );
    }
    OutRecord {
        key: Some(Bytes::from(format!("card-{}", i % 1000))),
        value: Some(Bytes::from(serde_json::Value::Object(value).to_string())),
        headers: Vec::new(),
        timestamp,
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn broker(flush: &str) -> (EmbeddedBroker, EmbeddedBackend) {
    let flush = flush.to_string();
    let broker = EmbeddedBroker::start_with(move |c| {
        c.set("group.initial.rebalance.delay.ms", "0").unwrap();
        c.set("log.flush.policy", &flush).unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    (broker, backend)
}

/// Events/s through the `onnx` kind from a backlog of `n` events.
async fn backlog(flush: &str, n: u64, partitions: i32, batch: usize, wait_ms: u64) -> f64 {
    let (_broker, backend) = broker(flush).await;
    let topic = "bench";
    backend
        .ensure_topic(topic, partitions, false)
        .await
        .unwrap();
    let now = agentlog_agents::event::now_ms();
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let records = chunk.iter().map(|i| event(*i, now)).collect();
        backend.produce(topic, records).await.unwrap();
    }
    let config = AgentsConfig::from_toml(&config(
        "scorer",
        topic,
        partitions as usize,
        batch,
        wait_ms,
    ))
    .unwrap();
    let runtime = Runtime::new(backend.clone());
    let started = Instant::now();
    let handles = start_declared(&runtime, &config).await.unwrap();
    while handles[0].metrics().events_processed < n {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    for handle in handles {
        handle.stop().await;
    }
    n as f64 / elapsed.as_secs_f64()
}

/// Event→prediction latency (ms) at `rate` events/s for `seconds`.
async fn paced(flush: &str, rate: u64, seconds: u64) -> (f64, f64, f64, usize) {
    let (_broker, backend) = broker(flush).await;
    let topic = "paced";
    backend.ensure_topic(topic, 4, false).await.unwrap();
    let config = AgentsConfig::from_toml(&config("paced", topic, 4, 64, 0)).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let total = rate * seconds;
    let tick = Duration::from_millis(10);
    let per_tick = (rate / 100).max(1);
    let mut sent = 0;
    let mut next = Instant::now();
    while sent < total {
        let records = (sent..sent + per_tick)
            .map(|i| event(i, agentlog_agents::event::now_ms()))
            .collect();
        backend.produce(topic, records).await.unwrap();
        sent += per_tick;
        next += tick;
        tokio::time::sleep_until(next.into()).await;
    }
    while handles[0].metrics().events_processed < sent {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let inputs: std::collections::HashMap<(i32, i64), i64> = backend
        .read_topic(topic, StartAt::Earliest)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap()
        .into_iter()
        .map(|e| ((e.partition, e.offset), e.timestamp))
        .collect();
    let scores = backend
        .read_topic(&format!("{topic}.scores"), StartAt::Earliest)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let mut latencies: Vec<f64> = scores
        .iter()
        .filter_map(|e| {
            let envelope = e.envelope()?;
            let source = &envelope.data["source"];
            let key = (
                source["partition"].as_i64()? as i32,
                source["offset"].as_i64()?,
            );
            Some((envelope.timestamp - inputs.get(&key)?) as f64)
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    for handle in handles {
        handle.stop().await;
    }
    (
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies.last().copied().unwrap_or(f64::NAN),
        latencies.len(),
    )
}

/// Rows/s through `OnnxAgent::score_row` from `callers` concurrent callers.
async fn scorer(n: u64, callers: u64, batch: usize) -> f64 {
    let settings = InferenceSettings {
        library: Some(library()),
        ..Default::default()
    };
    let table: toml::Table = toml::from_str(&config("s", "t", 1, batch, 1)).unwrap();
    let options_table = table["agents"][0]["options"].as_table().unwrap().clone();
    let options = OnnxOptions::from_table(&options_table).unwrap();
    let agent = OnnxAgent::new(
        "bench",
        options,
        settings.environment().unwrap(),
        1,
        callers as usize,
    )
    .unwrap();
    agent
        .load("bench", &std::fs::read(model_path()).unwrap())
        .unwrap();
    let started = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let agent = agent.clone();
            tokio::spawn(async move {
                for i in 0..n / callers {
                    let row: Vec<f64> = (0..20).map(|f| ((c + i + f) % 10) as f64).collect();
                    agent.score_row(vec![row]).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (n / callers * callers) as f64 / started.elapsed().as_secs_f64()
}

fn sentences(n: usize) -> Vec<String> {
    let subjects = [
        "The pump on well",
        "Separator",
        "Compressor",
        "Valve",
        "Flare stack",
    ];
    let states = [
        "is vibrating above its alarm threshold",
        "reports a sudden pressure drop",
        "was restarted after maintenance",
        "shows a slow temperature rise over the last shift",
        "needs an inspection before the next crew change",
    ];
    (0..n)
        .map(|i| {
            format!(
                "{} {} {} (reading {} at {:02}:{:02}).",
                subjects[i % 5],
                i % 37,
                states[(i / 5) % 5],
                i * 13 % 997,
                i % 24,
                i % 60
            )
        })
        .collect()
}

fn embeddings(threads: usize) {
    let settings = InferenceSettings {
        library: Some(library()),
        ..Default::default()
    };
    let embedder = Arc::new(
        Embedder::from_files(
            settings.environment().unwrap(),
            &root().join(".models/minilm/model.onnx"),
            &root().join(".models/minilm/tokenizer.json"),
            threads,
        )
        .unwrap(),
    );
    let texts = sentences(512);
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    embedder.embed(&refs[..8]).unwrap(); // warm-up
    for batch in [32usize, 1] {
        let mut latencies = Vec::new();
        let started = Instant::now();
        let count = if batch == 1 { 128 } else { refs.len() };
        for chunk in refs[..count].chunks(batch) {
            let t = Instant::now();
            embedder.embed(chunk).unwrap();
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let rate = count as f64 / started.elapsed().as_secs_f64();
        latencies.sort_by(f64::total_cmp);
        println!(
            "embed  MiniLM int8, intra_op_threads={threads}, batch {batch:>2}: {rate:>7.0} sentences/s; per batch p50 {:.1} ms, p99 {:.1} ms",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for flush in ["batch", "none"] {
            for (batch, wait) in [(64, 0), (1, 0)] {
                let rate = backlog(flush, n, 4, batch, wait).await;
                println!(
                    "onnx   end to end, embedded, flush={flush:<5}, 4 instances x max_in_flight {}, batch_size {batch:>2}: {rate:>8.0} events/s",
                    max_in_flight()
                );
            }
        }
        for (flush, rate) in [("batch", 300), ("none", 500), ("none", 2000)] {
            let (p50, p99, max, count) = paced(flush, rate, 5).await;
            println!(
                "onnx   latency at {rate} events/s, flush={flush}: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms ({count} events)"
            );
        }
        for (callers, batch) in [(512, 256), (256, 64), (64, 64), (1, 1), (64, 1)] {
            let rate = scorer(200_000, callers, batch).await;
            println!(
                "onnx   scorer alone, {callers:>3} concurrent callers, batch_size {batch:>3}: {rate:>9.0} rows/s"
            );
        }
    });
    for threads in [1, 2] {
        embeddings(threads);
    }
}
