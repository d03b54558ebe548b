//! Key-ordered concurrency: events per second from one instance whose handler waits a
//! fixed 200 ms (a stand-in for a model call; no model, no HTTP), with `max_in_flight`
//! 1, 8 and 32, on the embedded backend. The ideal is `max_in_flight / 0.2 s`; what is
//! missing from it is the runtime's own cost (dispatch, outputs, commits).
//!
//! `cargo bench -p agentlog-agents --bench in_flight`

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_agents::{Agent, AgentSpec, Context, EmbeddedBackend, Event, HandlerError};
use agentlog_agents::{OutRecord, Runtime, Sink};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const MODEL_LATENCY: Duration = Duration::from_millis(200);

/// Waits like a model call, then emits one record, as an LLM agent would.
struct SlowModel {
    handled: Arc<AtomicU64>,
}

impl Agent for SlowModel {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        tokio::time::sleep(MODEL_LATENCY).await;
        ctx.emit(
            "answers",
            event.key.clone(),
            "answer",
            serde_json::json!({ "offset": event.offset }),
        );
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn in_flight(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut group = c.benchmark_group("in_flight_200ms_handler");
    group.sample_size(10);
    for max_in_flight in [1usize, 8, 32] {
        // Four rounds of the window per iteration.
        let per_iteration = (max_in_flight * 4) as u64;
        group.throughput(Throughput::Elements(per_iteration));
        let broker = rt.block_on(EmbeddedBroker::start()).unwrap();
        let backend = EmbeddedBackend::new(broker.running().broker.clone());
        let handled = Arc::new(AtomicU64::new(0));
        let topic = format!("questions-{max_in_flight}");
        let handle = rt.block_on(async {
            backend.ensure_topic(&topic, 1, false).await.unwrap();
            Runtime::new(backend.clone())
                .start(
                    AgentSpec::new(&format!("slow-{max_in_flight}"), &[&topic])
                        .max_in_flight(max_in_flight),
                    SlowModel {
                        handled: handled.clone(),
                    },
                )
                .await
                .unwrap()
        });
        let mut next_key = 0u64;
        group.bench_function(format!("max_in_flight_{max_in_flight}"), |b| {
            b.iter_custom(|iterations| {
                rt.block_on(async {
                    let started = Instant::now();
                    for _ in 0..iterations {
                        let target = handled.load(Ordering::Relaxed) + per_iteration;
                        let records = (0..per_iteration)
                            .map(|_| {
                                next_key += 1;
                                OutRecord {
                                    key: Some(Bytes::from(format!("q{next_key}"))),
                                    value: Some(Bytes::from_static(b"{}")),
                                    headers: Vec::new(),
                                    timestamp: 0,
                                }
                            })
                            .collect();
                        backend.produce(&topic, records).await.unwrap();
                        while handled.load(Ordering::Relaxed) < target {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    }
                    started.elapsed()
                })
            })
        });
        rt.block_on(handle.stop());
        drop(broker);
    }
    group.finish();
}

criterion_group!(benches, in_flight);
criterion_main!(benches);
