//! `agentlog bench agents`: the same pass-through agent on the embedded backend and on
//! the Kafka backend against the same broker, in one run, so the in-process path is
//! compared with the wire path on equal terms.
//!
//! The command starts a broker inside its own process (a temporary data directory,
//! loopback listener). For each backend it runs two phases on fresh topics:
//!
//! * **throughput**: `--records` inputs are appended first; then the agent starts and
//!   the time from its first handler call until every output is visible gives
//!   records/s, and the process's CPU time over the same span gives CPU per million
//!   records (broker, runtime and, for Kafka, librdkafka: everything the path costs);
//! * **latency**: inputs are appended at `--rate` for `--duration`; the handler times
//!   append→handler, a watcher of the output topic times handler→output-visible
//!   (visible is durable under the default `log.flush.policy=batch`).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_agents::{
    AgentSpec, Backend, EmbeddedBackend, KafkaBackend, KafkaConfig, Processing, Runtime, Sink,
};
use agentlog_broker::EmbeddedBroker;
use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::{json, Value};

use super::broker_proc::process_cpu_seconds;
use super::pass_through::{self, PassThrough, Probe, STAMP_BYTES};
use super::stats::{Latency, Percentiles};

/// Options of `agentlog bench agents`.
#[derive(Debug, Clone, Args)]
pub struct AgentsOptions {
    /// Inputs appended before the throughput phase.
    #[arg(long, default_value_t = 2_000_000, value_name = "N")]
    pub records: u64,
    /// Longest a throughput phase may run before it is cut short (records/s is then
    /// computed from the outputs seen so far).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub max_seconds: f64,
    /// Input records per second during the latency phase.
    #[arg(long, default_value_t = 100_000.0, value_name = "R")]
    pub rate: f64,
    /// Length of the latency phase (0 skips it).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub duration: f64,
    /// Value size of each record, in bytes (at least 16: two timestamps).
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub record_size: usize,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 1, value_name = "P")]
    pub partitions: i32,
    /// The broker's `log.flush.policy` (batch, interval or none).
    #[arg(long, default_value = "batch", value_name = "POLICY")]
    pub flush_policy: String,
    /// Backends to run, in order.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Which::Embedded, Which::Kafka])]
    pub backends: Vec<Which>,
    /// How the agent commits: at-least-once (outputs, then offsets) or exactly-once
    /// (each batch's outputs and offsets in one transaction).
    #[arg(long, value_enum, default_value_t = Mode::AtLeastOnce)]
    pub processing: Mode,
    /// Print the report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--processing`: the agent's `processing` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// `processing = "at_least_once"`.
    AtLeastOnce,
    /// `processing = "exactly_once"`.
    ExactlyOnce,
}

impl Mode {
    fn processing(self) -> Processing {
        match self {
            Mode::AtLeastOnce => Processing::AtLeastOnce,
            Mode::ExactlyOnce => Processing::ExactlyOnce,
        }
    }
}

/// A backend of the agent runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// In the broker's process, reading the logs directly.
    Embedded,
    /// Through librdkafka over loopback.
    Kafka,
}

impl Which {
    fn name(self) -> &'static str {
        match self {
            Which::Embedded => "embedded",
            Which::Kafka => "kafka",
        }
    }
}

/// Inputs per append while filling the throughput phase's backlog.
const PREFILL_BATCH: usize = 1000;

/// What one backend measured.
#[derive(Debug, Default)]
struct Measured {
    records: u64,
    seconds: f64,
    cpu_seconds: f64,
    latency_records: u64,
    to_handler: Option<Percentiles>,
    to_durable: Option<Percentiles>,
}

impl Measured {
    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }

    fn cpu_per_million(&self) -> Option<f64> {
        (self.records > 0).then(|| self.cpu_seconds * 1e6 / self.records as f64)
    }

    fn to_json(&self) -> Value {
        json!({
            "records": self.records,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "cpu_seconds": self.cpu_seconds,
            "cpu_seconds_per_million_records": self.cpu_per_million(),
            "latency_records": self.latency_records,
            "append_to_handler_ms": percentiles_json(self.to_handler),
            "handler_to_durable_ms": percentiles_json(self.to_durable),
        })
    }
}

fn percentiles_json(p: Option<Percentiles>) -> Value {
    match p {
        Some(p) => json!({"p50": p.p50, "p99": p.p99, "p999": p.p999, "max": p.max}),
        None => json!({"p50": null, "p99": null, "p999": null, "max": null}),
    }
}

