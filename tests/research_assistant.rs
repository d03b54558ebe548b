//! The research-assistant example (`examples/research-assistant/agentlog.toml`), run
//! verbatim by `agentlog serve` against the real model server (`OPENAI_BASE_URL`): the
//! example's corpus is loaded and indexed, a question is planned into sub-questions
//! (fan-out), researched by a swarm of tool agents searching the corpus, joined by the
//! aggregator and written up; the report must come from a complete join of every
//! sub-question's finding, and the findings must cite corpus documents that the
//! researchers' searches returned. Structure is asserted, never wording.
//!
//! Needs the `llm` kind (the durable client), `tool_agent` wired into
//! `agentlog_agents::llm`, and the RAG kinds with MiniLM under `.models/`.

mod agents_common;
mod common;
mod model_server;
mod rag_common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use agentlog_agents::config::AgentsConfig;
use agentlog_agents::{Envelope, Event, KafkaBackend, KafkaConfig, OutRecord, Sink};
use bytes::Bytes;
use serde_json::{json, Value};

const CONFIG: &str = include_str!("../examples/research-assistant/agentlog.toml");
const CORPUS: &str = include_str!("../examples/research-assistant/corpus.jsonl");
const README: &str = include_str!("../README.md");

/// The corpus as (id, document) pairs.
fn corpus() -> Vec<(String, Value)> {
    CORPUS
        .lines()
        .map(|line| {
            let doc: Value = serde_json::from_str(line).unwrap();
            (doc["id"].as_str().unwrap().to_string(), doc)
        })
        .collect()
}

/// The corpus as the client loads it: keyed by id, `{"text", "title", "topic"}`.
fn documents() -> Vec<OutRecord> {
    corpus()
        .into_iter()
        .map(|(id, mut doc)| {
            doc.as_object_mut().unwrap().remove("id");
            OutRecord {
                key: Some(Bytes::from(id)),
                value: Some(Bytes::from(doc.to_string())),
                ..OutRecord::default()
            }
        })
        .collect()
}

