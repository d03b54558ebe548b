//! LLM agent overhead and replay speed, on the embedded backend.
//!
//! 1. Overhead per LLM-handled event, model time excluded: an `llm_router` handles
//!    10,000 events one at a time against a stub OpenAI-compatible endpoint on
//!    127.0.0.1 (a fixed answer after a fixed delay, 0 ms by default; `STUB_DELAY_MS`
//!    sets it). The client-measured time of every call is in the call log; overhead =
//!    (wall time − Σ call time) / events: rendering, request building, recording the
//!    call durably, forwarding, the decision, commits.
//! 2. Replay of those 10,000 recorded decisions from the call log, no model calls:
//!    events per second of `replay_agent`, which also compares every decision.
//!
//! Both under the `batch` (fsync, the default) and `none` flush policies.
//!
//! `cargo bench -p agentlog-agents --bench llm`; `MAX_IN_FLIGHT=32 STUB_DELAY_MS=200
//! BENCH_EVENTS=3000` measures events/s of one instance handling 32 events at once
//! against an endpoint that takes 200 ms (the per-event overhead line then adds up
//! overlapping calls and means little; events/s is the figure).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::llm::calls::{call_log_topic, CallRecord};
use agentlog_agents::llm::replay::replay_agent;
use agentlog_agents::{Backend, EmbeddedBackend, OutRecord, Runtime, Sink, StartAt};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Events per run (`BENCH_EVENTS`, a multiple of 1,000; default 10,000).
fn events() -> usize {
    std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .map_or(10_000, |n| n.max(1000) / 1000 * 1000)
}

/// Events the agent's instance handles at once (`MAX_IN_FLIGHT`, default 1).
fn max_in_flight() -> usize {
    std::env::var("MAX_IN_FLIGHT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

const ANSWER: &str = r#"{"id":"stub","object":"chat.completion","created":1,"model":"stub","choices":[{"index":0,"message":{"role":"assistant","content":"{\"route\":\"billing\",\"reason\":\"stub\"}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":40,"completion_tokens":9,"total_tokens":49}}"#;

/// One keep-alive HTTP/1.1 connection of the stub: every request gets [`ANSWER`].
async fn serve_connection(stream: tokio::net::TcpStream, delay: Duration, calls: Arc<AtomicU64>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        loop {
            line.clear();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(value) = lower.strip_prefix("content-length:") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).await.is_err() {
            return;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        calls.fetch_add(1, Ordering::Relaxed);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{ANSWER}",
            ANSWER.len()
        );
        if write.write_all(response.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn stub(delay: Duration) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}/v1", listener.local_addr().expect("addr"));
    let calls = Arc::new(AtomicU64::new(0));
    let counter = calls.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, delay, counter.clone()));
        }
    });
    (base, calls)
}

fn config(base: &str) -> String {
    format!(
        r#"
[llm.stub]
base_url = "{base}"
model = "stub"
price_per_1k_input = 0.5
price_per_1k_output = 1.5
max_concurrency = 256

[[agents]]
name = "bench-router"
kind = "llm_router"
topics = ["bench.tickets"]
max_in_flight = {in_flight}
[agents.options]
llm = "stub"
default = "bench.other"
prompt = "{{{{data.subject}}}}: {{{{data.body}}}}"
routes = {{ billing = {{ topic = "bench.billing", description = "payments" }}, tech = {{ topic = "bench.tech", description = "bugs" }} }}
"#,
        in_flight = max_in_flight()
    )
}

fn tickets(from: usize, n: usize) -> Vec<OutRecord> {
    (from..from + n)
        .map(|i| OutRecord {
            key: Some(Bytes::from(format!("customer-{i}"))),
            value: Some(Bytes::from(format!(
                r#"{{"subject":"Ticket {i}","body":"I was charged twice for order {i}."}}"#
            ))),
            headers: Vec::new(),
            timestamp: agentlog_agents::event::now_ms(),
        })
        .collect()
}

async fn run(flush: &str, delay: Duration) {
    let events = events();
    let flush_setting = flush.to_string();
    let broker = EmbeddedBroker::start_with(move |c| {
        let _ = c.set("log.flush.policy", &flush_setting);
        let _ = c.set("group.initial.rebalance.delay.ms", "0");
        let _ = c.set("num.partitions", "1");
    })
    .await
    .expect("broker");
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    backend
        .ensure_topic("bench.tickets", 1, false)
        .await
        .expect("topic");
    let (base, calls) = stub(delay).await;
    let config = AgentsConfig::from_toml(&config(&base)).expect("config");
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.expect("agent");
    // Warm-up (connection, group join) outside the measurement.
    backend
        .produce("bench.tickets", tickets(0, 10))
        .await
        .expect("produce");
    while handles[0].metrics().events_processed < 10 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let started = Instant::now();
    for chunk in 0..events / 1000 {
        backend
            .produce("bench.tickets", tickets(10 + chunk * 1000, 1000))
            .await
            .expect("produce");
    }
    let target = (events + 10) as u64;
    while handles[0].metrics().events_processed < target {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let wall = started.elapsed();
    let recordings = backend
        .read_topic(&call_log_topic("bench-router"), StartAt::Earliest)
        .await
        .expect("read")
        .collect_all()
        .await
        .expect("read");
    let call_time: Duration = recordings
        .iter()
        .skip(10)
        .filter_map(|e| serde_json::from_slice::<CallRecord>(e.value.as_deref()?).ok())
        .map(|c| Duration::from_micros(c.latency_us))
        .sum();
    let overhead = wall.saturating_sub(call_time) / events as u32;
    println!(
        "llm_router live flush={flush} stub_delay={delay:?} max_in_flight={}: {events} events in {wall:.2?} ({:.0} events/s); model calls {:.2?} in all ({:?}/call); runtime overhead per event, model time excluded: {overhead:?}",
        max_in_flight(),
        events as f64 / wall.as_secs_f64(),
        call_time,
        call_time / events as u32,
    );
    for handle in handles {
        handle.stop().await;
    }

    let calls_before = calls.load(Ordering::Relaxed);
    let started = Instant::now();
    let comparison = replay_agent(
        backend.clone(),
        &config.agents[0],
        &config.llm,
        StartAt::Offset(0),
        false,
    )
    .await
    .expect("replay");
    let replay = started.elapsed();
    assert_eq!(comparison.events, events + 10);
    assert_eq!(
        comparison.identical,
        events + 10,
        "{:?}",
        comparison.differing.first()
    );
    assert_eq!(comparison.model_calls, 0);
    assert_eq!(calls.load(Ordering::Relaxed), calls_before, "no model call");
    println!(
        "replay flush={flush}: {} recorded decisions re-made and compared in {replay:.2?} ({:.0} events/s), 0 model calls",
        comparison.events,
        comparison.events as f64 / replay.as_secs_f64()
    );
}

fn main() {
    let delay = Duration::from_millis(
        std::env::var("STUB_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    for flush in ["batch", "none"] {
        runtime.block_on(run(flush, delay));
    }
}
