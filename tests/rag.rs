//! Real-time RAG with the real parts: MiniLM (ONNX Runtime from the PyPI wheel) embeds
//! chunks and questions, the real llama.cpp server (SmolLM2) answers, the real binary
//! serves `POST /v1/search` and is killed mid-ingest.

mod agents_common;
mod common;
mod llm_common;
mod model_server;
mod rag_common;

use std::collections::BTreeSet;
use std::sync::Arc;

use agentlog_agents::config::{start_declared, AgentDef, AgentsConfig};
use agentlog_agents::llm::tools::{self, TRACES_TOPIC};
use agentlog_agents::llm::{ChatModel, ChatOutcome, LlmError, TokenUsage};
use agentlog_agents::rag::chunking::chunk;
use agentlog_agents::rag::Filter;
use agentlog_agents::{Backend, Event, Runtime, Sink};
use async_openai::types::chat::CreateChatCompletionRequest;
use serde_json::{json, Value};

use agents_common::{embedded, kafka, read_all, wait_for};
use llm_common::{endpoint, model_base_url, MODEL_WAIT};
use rag_common::*;

fn answer_agent(extra: &str) -> String {
    format!(
        r#"
[[agents]]
name = "answers"
kind = "rag"
topics = ["questions"]
max_attempts = 1
[agents.options]
index = "docs"
llm = "local"
output_topic = "answers"
k = 3
max_tokens = 200
{extra}
"#
    )
}

/// Documents produced to the log are searchable by meaning and with filters, and a
/// question gets an answer from the model that cites only retrieved chunks, with the
/// retrieval in the trace and the decision.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_become_searchable_and_answers_cite_them() {
    let (_broker, backend) = embedded().await;
    let base = model_base_url().await;
    let text = format!(
        "{}{}{}",
        endpoint(&base, ""),
        ingest_config(300, ""),
        answer_agent("")
    );
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let records = (0..CORPUS.len()).map(document).collect();
    backend.produce("docs", records).await.unwrap();
    let index = runtime.indexes().get("docs").unwrap();
    until("every document indexed", || {
        (index.stats().documents == CORPUS.len()).then_some(())
    })
    .await;
    for (question, expected) in [
        ("How do bees make honey?", "bees"),
        ("What causes high and low tides?", "tides"),
        ("Why does bread dough rise?", "bread"),
        (
            "Which language is memory safe without garbage collection?",
            "rust",
        ),
    ] {
        let hits = index
            .search_text(question, 3, &Filter::new())
            .await
            .unwrap();
        assert_eq!(hits[0].chunk.doc, expected, "{question}: {hits:?}");
        assert!(hits.windows(2).all(|w| w[0].score >= w[1].score));
    }
    let software = Filter::from([("topic".to_string(), json!("software"))]);
    let hits = index
        .search_text("How do bees make honey?", 5, &software)
        .await
        .unwrap();
    assert!(!hits.is_empty());
    assert!(hits.iter().all(|h| h.chunk.metadata["topic"] == "software"));

    backend
        .produce(
            "questions",
            vec![json_record(
                "q1",
                json!({"question": "How do bees make honey?"}),
            )],
        )
        .await
        .unwrap();
    let answers = wait_for(&backend, "answers", 1, MODEL_WAIT).await;
    assert_eq!(answers.len(), 1, "one answer");
    let answer = data(&answers[0]);
    assert_eq!(answer["sources"][0]["doc"], "bees", "{answer}");
    assert!(answer["answer"].as_str().is_some_and(|a| !a.is_empty()));
    let sources: BTreeSet<String> = answer["sources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["doc"].as_str().unwrap().to_string())
        .collect();
    for citation in answer["citations"].as_array().unwrap() {
        assert!(
            sources.contains(citation["doc"].as_str().unwrap()),
            "{answer}"
        );
    }
    let traces: Vec<Value> = read_all(&backend, TRACES_TOPIC)
        .await
        .iter()
        .map(data)
        .filter(|t| t["agent"] == "answers")
        .collect();
    let kinds: Vec<&str> = traces.iter().filter_map(|t| t["kind"].as_str()).collect();
    assert_eq!(kinds, ["retrieval", "final"]);
    assert_eq!(traces[0]["hits"][0]["doc"], "bees");
    assert!(traces[0]["hits"][0]["score"].as_f64().unwrap() > 0.3);
    let audit = decisions(&read_all(&backend, "agent.decisions.answers").await);
    let (decision, details) = &audit[0];
    assert_eq!(decision, "answered");
    assert_eq!(details["retrieved"][0]["doc"], "bees");
    assert!(details["tokens_in"].as_u64().unwrap() > 0);
    for handle in handles {
        handle.stop().await;
    }
}