fn of_trace<'a>(events: &'a [Event], trace: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.trace_id().as_deref() == Some(trace))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_research_assistant_answers_with_a_report_citing_the_corpus() {
    let server = model_server::shared();
    let dir = tempfile::tempdir().unwrap();
    let (process, bootstrap, http) = common::serve_agentlog(
        dir.path(),
        CONFIG,
        &[("OPENAI_BASE_URL", server.base_url.as_str())],
    );
    let backend = KafkaBackend::new(KafkaConfig {
        bootstrap,
        properties: Default::default(),
    })
    .unwrap();
    let ids: BTreeSet<String> = corpus().into_iter().map(|(id, _)| id).collect();
    let started = Instant::now();
    backend
        .produce("research.documents", documents())
        .await
        .unwrap();
    rag_common::until("the corpus indexed", || {
        rag_common::index_stats(&http, "corpus")
            .filter(|stats| stats["documents"] == json!(ids.len()))
    })
    .await;
    eprintln!("{} documents indexed in {:?}", ids.len(), started.elapsed());
    let question = Envelope::new(
        "research.question",
        "test",
        None,
        json!({"question": "How do bees make honey?"}),
    );
    let trace = question.trace_id.clone();
    backend
        .produce("research.questions", vec![question.to_record(None)])
        .await
        .unwrap();

    let deadline = Instant::now() + Duration::from_secs(1800);
    let report = loop {
        let reports = agents_common::read_all(&backend, "research.reports").await;
        if let Some(report) = of_trace(&reports, &trace).first() {
            break (*report).clone();
        }
        assert!(Instant::now() < deadline, "no report");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // The planner's fan-out: n sub-questions, numbered, one correlation id.
    let planned = agents_common::read_all(&backend, "research.subquestions").await;
    let planned = of_trace(&planned, &trace);
    let n = planned.len();
    assert_eq!(n, 3, "the planner's schema asks for three sub-questions");
    let correlation = planned[0].header_str("correlation_id").unwrap().to_string();
    let mut questions = vec![Value::Null; n];
    for event in &planned {
        assert_eq!(
            event.header_str("correlation_id"),
            Some(correlation.as_str())
        );
        assert_eq!(event.header_str("fanout.count"), Some("3"));
        let index: usize = event.header_str("fanout.index").unwrap().parse().unwrap();
        questions[index] = event.envelope().unwrap().data["item"].clone();
    }
    // One finding per sub-question, carrying the fan-out headers through the swarm.
    let findings = agents_common::read_all(&backend, "research.findings").await;
    let findings = of_trace(&findings, &trace);
    assert!(findings.len() >= n, "every sub-question researched");
    for finding in &findings {
        assert_eq!(
            finding.header_str("correlation_id"),
            Some(correlation.as_str())
        );
        assert_eq!(finding.header_str("ce_source"), Some("researcher"));
    }
    // The join: complete, in sub-question order, one result each.
    let joined = agents_common::read_all(&backend, "research.joined").await;
    let joined = of_trace(&joined, &trace);
    assert_eq!(joined.len(), 1);
    let join = joined[0].envelope().unwrap().data;
    assert_eq!(join["correlation_id"], json!(correlation));
    assert_eq!(join["complete"], true);
    let results = join["results"].as_array().unwrap();
    assert_eq!(results.len(), n);
    for (i, result) in results.iter().enumerate() {
        assert_eq!(
            result["input"]["item"], questions[i],
            "result {i} answers sub-question {i}"
        );
        assert!(!result["answer"].as_str().unwrap().is_empty());
    }
    // The report was written from that join.
    assert_eq!(
        report.header_str("correlation_id"),
        Some(correlation.as_str())
    );
    assert_eq!(report.header_str("ce_source"), Some("writer"));
    let text = report.envelope().unwrap().data["text"].clone();
    assert!(!text.as_str().unwrap_or_default().trim().is_empty());
    let decisions = agents_common::read_all(&backend, "agent.decisions.writer").await;
    assert!(
        of_trace(&decisions, &trace).len() == 1,
        "the writer's call is in its decision log"
    );
    // Every researcher step is traced under the question's trace, and the researchers
    // searched the corpus: every search returned k = 3 of its documents.
    let steps = agents_common::read_all(&backend, "agent.traces").await;
    let steps: Vec<Value> = of_trace(&steps, &trace)
        .iter()
        .map(|e| e.envelope().unwrap().data)
        .collect();
    assert!(steps.iter().filter(|s| s["kind"] == "final").count() >= n);
    let mut found = BTreeSet::new();
    for search in steps
        .iter()
        .filter(|s| s["kind"] == "tool_result" && s["tool"] == "search")
    {
        let hits = search["result"].as_array().expect("search hits");
        assert_eq!(hits.len(), 3, "k = 3 of a large corpus: {search}");
        for hit in hits {
            let doc = hit["doc"].as_str().unwrap();
            assert!(ids.contains(doc), "{doc} is a corpus document");
            assert!(!hit["text"].as_str().unwrap().is_empty());
            found.insert(doc.to_string());
        }
    }
    assert!(!found.is_empty(), "the researchers searched: {steps:?}");
    // The report cites: the findings it was written from carry the ids of the documents
    // their searches returned (so all in the corpus), and at least one has some.
    let mut cited = BTreeSet::new();
    for result in results {
        for source in result["sources"].as_array().expect("a finding's sources") {
            let doc = source.as_str().unwrap();
            assert!(found.contains(doc), "{doc} was returned by a search");
            cited.insert(doc.to_string());
        }
    }
    assert!(!cited.is_empty(), "the report cites documents: {join}");
    eprintln!("report: {text}\nsources: {cited:?}");
    process.stop();
}

/// The configuration as `agentlog serve` reads it, every kind validated; the corpus
/// `corpus.py` generates: a few hundred small documents with unique ids.
#[test]
fn the_example_configuration_and_corpus_are_valid() {
    let config = AgentsConfig::from_toml(CONFIG).unwrap();
    let kinds: Vec<&str> = config.agents.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["rag_ingest", "llm", "tool_agent", "aggregate", "llm"]
    );
    assert!(config.rag.indexes.contains_key("corpus"));
    let corpus = corpus();
    let ids: BTreeSet<&str> = corpus.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids.len(), corpus.len(), "unique ids");
    assert!((200..=300).contains(&corpus.len()) && CORPUS.len() < 150_000);
    for (_, doc) in &corpus {
        for field in ["title", "topic", "text"] {
            assert!(doc[field].as_str().is_some_and(|s| !s.is_empty()), "{doc}");
        }
    }
}

/// README's "Workflows: tools and fan-in" example, exactly as printed.
#[test]
fn the_readme_workflow_example_is_valid() {
    let section = README
        .split("## Workflows: tools and fan-in")
        .nth(1)
        .expect("README has the workflows section");
    let example = section
        .split("```toml\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("the section has a TOML example");
    let config = AgentsConfig::from_toml(example).unwrap();
    assert!(config.agents.iter().any(|a| a.kind == "tool_agent"));
    assert!(config.agents.iter().any(|a| a.kind == "aggregate"));
}
