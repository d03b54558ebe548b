//! The producing side: K independent librdkafka producers on K threads, sharing one
//! record budget, optionally paced to a total rate.
//!
//! Delivery is observed through a `ProducerContext` callback on librdkafka's polling
//! thread (`ThreadedProducer`), not a future per record, which would cost more than
//! the client's own work at a million records per second.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

use super::options::Options;
use super::payload::{self, Keys};
use super::stats::{Counters, Latency, Progress, Report};
use super::topic;

/// How long the final flush may wait for outstanding deliveries.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// `agentlog bench produce`: creates the topic if needed, produces, reports.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    topic::ensure_topic(options)?;
    let counters = Arc::new(Counters::default());
    let latency = Arc::new(Latency::new()?);
    let progress = Progress::start("produce", counters.clone());
    let seconds = produce(options, &counters, &latency, false)?;
    drop(progress);
    Ok(Report::new(&counters, seconds, latency.percentiles()))
}

/// Runs the producer threads to completion (budget spent, time up, everything flushed)
/// and returns the seconds from the first send to the last delivery. With `stamp`, each
/// value starts with its send time for the e2e consumer.
pub fn produce(
    options: &Options,
    counters: &Arc<Counters>,
    latency: &Arc<Latency>,
    stamp: bool,
) -> anyhow::Result<f64> {
    let budget = Arc::new(Budget {
        limit: options.record_limit(),
        claimed: AtomicU64::new(0),
        reported_error: AtomicBool::new(false),
    });
    let start = Instant::now();
    let deadline = options.time_limit().map(|d| start + d);
    let config = options.producer_config()?;
    let handles: Vec<_> = (0..options.producers)
        .map(|index| {
            let worker = Worker {
                options: options.clone(),
                index,
                context: Delivered {
                    counters: counters.clone(),
                    latency: latency.clone(),
                    epoch: start,
                    budget: budget.clone(),
                },
                budget: budget.clone(),
                start,
                deadline,
                stamp,
            };
            let config = config.clone();
            std::thread::Builder::new()
                .name(format!("bench-producer-{index}"))
                .spawn(move || worker.run(&config))
        })
        .collect::<Result<_, _>>()
        .context("starting producer threads")?;
    let mut first_error = None;
    for handle in handles {
        let result = handle
            .join()
            .map_err(|_| anyhow!("a producer thread panicked"))
            .and_then(|r| r);
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(start.elapsed().as_secs_f64()),
    }
}

/// The shared record budget.
struct Budget {
    limit: u64,
    claimed: AtomicU64,
    reported_error: AtomicBool,
}

impl Budget {
    /// Takes one record from the budget; false once it is spent.
    fn claim(&self) -> bool {
        self.claimed.fetch_add(1, Ordering::Relaxed) < self.limit
    }

    /// Prints the first error of the run only, so a failing broker does not flood stderr.
    fn report_once(&self, what: &str) {
        if !self.reported_error.swap(true, Ordering::Relaxed) {
            eprintln!("bench: first error: {what} (further errors are only counted)");
        }
    }
}

/// Counts deliveries and records enqueue-to-delivery latency; the opaque value carried
/// by each record is its enqueue time in nanoseconds since `epoch` (no allocation).
struct Delivered {
    counters: Arc<Counters>,
    latency: Arc<Latency>,
    epoch: Instant,
    budget: Arc<Budget>,
}

impl ClientContext for Delivered {}

impl ProducerContext for Delivered {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at: usize) {
        match result {
            Ok(message) => {
                let bytes = message.payload_len() + message.key().map_or(0, <[u8]>::len);
                self.counters.add(bytes);
                let sent = Duration::from_nanos(sent_at as u64);
                self.latency
                    .record(self.epoch.elapsed().saturating_sub(sent));
            }
            Err((error, _)) => {
                self.counters.error();
                self.budget
                    .report_once(&format!("delivery failed: {error}"));
            }
        }
    }
}

/// One producer thread's state.
struct Worker {
    options: Options,
    index: usize,
    context: Delivered,
    budget: Arc<Budget>,
    start: Instant,
    deadline: Option<Instant>,
    stamp: bool,
}

impl Worker {
    fn run(self, config: &rdkafka::ClientConfig) -> anyhow::Result<()> {
        let Worker {
            options,
            index,
            context,
            budget,
            start,
            deadline,
            stamp,
        } = self;
        let counters = context.counters.clone();
        let epoch = context.epoch;
        let producer: ThreadedProducer<Delivered> = config
            .create_with_context(context)
            .context("creating a producer")?;
        // Each thread paces itself to its share of the total rate, on an absolute
        // schedule (no drift, no bursts beyond catching up after a stall).
        let interval = options
            .rate
            .map(|rate| Duration::from_secs_f64(options.producers as f64 / rate));
        let mut value = payload::value(options.record_size, index as u64 + 1);
        let mut keys = Keys::new(options.key_distribution, options.keys, index as u64);
        let mut next_due = start;
        while budget.claim() {
            if let Some(deadline) = deadline {
                if Instant::now() >= deadline {
                    break;
                }
            }
            if let Some(interval) = interval {
                let now = Instant::now();
                if next_due > now {
                    std::thread::sleep(next_due - now);
                }
                next_due += interval;
            }
            if stamp {
                payload::stamp(&mut value, payload::unix_nanos());
            }
            let sent_at = epoch.elapsed().as_nanos() as usize;
            let mut record = BaseRecord::with_opaque_to(&options.topic, sent_at).payload(&value);
            if let Some(key) = keys.next_key() {
                record = record.key(key);
            }
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        producer.poll(Duration::from_millis(1));
                        record = back;
                    }
                    Err((error, _)) => {
                        counters.error();
                        budget.report_once(&format!("send failed: {error}"));
                        break;
                    }
                }
            }
        }
        if let Err(error) = producer.flush(FLUSH_TIMEOUT) {
            let lost = producer.in_flight_count().max(0) as u64;
            counters.errors.fetch_add(lost, Ordering::Relaxed);
            budget.report_once(&format!(
                "flush failed, {lost} records undelivered: {error}"
            ));
        }
        Ok(())
    }
}
