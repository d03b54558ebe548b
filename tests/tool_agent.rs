//! `tool_agent` against the real model server (llama.cpp serving SmolLM2-135M), in JSON
//! next-action mode: it calls a request/reply tool served over topics by a responder
//! agent, on the embedded backend and on the kafka backend against a real `agentlog`
//! broker process; a tool that never replies and a tool the model made up come back
//! to the model as errors.
//!
//! Until the durable OpenAI client is merged, the model is [`ServerModel`]: test
//! support that posts the request to the server as is (plain HTTP), in the server's
//! dialect for schema-constrained output.

mod agents_common;
mod common;
mod model_server;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentlog_agents::config::AgentDef;
use agentlog_agents::llm::tools::{self, TRACES_TOPIC};
use agentlog_agents::llm::{ChatModel, ChatOutcome, LlmError, TokenUsage};
use agentlog_agents::{
    Agent, AgentSpec, Backend, Context, EmbeddedBackend, Envelope, Event, HandlerError, Runtime,
};
use async_openai::types::chat::CreateChatCompletionRequest;
use bytes::Bytes;
use serde_json::{json, Value};

/// A [`ChatModel`] posting straight to the test model server. llama-cpp-python takes
/// schema constraints as `{"type": "json_object", "schema": ...}`, so OpenAI's
/// `json_schema` format is rewritten to that. Step 0 can be scripted (a canned answer)
/// to make the model "say" something it cannot be made to say reliably.
struct ServerModel {
    port: u16,
    scripted_step0: Option<Value>,
    requests: Mutex<Vec<(u32, Value)>>,
}

impl ServerModel {
    fn new(scripted_step0: Option<Value>) -> Arc<ServerModel> {
        Arc::new(ServerModel {
            port: model_server::shared().port,
            scripted_step0,
            requests: Mutex::new(Vec::new()),
        })
    }

