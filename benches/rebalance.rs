//! Time to a stable group after one member joins nine others (ten members, 30
//! partitions), with librdkafka on the classic protocol (eager `range`, the default, and
//! `cooperative-sticky`) and on KIP-848's consumer protocol (the broker's `uniform`
//! assignor). "Stable" means every member holds a non-empty share, no partition twice,
//! none missing, as seen by the clients' own `assignment()`.
//!
//! Run: `cargo bench --bench rebalance` (figures in benches/README.md). Each case runs
//! at the protocols' default heartbeat intervals (classic 3 s, consumer 5 s) and at
//! 500 ms, since both protocols propagate a rebalance through heartbeats.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{BrokerProcess, PolledMember};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

const PARTITIONS: i32 = 30;
const MEMBERS: usize = 10;
const RUNS: usize = 3;

fn member(addr: &str, group: &str, settings: &[(&str, &str)]) -> PolledMember {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("log_level", "3");
    for (k, v) in settings {
        config.set(*k, *v);
    }
    let consumer: BaseConsumer = config.create().expect("consumer");
    consumer.subscribe(&["rebalance"]).expect("subscribe");
    PolledMember::start(consumer, Duration::from_millis(5))
}

fn stable(members: &[PolledMember]) -> bool {
    let sets: Vec<BTreeSet<i32>> = members.iter().map(PolledMember::assignment).collect();
    let total: usize = sets.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
    sets.iter().all(|s| !s.is_empty())
        && total == PARTITIONS as usize
        && union.len() == PARTITIONS as usize
}

fn wait_stable(members: &[PolledMember]) -> Duration {
    let start = Instant::now();
    while !stable(members) {
        assert!(start.elapsed() < Duration::from_secs(120), "never stable");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

/// One measurement: nine stable members, a tenth joins; time until all ten are stable.
fn measure(addr: &str, group: &str, settings: &[(&str, &str)]) -> Duration {
    let mut members: Vec<PolledMember> = (0..MEMBERS - 1)
        .map(|_| member(addr, group, settings))
        .collect();
    wait_stable(&members);
    let start = Instant::now();
    members.push(member(addr, group, settings));
    while !stable(&members) {
        assert!(start.elapsed() < Duration::from_secs(120), "never stable");
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: skip then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    for interval in ["default", "500"] {
        let mut broker_settings = vec!["group.initial.rebalance.delay.ms=0".to_string()];
        if interval != "default" {
            broker_settings.push(format!("group.consumer.heartbeat.interval.ms={interval}"));
        }
        let refs: Vec<&str> = broker_settings.iter().map(String::as_str).collect();
        let broker = BrokerProcess::start(&refs);
        let addr = broker.bootstrap();
        let admin = common::admin(&addr);
        let created = futures::executor::block_on(admin.create_topics(
            &[rdkafka::admin::NewTopic::new(
                "rebalance",
                PARTITIONS,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        ));
        assert!(created.is_ok(), "topic created");
        let classic_hb = if interval == "default" {
            "3000"
        } else {
            interval
        };
        let cases: [(&str, Vec<(&str, &str)>); 3] = [
            (
                "classic range (eager)",
                vec![("heartbeat.interval.ms", classic_hb)],
            ),
            (
                "classic cooperative-sticky",
                vec![
                    ("heartbeat.interval.ms", classic_hb),
                    ("partition.assignment.strategy", "cooperative-sticky"),
                ],
            ),
            (
                "consumer (KIP-848, uniform)",
                vec![("group.protocol", "consumer")],
            ),
        ];
        for (n, (name, settings)) in cases.iter().enumerate() {
            let mut times: Vec<Duration> = (0..RUNS)
                .map(|run| measure(&addr, &format!("g-{interval}-{n}-{run}"), settings))
                .collect();
            times.sort();
            let ms: Vec<String> = times
                .iter()
                .map(|t| format!("{:.0}", t.as_secs_f64() * 1000.0))
                .collect();
            println!(
                "heartbeat {interval:>7} | {name:<28} | median {:>6.0} ms | runs {} ms",
                times[RUNS / 2].as_secs_f64() * 1000.0,
                ms.join(", ")
            );
        }
    }
}
