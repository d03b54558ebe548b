//! Runs the fraud scoring example end to end in one process: a broker (embedded, with
//! the settings of `agentlog.toml`), the agents that file declares, a stream of labelled
//! synthetic transactions (`fraud.py generate`), then precision and recall of the
//! alerts on `fraud.alerts` against the labels, and the audit log's size.
//!
//! `cargo run --release --example fraud-scoring -- examples/fraud-scoring/agentlog.toml FILE.jsonl`
//! (from the repository root; `run.sh` does everything).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::{Backend, EmbeddedBackend, Event, OutRecord, Runtime, Sink, StartAt};
use agentlog_broker::EmbeddedBroker;
use anyhow::Context;
use bytes::Bytes;

async fn read(backend: &EmbeddedBackend, topic: &str) -> anyhow::Result<Vec<Event>> {
    Ok(backend
        .read_topic(topic, StartAt::Earliest)
        .await?
        .collect_all()
        .await?)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (config_path, data_path) = match (args.next(), args.next()) {
        (Some(c), Some(d)) => (c, d),
        _ => anyhow::bail!("usage: fraud-scoring CONFIG.toml TRANSACTIONS.jsonl"),
    };
    let text =
        std::fs::read_to_string(&config_path).with_context(|| format!("reading {config_path}"))?;
    let agents = AgentsConfig::from_toml(&text)?;
    let broker_text = text.clone();
    let broker = EmbeddedBroker::start_with(move |config| {
        if let Err(error) = config.apply_toml(&broker_text) {
            eprintln!("broker settings: {error}");
        }
    })
    .await?;
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &agents).await?;

    let transactions: Vec<serde_json::Value> = std::fs::read_to_string(&data_path)
        .with_context(|| format!("reading {data_path}"))?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let fraud: HashSet<i64> = transactions
        .iter()
        .filter(|t| t["label"] == 1)
        .filter_map(|t| t["id"].as_i64())
        .collect();
    let started = Instant::now();
    for chunk in transactions.chunks(500) {
        let records = chunk
            .iter()
            .map(|t| OutRecord {
                key: t["card"].as_str().map(|c| Bytes::from(c.to_string())),
                value: Some(Bytes::from(t.to_string())),
                headers: Vec::new(),
                timestamp: agentlog_agents::event::now_ms(),
            })
            .collect();
        backend.produce("transactions", records).await?;
    }
    let total = transactions.len() as u64;
    loop {
        let m = handles[0].metrics();
        if m.events_processed + m.dead_lettered >= total {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let elapsed = started.elapsed();

    // Alerts name their source record; the source record carries the id and label.
    let ids: HashMap<(i32, i64), i64> = read(&backend, "transactions")
        .await?
        .iter()
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_slice(e.value.as_deref()?).ok()?;
            Some(((e.partition, e.offset), v["id"].as_i64()?))
        })
        .collect();
    let alerted: HashSet<i64> = read(&backend, "fraud.alerts")
        .await?
        .iter()
        .filter_map(|e| {
            let source = e.envelope()?.data["source"].clone();
            let key = (
                source["partition"].as_i64()? as i32,
                source["offset"].as_i64()?,
            );
            ids.get(&key).copied()
        })
        .collect();
    let tp = alerted.intersection(&fraud).count() as f64;
    let precision = tp / (alerted.len() as f64).max(1.0);
    let recall = tp / (fraud.len() as f64).max(1.0);
    let decisions = read(&backend, "agent.decisions.fraud-scorer").await?.len();
    let scores = read(&backend, "fraud.scores").await?.len();
    println!(
        "{}",
        serde_json::json!({
            "transactions": total,
            "fraud": fraud.len(),
            "scored": scores,
            "alerts": alerted.len(),
            "precision": (precision * 10_000.0).round() / 10_000.0,
            "recall": (recall * 10_000.0).round() / 10_000.0,
            "decisions": decisions,
            "seconds": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
            "events_per_second": (total as f64 / elapsed.as_secs_f64()).round(),
        })
    );
    for handle in handles {
        handle.stop().await;
    }
    Ok(())
}