/// A new version of a document replaces all its chunks, a tombstone removes them, on
/// both backends.
async fn versions_replace_and_tombstones_remove<B: Backend>(backend: B) {
    let config = AgentsConfig::from_toml(&ingest_config(100, "")).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let index = runtime.indexes().get("docs").unwrap();
    let long = "The pump on deck two was serviced on Monday. Its seals were replaced. \
                The pressure test passed at noon. The crew logged the repair. \
                The next service is due in spring. Spare seals are in store four.";
    let expected = chunk(long, 100, 20).len();
    assert!(expected >= 3, "the long version has several chunks");
    backend
        .produce("docs", vec![json_record("pump", json!({"text": long}))])
        .await
        .unwrap();
    until("the long version", || {
        (index.stats().chunks == expected).then_some(())
    })
    .await;
    backend
        .produce(
            "docs",
            vec![json_record(
                "pump",
                json!({"text": "The pump was replaced.", "site": "rig-7"}),
            )],
        )
        .await
        .unwrap();
    until("the short version replacing it", || {
        (index.stats().chunks == 1).then_some(())
    })
    .await;
    assert!(index.contains("pump#0") && !index.contains("pump#1"));
    let site = Filter::from([("site".to_string(), json!("rig-7"))]);
    let hits = index.search_text("pump", 5, &site).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].chunk.text, "The pump was replaced.");
    backend
        .produce("docs", vec![raw_record(Some("pump"), None)])
        .await
        .unwrap();
    until("the tombstone removing it", || {
        (index.stats().chunks == 0).then_some(())
    })
    .await;
    let chunks = read_all(&backend, "rag.docs.chunks").await;
    let tombstones = chunks.iter().filter(|e| e.value.is_none()).count();
    // The short version removes chunks 1.., the tombstone chunk 0.
    assert_eq!(tombstones, expected);
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_replace_and_tombstones_remove_embedded() {
    let (_broker, backend) = embedded().await;
    versions_replace_and_tombstones_remove(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_replace_and_tombstones_remove_kafka() {
    let (_process, backend) = kafka();
    versions_replace_and_tombstones_remove(backend).await;
}

/// Documents that cannot be indexed are skipped (or truncated) with a decision, and
/// nothing is dead-lettered; a question with a bad filter is dead-lettered with the
/// reason, before any model call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_documents_and_filters_get_clear_outcomes() {
    let (_broker, backend) = embedded().await;
    let text = format!(
        "{}{}{}",
        endpoint("http://127.0.0.1:9/v1", ""),
        ingest_config(200, ""),
        answer_agent("")
    );
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let huge = "Sensor readings were normal. ".repeat(400);
    backend
        .produce(
            "docs",
            vec![
                raw_record(None, Some(b"no key")),
                raw_record(Some("binary"), Some(&[0xff, 0xfe, 0x00, 0x80])),
                json_record("notext", json!({"title": "x"})),
                raw_record(Some("empty"), Some(b"")),
                raw_record(Some("huge"), Some(huge.as_bytes())),
                raw_record(Some("fine"), Some(b"A fine document.")),
            ],
        )
        .await
        .unwrap();
    let events = wait_for(&backend, "agent.decisions.ingest", 6, WAIT).await;
    // Documents are handled concurrently: decisions come in completion order.
    let outcomes: std::collections::BTreeMap<String, (String, Value)> = decisions(&events)
        .into_iter()
        .map(|(decision, details)| {
            let doc = details["doc"].as_str().unwrap_or("(no key)").to_string();
            (doc, (decision, details))
        })
        .collect();
    let decision = |doc: &str| outcomes[doc].0.as_str();
    assert_eq!(decision("(no key)"), "document.skipped");
    assert_eq!(decision("binary"), "document.skipped");
    assert_eq!(decision("notext"), "document.skipped");
    assert_eq!(decision("empty"), "document.empty");
    assert_eq!(decision("huge"), "document.truncated");
    assert_eq!(decision("fine"), "document.indexed");
    let reason = |doc: &str| outcomes[doc].1["reason"].as_str().unwrap().to_string();
    assert!(reason("binary").contains("not UTF-8"));
    assert!(reason("notext").contains("text"));
    assert_eq!(outcomes["huge"].1["chars"], 2000);
    assert_eq!(outcomes["huge"].1["truncated_from_chars"], huge.len());
    assert!(read_all(&backend, "docs.dlq").await.is_empty());
    let index = runtime.indexes().get("docs").unwrap();
    until("huge and fine indexed", || {
        (index.stats().documents == 2).then_some(())
    })
    .await;

    backend
        .produce(
            "questions",
            vec![json_record(
                "q",
                json!({"question": "pump?", "filter": "site=rig-7"}),
            )],
        )
        .await
        .unwrap();
    let dead = wait_for(&backend, "questions.dlq", 1, WAIT).await;
    let reason = dead[0].header_str("dlq.error").unwrap().to_string();
    assert!(reason.contains("filter"), "{reason}");
    for handle in handles {
        handle.stop().await;
    }
}

/// Answers scripted per step: a search call, then a final answer.
struct Scripted;

impl ChatModel for Scripted {
    async fn chat(
        &self,
        _: &Event,
        step: u32,
        _: CreateChatCompletionRequest,
    ) -> Result<ChatOutcome, LlmError> {
        let content = if step == 0 {
            json!({"action": "call_tool", "tool": "search_docs", "arguments": {"query": "How do bees make honey?"}, "answer": ""})
        } else {
            json!({"action": "final", "answer": "From nectar (bees)."})
        };
        let response = serde_json::from_value(json!({
            "id": "1", "object": "chat.completion", "created": 1, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content.to_string()}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
        }))
        .map_err(|e| LlmError::Record(e.to_string()))?;
        Ok(ChatOutcome {
            response,
            usage: TokenUsage {
                input: 5,
                output: 3,
            },
            latency: std::time::Duration::from_millis(1),
            cost: 0.0,
            model: "m".to_string(),
            replayed: false,
        })
    }
}

