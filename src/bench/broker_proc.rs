//! Broker CPU time and memory from `/proc/PID`, for `--broker-pid`: the cost per
//! million records is the efficiency figure, and peak RSS the memory one, and both are
//! read from outside so they work for any broker process (agentlog or a JVM).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How often RSS is sampled.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

use anyhow::{bail, Context};

/// What the broker used during the run.
#[derive(Debug, Clone, Copy)]
pub struct BrokerUsage {
    /// User plus system CPU seconds consumed during the run.
    pub cpu_seconds: f64,
    /// Resident set size (VmRSS) when the run started, in MiB.
    pub rss_mb_start: f64,
    /// Largest resident set size (VmRSS) seen, sampled every second and at the end, in
    /// MiB (VmHWM would include peaks from before the run).
    pub rss_mb_max: f64,
}

/// Samples one process while a run goes on; [`Sampler::finish`] stops it.
pub struct Sampler {
    pid: u32,
    start_ticks: u64,
    rss_kb_start: u64,
    max_rss_kb: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    /// Starts sampling `pid`; `None` without a pid. Fails if the process cannot be read,
    /// so a wrong pid is reported before the run rather than after.
    pub fn start(pid: Option<u32>) -> anyhow::Result<Option<Sampler>> {
        let Some(pid) = pid else { return Ok(None) };
        let start_ticks = cpu_ticks(pid)?;
        let rss_kb_start = status_kb(pid, "VmRSS:")?;
        let max_rss_kb = Arc::new(AtomicU64::new(rss_kb_start));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (max, stop) = (max_rss_kb.clone(), stop.clone());
            std::thread::Builder::new()
                .name("bench-broker-sampler".into())
                .spawn(move || {
                    // Short sleeps so that finish() does not wait up to a second.
                    let mut next = Instant::now() + SAMPLE_EVERY;
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        if Instant::now() >= next {
                            next += SAMPLE_EVERY;
                            if let Ok(kb) = status_kb(pid, "VmRSS:") {
                                max.fetch_max(kb, Ordering::Relaxed);
                            }
                        }
                    }
                })
                .context("starting the broker sampler thread")?
        };
        Ok(Some(Sampler {
            pid,
            start_ticks,
            rss_kb_start,
            max_rss_kb,
            stop,
            handle: Some(handle),
        }))
    }

    /// Stops sampling and returns what the broker used since [`Sampler::start`].
    pub fn finish(mut self) -> anyhow::Result<BrokerUsage> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        let end_ticks = cpu_ticks(self.pid)?;
        let rss_now = status_kb(self.pid, "VmRSS:")?;
        let max_kb = self.max_rss_kb.load(Ordering::Relaxed).max(rss_now);
        let ticks_per_sec = clock_ticks_per_second();
        let mb = |kb: u64| kb as f64 / 1024.0;
        Ok(BrokerUsage {
            cpu_seconds: end_ticks.saturating_sub(self.start_ticks) as f64 / ticks_per_sec,
            rss_mb_start: mb(self.rss_kb_start),
            rss_mb_max: mb(max_kb),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// CPU seconds (user plus system, all threads) this process has used so far: `bench
/// agents` runs the broker and the agents in-process, so this is their whole cost.
pub fn process_cpu_seconds() -> anyhow::Result<f64> {
    Ok(cpu_ticks(std::process::id())? as f64 / clock_ticks_per_second())
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of `/proc/PID/stat`, counted
/// after the parenthesised command name, which may itself contain spaces).
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = proc_path(pid, "stat");
    let stat = std::fs::read_to_string(&path)
        .with_context(|| format!("reading {} (is --broker-pid right?)", path.display()))?;
    let Some((_, after_comm)) = stat.rsplit_once(')') else {
        bail!("unexpected format of {}", path.display());
    };
    // After ")": state is field 3, so utime (14) and stime (15) are at 11 and 12.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("unexpected format of {}", path.display()))
    };
    Ok(field(11)? + field(12)?)
}

/// A `kB` line of `/proc/PID/status`, such as `VmRSS:`.
fn status_kb(pid: u32, key: &str) -> anyhow::Result<u64> {
    let path = proc_path(pid, "status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kb| kb.parse().ok())
        .with_context(|| format!("no {key} in {}", path.display()))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}
