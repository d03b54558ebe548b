//! MCP over topics against a real MCP server: the example's weather server (official
//! Python SDK, stdio) served on topics by the bridge, on the embedded backend and on
//! the kafka backend against a real `agentlog` process. Requests are raw JSON-RPC
//! records, as any implementation of docs/mcp-over-kafka.md would write them, and
//! through `McpTopicClient`.

mod agents_common;
mod common;

use std::time::{Duration, Instant};

use agentlog_agents::llm::tools::replies::Replies;
use agentlog_agents::mcp::{self, binding, McpServerDef, McpTopicClient};
use agentlog_agents::{AgentHandle, Backend, Event, OutRecord, Runtime};
use bytes::Bytes;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(60);

async fn bridge<B: Backend>(runtime: &Runtime<B>, def: McpServerDef) -> AgentHandle {
    mcp::start_bridges(runtime, &[def]).await.unwrap().remove(0)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A request record as the binding defines it.
fn request(id: &str, message: Value, headers: &[(&str, String)]) -> OutRecord {
    let mut record = OutRecord {
        key: Some(Bytes::from(id.to_string())),
        value: Some(Bytes::from(message.to_string())),
        ..OutRecord::default()
    };
    record
        .headers
        .push(("reply_to".to_string(), Bytes::from("test.replies")));
    record
        .headers
        .push(("correlation_id".to_string(), Bytes::from(id.to_string())));
    for (name, value) in headers {
        record
            .headers
            .push((name.to_string(), Bytes::from(value.clone())));
    }
    record
}

fn call(id: &str, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// The records on the reply topic for correlation id `id` once `n` are there.
async fn replies_for<B: Backend>(backend: &B, id: &str, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    loop {
        let all = agents_common::read_all(backend, "test.replies").await;
        let mine: Vec<Event> = all
            .into_iter()
            .filter(|e| e.header_str("correlation_id") == Some(id))
            .collect();
        if mine.len() >= n {
            return mine;
        }
        assert!(Instant::now() < deadline, "no reply for {id}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn answer<B: Backend>(backend: &B, id: &str) -> Value {
    let records = replies_for(backend, id, 1).await;
    let response = records
        .iter()
        .find(|e| e.header_str("mcp.message") == Some("response"))
        .unwrap_or_else(|| panic!("no response for {id}"));
    serde_json::from_slice(response.value.as_deref().unwrap()).unwrap()
}

/// A client of the weather server answering on `test.replies`.
async fn topic_client<B: Backend>(backend: &B, timeout: Duration) -> McpTopicClient<B> {
    backend
        .ensure_topic("test.replies", 1, false)
        .await
        .unwrap();
    let replies = Replies::start(backend.clone(), "requester", "test.replies");
    McpTopicClient::new(
        backend.clone(),
        "weather",
        "mcp.weather.requests",
        "test.replies",
        replies,
        timeout,
    )
}

async fn send<B: Backend>(backend: &B, records: Vec<OutRecord>) {
    backend
        .produce("mcp.weather.requests", records)
        .await
        .unwrap();
}

/// The handshakes of both revisions, listing and calling tools, progress, and the
/// errors of bad input: every request gets its one answer on the reply topic.
async fn requests_are_answered_on_the_reply_topic<B: Backend>(backend: B) {
    let runtime = Runtime::new(backend.clone());
    let _bridge = bridge(
        &runtime,
        agents_common::weather_server("max_message_bytes = 4096"),
    )
    .await;
    let init = call(
        "i1",
        "initialize",
        json!({"protocolVersion": "2025-11-25",
        "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}}),
    );
    let discover = call("d1", "server/discover", json!({}));
    let list = call("l1", "tools/list", json!({}));
    let forecast = call(
        "f1",
        "tools/call",
        json!({"name": "forecast", "arguments": {"city": "Oslo"}}),
    );
    let unknown_city = call(
        "f2",
        "tools/call",
        json!({"name": "forecast", "arguments": {"city": "Atlantis"}}),
    );
    let progress = call(
        "p1",
        "tools/call",
        json!({"name": "regional_forecast",
        "arguments": {"regions": 3}, "_meta": {"progressToken": "tok-9"}}),
    );
    let records = vec![
        request("i1", init, &[]),
        request("d1", discover, &[]),
        request("l1", list, &[]),
        request("f1", forecast, &[]),
        request("f2", unknown_city, &[]),
        request("p1", progress, &[]),
        request("bad1", json!("{not json"), &[]),
        request("bad2", call("bad2", "no/such/method", json!({})), &[]),
        request(
            "bad3",
            json!({"jsonrpc": "2.0", "id": "bad3", "method": "tools/call",
            "params": {"name": "forecast", "arguments": {"city": "x".repeat(5000)}}}),
            &[],
        ),
        request("bad4", json!([call("bad4", "ping", json!({}))]), &[]),
    ];
    // `bad1` is a JSON string, not an object: still not a request.
    send(&backend, records).await;
    let mut raw = request("bad5", Value::Null, &[]);
    raw.value = Some(Bytes::from_static(b"{not json"));
    send(&backend, vec![raw]).await;

    let init = answer(&backend, "i1").await;
    assert_eq!(init["id"], "i1");
    assert_eq!(init["result"]["protocolVersion"], "2025-11-25");
    assert_eq!(init["result"]["serverInfo"]["name"], "weather");
    assert_eq!(
        init["result"]["instructions"],
        "Weather forecasts for cities."
    );
    let discover = answer(&backend, "d1").await;
    assert_eq!(discover["result"]["supportedVersions"][0], "2026-07-28");
    assert!(discover["result"]["capabilities"]["tools"].is_object());
    let list = answer(&backend, "l1").await;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"forecast") && names.contains(&"record_observation"),
        "{names:?}"
    );
    let forecast = answer(&backend, "f1").await;
    let text = forecast["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap()["conditions"],
        "sunny"
    );
    let failed = answer(&backend, "f2").await;
    assert_eq!(failed["result"]["isError"], true, "{failed}");
    assert!(failed["result"]["content"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Atlantis"));

    // Progress arrives before the answer, with the requester's own token.
    let exchange = replies_for(&backend, "p1", 4).await;
    let kinds: Vec<&str> = exchange
        .iter()
        .map(|e| e.header_str("mcp.message").unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["notification", "notification", "notification", "response"]
    );
    let first: Value = serde_json::from_slice(exchange[0].value.as_deref().unwrap()).unwrap();
    assert_eq!(first["method"], "notifications/progress");
    assert_eq!(first["params"]["progressToken"], "tok-9");
    assert_eq!(first["params"]["total"], 3.0);

    for (id, code) in [
        ("bad1", binding::INVALID_REQUEST),
        ("bad2", binding::METHOD_NOT_FOUND),
        ("bad3", binding::MESSAGE_TOO_LARGE),
        ("bad4", binding::INVALID_REQUEST),
        ("bad5", binding::PARSE_ERROR),
    ] {
        let error = answer(&backend, id).await;
        assert_eq!(error["error"]["code"], code, "{id}: {error}");
    }
    // The bridge is still serving.
    send(
        &backend,
        vec![request("last", call("last", "ping", json!({})), &[])],
    )
    .await;
    assert_eq!(answer(&backend, "last").await["result"], json!({}));
    let dead = agents_common::read_all(&backend, "mcp.weather.requests.dlq").await;
    assert!(dead.is_empty(), "nothing is dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_bridge_answers_every_request() {
    let (_broker, backend) = agents_common::embedded().await;
    requests_are_answered_on_the_reply_topic(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_bridge_answers_every_request() {
    let (_process, backend) = agents_common::kafka();
    requests_are_answered_on_the_reply_topic(backend).await;
}

/// A duplicate delivery of a request with an idempotency key gets the first answer
/// again without running the tool; a cancelled request gets no answer; an expired one
/// is not run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_cancellations_and_deadlines() {
    let (_broker, backend) = agents_common::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let observations = dir.path().join("observations.txt");
    let env = format!(
        "env = {{ WEATHER_OBSERVATIONS = {:?} }}",
        observations.display().to_string()
    );
    let runtime = Runtime::new(backend.clone());
    let _bridge = bridge(&runtime, agents_common::weather_server(&env)).await;

    let note = call(
        "o1",
        "tools/call",
        json!({"name": "record_observation", "arguments": {"note": "fog"}}),
    );
    let keyed = [("mcp.idempotency_key", "obs-1".to_string())];
    send(&backend, vec![request("o1", note.clone(), &keyed)]).await;
    let first = answer(&backend, "o1").await;
    send(&backend, vec![request("o1", note, &keyed)]).await;
    let both = replies_for(&backend, "o1", 2).await;
    let second: Value = serde_json::from_slice(both[1].value.as_deref().unwrap()).unwrap();
    assert_eq!(first, second, "the duplicate gets the same answer");
    let lines = std::fs::read_to_string(&observations).unwrap();
    assert_eq!(lines, "fog\n", "the tool ran once");

    let expired = [("mcp.deadline_ms", (now_ms() - 1).to_string())];
    let note = call(
        "o2",
        "tools/call",
        json!({"name": "record_observation", "arguments": {"note": "late"}}),
    );
    send(&backend, vec![request("o2", note, &expired)]).await;
    let late = answer(&backend, "o2").await;
    assert_eq!(late["error"]["code"], binding::REQUEST_EXPIRED);
    assert_eq!(std::fs::read_to_string(&observations).unwrap(), "fog\n");

    let slow = call(
        "s1",
        "tools/call",
        json!({"name": "slow_forecast", "arguments": {"ms": 30000}}),
    );
    send(&backend, vec![request("s1", slow, &[])]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
        "params": {"requestId": "s1", "reason": "changed my mind"}});
    let mut record = request("cancel-s1", cancel, &[]);
    record.key = None;
    send(&backend, vec![record]).await;
    send(
        &backend,
        vec![request("after", call("after", "ping", json!({})), &[])],
    )
    .await;
    answer(&backend, "after").await;
    // The slow call was stopped: its member is free (the ping above was served while
    // it would still be sleeping) and it never answers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s1 = agents_common::read_all(&backend, "test.replies").await;
    assert!(!s1
        .iter()
        .any(|e| e.header_str("correlation_id") == Some("s1")));
}

/// A request sent while the server cannot start times out at the requester, stays on
/// the log, and is served once the server can start (within its deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_waits_for_a_server_that_is_down() {
    let (_broker, backend) = agents_common::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("up");
    let script = agents_common::WEATHER_SERVER;
    // The server starts only once the gate file exists.
    let text = format!(
        "name = \"weather\"\ncommand = [\"sh\", \"-c\", \"test -e {gate} && exec {python} {script}\"]",
        gate = gate.display(),
        python = agents_common::python().display(),
    );
    let def: McpServerDef = toml::from_str(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    let _bridge = bridge(&runtime, def).await;
    let client = topic_client(&backend, Duration::from_millis(800)).await;
    let error = client
        .call_tool("forecast", &json!({"city": "Bergen"}), "down-1")
        .await
        .unwrap_err();
    assert!(error.is_unavailable(), "{error}");
    assert!(error.to_string().contains("did not answer"), "{error}");
    // A second request with a long deadline, written as raw JSON-RPC.
    let deadline = [("mcp.deadline_ms", (now_ms() + 120_000).to_string())];
    let forecast = call(
        "down-2",
        "tools/call",
        json!({"name": "forecast", "arguments": {"city": "Bergen"}}),
    );
    send(&backend, vec![request("down-2", forecast, &deadline)]).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    std::fs::write(&gate, b"").unwrap();
    let served = answer(&backend, "down-2").await;
    let text = served["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap()["conditions"],
        "rain"
    );
    // The first request's deadline (800 ms) had passed: answered as expired, not run.
    let first = answer(&backend, "down-1").await;
    assert_eq!(first["error"]["code"], binding::REQUEST_EXPIRED, "{first}");
}

/// The client's tool list is cached and listed again after the server's
/// `notifications/tools/list_changed`, which the bridge broadcasts on a topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tool_list_is_refreshed_when_it_changes() {
    let (_broker, backend) = agents_common::embedded().await;
    let runtime = Runtime::new(backend.clone());
    let _bridge = bridge(&runtime, agents_common::weather_server("")).await;
    let client = topic_client(&backend, WAIT).await;
    let names = |tools: &[Value]| -> Vec<String> {
        tools
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_string())
            .collect()
    };
    let before = client.tools().await.unwrap();
    assert!(!names(&before).contains(&"alerts".to_string()));
    let forecast = client
        .call_tool("forecast", &json!({"city": "Tromso"}), "c-1")
        .await
        .unwrap();
    assert_eq!(
        forecast,
        Ok(json!({"city": "Tromso", "temp_c": 4, "conditions": "snow"}))
    );
    client
        .call_tool("enable_alerts", &json!({}), "c-2")
        .await
        .unwrap()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let now = client.tools().await.unwrap();
        if names(&now).contains(&"alerts".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "the list was never refreshed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let alerts = client
        .call_tool("alerts", &json!({"city": "Oslo"}), "c-3")
        .await
        .unwrap();
    assert_eq!(alerts, Ok(json!({"result": "no alerts for Oslo"})));
}

/// Kills the child process it holds when dropped, so a failed test leaves no server.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A streamable-HTTP server (`url = ...`) is bridged the same way as a stdio one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamable_http_server_is_bridged_too() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let script = agents_common::WEATHER_SERVER;
    let _server = Child(
        std::process::Command::new(agents_common::python())
            .args([script, "--http", &port.to_string()])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    agents_common::eventually("the HTTP server listens", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .await;
    let (_broker, backend) = agents_common::embedded().await;
    let runtime = Runtime::new(backend.clone());
    let def: McpServerDef = toml::from_str(&format!(
        "name = \"weather\"\nurl = \"http://127.0.0.1:{port}/mcp\""
    ))
    .unwrap();
    let _bridge = bridge(&runtime, def).await;
    let forecast = call(
        "h1",
        "tools/call",
        json!({"name": "forecast", "arguments": {"city": "Oslo"}}),
    );
    send(&backend, vec![request("h1", forecast, &[])]).await;
    let answer = answer(&backend, "h1").await;
    let text = answer["result"]["content"][0]["text"].as_str().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(text).unwrap()["conditions"],
        "sunny"
    );
}
