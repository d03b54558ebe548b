//! The parts of `agentlog bench agents` that touch records: the pass-through agent,
//! the in-process input generator and the watcher of the output topic.
//!
//! Every record value starts with two big-endian nanosecond stamps since [`epoch`]:
//! bytes 0..8 are written just before the input is appended, bytes 8..16 by the handler
//! (latency phase only). All parties live in one process, so one monotonic clock serves.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use agentlog_agents::{Agent, Context, EmbeddedBackend, Event, HandlerError, OutRecord, Sink};
use agentlog_broker::Broker;
use anyhow::Context as _;
use bytes::{Bytes, BytesMut};

use super::stats::Latency;

/// Bytes of the two stamps every value starts with.
pub const STAMP_BYTES: usize = 16;

/// The clock origin shared by the generator, the agent and the watcher.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

fn stamp_at(value: &[u8], at: usize) -> u64 {
    value
        .get(at..at + 8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .unwrap_or_default()
}

/// Append→handler latencies, recorded only while a latency phase runs.
#[derive(Debug)]
pub struct Probe {
    /// Input append (start of the produce call) to handler entry.
    pub to_handler: Latency,
}

/// Reads one record and emits one record to `out`: the work every agent does, nothing
/// else. Without a probe the value is forwarded as is (a `Bytes` clone of the stored
/// batch on the embedded backend); with one the handler stamps its own time into a
/// copy, so the watcher can time handler→output-durable.
pub struct PassThrough {
    /// Output topic.
    pub out: String,
    /// Latency recording, for the paced phase.
    pub probe: Option<Arc<Probe>>,
    /// When the first event reached the handler (ns since [`epoch`], 0: not yet).
    pub first_ns: Arc<AtomicU64>,
}

impl Agent for PassThrough {
    fn kind(&self) -> &str {
        "pass-through"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        if self.first_ns.load(Ordering::Relaxed) == 0 {
            let _ = self.first_ns.compare_exchange(
                0,
                now_ns().max(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let value = match (&self.probe, event.value.as_ref()) {
            (Some(probe), Some(value)) if value.len() >= STAMP_BYTES => {
                let now = now_ns();
                probe
                    .to_handler
                    .record(Duration::from_nanos(now.saturating_sub(stamp_at(value, 0))));
                let mut copy = BytesMut::from(value.as_ref());
                copy[8..16].copy_from_slice(&now.to_be_bytes());
                Some(copy.freeze())
            }
            _ => event.value.clone(),
        };
        ctx.emit_raw(
            &self.out,
            OutRecord {
                key: event.key.clone(),
                value,
                headers: Vec::new(),
                timestamp: event.timestamp,
            },
        );
        Ok(())
    }
}

/// `count` input records of `size` bytes, stamped now.
pub fn inputs(count: usize, size: usize) -> Vec<OutRecord> {
    let mut value = vec![b'x'; size.max(STAMP_BYTES)];
    value[..8].copy_from_slice(&now_ns().to_be_bytes());
    let value = Bytes::from(value);
    (0..count)
        .map(|_| OutRecord {
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
            timestamp: 0,
        })
        .collect()
}

/// Appends `total` records to `topic` in batches of `batch`, as fast as the log takes
/// them (each append waits for its durable point, as an acks=all producer would).
pub async fn prefill(
    sink: &EmbeddedBackend,
    topic: &str,
    total: u64,
    batch: usize,
    size: usize,
) -> anyhow::Result<()> {
    let mut written = 0u64;
    while written < total {
        let n = (total - written).min(batch as u64) as usize;
        sink.produce(topic, inputs(n, size))
            .await
            .context("appending inputs")?;
        written += n as u64;
    }
    Ok(())
}

/// Appends records to `topic` at `rate` per second for `duration`, a batch per
/// millisecond tick (as a producer with a 1 ms linger would); returns how many.
pub async fn paced(
    sink: &EmbeddedBackend,
    topic: &str,
    rate: f64,
    duration: Duration,
    size: usize,
) -> anyhow::Result<u64> {
    let start = Instant::now();
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while start.elapsed() < duration {
        tick.tick().await;
        let due = (rate * start.elapsed().as_secs_f64()) as u64;
        if due > sent {
            let n = (due - sent) as usize;
            sink.produce(topic, inputs(n, size))
                .await
                .context("appending inputs")?;
            sent += n as u64;
        }
    }
    Ok(sent)
}

/// Sum of the high watermarks of `topic`'s partitions: records visible to readers,
/// which under `log.flush.policy=batch` means durable.
pub fn visible(broker: &Broker, topic: &str) -> i64 {
    broker
        .topics
        .get(topic)
        .map(|t| t.partitions.iter().map(|p| p.log.high_watermark()).sum())
        .unwrap_or(0)
}

/// Waits until `count` reaches `target` or `limit` passes; returns the time it was
/// reached (or the limit) and the count then.
async fn wait_count(target: i64, limit: Duration, count: impl Fn() -> i64) -> (Instant, i64) {
    let deadline = Instant::now() + limit;
    loop {
        let seen = count();
        let now = Instant::now();
        if seen >= target || now >= deadline {
            return (now, seen);
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// Waits until `topic` holds `target` records or `limit` passes; returns the time the
/// count was reached (or the limit) and the count then.
pub async fn wait_visible(
    broker: &Broker,
    topic: &str,
    target: i64,
    limit: Duration,
) -> (Instant, i64) {
    wait_count(target, limit, || visible(broker, topic)).await
}

/// Waits until the inputs `group` committed number `target` (exactly-once agents: the
/// outputs of committed transactions) and the outputs of `topic` are all durable,
/// markers included; returns the time and the inputs committed then.
pub async fn wait_committed(
    broker: &Broker,
    group: &str,
    topic: &str,
    target: i64,
    limit: Duration,
) -> (Instant, i64) {
    wait_count(target, limit, || {
        let committed: i64 = broker
            .groups
            .committed(group)
            .iter()
            .map(|c| c.offset)
            .sum();
        let durable = broker.topics.get(topic).is_some_and(|t| {
            t.partitions
                .iter()
                .all(|p| p.log.high_watermark() >= p.log.log_end_offset())
        });
        if durable {
            committed
        } else {
            committed.min(target - 1)
        }
    })
    .await
}

/// Reads `topic` in-process as its records become visible and records each one's
/// handler→visible latency from the handler's stamp; runs until dropped.
pub async fn watch_outputs(broker: Arc<Broker>, topic: String, latency: Arc<Latency>) {
    let name: Arc<str> = Arc::from(topic.as_str());
    let mut positions: Vec<i64> = Vec::new();
    let mut events = Vec::new();
    loop {
        let Some(found) = broker.topics.get(&topic) else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        positions.resize(found.partitions.len(), 0);
        let mut idle = true;
        for (partition, position) in found.partitions.iter().zip(positions.iter_mut()) {
            let Ok(read) = partition.log.read(*position, 1 << 20) else {
                continue;
            };
            if read.bytes.is_empty() {
                continue;
            }
            let now = now_ns();
            events.clear();
            let next = agentlog_agents::records::decode_batches(
                &name,
                partition.index,
                &read.bytes,
                *position,
                &mut events,
            );
            for event in &events {
                if let Some(value) = event.value.as_deref() {
                    let handled = stamp_at(value, 8);
                    if handled > 0 {
                        latency.record(Duration::from_nanos(now.saturating_sub(handled)));
                    }
                }
            }
            *position = next.min(read.high_watermark).max(*position);
            idle = false;
        }
        if idle {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
}
