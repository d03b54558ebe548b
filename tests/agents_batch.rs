//! Batch delivery: an instance is handed its events in batches (`max_batch`), a batch's
//! outputs are appended together and made durable once, state written by one event of
//! a batch is seen by the next, and a failing event is retried and dead-lettered alone
//! while the rest of its batch is delivered exactly as without batching.

mod agents_common;
mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlog_agents::{
    Agent, AgentSpec, Backend, BatchError, Context, Event, HandlerError, OutRecord, RetryPolicy,
    Runtime, Sink,
};
use agentlog_protocol::batch::Batches;
use agents_common::{embedded, kafka, read_all, wait_for};
use bytes::Bytes;
use serde_json::json;

fn numbered(i: usize) -> OutRecord {
    OutRecord {
        value: Some(Bytes::from(i.to_string())),
        ..OutRecord::default()
    }
}

fn values(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

/// Forwards a whole batch with its own `handle_batch` and notes each batch's size.
struct Forwarder {
    sizes: Arc<Mutex<Vec<usize>>>,
}

impl Agent for Forwarder {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        ctx.emit_raw(
            "batch-out",
            OutRecord {
                value: event.value.clone(),
                ..OutRecord::default()
            },
        );
        Ok(())
    }

    async fn handle_batch(&self, events: &[Event], ctx: &mut Context) -> Result<(), BatchError> {
        self.sizes.lock().unwrap().push(events.len());
        for (index, event) in events.iter().enumerate() {
            ctx.start_event(event);
            self.handle(event, ctx)
                .await
                .map_err(|error| BatchError { index, error })?;
        }
        Ok(())
    }
}

/// 300 records waiting before the agent starts are read by one poll and handed over in
/// batches of 100; each batch's outputs land as one stored batch, and the group's
/// committed offset covers all 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_batch_outputs_are_one_append_per_partition() {
    let (broker, backend) = embedded().await;
    backend.ensure_topic("batch-in", 1, false).await.unwrap();
    backend
        .produce("batch-in", (0..300).map(numbered).collect())
        .await
        .unwrap();
    let sizes = Arc::new(Mutex::new(Vec::new()));
    let runtime = Runtime::new(backend.clone());
    let agent = runtime
        .start(
            AgentSpec::new("batcher", &["batch-in"]).max_batch(100),
            Forwarder {
                sizes: sizes.clone(),
            },
        )
        .await
        .unwrap();
    let out = wait_for(&backend, "batch-out", 300, Duration::from_secs(30)).await;
    agent.stop().await;
    let expected: Vec<String> = (0..300).map(|i| i.to_string()).collect();
    assert_eq!(values(&out), expected, "every output once, in input order");
    assert_eq!(*sizes.lock().unwrap(), vec![100, 100, 100]);

    let log = broker
        .running()
        .broker
        .topics
        .get("batch-out")
        .unwrap()
        .partitions[0]
        .log
        .clone();
    let read = log.read(0, 1 << 20).unwrap();
    let stored: Vec<i32> = Batches::new(&read.bytes)
        .map(|(header, _)| header.records_count)
        .collect();
    assert_eq!(stored, vec![100, 100, 100], "one append per batch");

    let committed = broker
        .running()
        .broker
        .groups
        .fetch_offsets_now("batcher", None)
        .unwrap();
    assert!(
        committed
            .iter()
            .any(|c| c.topic == "batch-in" && c.offset == 300),
        "{committed:?}"
    );
}

/// Counts events in state and fails every attempt at the value `bad`.
struct CountingFailer;

impl Agent for CountingFailer {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        // Also emitted for the bad event before it fails: that emit must be discarded.
        ctx.emit_raw(
            "fail-out",
            OutRecord {
                value: event.value.clone(),
                ..OutRecord::default()
            },
        );
        if event.value.as_deref() == Some(b"bad") {
            return Err(HandlerError::new("bad input"));
        }
        let n = ctx.state_get("count").and_then(|v| v.as_i64()).unwrap_or(0);
        ctx.state_put("count", json!(n + 1));
        Ok(())
    }
}

/// 50 waiting inputs, the 21st of which always fails: it is retried and dead-lettered
/// on its own, the other 49 are forwarded once each in order (the bad one's emit is
/// dropped), and the count kept in state reaches 49, so state written by one event of
/// a batch was seen by the next.
async fn failed_event_is_dead_lettered_alone<B: Backend>(backend: B) {
    backend.ensure_topic("fail-in", 1, false).await.unwrap();
    let inputs: Vec<OutRecord> = (0..50)
        .map(|i| match i {
            20 => OutRecord {
                value: Some(Bytes::from_static(b"bad")),
                ..OutRecord::default()
            },
            i => numbered(i),
        })
        .collect();
    backend.produce("fail-in", inputs).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let spec = AgentSpec::new("failer", &["fail-in"]).retry(RetryPolicy {
        max_attempts: 2,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
    });
    let agent = runtime.start(spec, CountingFailer).await.unwrap();
    let dlq = wait_for(&backend, "fail-in.dlq", 1, Duration::from_secs(30)).await;
    let out = wait_for(&backend, "fail-out", 49, Duration::from_secs(30)).await;
    let metrics = agent.metrics();
    let count = agent.state().get("count");
    agent.stop().await;

    let expected: Vec<String> = (0..50)
        .filter(|i| *i != 20)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(values(&out), expected);
    assert_eq!(dlq.len(), 1);
    assert_eq!(dlq[0].header_str("dlq.original.offset"), Some("20"));
    assert_eq!(dlq[0].header_str("dlq.attempts"), Some("2"));
    assert_eq!(count, Some(json!(49)));
    assert_eq!(metrics.events_processed, 49);
    assert_eq!(metrics.dead_lettered, 1);
    // Nothing more arrives later (no event delivered twice).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(read_all(&backend, "fail-out").await.len(), 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_failed_event_in_a_batch_is_dead_lettered_alone() {
    let (_broker, backend) = embedded().await;
    failed_event_is_dead_lettered_alone(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_failed_event_in_a_batch_is_dead_lettered_alone() {
    let (_broker, backend) = kafka();
    failed_event_is_dead_lettered_alone(backend).await;
}
