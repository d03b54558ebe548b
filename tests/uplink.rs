//! Edge uplinks with real parts: two agentlog processes (an edge running
//! `agentlog serve --config edge.toml` with an `[[uplinks]]` table, and a plain central
//! broker) with a TCP proxy between them that cuts and restores the link; SIGKILL of
//! either side during forwarding. Central is read with a read_committed consumer.

mod common;
mod uplink_common;

use std::time::Duration;

use uplink_common::{assert_exactly_once, central_behind, produce, Edge, Proxy, Sent};

/// Local topics of the tests, with their partition counts.
const TOPICS: [(&str, i32); 2] = [("telemetry", 3), ("alarms", 1)];
/// Records produced at the edge per phase.
const PHASE: usize = 500;

fn edge_config(central: &str, mode: &str) -> String {
    // Small batches make many transactions, so cuts and kills land inside them; a short
    // message timeout turns a cut into a failed transaction quickly.
    format!(
        r#"
num.partitions = 1

[[uplinks]]
name = "central"
bootstrap = "{central}"
site = "rig7"
topics = ["telemetry"]
topics_regex = "^alarm"
rename_prefix = "rig7."
mode = "{mode}"
batch_bytes = 4096
linger_ms = 2
remote_timeout_ms = 4000
[uplinks.properties]
"message.timeout.ms" = "3000"
"socket.timeout.ms" = "3000"
"#
    )
}

fn create_edge_topics(edge: &Edge) {
    common::runtime().block_on(async {
        for (topic, partitions) in TOPICS {
            common::create_topic(&edge.kafka, topic, partitions, &[]).await;
        }
    });
}

fn forwarded(uplink: &serde_json::Value) -> u64 {
    uplink["records_forwarded"].as_u64().unwrap_or(0)
}

/// Every acknowledged edge record reaches central exactly once, in order per
/// partition, through a link cut mid-stream, a SIGKILL of the edge while forwarding
/// and a SIGKILL of central while forwarding.
#[test]
fn exactly_once_across_link_cut_and_kills_of_both_sides() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let mut central = central_behind(&proxy, &[]);
    let central_addr = proxy.addr.to_string();
    let mut edge = Edge::start(dir.path(), &edge_config(&central_addr, "exactly_once"));
    create_edge_topics(&edge);
    let mut acked: Vec<Sent> = Vec::new();
    let wait = Duration::from_secs(30);

    // 1. Forwarding, then the link is cut mid-stream.
    acked.extend(produce(&edge.kafka, &TOPICS, 0, PHASE));
    edge.wait_uplink("forwarding", wait, |u| forwarded(u) > 0);
    proxy.cut();
    acked.extend(produce(&edge.kafka, &TOPICS, PHASE, PHASE));
    let down = edge.wait_uplink("the link down", wait, |u| {
        u["state"].as_str().is_some_and(|s| s.starts_with("down"))
    });
    assert!(down["records_behind"].as_u64().unwrap() > 0, "{down}");
    proxy.restore();

    // 2. The edge is SIGKILLed while it catches up, and restarted.
    let before_kill = forwarded(&edge.uplink());
    edge.wait_uplink("catching up", wait, |u| forwarded(u) > before_kill);
    edge.restart();
    acked.extend(produce(&edge.kafka, &TOPICS, 2 * PHASE, PHASE));

    // 3. Central is SIGKILLed while the restarted edge forwards, and restarted.
    edge.wait_uplink("forwarding again", wait, |u| forwarded(u) > 0);
    central.restart();
    proxy.set_upstream(&central.bootstrap());
    acked.extend(produce(&edge.kafka, &TOPICS, 3 * PHASE, PHASE));
    assert_eq!(acked.len(), 4 * PHASE, "the edge acknowledged every record");

    // Everything forwarded and committed: nothing behind, link up.
    edge.wait_uplink("caught up", Duration::from_secs(45), |u| {
        u["state"] == "up" && u["records_behind"] == 0 && forwarded(u) > 0
    });
    for (topic, partitions) in TOPICS {
        let remote = format!("rig7.{topic}");
        assert_exactly_once(&central_addr, topic, &remote, partitions, "rig7", &acked);
    }
    let metrics = uplink_common::http_get(&edge.http, "/metrics");
    assert!(
        metrics.contains("agentlog_uplink_up{uplink=\"central\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("agentlog_uplink_records_behind{uplink=\"central\"} 0"));
}
