//! The tool loop against a scripted model on an in-process broker: the model's answers
//! are fixed per step, everything else (topics, the reply listener, the responder
//! tool, retries and dead letters) is real.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_openai::types::chat::CreateChatCompletionRequest;
use serde_json::{json, Value};

use super::*;
use crate::agent::{Agent, Context, HandlerError};
use crate::backend::{EmbeddedBackend, Sink, StartAt};
use crate::config::AgentDef;
use crate::envelope::Envelope;
use crate::event::Event;
use crate::llm::model::{ChatOutcome, LlmError, TokenUsage};
use crate::runtime::AgentSpec;

/// Answers step `n` with the `n`th scripted assistant message, and keeps every request.
struct Script {
    answers: Vec<Value>,
    requests: Mutex<Vec<(u32, Value)>>,
}

impl Script {
    fn new(answers: Vec<Value>) -> Arc<Script> {
        Arc::new(Script {
            answers,
            requests: Mutex::new(Vec::new()),
        })
    }

    fn requests(&self) -> Vec<(u32, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

impl ChatModel for Script {
    async fn chat(
        &self,
        _event: &Event,
        step: u32,
        request: CreateChatCompletionRequest,
    ) -> Result<ChatOutcome, LlmError> {
        self.requests
            .lock()
            .unwrap()
            .push((step, serde_json::to_value(&request).unwrap()));
        let message = self.answers.get(step as usize).cloned().unwrap_or_else(|| {
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "again", "type": "function", "function": {"name": "echo", "arguments": "{\"text\":\"again\"}"}}
            ]})
        });
        let response = serde_json::from_value(json!({
            "id": "r", "object": "chat.completion", "created": 0, "model": "script",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }))
        .unwrap();
        Ok(ChatOutcome {
            response,
            usage: TokenUsage {
                input: 10,
                output: 5,
            },
            latency: Duration::from_millis(1),
            cost: 0.5,
            model: "script".to_string(),
            replayed: false,
        })
    }
}

/// A request/reply tool as an agent: replies `{"echo": <text>}` to `reply_to` (the
/// correlation id is inherited by the emit).
struct Echo;

impl Agent for Echo {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let reply_to = event
            .header_str(replies::REPLY_TO)
            .ok_or_else(|| HandlerError::new("no reply_to"))?;
        let text = event
            .envelope()
            .map(|e| e.data["text"].clone())
            .unwrap_or_default();
        ctx.emit(reply_to, None, "tool.reply", json!({ "echo": text }));
        Ok(())
    }
}

fn call(name: &str, arguments: &str) -> Value {
    json!({"role": "assistant", "content": null, "tool_calls": [
        {"id": format!("call-{name}"), "type": "function", "function": {"name": name, "arguments": arguments}}
    ]})
}

