//! Counters, the latency histogram, the once-a-second progress line and the final
//! report: everything the workloads share so they measure and print the same way.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

use super::broker_proc::BrokerUsage;

/// Bytes in the MB of MB/s, as in Kafka's perf tools (MiB).
const MB: f64 = 1024.0 * 1024.0;

/// Records, bytes and errors so far; atomics so that client callback threads, worker
/// threads and the progress printer can share them without locks.
#[derive(Debug, Default)]
pub struct Counters {
    /// Records done (delivered, or received).
    pub records: AtomicU64,
    /// Key plus value bytes of those records.
    pub bytes: AtomicU64,
    /// Failed sends or deliveries, consumer errors.
    pub errors: AtomicU64,
}

impl Counters {
    /// Counts one successful record of `bytes` bytes.
    pub fn add(&self, bytes: usize) {
        self.records.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }
}

/// Latencies in microseconds, 3 significant digits, up to one hour: HdrHistogram so that
/// p99.9 and max are exact enough at a constant, tiny cost per record.
#[derive(Debug)]
pub struct Latency(Mutex<Histogram<u64>>);

/// Largest latency kept, in microseconds (larger ones are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

impl Latency {
    /// An empty histogram.
    pub fn new() -> anyhow::Result<Latency> {
        let histogram = Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
            .context("creating the latency histogram")?;
        Ok(Latency(Mutex::new(histogram)))
    }

    /// Records one latency.
    pub fn record(&self, elapsed: Duration) {
        let us = (elapsed.as_micros() as u64).clamp(1, MAX_LATENCY_US);
        let mut histogram = self.0.lock().unwrap_or_else(|e| e.into_inner());
        histogram.saturating_record(us);
    }

    /// p50/p99/p99.9/max in milliseconds, or `None` if nothing was recorded.
    pub fn percentiles(&self) -> Option<Percentiles> {
        let histogram = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            p50: ms(histogram.value_at_quantile(0.5)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
        })
    }
}

/// Latency summary in milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct Percentiles {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest seen.
    pub max: f64,
}

/// Prints records so far, current rec/s and MB/s to stderr every second until dropped,
/// so that a long run shows it is alive and whether throughput is steady.
pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the printer thread.
    pub fn start(label: &'static str, counters: Arc<Counters>) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("bench-progress".into())
            .spawn(move || progress_loop(label, &counters, &flag))
            .ok();
        Progress { stop, handle }
    }
}

fn progress_loop(label: &str, counters: &Counters, stop: &AtomicBool) {
    let start = Instant::now();
    let mut last = (Instant::now(), 0u64, 0u64);
    let mut next = start + Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += Duration::from_secs(1);
        let records = counters.records.load(Ordering::Relaxed);
        let bytes = counters.bytes.load(Ordering::Relaxed);
        let dt = now.duration_since(last.0).as_secs_f64().max(1e-9);
        let rate = (records - last.1) as f64 / dt;
        let mbps = (bytes - last.2) as f64 / MB / dt;
        let errors = counters.errors.load(Ordering::Relaxed);
        eprintln!(
            "{label}: {records} records, {rate:.0} rec/s, {mbps:.2} MB/s, {errors} errors ({:.0} s)",
            now.duration_since(start).as_secs_f64()
        );
        last = (now, records, bytes);
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// What a run measured; printed once at the end.
#[derive(Debug)]
pub struct Report {
    /// produce, consume or e2e.
    pub mode: &'static str,
    /// Records delivered / received.
    pub records: u64,
    /// Their key plus value bytes.
    pub bytes: u64,
    /// Wall time of the measured phase.
    pub seconds: f64,
    /// Errors of any kind.
    pub errors: u64,
    /// Per-record latency (not for consume).
    pub latency: Option<Percentiles>,
    /// Broker CPU and memory, with `--broker-pid`.
    pub broker: Option<BrokerUsage>,
}

impl Report {
    /// A report from the final counters.
    pub fn new(counters: &Counters, seconds: f64, latency: Option<Percentiles>) -> Report {
        Report {
            mode: "",
            records: counters.records.load(Ordering::Relaxed),
            bytes: counters.bytes.load(Ordering::Relaxed),
            seconds,
            errors: counters.errors.load(Ordering::Relaxed),
            latency,
            broker: None,
        }
    }

    fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.seconds.max(1e-9)
    }

    fn mb_per_sec(&self) -> f64 {
        self.bytes as f64 / MB / self.seconds.max(1e-9)
    }

    /// The report as one JSON object (the machine-readable contract of `--json`).
    pub fn to_json(&self) -> Value {
        let latency = match self.latency {
            Some(p) => json!({"p50": p.p50, "p99": p.p99, "p999": p.p999, "max": p.max}),
            None => json!({"p50": null, "p99": null, "p999": null, "max": null}),
        };
        let mut report = json!({
            "mode": self.mode,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "records_per_sec": self.records_per_sec(),
            "mb_per_sec": self.mb_per_sec(),
            "latency_ms": latency,
            "errors": self.errors,
        });
        if let (Some(broker), Some(map)) = (&self.broker, report.as_object_mut()) {
            let per_million =
                (self.records > 0).then(|| broker.cpu_seconds * 1e6 / self.records as f64);
            map.insert("broker_cpu_seconds".into(), json!(broker.cpu_seconds));
            map.insert(
                "broker_cpu_seconds_per_million_records".into(),
                json!(per_million),
            );
            map.insert("broker_rss_mb_max".into(), json!(broker.rss_mb_max));
            map.insert("broker_rss_mb_start".into(), json!(broker.rss_mb_start));
        }
        report
    }

    /// Human-readable summary on stderr, and with `json` the JSON object as the last line
    /// of stdout.
    pub fn print(&self, json: bool) -> anyhow::Result<()> {
        eprintln!(
            "{}: {} records in {:.2} s: {:.0} rec/s, {:.2} MB/s, {} errors",
            self.mode,
            self.records,
            self.seconds,
            self.records_per_sec(),
            self.mb_per_sec(),
            self.errors
        );
        if let Some(p) = self.latency {
            eprintln!(
                "latency ms: p50 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3}",
                p.p50, p.p99, p.p999, p.max
            );
        }
        if let Some(b) = &self.broker {
            let per_million = if self.records > 0 {
                b.cpu_seconds * 1e6 / self.records as f64
            } else {
                0.0
            };
            eprintln!(
                "broker: {:.2} CPU-s ({per_million:.3} per million records), RSS {:.1} MB at start, {:.1} MB max",
                b.cpu_seconds, b.rss_mb_start, b.rss_mb_max
            );
        }
        if json {
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{}", self.to_json())?;
            stdout.flush()?;
        }
        Ok(())
    }
}
