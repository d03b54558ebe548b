//! Not a CI test: the uplink soak. An edge forwards exactly once to central while a
//! producer keeps writing and the link is cut at random times (each cut lasting 0.2 to
//! 3 s); at the end every acknowledged record must be on central exactly once, in
//! order per partition. Run it with `scripts/uplink-soak.sh [SECONDS] [CUTS]`
//! (default 1800 s and 100 cuts).

mod common;
mod uplink_common;

use std::time::{Duration, Instant};

use uplink_common::{assert_exactly_once, behind, central_behind, produce, Edge, Proxy, Sent};

/// Local topics, with their partition counts.
const TOPICS: [(&str, i32); 2] = [("telemetry", 3), ("alarms", 1)];

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator: the cut times need no quality, only a seed to print.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound.max(1)
    }
}

#[test]
#[ignore]
fn soak_link_cuts_lose_and_duplicate_nothing() {
    let seconds = env_or("UPLINK_SOAK_SECS", 1800);
    let cuts = env_or("UPLINK_SOAK_CUTS", 100);
    let seed = env_or("UPLINK_SOAK_SEED", agentlog_agents::event::now_ms() as u64) | 1;
    eprintln!("soak: {seconds} s, {cuts} cuts, seed {seed}");
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let _central = central_behind(&proxy, &[]);
    let central_addr = proxy.addr.to_string();
    let config = format!(
        "[[uplinks]]\nname = \"central\"\nbootstrap = \"{central_addr}\"\nsite = \"rig7\"\n\
         topics = [\"telemetry\", \"alarms\"]\nbatch_bytes = 16384\nremote_timeout_ms = 4000\n\
         [uplinks.properties]\n\"message.timeout.ms\" = \"3000\"\n\"socket.timeout.ms\" = \"3000\"\n"
    );
    let edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(async {
        for (topic, partitions) in TOPICS {
            common::create_topic(&edge.kafka, topic, partitions, &[]).await;
        }
    });
    let run = Duration::from_secs(seconds);
    let mut random = Random(seed);
    let mut at: Vec<u64> = (0..cuts)
        .map(|_| random.below(run.as_millis() as u64))
        .collect();
    at.sort_unstable();
    let lengths: Vec<u64> = (0..cuts).map(|_| 200 + random.below(2800)).collect();
    let started = Instant::now();
    let mut acked: Vec<Sent> = Vec::new();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for (cut_at, length) in at.iter().zip(&lengths) {
                let due = Duration::from_millis(*cut_at);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
                proxy.cut();
                std::thread::sleep(Duration::from_millis(*length));
                proxy.restore();
            }
        });
        while started.elapsed() < run {
            acked.extend(produce(&edge.kafka, &TOPICS, acked.len(), 200));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    proxy.restore();
    edge.wait_uplink("caught up", Duration::from_secs(300), |u| {
        u["state"] == "up" && behind(u) == 0
    });
    for (topic, partitions) in TOPICS {
        assert_exactly_once(&central_addr, topic, topic, partitions, "rig7", &acked);
    }
    eprintln!(
        "soak: {} records over {seconds} s and {cuts} cuts: 0 lost, 0 duplicated, order kept",
        acked.len()
    );
}