/// The `search` tool gives a `tool_agent` the chunks of a `[rag.<name>]` index, with
/// their document ids, in its trace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_tool_serves_a_tool_agent() {
    let (_broker, backend) = embedded().await;
    let config = AgentsConfig::from_toml(&ingest_config(300, "")).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    backend
        .produce("docs", (0..CORPUS.len()).map(document).collect())
        .await
        .unwrap();
    let index = runtime.indexes().get("docs").unwrap();
    until("the corpus indexed", || {
        (index.stats().documents == CORPUS.len()).then_some(())
    })
    .await;
    let def: AgentDef = toml::from_str(
        r#"
name = "researcher"
kind = "tool_agent"
topics = ["asks"]
[options]
llm = "local"
output_topic = "found"
tool_calls = "json"
[[options.tools]]
name = "search_docs"
builtin = "search"
index = "docs"
k = 2
"#,
    )
    .unwrap();
    let agent = tools::start(&runtime, &def, Arc::new(Scripted))
        .await
        .unwrap();
    backend
        .produce("asks", vec![json_record("a", json!({"q": "bees"}))])
        .await
        .unwrap();
    wait_for(&backend, "found", 1, WAIT).await;
    let result = read_all(&backend, TRACES_TOPIC)
        .await
        .iter()
        .map(data)
        .find(|t| t["kind"] == "tool_result")
        .expect("a tool result in the trace");
    let hits = result["result"].as_array().expect("hits").clone();
    assert_eq!(hits.len(), 2, "{result}");
    assert_eq!(hits[0]["doc"], "bees");
    assert!(hits[0]["text"].as_str().unwrap().contains("nectar"));
    // The answer cites the documents the search returned.
    let found = data(&read_all(&backend, "found").await[0]);
    assert_eq!(found["sources"], json!([hits[0]["doc"], hits[1]["doc"]]));
    agent.stop().await;
    for handle in handles {
        handle.stop().await;
    }
}
