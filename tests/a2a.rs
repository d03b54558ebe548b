//! A2A over topics, end to end with real parts: the README's A2A configuration run
//! verbatim by `agentlog serve` (the responder, a router agent on the embedded
//! backend), and a requester agent in this process on the kafka backend (librdkafka
//! to the same broker) that delegates each job to it through the A2A client.
//!
//! Asserted on the log: both cards in `a2a.registry` and the requester's tombstone
//! after it stops; task states WORKING → COMPLETED with the artifact on the reply
//! topic; GetTask and CancelTask answers; JSON-RPC errors for malformed, unknown and
//! oversized requests (and the agent still serving after them); a duplicated request
//! not running the task twice.

mod agents_common;
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_agents::a2a::jsonrpc;
use agentlog_agents::a2a::registry::{read_cards, REGISTRY_TOPIC};
use agentlog_agents::a2a::types::{Message, Part, Task, TaskState};
use agentlog_agents::a2a::{A2aClient, A2aSettings, CallError, PROTOCOL_BINDING};
use agentlog_agents::config::AgentsConfig;
use agentlog_agents::{
    Agent, AgentSpec, Context, Event, HandlerError, KafkaBackend, KafkaConfig, OutRecord, Runtime,
    Sink,
};
use agents_common::{read_all, wait_for};
use bytes::Bytes;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);
/// Where this test's raw requests ask to be answered.
const RAW_REPLIES: &str = "a2a.replies.raw-test";

fn readme_a2a_example() -> &'static str {
    include_str!("../README.md")
        .split("\n## A2A\n")
        .nth(1)
        .and_then(|section| section.split("\n## ").next())
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README has an A2A section with a TOML example")
}

/// Delegates each job (`{"event": ...}`) to the `orders` agent over A2A and emits the
/// finished task to `jobs.done`. The message id comes from the job's key, so a re-run
/// of the handler resends the same message and gets the same task.
struct Delegator {
    client: Arc<A2aClient<KafkaBackend>>,
}

impl Agent for Delegator {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let job = event.payload();
        let key = String::from_utf8_lossy(event.key.as_deref().unwrap_or_default()).into_owned();
        let mut message = Message::user(vec![Part::data(job["event"].clone())]);
        message.message_id = format!("job-{key}");
        let task = self
            .client
            .send_message("orders", message)
            .await
            .map_err(|e| HandlerError::unavailable(e.to_string()))?;
        ctx.emit("jobs.done", event.key.clone(), "job.done", json!(task));
        Ok(())
    }
}

fn kafka(bootstrap: &str) -> KafkaBackend {
    KafkaBackend::new(KafkaConfig {
        bootstrap: bootstrap.to_string(),
        properties: Default::default(),
    })
    .unwrap()
}

/// A raw inbox record, as any Kafka client could write it.
fn raw_request(correlation_id: &str, value: Vec<u8>) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(correlation_id.to_string())),
        value: Some(Bytes::from(value)),
        headers: vec![
            (
                "reply_to".to_string(),
                Bytes::from_static(RAW_REPLIES.as_bytes()),
            ),
            (
                "correlation_id".to_string(),
                Bytes::from(correlation_id.to_string()),
            ),
        ],
        timestamp: 0,
    }
}

fn send_message_json(id: &str, message_id: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": id, "method": "SendMessage",
        "params": {"message": {"messageId": message_id, "role": "ROLE_USER",
            "parts": [{"data": data}]}}
    }))
    .unwrap()
}

fn header(event: &Event, name: &str) -> Option<String> {
    event.header_str(name).map(str::to_string)
}