fn answer(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

const AGENT: &str = r#"
[[agents]]
name = "assistant"
kind = "tool_agent"
topics = ["questions"]
max_attempts = 1
[agents.options]
llm = "local"
system = "Use the tools."
output_topic = "answers"
max_steps = 3
[[agents.options.tools]]
name = "echo"
description = "Echoes text."
parameters = { type = "object", properties = { text = { type = "string" } }, required = ["text"] }
topic = "tools.echo"
timeout_ms = 20000
[[agents.options.tools]]
name = "silent"
description = "Never answers."
topic = "tools.silent"
timeout_ms = 300
"#;

async fn wait_for(backend: &EmbeddedBackend, topic: &str, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = match backend.read_topic(topic, StartAt::Earliest).await {
            Ok(stream) => stream.collect_all().await.unwrap_or_default(),
            Err(_) => Vec::new(),
        };
        if events.len() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} records on {topic}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the first agent of `config` with `script` on one question, after writing
/// `seed`; the broker, backend and handles stay alive while the returned value lives.
async fn run(
    config: &str,
    script: Arc<Script>,
    seed: Vec<(&str, Vec<crate::event::OutRecord>)>,
) -> (
    agentlog_broker::EmbeddedBroker,
    EmbeddedBackend,
    Vec<AgentHandle>,
) {
    let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
        config.set("group.initial.rebalance.delay.ms", "0").unwrap();
        config.set("num.partitions", "1").unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    for (topic, records) in seed {
        backend.produce(topic, records).await.unwrap();
    }
    let runtime = Runtime::new(backend.clone());
    let mut def = def_of(config);
    def.backoff_ms = Some(1);
    let echo = runtime
        .start(AgentSpec::new("echo", &["tools.echo"]), Echo)
        .await
        .unwrap();
    let agent = start(&runtime, &def, script).await.unwrap();
    let question = Envelope::new("question", "test", None, json!("What does the echo say?"));
    backend
        .produce(
            "questions",
            vec![question.to_record(Some(bytes::Bytes::from_static(b"q1")))],
        )
        .await
        .unwrap();
    (broker, backend, vec![echo, agent])
}

/// The first `[[agents]]` of `text` (`AgentsConfig::from_toml` refuses LLM kinds until
/// they are wired into `crate::llm`).
pub(crate) fn def_of(text: &str) -> AgentDef {
    let doc: toml::Table = toml::from_str(text).unwrap();
    doc["agents"][0].clone().try_into().unwrap()
}

fn traces(events: &[Event]) -> Vec<Value> {
    events.iter().map(|e| e.envelope().unwrap().data).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_a_topic_tool_then_answers_with_a_full_trace() {
    let script = Script::new(vec![
        call("echo", r#"{"text":"hello"}"#),
        answer("It says hello."),
    ]);
    let (_broker, backend, _handles) = run(AGENT, script.clone(), Vec::new()).await;
    let answers = wait_for(&backend, "answers", 1).await;
    let answer = answers[0].envelope().unwrap();
    assert_eq!(answer.data["answer"], "It says hello.");
    assert_eq!(answer.data["steps"], 2);
    // The model saw the tool's reply as the result of its call.
    let requests = script.requests();
    let tool_message = &requests[1].1["messages"][3];
    assert_eq!(tool_message["role"], "tool");
    assert_eq!(tool_message["tool_call_id"], "call-echo");
    assert!(tool_message["content"]
        .as_str()
        .unwrap()
        .contains(r#""echo":"hello""#));
    // Every step is traced, in order, under the question's trace.
    let trace = wait_for(&backend, TRACES_TOPIC, 5).await;
    assert!(trace
        .iter()
        .all(|e| e.key.as_deref() == Some(answer.trace_id.as_bytes())));
    let steps: Vec<(u64, String)> = traces(&trace)
        .iter()
        .map(|t| {
            (
                t["step"].as_u64().unwrap(),
                t["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected = [
        (0, "model"),
        (0, "tool_call"),
        (0, "tool_result"),
        (1, "model"),
        (1, "final"),
    ];
    assert_eq!(steps, expected.map(|(s, k)| (s, k.to_string())).to_vec());
    assert_eq!(traces(&trace)[2]["result"], json!({"echo": "hello"}));
    assert_eq!(
        traces(&trace)[0]["tokens"],
        json!({"input": 10, "output": 5})
    );
    let decisions = wait_for(&backend, "agent.decisions.assistant", 1).await;
    let details = &decisions[0].envelope().unwrap().data["details"];
    assert_eq!(details["steps"], 2);
    assert_eq!(details["tools"], json!(["echo"]));
    assert_eq!(details["tokens"], json!({"input": 20, "output": 10}));
    assert_eq!(details["cost"], 1.0);
    // The request carried a correlation id stable for event, step and call.
    let request = wait_for(&backend, "tools.echo", 1).await;
    assert_eq!(
        request[0].header_str("correlation_id"),
        Some("assistant/questions/0/0/0/0")
    );
    assert_eq!(
        request[0].header_str("reply_to"),
        Some("agent.replies.assistant")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_tools_bad_arguments_and_timeouts_are_tool_errors() {
    let script = Script::new(vec![
        call("teleport", "{}"),
        call("echo", r#"{"words":"hi"}"#),
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "s", "type": "function", "function": {"name": "silent", "arguments": "{}"}}
        ]}),
    ]);
    // Three steps, no answer: the event is dead-lettered with the reason.
    let (_broker, backend, handles) = run(AGENT, script.clone(), Vec::new()).await;
    let dead = wait_for(&backend, "questions.dlq", 1).await;
    assert_eq!(
        dead[0].header_str("dlq.error"),
        Some("no final answer within max_steps = 3")
    );
    assert_eq!(
        dead[0].header_str("tool_agent.tools_called"),
        Some("teleport,echo,silent")
    );
    let requests = script.requests();
    let result = |step: usize| {
        requests[step].1["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(
        result(1).contains("unknown tool `teleport`; the tools are: echo, silent"),
        "{}",
        result(1)
    );
    assert!(
        result(2).contains("arguments.text is required"),
        "{}",
        result(2)
    );
    assert!(wait_for(&backend, "answers", 0).await.is_empty());
    assert!(
        wait_for(&backend, TRACES_TOPIC, 0).await.is_empty(),
        "a failed handling writes no trace"
    );
    let metrics = handles[1].metrics();
    assert_eq!(metrics.custom.get("tool_calls"), Some(&3));
    assert_eq!(
        metrics.custom.get("tool_errors"),
        Some(&3),
        "unknown, invalid, timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_tool_times_out_into_an_error_the_model_sees() {
    let script = Script::new(vec![call("silent", "{}"), answer("The tool is down.")]);
    let (_broker, backend, _handles) = run(AGENT, script.clone(), Vec::new()).await;
    let answers = wait_for(&backend, "answers", 1).await;
    assert_eq!(
        answers[0].envelope().unwrap().data["answer"],
        "The tool is down."
    );
    let requests = script.requests();
    let seen = requests[1].1["messages"][3]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        seen.contains("tool `silent` did not reply within 300 ms"),
        "{seen}"
    );
}

#[test]
fn refuses_bad_definitions() {
    assert!(validate(&def_of(AGENT)).is_ok());
    for (from, to) in [
        ("output_topic = \"answers\"\n", ""),
        ("max_steps = 3", "max_steps = 0"),
        ("llm = \"local\"", ""),
        ("max_steps = 3", "max_step = 3"),
        ("system = \"Use the tools.\"", "tool_calls = \"xml\""),
        ("name = \"silent\"", "name = \"echo\""),
    ] {
        let def = def_of(&AGENT.replace(from, to));
        assert!(validate(&def).is_err(), "{from} -> {to} must be refused");
    }
}

/// The README's workflow example and the research-assistant example declare valid
/// `tool_agent` and `aggregate` agents (their `llm` agents are checked by that kind).
#[test]
fn the_documented_configurations_are_valid_for_these_kinds() {
    let readme = include_str!("../../../../README.md")
        .split("## Workflows: tools and fan-in")
        .nth(1)
        .and_then(|s| s.split("```toml\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("README has the workflow example");
    let example = include_str!("../../../../examples/research-assistant/agentlog.toml");
    for text in [readme, example] {
        let doc: toml::Table = toml::from_str(text).unwrap();
        let agents = doc["agents"].as_array().unwrap();
        let mut checked = 0;
        for agent in agents {
            let def: AgentDef = agent.clone().try_into().unwrap();
            match def.kind.as_str() {
                "tool_agent" => validate(&def).unwrap(),
                "aggregate" => crate::workflow::validate(&def).unwrap(),
                _ => continue,
            }
            checked += 1;
        }
        assert_eq!(checked, 2, "one tool_agent and one aggregate in each");
    }
}

const BUILTINS: &str = r#"
[[agents]]
name = "assistant"
kind = "tool_agent"
topics = ["questions"]
max_attempts = 1
[agents.options]
llm = "local"
output_topic = "answers"
[[agents.options.tools]]
name = "notes"
builtin = "read_topic"
topics = ["notes"]
max_records = 2
[[agents.options.tools]]
name = "remember"
builtin = "state_get"
[[agents.options.tools]]
name = "write"
builtin = "produce"
topics = ["memos"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_tools_read_topics_state_and_write_with_the_outputs() {
    let script = Script::new(vec![
        call("notes", r#"{"topic":"notes","n":5}"#),
        call("notes", r#"{"topic":"notes","n":2}"#),
        call("remember", r#"{"key":"nothing"}"#),
        call("write", r#"{"topic":"orders","key":"k","value":"{}"}"#),
        call(
            "write",
            r#"{"topic":"memos","key":"m1","value":"{\"seen\":3}"}"#,
        ),
        answer("Done."),
    ]);
    let notes = (1..=3)
        .map(|i| Envelope::new("note", "test", None, json!({ "note": i })).to_record(None))
        .collect();
    let (_broker, backend, _handles) = run(BUILTINS, script.clone(), vec![("notes", notes)]).await;
    let answers = wait_for(&backend, "answers", 1).await;
    assert_eq!(answers[0].envelope().unwrap().data["steps"], 6);
    let requests = script.requests();
    let seen = |step: usize| {
        let messages = requests[step].1["messages"].as_array().unwrap();
        let content = messages.last().unwrap()["content"].as_str().unwrap();
        serde_json::from_str::<Value>(content).unwrap()
    };
    // n is capped by the schema (max_records = 2): the call is refused, not truncated.
    assert!(seen(1)["error"].as_str().unwrap().contains("at most 2"));
    let last_two = &seen(2)["result"];
    assert_eq!(last_two[0]["value"], json!({"note": 2}));
    assert_eq!(last_two[1]["value"], json!({"note": 3}));
    assert_eq!(last_two.as_array().unwrap().len(), 2);
    assert_eq!(seen(3), json!({"result": null}));
    assert!(seen(4)["error"]
        .as_str()
        .unwrap()
        .contains("one of [\"memos\"]"));
    assert_eq!(
        seen(5),
        json!({"result": {"written": true, "topic": "memos"}})
    );
    let memos = wait_for(&backend, "memos", 1).await;
    assert_eq!(memos[0].key.as_deref(), Some(&b"m1"[..]));
    assert_eq!(memos[0].envelope().unwrap().data, json!({"seen": 3}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_reuses_the_replies_of_its_first_run() {
    // Every step calls echo and no answer ever comes: both attempts run out of steps.
    let script = Script::new(Vec::new());
    let config = AGENT.replace("max_attempts = 1", "max_attempts = 2");
    let (_broker, backend, _handles) = run(&config, script.clone(), Vec::new()).await;
    let dead = wait_for(&backend, "questions.dlq", 1).await;
    assert_eq!(dead[0].header_str("dlq.attempts"), Some("2"));
    assert_eq!(script.requests().len(), 6, "3 steps, twice");
    // The second run asked nothing again: same correlation ids, replies remembered.
    let sent = wait_for(&backend, "tools.echo", 3).await;
    let ids: Vec<&str> = sent
        .iter()
        .map(|e| e.header_str("correlation_id").unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "assistant/questions/0/0/0/0",
            "assistant/questions/0/0/1/0",
            "assistant/questions/0/0/2/0"
        ]
    );
}
