//! The embedded backend's reads are zero-copy: values handed to an agent are slices of
//! the very `Bytes` the partition log returns (its tail cache), and a compressed batch
//! is decompressed once per batch, never once per record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentlog_agents::records::decompressions;
use agentlog_agents::{
    Agent, AgentSpec, Context, EmbeddedBackend, Event, HandlerError, OutRecord, Runtime, Sink,
};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;
use kafka_protocol::records::Compression;

struct Keep {
    values: Arc<Mutex<Vec<Bytes>>>,
}

impl Agent for Keep {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        let value = event
            .value
            .clone()
            .ok_or_else(|| HandlerError::new("no value"))?;
        self.values.lock().unwrap().push(value);
        Ok(())
    }
}

/// Whether `inner` lies inside `outer`'s memory.
fn contains(outer: &Bytes, inner: &Bytes) -> bool {
    let start = outer.as_ptr() as usize;
    let at = inner.as_ptr() as usize;
    at >= start && at + inner.len() <= start + outer.len()
}

fn records(n: usize, size: usize) -> Vec<OutRecord> {
    (0..n)
        .map(|i| OutRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("{i:0size$}"))),
            headers: vec![("h".to_string(), Bytes::from_static(b"v"))],
            timestamp: agentlog_agents::event::now_ms(),
        })
        .collect()
}

async fn wait_for(values: &Arc<Mutex<Vec<Bytes>>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while values.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "agent saw too few records");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_point_into_the_stored_batch() {
    let broker = EmbeddedBroker::start_with(|c| {
        c.set("group.initial.rebalance.delay.ms", "0").unwrap();
    })
    .await
    .unwrap();
    let shared = broker.running().broker.clone();
    let backend = EmbeddedBackend::new(shared.clone());
    backend.ensure_topic("zero-copy", 1, false).await.unwrap();
    let values = Arc::new(Mutex::new(Vec::new()));
    let runtime = Runtime::new(backend.clone());
    let agent = runtime
        .start(
            AgentSpec::new("keeper", &["zero-copy"]),
            Keep {
                values: values.clone(),
            },
        )
        .await
        .unwrap();
    backend
        .produce("zero-copy", records(100, 64))
        .await
        .unwrap();
    wait_for(&values, 100).await;
    let log = shared
        .topics
        .get("zero-copy")
        .unwrap()
        .partition(0)
        .unwrap()
        .log
        .clone();
    let stored = log.read(0, 1 << 20).unwrap().bytes;
    let values = values.lock().unwrap().clone();
    assert_eq!(values.len(), 100);
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value.as_ref(), format!("{i:064}").as_bytes());
        assert!(
            contains(&stored, value),
            "value {i} is not a slice of the stored batch"
        );
    }
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_batches_are_decompressed_once_per_batch() {
    let broker = EmbeddedBroker::start_with(|c| {
        c.set("group.initial.rebalance.delay.ms", "0").unwrap();
    })
    .await
    .unwrap();
    let shared = broker.running().broker.clone();
    let plain = EmbeddedBackend::new(shared.clone());
    let zstd = plain.clone().with_compression(Compression::Zstd);
    plain.ensure_topic("compressed", 1, false).await.unwrap();
    // Write the batches before the agent starts, so it reads them all in one poll.
    const BATCHES: usize = 4;
    const PER_BATCH: usize = 50;
    for _ in 0..BATCHES {
        zstd.produce("compressed", records(PER_BATCH, 100))
            .await
            .unwrap();
    }
    let before = decompressions();
    let values = Arc::new(Mutex::new(Vec::new()));
    let runtime = Runtime::new(plain.clone());
    let agent = runtime
        .start(
            AgentSpec::new("keeper", &["compressed"]),
            Keep {
                values: values.clone(),
            },
        )
        .await
        .unwrap();
    wait_for(&values, BATCHES * PER_BATCH).await;
    let decompressed = decompressions() - before;
    assert_eq!(
        decompressed, BATCHES as u64,
        "{decompressed} decompressions for {BATCHES} batches of {PER_BATCH} records"
    );
    // Records of one batch share that batch's one decompressed buffer.
    let values = values.lock().unwrap().clone();
    let first = &values[0];
    let span = first.as_ptr() as usize;
    assert!(values[1..PER_BATCH]
        .iter()
        .all(|v| (v.as_ptr() as usize).abs_diff(span) < PER_BATCH * 200));
    agent.stop().await;
}
