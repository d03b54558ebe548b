//! Not CI tests: the edge uplink's benchmarks (procedure and figures in
//! benches/README.md, "Edge uplink"). Run in release, one at a time:
//!
//! ```text
//! UPLINK_BENCH_BYTES=1000000000 cargo test --release --test uplink_bench -- \
//!     --ignored --nocapture catch_up
//! UPLINK_BENCH_SECONDS=30 cargo test --release --test uplink_bench -- \
//!     --ignored --nocapture added_latency
//! ```
//!
//! `UPLINK_BENCH_EXTRA` adds keys to the uplink's table (e.g. `linger_ms = 0`).

mod common;
mod uplink_common;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use uplink_common::{behind, forwarded, Edge};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The edge's configuration: one uplink named `central` forwarding `telemetry`.
fn edge_config(central: &str) -> String {
    let extra = std::env::var("UPLINK_BENCH_EXTRA").unwrap_or_default();
    format!(
        "[[uplinks]]\nname = \"central\"\nbootstrap = \"{central}\"\nsite = \"rig7\"\n\
         topics = [\"telemetry\"]\nremote_timeout_ms = 3000\n{extra}\n"
    )
}

/// CPU seconds (user + system) a process has used, from /proc/PID/stat.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // Fields 14 and 15 of the line (utime, stime) are 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|i| fields.get(*i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0
}

/// The machine's load averages, printed with every figure (the box is shared).
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Sends a signal to a process (`STOP`, `CONT`).
fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Catch-up after an outage: a backlog of `UPLINK_BENCH_BYTES` (default 100 MB) of
/// `UPLINK_BENCH_VALUE_BYTES`-byte values (default 1000) is produced at the edge while
/// central is stopped (SIGSTOP, so no proxy sits on the path), then central is
/// resumed and the time from the link up to nothing behind is measured, with the CPU
/// seconds each side used meanwhile.
#[test]
#[ignore]
fn catch_up_throughput() {
    let target = env_or("UPLINK_BENCH_BYTES", 100_000_000);
    let value_bytes = env_or("UPLINK_BENCH_VALUE_BYTES", 1000) as usize;
    let records = (target / value_bytes as u64).max(1);
    let central = common::BrokerProcess::start(&[]);
    let central_pid = central.pid().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &edge_config(&central.bootstrap()));
    let edge_pid = edge.pid().unwrap();
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 3, &[]));
    let producer: BaseProducer = common::producer_config(&edge.kafka).create().unwrap();
    // A first record forwarded: the remote topic exists, the link has been up.
    send(&producer, 0, &[b'v'; 16]);
    producer.flush(Duration::from_secs(30)).unwrap();
    edge.wait_uplink("the first record", Duration::from_secs(30), |u| {
        forwarded(u) == 1
    });
    // An idle link makes no calls: it finds central gone once it forwards the backlog.
    signal(central_pid, "STOP");
    let value = vec![b'v'; value_bytes];
    let producing = Instant::now();
    for i in 1..=records {
        send(&producer, i, &value);
    }
    producer.flush(Duration::from_secs(600)).unwrap();
    let produce_seconds = producing.elapsed().as_secs_f64();
    edge.wait_uplink("the backlog counted", Duration::from_secs(60), |u| {
        behind(u) == records
    });
    eprintln!(
        "backlog: {records} records of {value_bytes} B produced in {produce_seconds:.1} s; \
         load {}",
        load()
    );
    signal(central_pid, "CONT");
    let resumed = Instant::now();
    // The link retries with backoff (up to 10 s): time is counted from the link up.
    edge.wait_uplink("the link up", Duration::from_secs(60), |u| {
        u["state"] == "up"
    });
    let (edge_cpu, central_cpu) = (cpu_seconds(edge_pid), cpu_seconds(central_pid));
    let started = Instant::now();
    let reconnect = started.duration_since(resumed).as_secs_f64();
    let done = edge.wait_uplink("caught up", Duration::from_secs(1800), |u| behind(u) == 0);
    let seconds = started.elapsed().as_secs_f64();
    let edge_cpu = cpu_seconds(edge_pid) - edge_cpu;
    let central_cpu = cpu_seconds(central_pid) - central_cpu;
    assert_eq!(forwarded(&done), records + 1, "{done}");
    let bytes = done["bytes_forwarded"].as_u64().unwrap() as f64;
    eprintln!(
        "caught up {records} records ({:.1} MB of keys and values) in {seconds:.2} s from \
         the link up ({reconnect:.1} s after central resumed): {:.1} MB/s, {} \
         transactions; CPU seconds: edge {edge_cpu:.1}, central \
         {central_cpu:.1}; load {}",
        bytes / 1e6,
        bytes / 1e6 / seconds,
        done["transactions"],
        load()
    );
}

fn send(producer: &BaseProducer, i: u64, value: &[u8]) {
    let key = format!("k{i}");
    let mut record = BaseRecord::to("telemetry").key(&key).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((error, back)) => {
                assert!(
                    matches!(
                        error.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ),
                    "{error}"
                );
                record = back;
                producer.poll(Duration::from_millis(10));
            }
        }
    }
    producer.poll(Duration::ZERO);
}

