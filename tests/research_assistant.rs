//! The research-assistant example (`examples/research-assistant/agentlog.toml`), run
//! verbatim by `agentlog serve` against the real model server, only its `base_url`
//! rewritten: a question is planned into sub-questions (fan-out), researched by a
//! swarm of tool agents, joined by the aggregator and written up; the report must come
//! from a complete join of every sub-question's finding. Structure is asserted, never
//! wording.
//!
//! Needs the `llm` kind (the durable client) and `tool_agent` wired into
//! `agentlog_agents::llm`.

mod agents_common;
mod common;
mod model_server;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentlog_agents::config::AgentsConfig;
use agentlog_agents::{Envelope, Event, KafkaBackend, KafkaConfig, OutRecord, Sink};
use bytes::Bytes;
use common::Serve;
use serde_json::{json, Value};

const CONFIG: &str = include_str!("../examples/research-assistant/agentlog.toml");
const NOTES: &str = include_str!("../examples/research-assistant/notes.txt");
const README: &str = include_str!("../README.md");

/// The example configuration with `base_url` pointing at `base_url`.
fn config(base_url: &str) -> String {
    let mut out = String::new();
    let mut replaced = 0;
    for line in CONFIG.lines() {
        if line.starts_with("base_url = ") {
            out.push_str(&format!("base_url = \"{base_url}\"\n"));
            replaced += 1;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert_eq!(replaced, 1, "one endpoint in the example");
    out
}

fn serve(dir: &std::path::Path, config: &str) -> (Serve, String) {
    let path = dir.join("agentlog.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("AGENTLOG_LOG", "warn")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    for line in lines.by_ref() {
        if let Some(found) = line.unwrap().strip_prefix("agentlog listening on ") {
            addr = Some(found.trim().to_string());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Serve(child), addr.expect("agentlog serve listens"))
}

fn of_trace<'a>(events: &'a [Event], trace: &str) -> Vec<&'a Event> {
    events
        .iter()
        .filter(|e| e.trace_id().as_deref() == Some(trace))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_research_assistant_answers_with_a_report_of_every_finding() {
    let server = model_server::shared();
    let dir = tempfile::tempdir().unwrap();
    let (process, bootstrap) = serve(dir.path(), &config(&server.base_url));
    let backend = KafkaBackend::new(KafkaConfig {
        bootstrap,
        properties: Default::default(),
    })
    .unwrap();
    let notes = NOTES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| OutRecord {
            value: Some(Bytes::from(line.to_string())),
            ..OutRecord::default()
        })
        .collect();
    backend.produce("research.notes", notes).await.unwrap();
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
    // Every researcher step is traced under the question's trace.
    let steps = agents_common::read_all(&backend, "agent.traces").await;
    let finals = of_trace(&steps, &trace)
        .iter()
        .filter(|e| e.envelope().unwrap().data["kind"] == "final")
        .count();
    assert!(finals >= n);
    process.stop();
}

/// The configuration as `agentlog serve` reads it, every kind validated.
#[test]
fn the_example_configuration_is_valid() {
    let config = AgentsConfig::from_toml(&config("http://127.0.0.1:1/v1")).unwrap();
    let kinds: Vec<&str> = config.agents.iter().map(|a| a.kind.as_str()).collect();
    assert_eq!(kinds, ["llm", "tool_agent", "aggregate", "llm"]);
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
