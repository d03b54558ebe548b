//! `direction = "down"` uplinks with real parts: a central agentlog whose topics
//! (commands, model updates) an edge `agentlog serve --config edge.toml` mirrors into
//! local topics, through a TCP proxy that cuts the link, with the edge SIGKILLed while
//! it mirrors. The edge's local topics are read with a read_committed consumer.

mod common;
mod uplink_common;

use std::time::Duration;

use uplink_common::{
    assert_exactly_once, behind, central_behind, forwarded, produce, Edge, Proxy, Sent,
};

/// Records produced on central per phase.
const PHASE: usize = 1000;

/// Waits until the edge's local `topic` holds `count` records over `partitions`.
fn wait_local(edge: &Edge, topic: &str, partitions: i32, count: usize) {
    common::poll_until(Duration::from_secs(45), "the local copy complete", || {
        let held: i64 = (0..partitions)
            .map(|p| common::watermarks(&edge.kafka, topic, p).1)
            .sum();
        (held == count as i64).then_some(())
    });
}

/// Every record acknowledged by central reaches the edge's local copy exactly once, in
/// order per partition, with origin headers, through a link cut mid-stream and a
/// SIGKILL of the edge while it mirrors.
#[test]
fn down_mirrors_exactly_once_across_a_link_cut_and_an_edge_kill() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let _central = central_behind(&proxy, &[]);
    let central_addr = proxy.addr.to_string();
    common::runtime().block_on(common::create_topic(&central_addr, "commands", 2, &[]));
    // Small fetches over a slow link: many rounds, so the cut and the kill land while
    // records are coming down.
    let config = format!(
        r#"
[[uplinks]]
name = "central"
direction = "down"
bootstrap = "{central_addr}"
site = "rig7"
topics = ["commands"]
rename_prefix = "central."
remote_timeout_ms = 3000
[uplinks.properties]
"socket.timeout.ms" = "3000"
"fetch.max.bytes" = "2048"
"max.partition.fetch.bytes" = "1024"
"message.max.bytes" = "1000"
"#
    );
    let mut edge = Edge::start(dir.path(), &config);
    let wait = Duration::from_secs(30);
    proxy.slow(Duration::from_millis(20));

    // 1. Mirroring, then the link is cut mid-stream.
    let mut acked: Vec<Sent> = produce(&central_addr, &[("commands", 2)], 0, PHASE);
    let at_cut = edge.wait_uplink("mirroring", wait, |u| forwarded(u) > 0 && behind(u) > 0);
    proxy.cut();
    eprintln!("link cut at {at_cut}");
    let down = edge.wait_link_down(wait);
    assert_eq!(down["direction"], "down", "{down}");
    assert!(behind(&down) > 0, "{down}");
    proxy.restore();

    // 2. The edge is SIGKILLed while it catches up, and restarted.
    edge.kill_while_catching_up(wait);
    acked.extend(produce(&central_addr, &[("commands", 2)], PHASE, PHASE));
    proxy.slow(Duration::ZERO);
    assert_eq!(acked.len(), 2 * PHASE, "central acknowledged every record");

    edge.wait_uplink("caught up", Duration::from_secs(45), |u| {
        u["state"] == "up" && behind(u) == 0 && forwarded(u) > 0
    });
    wait_local(&edge, "central.commands", 2, acked.len());
    assert_exactly_once(
        &edge.kafka,
        "commands",
        "central.commands",
        2,
        "central",
        &acked,
    );
}

/// The README's down example runs verbatim (its `bootstrap` replaced by the test's
/// central broker): a named topic and a pattern come down under the prefix.
#[test]
fn the_readme_down_example_runs_verbatim() {
    let central = common::BrokerProcess::start(&[]);
    let config = uplink_common::readme_example(1, &central.bootstrap());
    assert!(config.contains("direction = \"down\""), "{config}");
    let topics = [("rig7.commands", 1), ("models.detector", 2)];
    common::runtime().block_on(async {
        for (topic, partitions) in topics {
            common::create_topic(&central.bootstrap(), topic, partitions, &[]).await;
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &config);
    let acked = produce(&central.bootstrap(), &topics, 0, 300);
    assert_eq!(acked.len(), 300);
    for (topic, partitions) in topics {
        let local = format!("central.{topic}");
        let count = acked.iter().filter(|s| s.topic == topic).count();
        wait_local(&edge, &local, partitions, count);
        assert_exactly_once(
            &edge.kafka,
            topic,
            &local,
            partitions,
            "central-down",
            &acked,
        );
    }
    edge.wait_uplink("caught up", Duration::from_secs(30), |u| {
        u["state"] == "up" && behind(u) == 0 && forwarded(u) == 300
    });
}

/// `agentlog uplinks status` against a running edge whose link is cut: the table and
/// the JSON show the uplink down with its backlog.
#[test]
fn uplinks_status_reads_a_running_edge() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let _central = central_behind(&proxy, &[]);
    proxy.cut();
    let config = format!(
        "[[uplinks]]\nname = \"central\"\nbootstrap = \"{}\"\nsite = \"rig7\"\n\
         topics = [\"telemetry\"]\nremote_timeout_ms = 2000\n",
        proxy.addr
    );
    let edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 1, &[]));
    produce(&edge.kafka, &[("telemetry", 1)], 0, 25);
    edge.wait_uplink("down with the backlog", Duration::from_secs(20), |u| {
        behind(u) == 25 && u["state"].as_str().is_some_and(|s| s.starts_with("down"))
    });
    let status = |output: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentlog"))
            .args([
                "uplinks", "status", "--http", &edge.http, "--output", output,
            ])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let json: serde_json::Value = serde_json::from_str(&status("json")).unwrap();
    assert_eq!(json[0]["name"], "central", "{json}");
    assert_eq!(json[0]["direction"], "up", "{json}");
    assert_eq!(json[0]["records_behind"], 25, "{json}");
    let table = status("table");
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    let row = lines.next().unwrap();
    assert!(
        row.starts_with("central") && row.contains(" down: "),
        "{table}"
    );
    assert!(row.split_whitespace().any(|cell| cell == "25"), "{table}");
    // A process that is not there is one clear error line.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args([
            "uplinks",
            "status",
            "--http",
            "127.0.0.1:1",
            "--timeout",
            "2",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("agentlog: error: http://127.0.0.1:1/health"),
        "{stderr}"
    );
}
