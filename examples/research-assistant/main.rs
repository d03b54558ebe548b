//! The research assistant's client: loads the corpus (`corpus.jsonl`) into
//! `research.documents` of a running `agentlog serve` (see `agentlog.toml`), waits until
//! the `corpus` index holds every document (`GET /v1/indexes` on the `--http`
//! listener), asks one question, waits for its report on `research.reports` and prints
//! it with the findings it was written from and the documents they cite.
//!
//! `cargo run --example research-assistant -- --bootstrap 127.0.0.1:9092 --http 127.0.0.1:8081 "Why is the sky blue?"`
//! (`run.sh` does all of it, model server included).

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use agentlog_agents::{Backend, Envelope, KafkaBackend, KafkaConfig, OutRecord, Sink, StartAt};
use bytes::Bytes;
use serde_json::{json, Value};

const CORPUS: &str = include_str!("corpus.jsonl");

async fn read(backend: &KafkaBackend, topic: &str) -> Vec<agentlog_agents::Event> {
    match backend.read_topic(topic, StartAt::Earliest).await {
        Ok(stream) => stream.collect_all().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The corpus as documents keyed by id: `{"text", "title", "topic"}`.
fn documents() -> Result<Vec<OutRecord>, serde_json::Error> {
    CORPUS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut doc: Value = serde_json::from_str(line)?;
            let id = doc["id"].as_str().unwrap_or_default().to_string();
            if let Some(fields) = doc.as_object_mut() {
                fields.remove("id");
            }
            Ok(OutRecord {
                key: Some(Bytes::from(id)),
                value: Some(Bytes::from(doc.to_string())),
                timestamp: agentlog_agents::event::now_ms(),
                ..OutRecord::default()
            })
        })
        .collect()
}

/// How many documents index `name` holds, from `GET /v1/indexes` on `http`.
fn indexed(http: &str, name: &str) -> std::io::Result<u64> {
    let mut stream = std::net::TcpStream::connect(http)?;
    write!(
        stream,
        "GET /v1/indexes HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    let stats: Value = serde_json::from_str(body).unwrap_or_default();
    Ok(stats[name]["documents"].as_u64().unwrap_or(0))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut http = None;
    let mut question = "How do bees make honey?".to_string();
    let mut wait = Duration::from_secs(1800);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bootstrap" => bootstrap = args.next().ok_or("--bootstrap needs a value")?,
            "--http" => http = Some(args.next().ok_or("--http needs a value")?),
            "--timeout-secs" => {
                wait =
                    Duration::from_secs(args.next().ok_or("--timeout-secs needs a value")?.parse()?)
            }
            _ => question = arg,
        }
    }
    let backend = KafkaBackend::new(KafkaConfig {
        bootstrap,
        properties: Default::default(),
    })?;
    let documents = documents()?;
    let count = documents.len() as u64;
    let started = Instant::now();
    backend.produce("research.documents", documents).await?;
    // Wait until the index holds every document: its stats over HTTP, or else the
    // ingest agent's decisions (the index follows them within a poll).
    let deadline = started + Duration::from_secs(300);
    loop {
        let done = match &http {
            Some(http) => indexed(http, "corpus").unwrap_or(0),
            None => read(&backend, "agent.decisions.ingest")
                .await
                .iter()
                .filter_map(|e| e.envelope())
                .filter(|e| e.data["decision"] == "document.indexed")
                .filter_map(|e| e.data["details"]["doc"].as_str().map(str::to_string))
                .collect::<BTreeSet<_>>()
                .len() as u64,
        };
        if done >= count {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{done} of {count} documents indexed within 300 s").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "corpus:   {count} documents indexed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let envelope = Envelope::new(
        "research.question",
        "research-client",
        None,
        json!({ "question": question }),
    );
    let trace = envelope.trace_id.clone();
    backend
        .produce("research.questions", vec![envelope.to_record(None)])
        .await?;
    println!("question: {question}\ntrace:    {trace}\nwaiting for the report (a CPU-bound model: minutes)...");
    let deadline = Instant::now() + wait;
    loop {
        let reports = read(&backend, "research.reports").await;
        if let Some(report) = reports
            .iter()
            .find(|r| r.trace_id().as_deref() == Some(trace.as_str()))
        {
            let report = report.envelope().ok_or("the report is not enveloped")?;
            let joined = read(&backend, "research.joined").await;
            let mut cited = BTreeSet::new();
            if let Some(joined) = joined
                .iter()
                .filter_map(|j| j.envelope())
                .find(|j| j.trace_id == trace)
            {
                println!("\nfindings:");
                for finding in joined.data["results"].as_array().into_iter().flatten() {
                    let sources: Vec<&str> = finding["sources"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    println!(
                        "- {}\n  {}\n  sources: {}",
                        finding["input"]["item"],
                        finding["answer"],
                        sources.join(", ")
                    );
                    cited.extend(sources.into_iter().map(str::to_string));
                }
            }
            println!(
                "\nreport:\n{}\n\ncited documents: {}",
                report.data.get("text").unwrap_or(&report.data),
                cited.into_iter().collect::<Vec<_>>().join(", ")
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no report within {} s", wait.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
