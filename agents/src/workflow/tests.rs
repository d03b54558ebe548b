//! `aggregate` on an in-process broker: ordering, duplicates, counts, the ticker's
//! timeout, and joins surviving restarts.

use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::{json, Value};

use crate::backend::{Backend, EmbeddedBackend, Sink, StartAt};
use crate::config::{start_declared, AgentsConfig};
use crate::envelope::Envelope;
use crate::event::{Event, OutRecord};
use crate::runtime::{AgentHandle, Runtime};

async fn broker() -> (agentlog_broker::EmbeddedBroker, EmbeddedBackend) {
    let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
        config.set("group.initial.rebalance.delay.ms", "0").unwrap();
        config.set("num.partitions", "1").unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    (broker, backend)
}

async fn start(backend: &EmbeddedBackend, options: &str) -> AgentHandle {
    let text = format!(
        "[[agents]]\nname = \"join\"\nkind = \"aggregate\"\ntopics = [\"results\"]\n\
         [agents.options]\noutput_topic = \"joined\"\n{options}"
    );
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    start_declared(&runtime, &config).await.unwrap().remove(0)
}

fn result(correlation_id: &str, index: usize, count: usize, data: Value) -> OutRecord {
    let mut record = Envelope::new("finding", "researcher", None, data)
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

async fn read(backend: &EmbeddedBackend, topic: &str) -> Vec<Event> {
    match backend.read_topic(topic, StartAt::Earliest).await {
        Ok(stream) => stream.collect_all().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// The events of `topic` once there are at least `n` of them: the output and its
/// decision are separate produces, so a test that saw one must wait for the other.
async fn read_at_least(backend: &EmbeddedBackend, topic: &str, n: usize) -> Vec<Event> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = read(backend, topic).await;
        if events.len() >= n {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} events on {topic}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The joined events' data once there are `n` of them.
async fn joined(backend: &EmbeddedBackend, n: usize) -> Vec<Value> {
    let events = read_at_least(backend, "joined", n).await;
    events.iter().map(|e| e.envelope().unwrap().data).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_by_index_order_and_counts_duplicates_once() {
    let (_broker, backend) = broker().await;
    let _join = start(&backend, "").await;
    let records = vec![
        result("q1", 2, 3, json!("c")),
        result("q2", 0, 2, json!("other")),
        result("q1", 0, 3, json!("a")),
        result("q1", 0, 3, json!("a again")), // an at-least-once re-run's duplicate
        result("q1", 1, 3, json!("b")),
    ];
    backend.produce("results", records).await.unwrap();
    let first = joined(&backend, 1).await;
    assert_eq!(
        first[0],
        json!({"correlation_id": "q1", "results": ["a", "b", "c"], "complete": true})
    );
    // A late duplicate of a finished join starts no new join; q3 then completes.
    let records = vec![
        result("q1", 1, 3, json!("b late")),
        result("q3", 0, 1, json!("only")),
    ];
    backend.produce("results", records).await.unwrap();
    let all = joined(&backend, 2).await;
    assert_eq!(all.len(), 2);
    assert_eq!(all[1]["correlation_id"], "q3");
    let out = read(&backend, "joined").await;
    assert_eq!(out[0].header_str("correlation_id"), Some("q1"));
    let decisions = read_at_least(&backend, "agent.decisions.join", 2).await;
    assert_eq!(decisions.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_option_and_correlation_field_without_headers() {
    let (_broker, backend) = broker().await;
    let _join = start(&backend, "count = 2\ncorrelation_field = \"job.id\"").await;
    let plain = |v: Value| OutRecord {
        value: Some(Bytes::from(v.to_string())),
        ..OutRecord::default()
    };
    let records = vec![
        plain(json!({"job": {"id": 7}, "part": "x"})),
        plain(json!({"job": {"id": 8}, "part": "other"})),
        plain(json!({"job": {"id": 7}, "part": "y"})),
    ];
    backend.produce("results", records).await.unwrap();
    let out = joined(&backend, 1).await;
    assert_eq!(out[0]["correlation_id"], "7");
    assert_eq!(out[0]["results"][0]["part"], "x");
    assert_eq!(out[0]["results"][1]["part"], "y");
    assert_eq!(out[0]["complete"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ticker_emits_a_partial_join_after_the_timeout() {
    let (_broker, backend) = broker().await;
    let _join = start(&backend, "timeout_ms = 200").await;
    backend
        .produce("results", vec![result("q", 1, 3, json!("b"))])
        .await
        .unwrap();
    // No further event arrives: only the ticker can finish this join.
    let out = joined(&backend, 1).await;
    assert_eq!(
        out[0],
        json!({"correlation_id": "q", "results": ["b"], "complete": false})
    );
    let decisions = read_at_least(&backend, "agent.decisions.join", 1).await;
    assert_eq!(
        decisions[0].envelope().unwrap().data["details"],
        json!({"correlation_id": "q", "results": 1, "complete": false})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_joins_survive_restarts_and_expire_after_one() {
    let (_broker, backend) = broker().await;
    let first = start(&backend, "timeout_ms = 600000").await;
    let records = vec![
        result("a", 0, 2, json!("a0")),
        result("b", 1, 2, json!("b1")),
    ];
    backend.produce("results", records).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read(&backend, "agent.state.join").await.len() < 2 {
        assert!(Instant::now() < deadline, "partial joins never written");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.stop().await;

    // Restarted: "a" completes with the result it had before the restart.
    let second = start(&backend, "timeout_ms = 600000").await;
    backend
        .produce("results", vec![result("a", 1, 2, json!("a1"))])
        .await
        .unwrap();
    let out = joined(&backend, 1).await;
    assert_eq!(
        out[0],
        json!({"correlation_id": "a", "results": ["a0", "a1"], "complete": true})
    );
    second.stop().await;

    // Restarted with a short timeout: "b", long overdue, is emitted by the ticker, and
    // "a", finished before the restart, is not emitted again.
    let _third = start(&backend, "timeout_ms = 100").await;
    let out = joined(&backend, 2).await;
    assert_eq!(
        out[1],
        json!({"correlation_id": "b", "results": ["b1"], "complete": false})
    );
    backend
        .produce("results", vec![result("c", 0, 1, json!("c0"))])
        .await
        .unwrap();
    let out = joined(&backend, 3).await;
    assert_eq!(out.len(), 3);
    assert_eq!(out[2]["correlation_id"], "c");
}

#[test]
fn refuses_bad_options() {
    for options in [
        "",
        "output_topic = 3",
        "output_topic = \"o\"\ncount = 0",
        "output_topic = \"o\"\ntimeout_ms = -1",
        "output_topic = \"o\"\ntimeout = 5",
    ] {
        let text = format!(
            "[[agents]]\nname = \"j\"\nkind = \"aggregate\"\ntopics = [\"r\"]\n[agents.options]\n{options}"
        );
        assert!(
            AgentsConfig::from_toml(&text).is_err(),
            "{options:?} must be refused"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_finished_by_another_process_is_not_expired_again() {
    let (_broker, backend) = broker().await;
    // The marker below must land within the timeout: 3 s is ample margin.
    let _join = start(&backend, "timeout_ms = 3000").await;
    backend
        .produce("results", vec![result("q", 0, 2, json!("q0"))])
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while read(&backend, "agent.state.join").await.is_empty() {
        assert!(Instant::now() < deadline, "partial join never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Another process finished "q" (its marker is in the shared state topic)...
    let marker = OutRecord {
        key: Some(Bytes::from_static(b"done/q")),
        value: Some(Bytes::from(
            json!({"correlation_id": "q", "at_ms": 1}).to_string(),
        )),
        ..OutRecord::default()
    };
    backend
        .produce("agent.state.join", vec![marker])
        .await
        .unwrap();
    // ...so when "p", due after "q", expires, "q" was dropped, not emitted.
    backend
        .produce("results", vec![result("p", 0, 2, json!("p0"))])
        .await
        .unwrap();
    let out = joined(&backend, 1).await;
    assert_eq!(out.len(), 1);
    assert_eq!(out[0]["correlation_id"], "p");
}
