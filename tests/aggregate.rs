//! `aggregate` on the kafka backend, against a real `agentlog` broker process: a
//! fan-in with a duplicate and out-of-order results, a join expired by the ticker, and
//! a partial join that survives the agent's restart.

mod agents_common;
mod common;

use std::time::Duration;

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::{AgentHandle, Envelope, KafkaBackend, OutRecord, Runtime, Sink};
use bytes::Bytes;
use serde_json::{json, Value};

async fn start(backend: &KafkaBackend, timeout_ms: u64) -> AgentHandle {
    let text = format!(
        "[[agents]]\nname = \"join\"\nkind = \"aggregate\"\ntopics = [\"results\"]\n\
         [agents.options]\noutput_topic = \"joined\"\ntimeout_ms = {timeout_ms}\n"
    );
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    start_declared(&runtime, &config).await.unwrap().remove(0)
}

fn result(correlation_id: &str, index: usize, count: usize, data: Value) -> OutRecord {
    let mut record = Envelope::new("finding", "worker", None, data)
        .to_record(Some(Bytes::copy_from_slice(correlation_id.as_bytes())));
    for (name, value) in [
        ("correlation_id", correlation_id.to_string()),
        ("fanout.count", count.to_string()),
        ("fanout.index", index.to_string()),
    ] {
        record.headers.push((name.to_string(), Bytes::from(value)));
    }
    record
}

async fn joined(backend: &KafkaBackend, n: usize) -> Vec<Value> {
    let events = agents_common::wait_for(backend, "joined", n, Duration::from_secs(60)).await;
    assert!(events.len() >= n, "{} joins of {n}", events.len());
    events.iter().map(|e| e.envelope().unwrap().data).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_aggregate_joins_expires_and_restores() {
    let (_process, backend) = agents_common::kafka();
    let first = start(&backend, 600_000).await;
    let records = vec![
        result("r1", 1, 3, json!("b")),
        result("r1", 2, 3, json!("c")),
        result("r1", 1, 3, json!("b again")),
        result("r2", 0, 2, json!("x")),
        result("r1", 0, 3, json!("a")),
    ];
    backend.produce("results", records).await.unwrap();
    let out = joined(&backend, 1).await;
    assert_eq!(
        out[0],
        json!({"correlation_id": "r1", "results": ["a", "b", "c"], "complete": true})
    );
    // r2 is half done; its result must survive the restart.
    let state =
        agents_common::wait_for(&backend, "agent.state.join", 5, Duration::from_secs(60)).await;
    assert!(state
        .iter()
        .any(|e| e.key.as_deref() == Some(&b"r/r2/0000000000"[..])));
    first.stop().await;

    // Restarted with a short timeout: r2 is emitted by the ticker, partial, and r1,
    // finished before, is not emitted again.
    let _second = start(&backend, 200).await;
    let out = joined(&backend, 2).await;
    assert_eq!(
        out[1],
        json!({"correlation_id": "r2", "results": ["x"], "complete": false})
    );
    backend
        .produce("results", vec![result("r3", 0, 1, json!("only"))])
        .await
        .unwrap();
    let out = joined(&backend, 3).await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[2]["correlation_id"], "r3");
}
