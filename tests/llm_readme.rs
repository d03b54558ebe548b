//! The README's "LLM agents" configuration, run exactly as printed: the real binary
//! (`agentlog serve` with its own broker, agents embedded) with `OPENAI_BASE_URL`
//! pointing its `base_url_env` at a REAL model server (llama.cpp's server with
//! SmolLM2-135M-Instruct, see `model_server`), fed through the Kafka protocol.
//!
//! As in `llm_agents`, assertions are about structure (a route topic, answers that
//! satisfy the schema, fanned-out events), never wording; waits are generous.

mod agents_common;
mod common;
mod llm_common;
mod model_server;

use std::collections::BTreeSet;

use agentlog_agents::config::AgentsConfig;
use agentlog_agents::delivery::DLQ_ERROR;
use agentlog_agents::llm::completion::RAW_ANSWER_HEADER;
use agentlog_agents::{Envelope, Sink};
use agents_common::{read_all, wait_for};
use bytes::Bytes;
use llm_common::*;
use serde_json::json;

const ROUTE_TOPICS: [&str; 3] = ["tickets.billing", "tickets.tech", "tickets.other"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_llm_example_runs_verbatim_against_a_real_model() {
    let example = readme_llm_example();
    let config = AgentsConfig::from_toml(example).unwrap();
    let kinds: BTreeSet<&str> = config.agents.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["llm", "llm_router"]));
    let local = &config.llm.endpoints["local"];
    assert_eq!(
        local.base_url_env.as_deref(),
        Some("OPENAI_BASE_URL"),
        "the example takes its endpoint from OPENAI_BASE_URL"
    );

    let base_url = model_base_url().await;
    let dir = tempfile::tempdir().unwrap();
    let (serve, bootstrap, _http) =
        common::serve_agentlog(dir.path(), example, &[("OPENAI_BASE_URL", &base_url)]);
    let backend = kafka_client(&bootstrap);
    backend.produce("tickets", vec![ticket(0)]).await.unwrap();
    let request = Envelope::new(
        "research.requested",
        "readme",
        None,
        json!({ "text": "How do solar panels work and what do they cost?" }),
    )
    .to_record(Some(Bytes::from_static(b"r1")));
    backend
        .produce("research.requests", vec![request])
        .await
        .unwrap();

    // The ticket: one decision, and the ticket forwarded unchanged to its route topic.
    let decisions = wait_for(&backend, "agent.decisions.triage", 1, MODEL_WAIT).await;
    assert_eq!(decisions.len(), 1, "one decision for one ticket");
    let (kind, details) = decision(&decisions[0]);
    assert_eq!(kind, "route", "{details}");
    let topic = details["topic"].as_str().unwrap().to_string();
    assert!(ROUTE_TOPICS.contains(&topic.as_str()), "{details}");
    assert_eq!(details["model"], "smollm2");
    assert_eq!(details["replayed"], false);
    let forwarded = wait_for(&backend, &topic, 1, MODEL_WAIT).await;
    assert_eq!(forwarded.len(), 1);
    let original = read_all(&backend, "tickets").await;
    assert_eq!(forwarded[0].value, original[0].value, "forwarded unchanged");
    for other in ROUTE_TOPICS.iter().filter(|t| **t != topic) {
        assert!(read_all(&backend, other).await.is_empty(), "only {topic}");
    }

    // The request: split into 1 to 3 questions (the schema's bounds), one event each.
    // (A dead letter ends the wait too, so a failure shows its reason at once.)
    let deadline = std::time::Instant::now() + MODEL_WAIT;
    let (decisions, dead) = loop {
        let decisions = read_all(&backend, "agent.decisions.questions").await;
        let dead = read_all(&backend, "research.requests.dlq").await;
        if !decisions.is_empty() || !dead.is_empty() || std::time::Instant::now() > deadline {
            break (decisions, dead);
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let reasons: Vec<_> = dead
        .iter()
        .map(|e| (e.header_str(DLQ_ERROR), e.header_str(RAW_ANSWER_HEADER)))
        .collect();
    assert_eq!(decisions.len(), 1, "dead-lettered instead: {reasons:?}");
    let (kind, details) = decision(&decisions[0]);
    assert_eq!(kind, "fan_out", "{details}");
    let questions = details["output"]["questions"].as_array().unwrap().clone();
    assert!((1..=3).contains(&questions.len()), "{details}");
    assert!(questions.iter().all(|q| q.is_string()), "{details}");
    let items = wait_for(&backend, "research.questions", questions.len(), MODEL_WAIT).await;
    assert_eq!(items.len(), questions.len());
    for (i, item) in items.iter().enumerate() {
        let data = item.envelope().unwrap().data;
        assert_eq!(data["item"], questions[i]);
        assert_eq!(data["index"], i);
        assert_eq!(data["count"], questions.len());
        assert_eq!(
            item.header_str("correlation_id"),
            Some("research.requests-0-0")
        );
    }
    assert!(dead.is_empty(), "{reasons:?}");
    eprintln!("readme example: ticket routed to {topic}; questions {questions:?}");
    serve.stop();
}
