//! MCP tool round trip over topics (issue 14's target): how long a requester waits
//! for a tool's answer when the call goes requester → request topic → bridge → stdio
//! server → reply topic → requester, minus what the same call costs over a direct
//! stdio session (the tool's own work and the server's JSON-RPC handling). Not a
//! timed test: it prints what it measures.
//!
//! Target: on the embedded backend, p50 < 2 ms and p99 < 10 ms of overhead; the same
//! is reported through the Kafka backend (librdkafka over TCP to the same in-process
//! broker, for both the requester and the bridge).
//!
//! Modes, each `ROUNDS` sequential calls of `forecast("Oslo")` on
//! `examples/mcp-tools/weather_server.py` (answers at once) after `WARMUP` calls:
//! 1. `direct`: an rmcp client session to the server over stdio, the request built
//!    as the bridge builds it; this is the baseline.
//! 2. `embedded`: [`McpTopicClient::call_tool`] on an [`EmbeddedBackend`], served by a
//!    bridge ([`start_bridges`]) on the same backend, a unique correlation id per call.
//! 3. `kafka`: the same with the requester and the bridge's runtime on a
//!    [`KafkaBackend`] pointed at the in-process broker's listener.
//!
//! `cargo bench -p agentlog-agents --bench mcp_round_trip` (needs the venv with the
//! `mcp` package: `.venv/bin/python`, or `PYTHON`). Knobs: `ROUNDS` (default 2000),
//! `WARMUP` (default 200), `FLUSH` (`batch`, the broker's default fsync policy, or
//! `none`; unset runs both), `MODES` (comma-separated subset of `direct,embedded,kafka`),
//! `KAFKA_PROPERTIES` (`key=value,...` librdkafka properties for the Kafka backend;
//! default `linger.ms=0`), `BENCH_LOG` (a tracing filter).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use agentlog_agents::llm::tools::replies::Replies;
use agentlog_agents::mcp::{binding, start_bridges, McpServerDef, McpTopicClient};
use agentlog_agents::{Backend, EmbeddedBackend, KafkaBackend, KafkaConfig, Runtime};
use agentlog_broker::EmbeddedBroker;
use rmcp::model::ClientRequest;
use rmcp::transport::TokioChildProcess;
use rmcp::ServiceExt;
use serde_json::{json, Value};

/// Longest wait for one answer; a call that takes longer counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| {
        root()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    })
}

