//! End-to-end latency: a consumer positioned at the end of the topic, then paced
//! producers; each record's latency is receipt time minus the send time embedded in it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

use super::consume::{self, Start};
use super::options::Options;
use super::produce;
use super::stats::{Counters, Latency, Progress, Report};
use super::topic;

/// After the producers finish, how long the consumer may take to catch up.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the consumer polls before the producers start, so that its connection and
/// first fetch are in place and the first records do not carry set-up time.
const CONSUMER_WARM_UP: Duration = Duration::from_millis(500);

/// `agentlog bench e2e`: reports consumer-side throughput and produce-to-receive latency.
pub fn run(options: &Options) -> anyhow::Result<Report> {
    topic::ensure_topic(options)?;
    let received = Arc::new(Counters::default());
    let latency = Arc::new(Latency::new()?);
    let producing_done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel::<anyhow::Result<()>>();
    let sent = Arc::new(Counters::default());

    let consumer_thread = {
        let (options, received, latency) = (options.clone(), received.clone(), latency.clone());
        let (producing_done, sent) = (producing_done.clone(), sent.clone());
        std::thread::Builder::new()
            .name("bench-e2e-consumer".into())
            .spawn(move || {
                let consumer = match consume::assigned_consumer(&options, Start::End) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return 0.0;
                    }
                };
                let warm_until = Instant::now() + CONSUMER_WARM_UP;
                consume::consume(&consumer, &Counters::default(), None, |_, _| {
                    Instant::now() >= warm_until
                });
                let _ = ready_tx.send(Ok(()));
                let mut drain_deadline: Option<Instant> = None;
                consume::consume(&consumer, &received, Some(&latency), |count, _| {
                    if !producing_done.load(Ordering::Acquire) {
                        return false;
                    }
                    let target = sent.records.load(Ordering::Relaxed);
                    let deadline =
                        *drain_deadline.get_or_insert_with(|| Instant::now() + DRAIN_TIMEOUT);
                    count >= target || Instant::now() >= deadline
                })
            })
            .context("starting the consumer thread")?
    };
    ready_rx
        .recv()
        .map_err(|_| anyhow!("the consumer thread stopped before it was ready"))??;

    let progress = Progress::start("e2e", received.clone());
    let producer_latency = Arc::new(Latency::new()?);
    let produced = produce::produce(options, &sent, &producer_latency, true);
    producing_done.store(true, Ordering::Release);
    let span = consumer_thread
        .join()
        .map_err(|_| anyhow!("the consumer thread panicked"))?;
    drop(progress);
    produced?;

    let missing = sent
        .records
        .load(Ordering::Relaxed)
        .saturating_sub(received.records.load(Ordering::Relaxed));
    if missing > 0 {
        eprintln!("bench: {missing} delivered records were not received in time");
    }
    let mut report = Report::new(&received, span, latency.percentiles());
    report.errors += sent.errors.load(Ordering::Relaxed) + missing;
    Ok(report)
}
