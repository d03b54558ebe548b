//! Helpers of the LLM agent tests: backends, `[llm.<name>]` and agent configurations,
//! tickets, a TCP forwarder, a rate-limiting stub endpoint, the README's example, and
//! the real binary running agents (on the kafka backend, or with its own broker).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentlog_agents::llm::calls::CallRecord;
use agentlog_agents::{Envelope, Event, KafkaBackend, KafkaConfig, OutRecord};
use bytes::Bytes;
use serde_json::{json, Value};

use crate::common::{self, Serve};
use crate::model_server;

/// Long enough for a 135M model on a CPU shared with compilers.
pub const MODEL_WAIT: Duration = Duration::from_secs(600);

pub async fn model_base_url() -> String {
    tokio::task::spawn_blocking(|| model_server::shared().base_url.clone())
        .await
        .unwrap()
}

/// `[llm.local]` for `base_url`: llama-cpp-python's structured-output dialect, prices
/// so costs are non-zero.
pub fn endpoint(base_url: &str, extra: &str) -> String {
    format!(
        r#"
[llm.local]
base_url = "{base_url}"
model = "smollm2"
structured_output = "json_object_schema"
timeout_ms = 300000
max_retries = 1
price_per_1k_input = 0.5
price_per_1k_output = 1.5
{extra}
"#
    )
}

pub fn router(name: &str, input: &str, extra: &str) -> String {
    format!(
        r#"
[[agents]]
name = "{name}"
kind = "llm_router"
topics = ["{input}"]
{extra}
[agents.options]
llm = "local"
default = "{input}.other"
prompt = "{{{{data.subject}}}}: {{{{data.body}}}}"
max_tokens = 96
[agents.options.routes.billing]
topic = "{input}.billing"
description = "payments, invoices, refunds, double charges"
[agents.options.routes.tech]
topic = "{input}.tech"
description = "bugs, errors, crashes, the app not starting"
"#
    )
}

pub const TICKETS: [(&str, &str); 4] = [
    (
        "Charged twice",
        "My invoice was charged twice this month, please refund one.",
    ),
    (
        "App crashes",
        "The app crashes with an error every time I open settings.",
    ),
    ("Refund", "I want a refund for my last payment."),
    ("Login bug", "Login fails with error 500 since the update."),
];

pub fn ticket(i: usize) -> OutRecord {
    let (subject, body) = TICKETS[i % TICKETS.len()];
    let envelope = Envelope::new(
        "ticket.created",
        "test",
        None,
        json!({ "subject": subject, "body": body, "n": i }),
    );
    envelope.to_record(Some(Bytes::from(format!("customer-{i}"))))
}

pub fn decision(event: &Event) -> (String, Value) {
    let envelope = event.envelope().expect("decisions are enveloped");
    let details = envelope.data["details"].clone();
    (
        envelope.data["decision"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        details,
    )
}

pub fn call_records(events: &[Event]) -> Vec<CallRecord> {
    events
        .iter()
        .map(|e| serde_json::from_slice(e.value.as_deref().unwrap()).unwrap())
        .collect()
}
/// Forwards every connection on `listener` to `upstream` (a TCP-level stand-in for
/// "the model server came back on its address").
pub fn forward_connections(listener: tokio::net::TcpListener, upstream: u16) {
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) =
                    tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}
/// A stub endpoint: 429 with `Retry-After: 0` for the first `failures` requests, then a
/// valid completion; counts requests.
pub async fn rate_limited_stub(failures: usize) -> (String, Arc<AtomicUsize>) {
    stub(failures, "ok").await
}

/// A stub endpoint answering `content` to every request; counts requests.
pub async fn answering_stub(content: &str) -> (String, Arc<AtomicUsize>) {
    stub(0, content).await
}

async fn stub(failures: usize, content: &str) -> (String, Arc<AtomicUsize>) {
    let content = content.to_string();
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let content = content.clone();
            async move {
                if n < failures {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "0")],
                        r#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
                    )
                        .into_response();
                }
                axum::Json(json!({
                    "id": "c", "object": "chat.completion", "created": 1, "model": "stub",
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}
                }))
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}
pub fn kafka_client(bootstrap: &str) -> KafkaBackend {
    KafkaBackend::new(KafkaConfig {
        bootstrap: bootstrap.to_string(),
        properties: Default::default(),
    })
    .unwrap()
}

/// `agentlog serve --config` (agents on the kafka backend: no broker of its own);
/// returns the process and its HTTP address.
pub fn serve_agents(dir: &std::path::Path, config: &str) -> (Serve, String) {
    let path = dir.join("agents.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["serve", "--http", "127.0.0.1:0", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("AGENTLOG_LOG", "warn")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let http = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("agentlog http on ").map(str::to_string))
        .expect("the http line");
    std::thread::spawn(move || for _ in lines {});
    (Serve(child), http)
}

/// The committed offsets of `group` on `topic`'s partitions (0 where none).
pub fn committed_offsets(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = common::consumer_config(bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut wanted = rdkafka::TopicPartitionList::new();
    for partition in 0..partitions {
        wanted.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(wanted, Duration::from_secs(10))
        .unwrap();
    (0..partitions)
        .map(
            |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(rdkafka::Offset::Offset(o)) => o,
                _ => 0,
            },
        )
        .collect()
}

/// The `/metrics` text of the HTTP listener at `http`.
pub fn scrape(http: &str) -> String {
    crate::common::http_get(http, "/metrics").1
}

/// The first TOML block of the README's "LLM agents" section, exactly as printed.
pub fn readme_llm_example() -> &'static str {
    let readme = include_str!("../../README.md");
    readme
        .split("\n## LLM agents\n")
        .nth(1)
        .and_then(|section| section.split("\n## ").next())
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README has an LLM agents section with a TOML example")
}
