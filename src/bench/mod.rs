//! `agentlog bench`: a Kafka-protocol load tool (produce, consume, end-to-end latency).
//!
//! Built on librdkafka (through `rdkafka`) rather than on agentlog's own code, so the
//! numbers are what real clients see and the tool works against any Kafka-compatible
//! broker: users can run the same command against their Kafka and compare.
//!
//! Module map: `options` (flags and client settings), `stats` (counters, latency
//! histogram, progress line, final report), `broker_proc` (broker CPU and RSS from
//! `/proc`), `topic` (create-if-missing), `payload` (record values and keys), `produce`,
//! `consume`, `e2e`, `agents` with `pass_through` (the agent-runtime comparison), and
//! `queue` (a share-group agent swarm).

mod agents;
mod broker_proc;
mod consume;
mod e2e;
mod options;
mod pass_through;
mod payload;
mod produce;
mod queue;
mod stats;
mod topic;

use clap::{Args, Subcommand};

pub use options::Options;

/// `agentlog bench ...`: which workload to run, each with the same options.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The workload.
    #[command(subcommand)]
    pub mode: Mode,
}

/// The three workloads, mirroring kafka-producer-perf-test / kafka-consumer-perf-test
/// and an end-to-end latency test, so results compare with the tools users know.
#[derive(Debug, Subcommand)]
pub enum Mode {
    /// Produce records as fast as possible (or at `--rate`); latency is enqueue to
    /// delivery report.
    Produce(Options),
    /// Read a topic from the beginning without a consumer group (partitions assigned).
    Consume(Options),
    /// Consume from the end while producing at `--rate`; latency is produce time
    /// (embedded in each value) to receipt.
    E2e(Options),
    /// The same pass-through agent on the embedded and the Kafka backend against one
    /// in-process broker: records/s, latencies and CPU per record side by side.
    Agents(agents::AgentsOptions),
    /// A swarm of queue agents (a KIP-932 share group) handling slow events: events/s
    /// against the ideal `instances × 1000 / handle_ms`.
    Queue(queue::QueueOptions),
}

/// Runs one benchmark and prints its report; the only entry point `main` needs.
pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    let (name, options, workload): (_, _, fn(&Options) -> anyhow::Result<stats::Report>) =
        match &args.mode {
            Mode::Agents(o) => return agents::run(o),
            Mode::Queue(o) => return queue::run(o),
            Mode::Produce(o) => ("produce", o, produce::run),
            Mode::Consume(o) => ("consume", o, consume::run),
            Mode::E2e(o) => ("e2e", o, e2e::run),
        };
    options.validate(name)?;
    let sampler = broker_proc::Sampler::start(options.broker_pid)?;
    let mut report = workload(options)?;
    report.mode = name;
    if let Some(sampler) = sampler {
        report.broker = Some(sampler.finish()?);
    }
    report.print(options.json)
}
