//! `agentlog bench queue`: a swarm of queue agents (`delivery = "queue"`, a KIP-932
//! share group) on a few partitions, each event taking a fixed time, as a slow LLM call
//! would. The ideal is `instances × 1000 / handle_ms` events/s; the report gives the
//! measured rate and its share of the ideal, which is what per-event acquisition and
//! acknowledgement (one durable share-state write each) cost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_agents::{
    Agent, AgentSpec, Context, EmbeddedBackend, Event, HandlerError, Runtime, Sink,
};
use agentlog_broker::EmbeddedBroker;
use anyhow::{bail, Context as _};
use clap::Args;
use serde_json::json;

use super::pass_through;

/// Options of `agentlog bench queue`.
#[derive(Debug, Clone, Args)]
pub struct QueueOptions {
    /// Agent instances in the share group.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub instances: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4, value_name = "P")]
    pub partitions: i32,
    /// How long each event takes to handle.
    #[arg(long, default_value_t = 50, value_name = "MS")]
    pub handle_ms: u64,
    /// Length of the measured window (after a one-second warm-up).
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub seconds: f64,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// Sleeps `handle_ms` per event and counts.
struct SlowAgent {
    handle: Duration,
    handled: Arc<AtomicU64>,
}

impl Agent for SlowAgent {
    fn kind(&self) -> &str {
        "bench-queue"
    }

    async fn handle(&self, _event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        tokio::time::sleep(self.handle).await;
        self.handled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Runs the benchmark and prints its report.
pub fn run(options: &QueueOptions) -> anyhow::Result<()> {
    if options.instances == 0 || options.partitions < 1 || options.handle_ms == 0 {
        bail!("--instances, --partitions and --handle-ms must be positive");
    }
    if options.seconds.is_nan() || options.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let (handled, seconds) = runtime.block_on(measure(options))?;
    let ideal = options.instances as f64 * 1000.0 / options.handle_ms as f64;
    let rate = handled as f64 / seconds;
    let report = json!({
        "mode": "queue",
        "instances": options.instances,
        "partitions": options.partitions,
        "handle_ms": options.handle_ms,
        "events": handled,
        "seconds": seconds,
        "events_per_sec": rate,
        "ideal_events_per_sec": ideal,
        "share_of_ideal": rate / ideal,
    });
    println!(
        "queue agents: {} instances on {} partitions, {} ms per event: {rate:.0} events/s \
         ({:.1}% of the ideal {ideal:.0}/s) over {seconds:.1} s",
        options.instances,
        options.partitions,
        options.handle_ms,
        100.0 * rate / ideal
    );
    if options.json {
        println!("{report}");
    }
    Ok(())
}

async fn measure(options: &QueueOptions) -> anyhow::Result<(u64, f64)> {
    let broker = EmbeddedBroker::start()
        .await
        .context("starting the broker")?;
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    let topic = "bench-queue";
    backend
        .ensure_topic(topic, options.partitions, false)
        .await
        .context("creating the topic")?;
    // Enough for the whole run at the ideal rate, and then some.
    let ideal = options.instances as f64 * 1000.0 / options.handle_ms as f64;
    let backlog = (ideal * (options.seconds + 2.0) * 1.5).ceil() as u64;
    pass_through::prefill(&backend, topic, backlog, 1000, 100).await?;
    let handled = Arc::new(AtomicU64::new(0));
    let agent = SlowAgent {
        handle: Duration::from_millis(options.handle_ms),
        handled: handled.clone(),
    };
    let runtime = Runtime::new(backend);
    let spec = AgentSpec::new("bench-queue", &[topic])
        .instances(options.instances)
        .queue();
    let swarm = runtime
        .start(spec, agent)
        .await
        .context("starting the agents")?;
    // Warm-up: every instance joined and the first events are through.
    let started = Instant::now();
    while handled.load(Ordering::Relaxed) < options.instances as u64 {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the swarm handled nothing for 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = handled.load(Ordering::Relaxed);
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(options.seconds)).await;
    let events = handled.load(Ordering::Relaxed) - from;
    let seconds = window.elapsed().as_secs_f64();
    swarm.stop().await;
    Ok((events, seconds))
}
