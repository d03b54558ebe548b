//! The research assistant's client: writes the research notes and one question to a
//! running `agentlog serve` (see `agentlog.toml`), waits for the report of that
//! question on `research.reports` and prints it with the findings it was written from.
//!
//! `cargo run --example research-assistant -- --bootstrap 127.0.0.1:9092 "Why is the sky blue?"`
//! (`run.sh` does all of it, model server included).

use std::time::{Duration, Instant};

use agentlog_agents::{Backend, Envelope, KafkaBackend, KafkaConfig, OutRecord, Sink, StartAt};
use bytes::Bytes;
use serde_json::json;

const NOTES: &str = include_str!("notes.txt");

async fn read(backend: &KafkaBackend, topic: &str) -> Vec<agentlog_agents::Event> {
    match backend.read_topic(topic, StartAt::Earliest).await {
        Ok(stream) => stream.collect_all().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut bootstrap = "127.0.0.1:9092".to_string();
    let mut question = "How do bees make honey?".to_string();
    let mut wait = Duration::from_secs(1800);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--bootstrap" => bootstrap = args.next().ok_or("--bootstrap needs a value")?,
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
    let notes = NOTES
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| OutRecord {
            value: Some(Bytes::from(line.to_string())),
            timestamp: agentlog_agents::event::now_ms(),
            ..OutRecord::default()
        })
        .collect();
    backend.produce("research.notes", notes).await?;
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
            if let Some(joined) = joined
                .iter()
                .filter_map(|j| j.envelope())
                .find(|j| j.trace_id == trace)
            {
                println!("\nfindings:");
                for finding in joined.data["results"].as_array().into_iter().flatten() {
                    println!("- {}\n  {}", finding["input"]["item"], finding["answer"]);
                }
            }
            println!(
                "\nreport:\n{}",
                report.data.get("text").unwrap_or(&report.data)
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("no report within {} s", wait.as_secs()).into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