    fn requests(&self) -> Vec<(u32, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

fn post(port: u16, body: &Value) -> Result<Value, String> {
    use std::io::{Read, Write};
    let body = body.to_string();
    let mut stream =
        std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let head = format!(
        "POST /v1/chat/completions HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|e| e.to_string())?;
    let (status, rest) = response.split_once("\r\n").ok_or("no status line")?;
    let (_, payload) = rest.split_once("\r\n\r\n").ok_or("no body")?;
    if !status.contains(" 200 ") {
        return Err(format!("{status}: {payload}"));
    }
    serde_json::from_str(payload).map_err(|e| e.to_string())
}

impl ChatModel for ServerModel {
    async fn chat(
        &self,
        _event: &Event,
        step: u32,
        request: CreateChatCompletionRequest,
    ) -> Result<ChatOutcome, LlmError> {
        let mut body = serde_json::to_value(&request).unwrap();
        self.requests.lock().unwrap().push((step, body.clone()));
        let unavailable = |reason: String| LlmError::Unavailable {
            endpoint: "test".to_string(),
            reason,
        };
        let started = Instant::now();
        let response = match (&self.scripted_step0, step) {
            (Some(message), 0) => json!({
                "id": "scripted", "object": "chat.completion", "created": 0, "model": "scripted",
                "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            }),
            _ => {
                body["model"] = json!(model_server::MODEL);
                if let Some(schema) = body
                    .get("response_format")
                    .and_then(|f| f.get("json_schema"))
                    .map(|s| s["schema"].clone())
                {
                    body["response_format"] = json!({"type": "json_object", "schema": schema});
                }
                let port = self.port;
                tokio::task::spawn_blocking(move || post(port, &body))
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                    .map_err(unavailable)?
            }
        };
        let usage = TokenUsage {
            input: response["usage"]["prompt_tokens"].as_u64().unwrap_or(0),
            output: response["usage"]["completion_tokens"].as_u64().unwrap_or(0),
        };
        Ok(ChatOutcome {
            response: serde_json::from_value(response).map_err(|e| unavailable(e.to_string()))?,
            usage,
            latency: started.elapsed(),
            cost: 0.0,
            model: model_server::MODEL.to_string(),
            replayed: false,
        })
    }
}

/// The weather tool: an ordinary agent on `tools.weather` replying to `reply_to` (the
/// request's correlation id is inherited by the emit).
struct Weather;

impl Agent for Weather {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let reply_to = event
            .header_str("reply_to")
            .ok_or_else(|| HandlerError::new("no reply_to"))?
            .to_string();
        let city = event
            .envelope()
            .and_then(|e| e.data["city"].as_str().map(str::to_string))
            .unwrap_or_default();
        let data = json!({ "city": city, "weather": "sunny, 21 C" });
        ctx.emit(&reply_to, None, "tool.reply", data);
        Ok(())
    }
}

const AGENT: &str = r#"
[[agents]]
name = "forecaster"
kind = "tool_agent"
topics = ["questions"]
max_attempts = 1
[agents.options]
llm = "local"
system = "You answer weather questions. Call the weather tool, then give the final answer using its result."
output_topic = "answers"
tool_calls = "json"
max_steps = 4
max_tokens = 120
temperature = 0.0
[[agents.options.tools]]
name = "weather"
description = "Returns the current weather of a city."
parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
topic = "tools.weather"
timeout_ms = 60000
"#;

/// The first `[[agents]]` of `text`, read as `AgentsConfig` reads it (which refuses
/// LLM kinds until they are wired into `agentlog_agents::llm`).
fn def_of(text: &str) -> AgentDef {
    let doc: toml::Table = toml::from_str(text).unwrap();
    doc["agents"][0].clone().try_into().unwrap()
}

async fn ask<B: Backend>(backend: &B, question: &str) -> String {
    let envelope = Envelope::new("question", "test", None, json!(question));
    let trace = envelope.trace_id.clone();
    backend
        .produce(
            "questions",
            vec![envelope.to_record(Some(Bytes::from("q")))],
        )
        .await
        .unwrap();
    trace
}

/// The records of `topic` once `done` holds for them (generous deadline: a CPU-bound
/// model shared by parallel suites).
async fn until<B: Backend>(
    backend: &B,
    topic: &str,
    done: impl Fn(&[Event]) -> bool,
) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let events = agents_common::read_all(backend, topic).await;
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "timed out waiting on {topic}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A question the model answers by calling the weather tool: the answer reaches the
/// output topic and `agent.traces` holds every step under the question's trace.
async fn weather_question<B: Backend>(backend: B) {
    let runtime = Runtime::new(backend.clone());
    let _weather = runtime
        .start(AgentSpec::new("weather", &["tools.weather"]), Weather)
        .await
        .unwrap();
    let model = ServerModel::new(None);
    let _agent = tools::start(&runtime, &def_of(AGENT), model.clone())
        .await
        .unwrap();
    let trace = ask(&backend, "What is the weather in Oslo?").await;
    let answers = until(&backend, "answers", |e| !e.is_empty()).await;
    let answer = answers[0].envelope().unwrap();
    assert_eq!(answer.trace_id, trace);
    assert!(!answer.data["answer"].as_str().unwrap().is_empty());
    let steps = until(&backend, TRACES_TOPIC, |e| !e.is_empty()).await;
    let steps: Vec<Value> = steps
        .iter()
        .map(|e| {
            assert_eq!(
                e.key.as_deref(),
                Some(trace.as_bytes()),
                "keyed by trace id"
            );
            assert_eq!(e.trace_id().as_deref(), Some(trace.as_str()));
            e.envelope().unwrap().data
        })
        .collect();
    let kinds: Vec<&str> = steps.iter().map(|s| s["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"model"));
    assert_eq!(kinds.last(), Some(&"final"));
    let call = steps
        .iter()
        .position(|s| s["kind"] == "tool_call")
        .expect("the model called a tool");
    assert_eq!(steps[call]["tool"], "weather");
    assert!(steps[call]["arguments"]["city"].is_string());
    let result = &steps[call + 1];
    assert_eq!(result["kind"], "tool_result");
    assert_eq!(
        result["result"]["weather"], "sunny, 21 C",
        "the responder's reply"
    );
    assert!(steps[0]["tokens"]["input"].as_u64().unwrap() > 0);
    // The model saw the reply in its next request.
    let requests = model.requests();
    let step = steps[call]["step"].as_u64().unwrap() as usize;
    assert!(requests[step + 1].1.to_string().contains("sunny, 21 C"));
    let decisions = until(&backend, "agent.decisions.forecaster", |e| !e.is_empty()).await;
    let details = &decisions[0].envelope().unwrap().data["details"];
    assert!(details["tools"]
        .as_array()
        .unwrap()
        .contains(&json!("weather")));
    assert_eq!(details["steps"], json!(requests.len()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_tool_agent_calls_a_topic_tool() {
    let (_broker, backend) = agents_common::embedded().await;
    weather_question(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_tool_agent_calls_a_topic_tool() {
    let (_process, backend) = agents_common::kafka();
    weather_question(backend).await;
}

/// Waits until the question was either answered or dead-lettered: the agent finished
/// with it either way, and did not crash.
async fn finished(backend: &EmbeddedBackend) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while agents_common::read_all(backend, "answers").await.is_empty()
        && agents_common::read_all(backend, "questions.dlq")
            .await
            .is_empty()
    {
        assert!(Instant::now() < deadline, "the question was never finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_that_never_replies_is_a_timeout_the_model_sees() {
    let (_broker, backend) = agents_common::embedded().await;
    let runtime = Runtime::new(backend.clone());
    // No responder on tools.weather this time.
    let model = ServerModel::new(None);
    let config = AGENT.replace("timeout_ms = 60000", "timeout_ms = 500");
    let _agent = tools::start(&runtime, &def_of(&config), model.clone())
        .await
        .unwrap();
    ask(&backend, "What is the weather in Oslo?").await;
    finished(&backend).await;
    let requests = model.requests();
    assert!(requests.len() >= 2, "the loop went on after the timeout");
    assert!(
        requests[1]
            .1
            .to_string()
            .contains("tool `weather` did not reply within 500 ms"),
        "{}",
        requests[1].1
    );
    let sent = agents_common::read_all(&backend, "tools.weather").await;
    assert_eq!(
        sent[0].header_str("reply_to"),
        Some("agent.replies.forecaster")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_tool_is_an_error_the_model_sees() {
    let (_broker, backend) = agents_common::embedded().await;
    let runtime = Runtime::new(backend.clone());
    let _weather = runtime
        .start(AgentSpec::new("weather", &["tools.weather"]), Weather)
        .await
        .unwrap();
    // The constrained model cannot name a tool that does not exist; a model without
    // constraints can, which step 0 plays.
    let made_up = json!({"role": "assistant", "content":
        r#"{"action": "call_tool", "tool": "teleport", "arguments": {"to": "Oslo"}}"#});
    let model = ServerModel::new(Some(made_up));
    let _agent = tools::start(&runtime, &def_of(AGENT), model.clone())
        .await
        .unwrap();
    ask(&backend, "What is the weather in Oslo?").await;
    finished(&backend).await;
    let requests = model.requests();
    assert!(requests.len() >= 2);
    assert!(
        requests[1]
            .1
            .to_string()
            .contains("unknown tool `teleport`; the tools are: weather"),
        "{}",
        requests[1].1
    );
    assert!(
        agents_common::read_all(&backend, "tools.weather")
            .await
            .len()
            < requests.len(),
        "nothing was sent for the unknown tool"
    );
}

const MCP_AGENT: &str = r#"
[[agents]]
name = "mcp-forecaster"
kind = "tool_agent"
topics = ["questions"]
max_attempts = 1
[agents.options]
llm = "local"
system = "You answer weather questions. Call the forecast tool, then give the final answer using its result."
output_topic = "answers"
tool_calls = "json"
max_steps = 3
max_tokens = 120
temperature = 0.0
[[agents.options.tools]]
mcp_server = "weather"
only = ["forecast"]
timeout_ms = 60000
"#;

/// The tool agent lists an MCP server's tools and calls one through topics: the
/// example's weather server (official Python SDK, stdio) behind the bridge. Step 0
/// is scripted to call `forecast` (a 135M model does not reliably pick a tool); the
/// server's answer reaches the real model in step 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_agent_calls_an_mcp_server_tool_over_topics() {
    let (_broker, backend) = agents_common::embedded().await;
    let runtime = Runtime::new(backend.clone());
    let server = agents_common::weather_server("");
    let _bridge = agentlog_agents::mcp::start_bridges(&runtime, &[server])
        .await
        .unwrap();
    let call = json!({"action": "call_tool", "tool": "forecast", "arguments": {"city": "Bergen"}});
    let model = ServerModel::new(Some(
        json!({"role": "assistant", "content": call.to_string()}),
    ));
    let _agent = tools::start(&runtime, &def_of(MCP_AGENT), model.clone())
        .await
        .unwrap();
    let trace = ask(&backend, "What is the weather in Bergen?").await;
    let answers = until(&backend, "answers", |e| !e.is_empty()).await;
    assert_eq!(answers[0].envelope().unwrap().trace_id, trace);
    let steps = until(&backend, TRACES_TOPIC, |e| {
        e.iter()
            .any(|s| s.envelope().unwrap().data["kind"] == "final")
    })
    .await;
    let result = steps
        .iter()
        .map(|e| e.envelope().unwrap().data)
        .find(|s| s["kind"] == "tool_result")
        .expect("the tool was called");
    assert_eq!(
        result["result"],
        json!({"city": "Bergen", "temp_c": 12, "conditions": "rain"}),
        "the MCP server's answer, through the bridge"
    );
    // The model was offered the server's tool (listed over topics), with its schema,
    // and saw the answer in its next request.
    let requests = model.requests();
    let first = requests[0].1.to_string();
    assert!(
        first.contains("forecast") && first.contains("city"),
        "{first}"
    );
    assert!(
        !first.contains("record_observation"),
        "`only` limits the tools"
    );
    assert!(requests[1].1.to_string().contains("rain"));
}
