//! The embedded backend's reads are zero-copy: values handed to an agent are slices of
//! the very `Bytes` the partition log returns (its tail cache), and a compressed batch
//! is decompressed once per batch, never once per record. A batch that cannot be decoded
//! at all goes to the dead-letter topic whole, and the partition moves on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentlog_agents::records::decompressions;
use agentlog_agents::{
    Agent, AgentHandle, AgentSpec, Backend, Context, EmbeddedBackend, Event, HandlerError,
    OutRecord, Runtime, Sink,
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

async fn start_broker() -> EmbeddedBroker {
    EmbeddedBroker::start_with(|c| {
        c.set("group.initial.rebalance.delay.ms", "0").unwrap();
    })
    .await
    .unwrap()
}

/// Starts a [`Keep`] agent on `topic`; returns it and the values it will have seen.
async fn start_keeper(
    backend: &EmbeddedBackend,
    topic: &str,
) -> (AgentHandle, Arc<Mutex<Vec<Bytes>>>) {
    let values = Arc::new(Mutex::new(Vec::new()));
    let agent = Runtime::new(backend.clone())
        .start(
            AgentSpec::new("keeper", &[topic]),
            Keep {
                values: values.clone(),
            },
        )
        .await
        .unwrap();
    (agent, values)
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
    let broker = start_broker().await;
    let shared = broker.running().broker.clone();
    let backend = EmbeddedBackend::new(shared.clone());
    backend.ensure_topic("zero-copy", 1, false).await.unwrap();
    let (agent, values) = start_keeper(&backend, "zero-copy").await;
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
    let broker = start_broker().await;
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
    let (agent, values) = start_keeper(&plain, "compressed").await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_batch_is_dead_lettered_and_the_partition_moves_on() {
    let broker = start_broker().await;
    let shared = broker.running().broker.clone();
    let backend = EmbeddedBackend::new(shared.clone());
    backend.ensure_topic("poison", 1, false).await.unwrap();
    backend.produce("poison", records(3, 8)).await.unwrap();
    // A batch whose CRC is valid (so the broker stores it, as Kafka would) but whose
    // zstd payload is not zstd: no consumer can decode it.
    let bad = agentlog_protocol::fixtures::undecompressable(
        agentlog_agents::records::encode_batch(&records(2, 8), Compression::None).unwrap(),
    );
    let raw = Bytes::copy_from_slice(&bad);
    let topic = shared.topics.get("poison").unwrap();
    let partition = topic.partition(0).unwrap();
    let appended = partition.append(bad, None).unwrap();
    partition
        .log
        .wait_durable(appended.last_offset + 1)
        .await
        .unwrap();
    backend.produce("poison", records(3, 8)).await.unwrap();

    let (agent, values) = start_keeper(&backend, "poison").await;
    // All six good records arrive: the bad batch between them did not stall the partition.
    wait_for(&values, 6).await;
    agent.stop().await;
    let dead = backend
        .read_topic("poison.dlq", agentlog_agents::StartAt::Earliest)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "exactly the bad batch is dead-lettered");
    // With its raw bytes: the log rewrote only the base offset and leader epoch, which
    // the CRC does not cover; from the magic byte on, it is the batch as produced.
    let value = dead[0].value.clone().unwrap();
    assert_eq!(value.len(), raw.len());
    assert_eq!(&value[16..], &raw[16..]);
    let error = dead[0]
        .header(agentlog_agents::delivery::DLQ_ERROR)
        .unwrap();
    assert!(error.starts_with(b"undecodable batch"), "{error:?}");
    let offset = dead[0]
        .header(agentlog_agents::delivery::DLQ_OFFSET)
        .unwrap();
    assert_eq!(offset.as_ref(), appended.base_offset.to_string().as_bytes());
}