/// Microseconds since the epoch (the producer and both readers share this clock).
fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Reads `telemetry`-0 read_committed from offset `from` and sends, per record, its
/// sequence number and the microseconds since it was produced (from its value).
fn watch(bootstrap: &str, from: i64, out: mpsc::Sender<(u64, u64)>, until: Instant) {
    let consumer: BaseConsumer = common::consumer_config(bootstrap)
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "100")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("telemetry", 0, Offset::Offset(from))
        .unwrap();
    consumer.assign(&list).unwrap();
    while Instant::now() < until {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let arrived = now_us();
        let text = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let mut parts = text.split(' ');
        let seq = parts.next().and_then(|s| s.parse::<u64>().ok());
        let sent = parts.next().and_then(|s| s.parse::<u64>().ok());
        if let (Some(seq), Some(sent)) = (seq, sent) {
            if out.send((seq, arrived.saturating_sub(sent))).is_err() {
                return;
            }
        }
    }
}

/// Steady-state added latency: `UPLINK_BENCH_RATE` records a second (default 1000) for
/// `UPLINK_BENCH_SECONDS` (default 30) to the edge with the link up; produce-to-visible
/// latency read_committed on the edge and on central, and the difference per record.
#[test]
#[ignore]
fn added_latency() {
    let rate = env_or("UPLINK_BENCH_RATE", 1000).max(1);
    let run = Duration::from_secs(env_or("UPLINK_BENCH_SECONDS", 30));
    let central = common::BrokerProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &edge_config(&central.bootstrap()));
    let (edge_pid, central_pid) = (edge.pid().unwrap(), central.pid().unwrap());
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 1, &[]));
    let producer: BaseProducer = common::producer_config(&edge.kafka)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    send(&producer, 0, b"0 0");
    producer.flush(Duration::from_secs(30)).unwrap();
    edge.wait_uplink("the first record", Duration::from_secs(30), |u| {
        forwarded(u) == 1
    });
    let until = Instant::now() + run + Duration::from_secs(30);
    let (edge_tx, edge_rx) = mpsc::channel();
    let (central_tx, central_rx) = mpsc::channel();
    let (edge_kafka, central_kafka) = (edge.kafka.clone(), central.bootstrap());
    let readers = [
        std::thread::spawn(move || watch(&edge_kafka, 1, edge_tx, until)),
        std::thread::spawn(move || watch(&central_kafka, 1, central_tx, until)),
    ];
    std::thread::sleep(Duration::from_secs(2));
    let (edge_cpu, central_cpu) = (cpu_seconds(edge_pid), cpu_seconds(central_pid));
    let count = rate * run.as_secs();
    let started = Instant::now();
    for seq in 1..=count {
        let due = started + Duration::from_micros(seq * 1_000_000 / rate);
        while Instant::now() < due {
            producer.poll(due.saturating_duration_since(Instant::now()));
        }
        send(&producer, seq, format!("{seq} {}", now_us()).as_bytes());
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    let collect = |rx: mpsc::Receiver<(u64, u64)>| {
        let mut by_seq = vec![None; count as usize + 1];
        let mut got = 0;
        while got < count {
            let Ok((seq, micros)) = rx.recv_timeout(Duration::from_secs(30)) else {
                break;
            };
            if let Some(slot) = by_seq.get_mut(seq as usize) {
                got += u64::from(slot.is_none());
                *slot = Some(micros);
            }
        }
        by_seq
    };
    let on_edge = collect(edge_rx);
    let on_central = collect(central_rx);
    let (edge_cpu, central_cpu) = (
        cpu_seconds(edge_pid) - edge_cpu,
        cpu_seconds(central_pid) - central_cpu,
    );
    for reader in readers {
        let _ = reader.join();
    }
    let both: Vec<(u64, u64)> = on_edge
        .iter()
        .zip(&on_central)
        .filter_map(|(e, c)| Some(((*e)?, (*c)?)))
        .collect();
    assert_eq!(both.len() as u64, count, "every record seen on both sides");
    let quantiles = |mut values: Vec<i64>| {
        values.sort_unstable();
        let at = |q: f64| values[((values.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            at(0.5),
            at(0.99),
            at(1.0)
        )
    };
    let edge_ms: Vec<i64> = both.iter().map(|(e, _)| *e as i64).collect();
    let central_ms: Vec<i64> = both.iter().map(|(_, c)| *c as i64).collect();
    let added: Vec<i64> = both.iter().map(|(e, c)| *c as i64 - *e as i64).collect();
    eprintln!(
        "{count} records at {rate}/s: produce->visible on the edge {}; on central {}; \
         added per record {}; CPU seconds: edge {edge_cpu:.1}, central {central_cpu:.1}; \
         load {}",
        quantiles(edge_ms),
        quantiles(central_ms),
        quantiles(added),
        load()
    );
}
