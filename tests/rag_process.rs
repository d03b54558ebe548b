//! RAG in the real binary: killed mid-ingest, restarted from its snapshot and from a
//! damaged one, searched over HTTP; and the README's RAG example run verbatim.

mod agents_common;
mod common;
mod llm_common;
mod model_server;
mod rag_common;

use std::time::Duration;

use agentlog_agents::rag::chunking::chunk;
use agentlog_agents::{KafkaBackend, OutRecord, Sink};
use serde_json::{json, Value};

use llm_common::kafka_client;
use rag_common::*;

const DOCUMENTS: usize = 200;
const CHUNK_SIZE: usize = 120;

fn report(i: usize) -> String {
    let subjects = ["pump", "valve", "compressor", "generator", "crane"];
    format!(
        "Report {i}: the {} on deck {} was inspected. Vibration was {} mm/s. The crew logged \
         it and scheduled the next check in {} days.",
        subjects[i % subjects.len()],
        i % 4,
        (i * 7) % 13,
        1 + i % 9
    )
}

async fn produce_reports(backend: &KafkaBackend) {
    let records: Vec<OutRecord> = (0..DOCUMENTS)
        .map(|i| {
            json_record(
                &format!("report-{i}"),
                json!({"text": report(i), "deck": i % 4}),
            )
        })
        .collect();
    for batch in records.chunks(50) {
        backend.produce("docs", batch.to_vec()).await.unwrap();
    }
}

fn stats(http: &str) -> Value {
    index_stats(http, "docs").unwrap_or(Value::Null)
}

async fn wait_stats(http: &str, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    until(what, || {
        let stats = stats(http);
        check(&stats).then_some(stats)
    })
    .await
}

/// Killed with SIGKILL while documents are being ingested, the process restarts and its
/// index ends with every chunk exactly once; a graceful restart loads the snapshot and
/// replays only the tail; a damaged snapshot is rebuilt from the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_ingest_ends_with_every_chunk_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = ingest_config(CHUNK_SIZE, "");
    let expected: usize = (0..DOCUMENTS)
        .map(|i| chunk(&report(i), CHUNK_SIZE, 20).len())
        .sum();
    let (process, kafka, http) = common::serve_agentlog(dir.path(), &config, &[]);
    let backend = kafka_client(&kafka);
    produce_reports(&backend).await;
    let partial = wait_stats(&http, "some chunks indexed", |s| {
        s["chunks"].as_u64().unwrap_or(0) >= 40
    })
    .await;
    drop(process); // SIGKILL, mid-ingest
    assert!(
        partial["chunks"].as_u64().unwrap() < expected as u64,
        "killed before the end: {partial}"
    );

    let (process, kafka, http) = common::serve_agentlog(dir.path(), &config, &[]);
    let done = wait_stats(&http, "every document after the restart", |s| {
        s["documents"].as_u64() == Some(DOCUMENTS as u64)
            && s["chunks"].as_u64() == Some(expected as u64)
    })
    .await;
    // Nothing more arrives: the count stays exact (each chunk once).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(stats(&http)["chunks"], expected, "{done}");
    let written = rag_chunk_records(&kafka).await;
    assert!(
        written >= expected,
        "{written} chunk records for {expected} chunks"
    );
    // The snapshot catches up (every 500 ms while the index changes).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    process.stop();

    let (process, _, http) = common::serve_agentlog(dir.path(), &config, &[]);
    let restarted = wait_stats(&http, "the restarted index", |s| !s.is_null()).await;
    assert_eq!(restarted["chunks"], expected, "{restarted}");
    assert_eq!(restarted["from_snapshot"], true, "{restarted}");
    assert!(
        restarted["replayed_at_start"].as_u64().unwrap() < written as u64,
        "only the tail is replayed: {restarted}"
    );
    search_over_http(&http);
    process.stop();

    // Damage the snapshot: the index is rebuilt from the topic, whole.
    let snapshots = dir.path().join("data/rag/docs");
    let current = std::fs::read_to_string(snapshots.join("CURRENT")).unwrap();
    for file in std::fs::read_dir(snapshots.join(current.trim())).unwrap() {
        std::fs::write(file.unwrap().path(), b"damaged").unwrap();
    }
    let (process, _, http) = common::serve_agentlog(dir.path(), &config, &[]);
    let rebuilt = wait_stats(&http, "the rebuilt index", |s| !s.is_null()).await;
    assert_eq!(rebuilt["from_snapshot"], false, "{rebuilt}");
    assert_eq!(rebuilt["chunks"], expected, "{rebuilt}");
    assert_eq!(rebuilt["documents"], DOCUMENTS, "{rebuilt}");
    process.stop();
}

