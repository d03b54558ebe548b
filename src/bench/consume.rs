//! The consuming side: one `BaseConsumer` with every partition assigned (no consumer
//! group protocol, which not every Kafka-compatible broker implements, and which would
//! add rebalance time to the measurement), counting what it receives.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

use super::options::Options;
use super::payload;
use super::stats::{Counters, Latency, Progress, Report};
use super::topic;

/// A consume run ends after this long without a record (the topic ran dry).
const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// `agentlog bench consume`: reads the topic from the beginning and reports throughput.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    let consumer = assigned_consumer(options, Start::Beginning)?;
    let counters = std::sync::Arc::new(Counters::default());
    let progress = Progress::start("consume", counters.clone());
    let limit = options.record_limit();
    let deadline = options.time_limit().map(|d| Instant::now() + d);
    let span = consume(&consumer, &counters, None, |received, _| {
        received >= limit || deadline.is_some_and(|d| Instant::now() >= d)
    });
    drop(progress);
    Ok(Report::new(&counters, span, None))
}

/// Where an assignment starts.
#[derive(Debug, Clone, Copy)]
pub enum Start {
    /// The oldest record (consume).
    Beginning,
    /// The current end, resolved to explicit offsets now so that nothing produced after
    /// this returns is skipped (e2e).
    End,
}

/// A consumer with every partition of `--topic` assigned at `start`.
pub fn assigned_consumer(options: &Options, start: Start) -> anyhow::Result<BaseConsumer> {
    let consumer: BaseConsumer = options
        .consumer_config()?
        .create()
        .context("creating the consumer")?;
    let partitions = topic::partitions(consumer.client(), &options.topic)?;
    let mut assignment = TopicPartitionList::new();
    for partition in partitions {
        let offset = match start {
            Start::Beginning => Offset::Beginning,
            Start::End => {
                let (_, high) = consumer
                    .fetch_watermarks(&options.topic, partition, topic::REQUEST_TIMEOUT)
                    .with_context(|| format!("listing offsets of partition {partition}"))?;
                Offset::Offset(high)
            }
        };
        assignment
            .add_partition_offset(&options.topic, partition, offset)
            .context("building the assignment")?;
    }
    consumer
        .assign(&assignment)
        .context("assigning partitions")?;
    Ok(consumer)
}

/// Polls until `done(records received, idle for)` says so or nothing arrives for
/// [`IDLE_TIMEOUT`], counting records and, with `latency`, recording the age of each
/// (from the timestamp the e2e producer embedded). Returns the seconds from the first
/// record to the last (connection set-up is not throughput).
pub fn consume(
    consumer: &BaseConsumer,
    counters: &Counters,
    latency: Option<&Latency>,
    mut done: impl FnMut(u64, Duration) -> bool,
) -> f64 {
    let reported = AtomicBool::new(false);
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut received = 0u64;
    loop {
        let idle = last.elapsed();
        if done(received, idle) {
            break;
        }
        if idle >= IDLE_TIMEOUT {
            eprintln!(
                "bench: no record for {} s, stopping",
                IDLE_TIMEOUT.as_secs()
            );
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let now = Instant::now();
                first.get_or_insert(now);
                last = now;
                received += 1;
                let value = message.payload().unwrap_or_default();
                counters.add(value.len() + message.key().map_or(0, <[u8]>::len));
                if let (Some(latency), Some(sent)) = (latency, payload::stamped(value)) {
                    let age = payload::unix_nanos().saturating_sub(sent);
                    latency.record(Duration::from_nanos(age));
                }
            }
            Some(Err(error)) => {
                counters.error();
                if !reported.swap(true, Ordering::Relaxed) {
                    eprintln!("bench: consumer error: {error} (further errors are only counted)");
                }
            }
        }
    }
    first.map_or(0.0, |f| last.duration_since(f).as_secs_f64())
}
