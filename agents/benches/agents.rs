//! The embedded path, end to end: records per second from `Sink::produce` (encode one
//! batch, `PartitionLog::append`, `wait_durable`) to the agent's handler, and
//! append-to-handler latency percentiles, under the `batch` (fsync, the default) and
//! `none` flush policies.
//!
//! `cargo bench -p agentlog-agents --bench agents`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use agentlog_agents::{
    Agent, AgentHandle, AgentSpec, Context, EmbeddedBackend, Event, HandlerError, OutRecord,
    Runtime, Sink,
};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const BATCH: usize = 100;
const VALUE_BYTES: usize = 256;

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

struct Sink2Handler {
    seen: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
    record: bool,
}

impl Agent for Sink2Handler {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        if self.record {
            let sent = event
                .value
                .as_deref()
                .and_then(|v| v.get(..8))
                .map(|b| u64::from_be_bytes(b.try_into().unwrap_or_default()))
                .unwrap_or_default();
            let now = epoch().elapsed().as_nanos() as u64;
            self.latencies
                .lock()
                .unwrap()
                .push(now.saturating_sub(sent));
        }
        self.seen.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn batch() -> Vec<OutRecord> {
    let stamp = (epoch().elapsed().as_nanos() as u64).to_be_bytes();
    (0..BATCH)
        .map(|i| {
            let mut value = vec![b'x'; VALUE_BYTES];
            value[..8].copy_from_slice(&stamp);
            OutRecord {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                timestamp: 0,
            }
        })
        .collect()
}

struct Setup {
    _broker: EmbeddedBroker,
    backend: EmbeddedBackend,
    _runtime: Runtime<EmbeddedBackend>,
    agent: Option<AgentHandle>,
    seen: Arc<AtomicU64>,
    latencies: Arc<Mutex<Vec<u64>>>,
}

async fn setup(flush: &str, record: bool) -> Setup {
    let flush = flush.to_string();
    let broker = EmbeddedBroker::start_with(move |c| {
        let _ = c.set("log.flush.policy", &flush);
        let _ = c.set("group.initial.rebalance.delay.ms", "0");
    })
    .await
    .expect("broker");
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    backend
        .ensure_topic("bench", 1, false)
        .await
        .expect("topic");
    let runtime = Runtime::new(backend.clone());
    let seen = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let agent = runtime
        .start(
            AgentSpec::new("bench", &["bench"]),
            Sink2Handler {
                seen: seen.clone(),
                latencies: latencies.clone(),
                record,
            },
        )
        .await
        .expect("agent");
    Setup {
        _broker: broker,
        backend,
        _runtime: runtime,
        agent: Some(agent),
        seen,
        latencies,
    }
}

async fn wait_seen(seen: &AtomicU64, target: u64) {
    while seen.load(Ordering::Relaxed) < target {
        tokio::task::yield_now().await;
    }
}

fn throughput(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("append_to_handler");
    group.throughput(Throughput::Elements(BATCH as u64 * 10));
    group.measurement_time(Duration::from_secs(8));
    for flush in ["batch", "none"] {
        let mut s = rt.block_on(setup(flush, false));
        group.bench_function(format!("flush={flush}/10x{BATCH}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let target = s.seen.load(Ordering::Relaxed) + 10 * BATCH as u64;
                        for _ in 0..10 {
                            s.backend.produce("bench", batch()).await.expect("produce");
                        }
                        wait_seen(&s.seen, target).await;
                    }
                    start.elapsed()
                })
            })
        });
        if let Some(agent) = s.agent.take() {
            rt.block_on(agent.stop());
        }
    }
    group.finish();

    // Latency: one batch at a time, append start to handler entry, per record.
    for flush in ["batch", "none"] {
        let mut s = rt.block_on(setup(flush, true));
        rt.block_on(async {
            for i in 0..300u64 {
                s.backend.produce("bench", batch()).await.expect("produce");
                wait_seen(&s.seen, (i + 1) * BATCH as u64).await;
            }
        });
        let mut samples = s.latencies.lock().unwrap().clone();
        samples.sort_unstable();
        let pct = |p: f64| {
            let i = ((samples.len() as f64 * p) as usize).min(samples.len() - 1);
            Duration::from_nanos(samples[i])
        };
        println!(
            "append_to_handler latency flush={flush} ({} records, batches of {BATCH}): p50 {:?} p90 {:?} p99 {:?} p99.9 {:?} max {:?}",
            samples.len(),
            pct(0.50),
            pct(0.90),
            pct(0.99),
            pct(0.999),
            pct(1.0)
        );
        if let Some(agent) = s.agent.take() {
            rt.block_on(agent.stop());
        }
    }
}

criterion_group!(benches, throughput);
criterion_main!(benches);