fn script() -> String {
    root()
        .join("examples/mcp-tools/weather_server.py")
        .to_string_lossy()
        .into_owned()
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn arguments() -> Value {
    json!({"city": "Oslo"})
}

/// Latencies of one mode, sorted, and the failed calls.
struct Sample {
    sorted: Vec<Duration>,
    failures: usize,
    first_failure: Option<String>,
}

impl Sample {
    fn new(mut latencies: Vec<Duration>, failures: Vec<String>) -> Sample {
        latencies.sort();
        Sample {
            sorted: latencies,
            failures: failures.len(),
            first_failure: failures.into_iter().next(),
        }
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.sorted.len() as f64 - 1.0) * p).round() as usize;
        self.sorted[at.min(self.sorted.len() - 1)]
    }

    fn print(&self, label: &str) {
        println!(
            "{label:<24} n={:<5} p50 {:>7.3} ms  p99 {:>7.3} ms  p999 {:>7.3} ms  max {:>7.3} ms  failed {}",
            self.sorted.len(),
            ms(self.percentile(0.5)),
            ms(self.percentile(0.99)),
            ms(self.percentile(0.999)),
            ms(self.sorted.last().copied().unwrap_or_default()),
            self.failures,
        );
        if let Some(failure) = &self.first_failure {
            println!("{:<24} first failure: {failure}", "");
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn signed_ms(topics: Duration, direct: Duration) -> f64 {
    ms(topics) - ms(direct)
}

/// Calls `forecast` directly over an rmcp stdio session: the baseline.
async fn direct(warmup: usize, rounds: usize) -> Sample {
    let mut command = tokio::process::Command::new(python());
    command.arg(script());
    let transport = TokioChildProcess::new(command).expect("spawn the MCP server");
    let service = ().serve(transport).await.expect("MCP session");
    // Built from JSON as the bridge builds it (rmcp's request structs are
    // non-exhaustive).
    let request: ClientRequest = serde_json::from_value(json!({
        "method": "tools/call",
        "params": {"name": "forecast", "arguments": arguments()},
    }))
    .expect("a tools/call request");
    let mut latencies = Vec::with_capacity(rounds);
    let mut failures = Vec::new();
    for i in 0..warmup + rounds {
        let start = Instant::now();
        let outcome = service.peer().send_request(request.clone()).await;
        let elapsed = start.elapsed();
        match outcome {
            Ok(_) if i >= warmup => latencies.push(elapsed),
            Ok(_) => {}
            Err(error) => failures.push(error.to_string()),
        }
    }
    let _ = service.cancel().await;
    Sample::new(latencies, failures)
}

/// Calls `forecast` over topics on `backend`: a bridge for server `name` on a runtime
/// of its own, a requester with its reply listener.
async fn over_topics<B: Backend>(backend: B, name: &str, warmup: usize, rounds: usize) -> Sample {
    let server: McpServerDef = toml::from_str(&format!(
        "name = {name:?}\ncommand = [{:?}, {:?}]",
        python(),
        script()
    ))
    .expect("server table");
    let runtime = Runtime::new(backend.clone());
    let handles = start_bridges(&runtime, std::slice::from_ref(&server))
        .await
        .expect("bridge");
    let reply_topic = format!("bench.{name}.replies");
    backend
        .ensure_topic(&reply_topic, 1, false)
        .await
        .expect("reply topic");
    let replies = Replies::start(backend.clone(), &format!("bench.{name}"), &reply_topic);
    let client = McpTopicClient::new(
        backend,
        name,
        &binding::requests_topic(name),
        &reply_topic,
        replies,
        CALL_TIMEOUT,
    );
    let mut latencies = Vec::with_capacity(rounds);
    let mut failures = Vec::new();
    for i in 0..warmup + rounds {
        let correlation_id = format!("bench-{name}-{i}");
        let start = Instant::now();
        let outcome = client
            .call_tool("forecast", &arguments(), &correlation_id)
            .await;
        let elapsed = start.elapsed();
        match outcome {
            Ok(Ok(value)) if value["conditions"] == "sunny" => {
                if i >= warmup {
                    latencies.push(elapsed);
                }
            }
            Ok(Ok(value)) => failures.push(format!("unexpected answer {value}")),
            Ok(Err(text)) => failures.push(format!("tool error: {text}")),
            Err(error) => failures.push(error.to_string()),
        }
    }
    for handle in handles {
        handle.stop().await;
    }
    Sample::new(latencies, failures)
}

fn kafka_properties() -> BTreeMap<String, String> {
    let text = std::env::var("KAFKA_PROPERTIES").unwrap_or_else(|_| "linger.ms=0".to_string());
    text.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn print_overhead(label: &str, topics: &Sample, direct: &Sample) {
    let p50 = signed_ms(topics.percentile(0.5), direct.percentile(0.5));
    let p99 = signed_ms(topics.percentile(0.99), direct.percentile(0.99));
    println!(
        "{label:<24} overhead = topics - direct: p50 {p50:>7.3} ms  p99 {p99:>7.3} ms  (target p50 < 2 ms, p99 < 10 ms: {})",
        if p50 < 2.0 && p99 < 10.0 {
            "met"
        } else {
            "NOT met"
        }
    );
}

async fn run() {
    let rounds = env_or("ROUNDS", 2000).max(1);
    let warmup = env_or("WARMUP", 200);
    let modes = std::env::var("MODES").unwrap_or_else(|_| "direct,embedded,kafka".to_string());
    let wants = |mode: &str| modes.split(',').any(|m| m.trim() == mode);
    let flushes: Vec<String> = match std::env::var("FLUSH") {
        Ok(flush) => vec![flush],
        Err(_) => vec!["batch".to_string(), "none".to_string()],
    };
    let properties = kafka_properties();
    println!(
        "MCP round trip: forecast(\"Oslo\"), {rounds} sequential calls after {warmup} warm-up, python {}",
        python()
    );

    let baseline = if wants("direct") {
        let sample = direct(warmup, rounds).await;
        sample.print("direct (stdio)");
        Some(sample)
    } else {
        None
    };

    for flush in &flushes {
        let broker = EmbeddedBroker::start_with(|config| {
            let _ = config.set("num.partitions", "1");
            // Groups form at once, not after Kafka's 3 s initial delay.
            let _ = config.set("group.initial.rebalance.delay.ms", "0");
            let _ = config.set("log.flush.policy", flush);
        })
        .await
        .expect("broker");
        if wants("embedded") {
            let backend = EmbeddedBackend::new(broker.running().broker.clone());
            let sample = over_topics(backend, "weather-embedded", warmup, rounds).await;
            let label = format!("embedded, flush {flush}");
            sample.print(&label);
            if let Some(direct) = &baseline {
                print_overhead(&label, &sample, direct);
            }
        }
        if wants("kafka") {
            let backend = KafkaBackend::new(KafkaConfig {
                bootstrap: broker.bootstrap(),
                properties: properties.clone(),
            })
            .expect("kafka backend");
            let sample = over_topics(backend, "weather-kafka", warmup, rounds).await;
            let label = format!("kafka, flush {flush}");
            sample.print(&label);
            println!("{:<24} librdkafka properties: {properties:?}", "");
            if let Some(direct) = &baseline {
                print_overhead(&label, &sample, direct);
            }
        }
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
