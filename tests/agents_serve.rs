//! `agentlog serve` starts the agents declared in its TOML file: in-process next to the
//! broker (`backend = "embedded"`, the default), or against an external cluster with no
//! broker of its own (`backend = "kafka"`).

mod agents_common;
mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentlog_agents::{KafkaBackend, KafkaConfig, OutRecord, Sink};
use bytes::Bytes;
use common::{BrokerProcess, Serve};

const ROUTER: &str = r#"
[[agents]]
name = "router"
kind = "router"
topics = ["events"]
[agents.options]
field = "type"
default = "events.other"
routes = { order = "orders" }
"#;

fn serve(dir: &std::path::Path, config: &str, wait_listening: bool) -> (Serve, Option<String>) {
    let path = dir.join("agentlog.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .arg("serve")
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("AGENTLOG_LOG", "warn")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut addr = None;
    if wait_listening {
        for line in lines.by_ref() {
            if let Some(found) = line.unwrap().strip_prefix("agentlog listening on ") {
                addr = Some(found.trim().to_string());
                break;
            }
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (Serve(child), addr)
}

fn json(kind: &str, i: usize) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!(r#"{{"type":"{kind}","i":{i}}}"#))),
        headers: Vec::new(),
        timestamp: agentlog_agents::event::now_ms(),
    }
}

async fn routed(backend: &KafkaBackend) {
    let records = (0..5)
        .map(|i| json(if i < 3 { "order" } else { "other" }, i))
        .collect();
    backend.produce("events", records).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = (
            agents_common::read_all(backend, "orders").await.len(),
            agents_common::read_all(backend, "events.other").await.len(),
        );
        if counts == (3, 2) {
            return;
        }
        assert!(Instant::now() < deadline, "routed so far: {counts:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn client(bootstrap: &str) -> KafkaBackend {
    KafkaBackend::new(KafkaConfig {
        bootstrap: bootstrap.to_string(),
        properties: Default::default(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_declared_agents_in_process() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("group.initial.rebalance.delay.ms = 100\n{ROUTER}");
    let (process, addr) = serve(dir.path(), &config, true);
    let backend = client(&addr.unwrap());
    routed(&backend).await;
    process.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_config_runs_against_an_external_cluster() {
    let cluster = BrokerProcess::start(&["group.initial.rebalance.delay.ms=100"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "backend = \"kafka\"\nbootstrap = \"{}\"\n{ROUTER}",
        cluster.bootstrap()
    );
    let (agents, addr) = serve(dir.path(), &config, false);
    assert!(addr.is_none());
    let backend = client(&cluster.bootstrap());
    routed(&backend).await;
    agents.stop();
    assert!(
        !dir.path().join("data").exists(),
        "no broker (and no data directory) in kafka mode"
    );
}

/// The README's agents example, exactly as printed, starts the broker and its agents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_agents_example_works_verbatim() {
    let readme = include_str!("../README.md");
    let example = readme
        .split("```toml\n")
        .find(|block| block.contains("[[agents]]"))
        .and_then(|block| block.split("```").next())
        .expect("README has an agents example");
    let dir = tempfile::tempdir().unwrap();
    let (process, addr) = serve(dir.path(), example, true);
    let backend = client(&addr.expect("the broker listens"));
    routed(&backend).await;
    process.stop();
}

/// The README's queue-agents example, exactly as printed: a router swarm as a share
/// group routes every event once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_queue_agents_example_works_verbatim() {
    let readme = include_str!("../README.md");
    let example = readme
        .split("```toml\n")
        .skip(1)
        .filter_map(|block| block.split("```").next())
        .find(|code| code.contains("delivery = \"queue\""))
        .expect("README has a queue agents example");
    let dir = tempfile::tempdir().unwrap();
    let (process, addr) = serve(dir.path(), example, true);
    let backend = client(&addr.expect("the broker listens"));
    routed(&backend).await;
    process.stop();
}