/// The JSON-RPC responses on `topic` to `correlation_id`, waiting for at least `n`.
async fn responses(
    backend: &KafkaBackend,
    topic: &str,
    correlation_id: &str,
    n: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let found: Vec<Value> = read_all(backend, topic)
            .await
            .iter()
            .filter(|e| header(e, "correlation_id").as_deref() == Some(correlation_id))
            .map(|e| serde_json::from_slice(e.value.as_deref().unwrap_or_default()).unwrap())
            .collect();
        if found.len() >= n || Instant::now() > deadline {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn error_code(backend: &KafkaBackend, correlation_id: &str) -> i64 {
    let found = responses(backend, RAW_REPLIES, correlation_id, 1).await;
    assert_eq!(found.len(), 1, "one answer to {correlation_id}");
    assert!(found[0].get("result").is_none(), "{}", found[0]);
    found[0]["error"]["code"].as_i64().unwrap()
}

/// `(kind, state)` of each record of `task` on `topic`, in log order.
async fn task_events(backend: &KafkaBackend, topic: &str, task: &str) -> Vec<(String, String)> {
    read_all(backend, topic)
        .await
        .iter()
        .filter(|e| header(e, "a2a.task_id").as_deref() == Some(task))
        .map(|e| {
            let body: Value = serde_json::from_slice(e.value.as_deref().unwrap()).unwrap();
            let state = body["result"]["statusUpdate"]["status"]["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (header(e, "a2a.kind").unwrap_or_default(), state)
        })
        .collect()
}

fn cards_cli(bootstrap: &str, json: bool) -> String {
    let mut args = vec!["agents", "cards", "--bootstrap", bootstrap];
    if json {
        args.extend(["--output", "json"]);
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a2a_round_trip_between_an_embedded_and_a_kafka_agent() {
    let example = readme_a2a_example();
    let config = AgentsConfig::from_toml(example).unwrap();
    assert!(
        config.agents[0].spec().a2a.is_some(),
        "the example serves A2A"
    );
    let dir = tempfile::tempdir().unwrap();
    let (serve, bootstrap, _http) = common::serve_agentlog(dir.path(), example, &[]);
    let backend = kafka(&bootstrap);

    // The requester: an A2A agent itself, on the kafka backend.
    let client = A2aClient::start(backend.clone(), "delegator")
        .await
        .unwrap();
    let client = Arc::new(client.timeout(WAIT));
    let runtime = Runtime::new(backend.clone());
    let delegator = runtime
        .start(
            AgentSpec::new("delegator", &["jobs"]).a2a(A2aSettings::default()),
            Delegator {
                client: client.clone(),
            },
        )
        .await
        .unwrap();

    // Both cards are in the registry.
    let deadline = Instant::now() + WAIT;
    let cards = loop {
        let cards = read_cards(&backend).await.unwrap();
        if cards.len() >= 2 || Instant::now() > deadline {
            break cards;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(cards.keys().collect::<Vec<_>>(), ["delegator", "orders"]);
    let orders = &cards["orders"];
    assert_eq!(orders.skills[0].id, "route");
    let interface = &orders.supported_interfaces[0];
    assert_eq!(interface.protocol_binding, PROTOCOL_BINDING);
    assert_eq!(interface.protocol_version, "1.0");
    assert!(interface.url.ends_with("/a2a.orders"), "{}", interface.url);

    // A job delegated from the kafka agent to the embedded one.
    let job = json!({"event": {"type": "order", "id": 7}});
    let job_record = OutRecord {
        key: Some(Bytes::from_static(b"j1")),
        value: Some(Bytes::from(serde_json::to_vec(&job).unwrap())),
        ..OutRecord::default()
    };
    backend.produce("jobs", vec![job_record]).await.unwrap();
    let done = wait_for(&backend, "jobs.done", 1, WAIT).await;
    assert_eq!(done.len(), 1, "the job finished");
    let task: Task = serde_json::from_value(done[0].payload()).unwrap();
    assert_eq!(task.status.state, TaskState::Completed);
    assert_eq!(task.artifacts.len(), 1, "{task:?}");
    assert_eq!(task.artifacts[0].name, "orders.accepted");
    assert_eq!(
        task.artifacts[0].parts[0].data,
        Some(json!({"type": "order", "id": 7}))
    );
    let routed = wait_for(&backend, "orders.accepted", 1, WAIT).await;
    assert_eq!(routed[0].payload(), json!({"type": "order", "id": 7}));

    // The task's life on the requester's reply topic, in order.
    let kinds = task_events(&backend, client.reply_topic(), &task.id).await;
    let expected = [
        ("status-update", "TASK_STATE_WORKING"),
        ("artifact-update", ""),
        ("status-update", "TASK_STATE_COMPLETED"),
        ("response", ""),
    ]
    .map(|(k, s)| (k.to_string(), s.to_string()));
    assert_eq!(kinds, expected);

    // GetTask and CancelTask through the client.
    let fetched = client.get_task("orders", &task.id).await.unwrap();
    assert_eq!(
        (fetched.id.as_str(), fetched.status.state),
        (task.id.as_str(), TaskState::Completed)
    );
    assert_eq!(fetched.artifacts, task.artifacts);
    let code = |result: Result<Task, CallError>| match result {
        Err(CallError::Rpc { error, .. }) => error.code,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    };
    assert_eq!(
        code(client.cancel_task("orders", &task.id).await),
        jsonrpc::TASK_NOT_CANCELABLE
    );
    assert_eq!(
        code(client.get_task("orders", "no-such-task").await),
        jsonrpc::TASK_NOT_FOUND
    );
    assert_eq!(
        code(client.cancel_task("orders", "no-such-task").await),
        jsonrpc::TASK_NOT_FOUND
    );

    // Resent by the client (same message id): the same task, not run again.
    let mut again = Message::user(vec![Part::data(json!({"type": "order", "id": 7}))]);
    again.message_id = "job-j1".to_string();
    assert_eq!(
        client.send_message("orders", again).await.unwrap().id,
        task.id
    );

    // Bad input: each answered with its JSON-RPC error on the reply topic.
    let oversized = send_message_json(
        "big",
        "m-big",
        json!({"type": "order", "pad": "x".repeat(70_000)}),
    );
    let bad = [
        ("malformed", b"{\"jsonrpc\": \"2.0\", \"id\": ".to_vec(), jsonrpc::PARSE_ERROR),
        (
            "unknown",
            br#"{"jsonrpc":"2.0","id":"unknown","method":"Frobnicate","params":{}}"#.to_vec(),
            jsonrpc::METHOD_NOT_FOUND,
        ),
        ("big", oversized, jsonrpc::INVALID_REQUEST),
        (
            "no-parts",
            br#"{"jsonrpc":"2.0","id":"no-parts","method":"SendMessage","params":{"message":{"messageId":"m","role":"ROLE_USER","parts":[]}}}"#.to_vec(),
            jsonrpc::INVALID_PARAMS,
        ),
        (
            "stream",
            br#"{"jsonrpc":"2.0","id":"stream","method":"SendStreamingMessage","params":{}}"#.to_vec(),
            jsonrpc::UNSUPPORTED_OPERATION,
        ),
    ];
    for (id, value, _) in &bad {
        backend
            .produce("a2a.orders", vec![raw_request(id, value.clone())])
            .await
            .unwrap();
    }
    for (id, _, expected) in &bad {
        assert_eq!(error_code(&backend, id).await, *expected, "answer to {id}");
    }

    // At-least-once: the same request delivered twice runs its task once.
    let twice = raw_request(
        "dup",
        send_message_json("dup", "m-dup", json!({"type": "order", "id": 8})),
    );
    backend
        .produce("a2a.orders", vec![twice.clone()])
        .await
        .unwrap();
    backend.produce("a2a.orders", vec![twice]).await.unwrap();
    let answers = responses(&backend, RAW_REPLIES, "dup", 2).await;
    assert_eq!(answers.len(), 2, "both deliveries answered");
    assert_eq!(
        answers[0]["result"]["task"]["id"],
        answers[1]["result"]["task"]["id"]
    );
    assert_eq!(
        answers[1]["result"]["task"]["status"]["state"],
        "TASK_STATE_COMPLETED"
    );
    // Order 7 (once, though asked twice) and order 8 (once, though delivered twice);
    // the bad requests reached nothing.
    let routed = wait_for(&backend, "orders.accepted", 3, Duration::from_secs(2)).await;
    let ids: Vec<Value> = routed.iter().map(|e| e.payload()["id"].clone()).collect();
    assert_eq!(ids, [json!(7), json!(8)], "each task ran once");
    assert!(
        read_all(&backend, "a2a.orders.dlq").await.is_empty(),
        "nothing dead-lettered"
    );

    // The CLI lists both; stopping the requester withdraws its card.
    let listed: Vec<Value> = serde_json::from_str(&cards_cli(&bootstrap, true)).unwrap();
    let names: Vec<&str> = listed.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(names, ["delegator", "orders"]);
    delegator.stop().await;
    let last = read_all(&backend, REGISTRY_TOPIC)
        .await
        .into_iter()
        .rfind(|e| e.key.as_deref() == Some(b"delegator"))
        .unwrap();
    assert_eq!(last.value, None, "a tombstone for the stopped agent");
    let table = cards_cli(&bootstrap, false);
    assert!(table.starts_with("AGENT"), "{table}");
    assert!(
        table.contains("orders") && !table.contains("delegator"),
        "{table}"
    );
    serve.stop();
}