/// Records on the embeddings topic (duplicates included: at-least-once).
async fn rag_chunk_records(kafka: &str) -> usize {
    use agentlog_agents::{Backend, StartAt};
    let backend = kafka_client(kafka);
    let stream = backend
        .read_topic("rag.docs.chunks", StartAt::Earliest)
        .await
        .unwrap();
    stream.collect_all().await.unwrap().len()
}

/// `POST /v1/search` answers hits, and clear errors for bad requests.
fn search_over_http(http: &str) {
    let (status, body) = http_post(http, r#"{"query": "vibration of the crane", "k": 3}"#);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["index"], "docs");
    let hits = body["hits"].as_array().unwrap();
    assert_eq!(hits.len(), 3);
    assert!(hits
        .iter()
        .all(|h| h["doc"].as_str().unwrap().starts_with("report-")));
    let (status, body) = http_post(http, r#"{"query": "pump", "k": 5, "filter": {"deck": 2}}"#);
    assert_eq!(status, 200, "{body}");
    assert!(body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .all(|h| h["metadata"]["deck"] == 2));
    for (request, code, message) in [
        (r#"{"query": "x", "filter": {"deck": [1]}}"#, 400, "filter"),
        (r#"{"query": "x", "filter": "deck=1"}"#, 400, "filter"),
        (r#"{"vector": [0.1, 0.2]}"#, 400, "dimensions"),
        (r#"{"query": "x", "k": 0}"#, 400, "k must be"),
        (r#"{"query": ""}"#, 400, "query"),
        (r#"{"index": "nope", "query": "x"}"#, 404, "nope"),
        (r#"{"query": "x", "top": 3}"#, 400, "top"),
        ("not json", 400, "request body"),
    ] {
        let (status, body) = http_post(http, request);
        assert_eq!(status, code, "{request}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{request}: {error}");
    }
}

fn http_post(addr: &str, body: &str) -> (u16, Value) {
    http(addr, "POST", "/v1/search", Some(body))
}

/// The README's RAG example, exactly as printed, ingests, searches and answers against
/// the real model server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_rag_example_runs_verbatim() {
    let readme = include_str!("../README.md");
    let example = readme
        .split("## RAG")
        .nth(1)
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README has a RAG example");
    let base = tokio::task::spawn_blocking(|| model_server::shared().base_url.clone())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (process, kafka, http) =
        common::serve_agentlog(dir.path(), example, &[("OPENAI_BASE_URL", &base)]);
    let backend = kafka_client(&kafka);
    backend
        .produce("docs", (0..CORPUS.len()).map(document).collect())
        .await
        .unwrap();
    wait_stats(&http, "the corpus indexed", |s| {
        s["documents"].as_u64() == Some(CORPUS.len() as u64)
    })
    .await;
    let (status, body) = http_post(
        &http,
        r#"{"query": "How do bees make honey?", "k": 2, "filter": {"topic": "science"}}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["hits"][0]["doc"], "bees");
    backend
        .produce(
            "questions",
            vec![json_record(
                "q",
                json!({"question": "Why does bread dough rise?"}),
            )],
        )
        .await
        .unwrap();
    let answers = agents_common::wait_for(&backend, "answers", 1, llm_common::MODEL_WAIT).await;
    assert_eq!(answers.len(), 1, "one answer");
    let answer = data(&answers[0]);
    assert_eq!(answer["sources"][0]["doc"], "bread", "{answer}");
    assert!(answer["answer"].as_str().is_some_and(|a| !a.is_empty()));
    process.stop();
}