/// Runs the benchmark and prints its report.
pub fn run(options: &AgentsOptions) -> anyhow::Result<()> {
    if options.record_size < STAMP_BYTES {
        bail!("--record-size must be at least {STAMP_BYTES} (two timestamps)");
    }
    if options.partitions < 1 || options.rate <= 0.0 || options.backends.is_empty() {
        bail!("--partitions and --rate must be positive, and --backends not empty");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let results = runtime.block_on(run_all(options))?;
    print(options, &results)
}

async fn run_all(options: &AgentsOptions) -> anyhow::Result<Vec<(Which, Measured)>> {
    // Checked on a scratch config first, so a bad policy is an error, not a default.
    agentlog_broker::config::BrokerConfig::default()
        .set("log.flush.policy", &options.flush_policy)
        .context("--flush-policy")?;
    let policy = options.flush_policy.clone();
    let broker = EmbeddedBroker::start_with(move |config| {
        let _ = config.set("log.flush.policy", &policy);
        let _ = config.set("group.initial.rebalance.delay.ms", "0");
    })
    .await
    .context("starting the broker")?;
    let shared = broker.running().broker.clone();
    let embedded = EmbeddedBackend::new(shared);
    let mut results = Vec::new();
    for which in &options.backends {
        eprintln!("bench agents: {} backend", which.name());
        let measured = match which {
            Which::Embedded => measure(&embedded, embedded.clone(), *which, options).await?,
            Which::Kafka => {
                let kafka = KafkaBackend::new(KafkaConfig {
                    bootstrap: broker.bootstrap(),
                    ..KafkaConfig::default()
                })
                .context("creating the Kafka backend")?;
                measure(&embedded, kafka, *which, options).await?
            }
        };
        results.push((*which, measured));
    }
    Ok(results)
}

/// Both phases on `backend`; inputs are always appended in-process through `inputs`.
async fn measure<B: Backend>(
    inputs: &EmbeddedBackend,
    backend: B,
    which: Which,
    options: &AgentsOptions,
) -> anyhow::Result<Measured> {
    let name = which.name();
    let broker = inputs.broker().clone();
    let runtime = Runtime::new(backend);
    let (input, output) = (format!("bench-in-{name}"), format!("bench-out-{name}"));
    for topic in [&input, &output] {
        inputs
            .ensure_topic(topic, options.partitions, false)
            .await
            .context("creating topics")?;
    }
    pass_through::prefill(
        inputs,
        &input,
        options.records,
        PREFILL_BATCH,
        options.record_size,
    )
    .await?;
    let first_ns = Arc::new(AtomicU64::new(0));
    let cpu_before = process_cpu_seconds()?;
    let agent = PassThrough {
        out: output.clone(),
        probe: None,
        first_ns: first_ns.clone(),
    };
    let group = format!("bench-{name}");
    let spec = AgentSpec::new(&group, &[&input]).processing(options.processing.processing());
    let handle = runtime
        .start(spec, agent)
        .await
        .context("starting the agent")?;
    let target = options.records as i64;
    let limit = Duration::from_secs_f64(options.max_seconds);
    let (done_at, seen) = match options.processing {
        Mode::AtLeastOnce => pass_through::wait_visible(&broker, &output, target, limit).await,
        // Transaction markers take offsets too: count the inputs whose transactions
        // committed, then wait for the outputs' markers to be visible.
        Mode::ExactlyOnce => {
            pass_through::wait_committed(&broker, &group, &output, target, limit).await
        }
    };
    let cpu_after = process_cpu_seconds()?;
    handle.stop().await;
    let first = first_ns.load(std::sync::atomic::Ordering::Relaxed);
    let elapsed_since_first = done_at
        .checked_duration_since(epoch_instant(first))
        .unwrap_or_default();
    let mut measured = Measured {
        records: seen.max(0) as u64,
        seconds: elapsed_since_first.as_secs_f64(),
        cpu_seconds: cpu_after - cpu_before,
        ..Measured::default()
    };
    eprintln!(
        "  throughput: {} records in {:.2} s: {:.0} rec/s, {:.3} CPU-s per million",
        measured.records,
        measured.seconds,
        measured.records_per_sec(),
        measured.cpu_per_million().unwrap_or_default()
    );
    // The latency phase times outputs as they are appended, which under exactly-once
    // is before their transaction commits: it is run at-least-once only.
    if options.duration > 0.0 && options.processing == Mode::AtLeastOnce {
        latency_phase(inputs, &runtime, which, options, &mut measured).await?;
    }
    Ok(measured)
}

/// The `Instant` that is `ns` after the pass-through epoch.
fn epoch_instant(ns: u64) -> Instant {
    Instant::now() - Duration::from_nanos(pass_through::now_ns().saturating_sub(ns))
}

async fn latency_phase<B: Backend>(
    inputs: &EmbeddedBackend,
    runtime: &Runtime<B>,
    which: Which,
    options: &AgentsOptions,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    let name = which.name();
    let broker = inputs.broker().clone();
    let (input, output) = (
        format!("bench-lat-in-{name}"),
        format!("bench-lat-out-{name}"),
    );
    for topic in [&input, &output] {
        inputs
            .ensure_topic(topic, options.partitions, false)
            .await
            .context("creating topics")?;
    }
    let probe = Arc::new(Probe {
        to_handler: Latency::new()?,
    });
    let to_durable = Arc::new(Latency::new()?);
    let agent = PassThrough {
        out: output.clone(),
        probe: Some(probe.clone()),
        first_ns: Arc::new(AtomicU64::new(0)),
    };
    let handle = runtime
        .start(
            AgentSpec::new(&format!("bench-lat-{name}"), &[&input]),
            agent,
        )
        .await
        .context("starting the agent")?;
    // One warm-up record through the whole path: the member has joined and been
    // assigned before the paced inputs start.
    pass_through::prefill(inputs, &input, 1, 1, options.record_size).await?;
    let (_, warm) = pass_through::wait_visible(&broker, &output, 1, Duration::from_secs(60)).await;
    if warm < 1 {
        bail!("{name}: the agent produced nothing within 60 s");
    }
    let watcher = tokio::spawn(pass_through::watch_outputs(
        broker.clone(),
        output.clone(),
        to_durable.clone(),
    ));
    let duration = Duration::from_secs_f64(options.duration);
    let sent =
        pass_through::paced(inputs, &input, options.rate, duration, options.record_size).await?;
    let target = sent as i64 + 1;
    let (_, seen) =
        pass_through::wait_visible(&broker, &output, target, Duration::from_secs(30)).await;
    // Let the watcher read the last outputs.
    tokio::time::sleep(Duration::from_millis(50)).await;
    watcher.abort();
    handle.stop().await;
    measured.latency_records = (seen - 1).max(0) as u64;
    measured.to_handler = probe.to_handler.percentiles();
    measured.to_durable = to_durable.percentiles();
    if seen < target {
        eprintln!("  latency phase: only {seen} of {target} outputs within 30 s");
    }
    Ok(())
}

fn print(options: &AgentsOptions, results: &[(Which, Measured)]) -> anyhow::Result<()> {
    let ms = |p: Option<Percentiles>| {
        p.map_or("-".to_string(), |p| format!("{:.3} / {:.3}", p.p50, p.p99))
    };
    eprintln!(
        "pass-through agent, {} B records, {} partition(s), log.flush.policy={}, {:?}",
        options.record_size, options.partitions, options.flush_policy, options.processing
    );
    eprintln!(
        "{:<9} {:>12} {:>14} {:>26} {:>26}",
        "backend",
        "records/s",
        "CPU-s per M",
        "append→handler p50/p99 ms",
        "handler→durable p50/p99"
    );
    for (which, m) in results {
        eprintln!(
            "{:<9} {:>12.0} {:>14.3} {:>26} {:>26}",
            which.name(),
            m.records_per_sec(),
            m.cpu_per_million().unwrap_or_default(),
            ms(m.to_handler),
            ms(m.to_durable)
        );
    }
    let find = |w: Which| results.iter().find(|(x, _)| *x == w).map(|(_, m)| m);
    let ratio = match (find(Which::Embedded), find(Which::Kafka)) {
        (Some(e), Some(k)) => {
            let speed = e.records_per_sec() / k.records_per_sec().max(1e-9);
            let cpu = match (e.cpu_per_million(), k.cpu_per_million()) {
                (Some(e), Some(k)) if k > 0.0 => Some(e / k),
                _ => None,
            };
            eprintln!(
                "embedded / kafka: {speed:.2}× the records/s, {} the CPU per record",
                cpu.map_or("-".to_string(), |c| format!("{c:.3}×"))
            );
            json!({"records_per_sec": speed, "cpu_per_record": cpu})
        }
        _ => Value::Null,
    };
    if options.json {
        let backends: serde_json::Map<String, Value> = results
            .iter()
            .map(|(w, m)| (w.name().to_string(), m.to_json()))
            .collect();
        let report = json!({
            "mode": "agents",
            "record_size": options.record_size,
            "partitions": options.partitions,
            "flush_policy": options.flush_policy,
            "rate": options.rate,
            "backends": backends,
            "embedded_over_kafka": ratio,
        });
        println!("{report}");
    }
    Ok(())
}
