//! Edge uplinks with real parts: two agentlog processes (an edge running
//! `agentlog serve --config edge.toml` with an `[[uplinks]]` table, and a plain central
//! broker) with a TCP proxy between them that cuts and restores the link; SIGKILL of
//! either side during forwarding. Central is read with a read_committed consumer.

mod common;
mod uplink_common;

use std::time::Duration;

use uplink_common::{
    assert_at_least_once, assert_exactly_once, behind, central_behind, forwarded, produce,
    produce_at, Edge, Proxy, Sent,
};

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

/// Every acknowledged edge record reaches central exactly once, in order per
/// partition, through a link cut mid-stream, a SIGKILL of the edge while forwarding
/// and a SIGKILL of central while forwarding.
/// The `topics` value of the uplinks that forward only `telemetry`.
const TELEMETRY: &str = r#"["telemetry"]"#;

/// An edge configuration with one uplink named `central` to `bootstrap`, from `site`,
/// forwarding `topics` (a TOML array), with `extra` keys.
fn uplink(bootstrap: &str, site: &str, topics: &str, extra: &str) -> String {
    format!(
        "[[uplinks]]\nname = \"central\"\nbootstrap = \"{bootstrap}\"\nsite = \"{site}\"\n\
         topics = {topics}\n{extra}"
    )
}

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

    // A slow link keeps many transactions in flight, so each fault below lands while
    // records are being forwarded (checked: some forwarded, some still behind).
    proxy.slow(Duration::from_millis(15));

    // 1. Forwarding, then the link is cut mid-stream.
    acked.extend(produce(&edge.kafka, &TOPICS, 0, PHASE));
    let at_cut = edge.wait_uplink("forwarding", wait, |u| forwarded(u) > 0 && behind(u) > 0);
    proxy.cut();
    eprintln!("link cut at {at_cut}");
    acked.extend(produce(&edge.kafka, &TOPICS, PHASE, PHASE));
    let down = edge.wait_link_down(wait);
    assert!(behind(&down) > 0, "{down}");
    proxy.restore();

    // 2. The edge is SIGKILLed while it catches up, and restarted.
    edge.kill_while_catching_up(wait);
    acked.extend(produce(&edge.kafka, &TOPICS, 2 * PHASE, PHASE));

    // 3. Central is SIGKILLed while the restarted edge forwards, and restarted.
    let at_kill = edge.wait_uplink("forwarding again", wait, |u| {
        forwarded(u) > 0 && behind(u) > 0
    });
    central.restart();
    eprintln!("central killed at {at_kill}");
    proxy.set_upstream(&central.bootstrap());
    acked.extend(produce(&edge.kafka, &TOPICS, 3 * PHASE, PHASE));
    proxy.slow(Duration::ZERO);
    assert_eq!(acked.len(), 4 * PHASE, "the edge acknowledged every record");

    // Everything forwarded and committed: nothing behind, link up.
    edge.wait_uplink("caught up", Duration::from_secs(45), |u| {
        u["state"] == "up" && u["records_behind"] == 0 && forwarded(u) > 0
    });
    for (topic, partitions) in TOPICS {
        let remote = format!("rig7.{topic}");
        assert_exactly_once(&central_addr, topic, &remote, partitions, "rig7", &acked);
    }
    let (_, metrics) = common::http_get(&edge.http, "/metrics");
    assert!(
        metrics.contains("agentlog_uplink_up{uplink=\"central\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("agentlog_uplink_records_behind{uplink=\"central\"} 0"));
}

/// The README example runs verbatim but for its `bootstrap` line, which names a
/// central cluster the test cannot have: it becomes this test's central broker.
#[test]
fn the_readme_example_runs_verbatim() {
    let central = common::BrokerProcess::start(&[]);
    let config = uplink_common::readme_example(0, &central.bootstrap());
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path(), &config);
    create_edge_topics(&edge);
    let acked = produce(&edge.kafka, &TOPICS, 0, 300);
    assert_eq!(acked.len(), 300);
    edge.wait_uplink("caught up", Duration::from_secs(30), |u| {
        u["state"] == "up" && forwarded(u) == 300 && behind(u) == 0
    });
    for (topic, partitions) in TOPICS {
        let remote = format!("rig7.{topic}");
        assert_exactly_once(
            &central.bootstrap(),
            topic,
            &remote,
            partitions,
            "rig7",
            &acked,
        );
    }
}

/// A topic central refuses (its records are too large there) is set aside with the
/// reason on `/health`, its local data kept, while the other topic keeps flowing.
#[test]
fn a_refused_topic_is_set_aside_and_the_others_flow() {
    let central = common::BrokerProcess::start(&["message.max.bytes=16384"]);
    let dir = tempfile::tempdir().unwrap();
    let config = uplink(
        &central.bootstrap(),
        "ship",
        r#"["big", "small"]"#,
        "remote_timeout_ms = 5000\n",
    );
    let edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(async {
        common::create_topic(&edge.kafka, "big", 1, &[]).await;
        common::create_topic(&edge.kafka, "small", 1, &[]).await;
    });
    let producer: rdkafka::producer::BaseProducer =
        common::producer_config(&edge.kafka).create().unwrap();
    let large = vec![b'x'; 64 * 1024];
    producer
        .send(rdkafka::producer::BaseRecord::<(), _>::to("big").payload(&large))
        .map_err(|(e, _)| e)
        .unwrap();
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(10)).unwrap();
    let acked = produce(&edge.kafka, &[("small", 1)], 0, 50);
    assert_eq!(acked.len(), 50);

    let uplink = edge.wait_uplink(
        "small forwarded, big refused",
        Duration::from_secs(30),
        |u| forwarded(u) == 50 && u["topic_errors"]["big"].is_string(),
    );
    let reason = uplink["topic_errors"]["big"].as_str().unwrap();
    assert!(reason.contains("too large"), "{reason}");
    assert_eq!(uplink["state"], "up", "{uplink}");
    assert_exactly_once(&central.bootstrap(), "small", "small", 1, "ship", &acked);
    // The refused record is still at the edge.
    let kept = common::consume_exactly(&edge.kafka, "big", &[(0, 0)], 1, Duration::from_secs(10));
    assert_eq!(uplink_common::payload_len(&kept[0]), large.len());
    let (_, metrics) = common::http_get(&edge.http, "/metrics");
    assert!(
        metrics.contains("agentlog_uplink_topics_refused{uplink=\"central\"} 1"),
        "{metrics}"
    );
}

/// At-least-once mode (for remotes without transactions): across a link cut and a
/// SIGKILL of the edge mid-forwarding, every acknowledged record reaches central, in
/// order per partition once repeats are dropped by origin offset.
#[test]
fn at_least_once_loses_nothing_across_a_cut_and_an_edge_kill() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let _central = central_behind(&proxy, &[]);
    let central_addr = proxy.addr.to_string();
    let mut edge = Edge::start(dir.path(), &edge_config(&central_addr, "at_least_once"));
    create_edge_topics(&edge);
    let wait = Duration::from_secs(30);
    proxy.slow(Duration::from_millis(15));

    let mut acked = produce(&edge.kafka, &TOPICS, 0, PHASE);
    edge.wait_uplink("forwarding", wait, |u| forwarded(u) > 0 && behind(u) > 0);
    proxy.cut();
    acked.extend(produce(&edge.kafka, &TOPICS, PHASE, PHASE));
    edge.wait_link_down(wait);
    proxy.restore();
    edge.kill_while_catching_up(wait);
    proxy.slow(Duration::ZERO);
    acked.extend(produce(&edge.kafka, &TOPICS, 2 * PHASE, PHASE));

    edge.wait_uplink("caught up", Duration::from_secs(45), |u| {
        u["state"] == "up" && behind(u) == 0 && forwarded(u) > 0
    });
    let mut repeats = 0;
    for (topic, partitions) in TOPICS {
        let remote = format!("rig7.{topic}");
        repeats += assert_at_least_once(&central_addr, topic, &remote, partitions, &acked);
    }
    eprintln!(
        "at_least_once: {} records, {repeats} sent twice",
        acked.len()
    );
}

/// An edge forwarding `telemetry` with its link cut and retention passes every 100 ms,
/// with one-partition `topics` whose records expire after a minute, in 1 KiB segments.
fn edge_with_link_cut(
    dir: &std::path::Path,
    topics: &[&str],
) -> (Proxy, common::BrokerProcess, Edge) {
    let proxy = Proxy::start();
    let central = central_behind(&proxy, &[]);
    proxy.cut();
    let config = format!(
        "log.retention.check.interval.ms = 100\n{}",
        uplink(
            &proxy.addr.to_string(),
            "rig7",
            TELEMETRY,
            "remote_timeout_ms = 3000\n"
        )
    );
    let edge = Edge::start(dir, &config);
    let short_retention = [("retention.ms", "60000"), ("segment.bytes", "1024")];
    common::runtime().block_on(async {
        for topic in topics {
            common::create_topic(&edge.kafka, topic, 1, &short_retention).await;
        }
    });
    (proxy, central, edge)
}

/// While the link is down, local retention keeps what the uplink has not forwarded
/// (`retain_until_forwarded`, on by default): records far older than `retention.ms`
/// wait for the link, while the same records in a topic no uplink reads are deleted.
#[test]
fn retention_keeps_what_the_uplink_has_not_forwarded() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _central, edge) = edge_with_link_cut(dir.path(), &["telemetry", "unforwarded"]);
    let central_addr = proxy.addr.to_string();
    // A probe record on each topic, expiring about 2 s from now: once the uplink counts
    // it as behind, it has found the topic and holds it from offset 0 (the link down).
    let now = agentlog_agents::event::now_ms();
    let probe_ts = now - 58_000;
    let mut acked = produce_at(&edge.kafka, &[("telemetry", 1)], 0, 1, probe_ts);
    produce_at(&edge.kafka, &[("unforwarded", 1)], 0, 1, probe_ts);
    edge.wait_uplink("the topic found", Duration::from_secs(10), |u| {
        behind(u) == 1
    });
    let hour_ago = now - 3_600_000;
    acked.extend(produce_at(
        &edge.kafka,
        &[("telemetry", 1)],
        1,
        200,
        hour_ago,
    ));
    produce_at(&edge.kafka, &[("unforwarded", 1)], 1, 200, hour_ago);
    assert_eq!(acked.len(), 201);

    // Retention has deleted all of the topic nobody forwards (the same records at the
    // same times; passes go through topics by name, so `telemetry` came first)...
    common::poll_until(
        Duration::from_secs(20),
        "retention on `unforwarded`",
        || (common::watermarks(&edge.kafka, "unforwarded", 0) == (201, 201)).then_some(()),
    );
    // ...and kept every record the uplink still owes central.
    assert_eq!(common::watermarks(&edge.kafka, "telemetry", 0), (0, 201));
    let down = edge.wait_uplink("all behind", Duration::from_secs(10), |u| {
        behind(u) == 201 && u["oldest_unforwarded_ms"].as_i64().unwrap_or(0) > 0
    });
    let oldest = down["oldest_unforwarded_ms"].as_i64().unwrap();
    assert!(oldest <= probe_ts, "the oldest unforwarded record: {down}");

    proxy.restore();
    edge.wait_uplink("caught up", Duration::from_secs(30), |u| {
        u["state"] == "up" && behind(u) == 0 && forwarded(u) == 201
    });
    assert_exactly_once(&central_addr, "telemetry", "telemetry", 1, "rig7", &acked);
}

/// SIGTERM of an edge whose link is down ends the process cleanly and promptly: the
/// uplink does not wait out its remote calls (the open transaction, if any, is the
/// next incarnation's to abort).
#[test]
fn sigterm_with_the_link_down_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let _central = central_behind(&proxy, &[]);
    proxy.cut();
    let config = uplink(
        &proxy.addr.to_string(),
        "rig7",
        TELEMETRY,
        "remote_timeout_ms = 20000\n",
    );
    let mut edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 1, &[]));
    produce(&edge.kafka, &[("telemetry", 1)], 0, 10);
    edge.wait_uplink("the backlog counted", Duration::from_secs(10), |u| {
        behind(u) == 10
    });
    let (took, clean) = edge.terminate(Duration::from_secs(30));
    assert!(clean, "exit status after SIGTERM");
    assert!(took < Duration::from_secs(10), "SIGTERM took {took:?}");
}

/// `max_bytes_per_second` paces forwarding: 3000 records (about 280 KB of stored
/// batches) at 100 KB/s take seconds instead of a fraction of one, and all arrive once.
#[test]
fn a_bandwidth_cap_paces_forwarding() {
    let central = common::BrokerProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = uplink(
        &central.bootstrap(),
        "rig7",
        TELEMETRY,
        "batch_bytes = 16384\nmax_bytes_per_second = 100000\n",
    );
    let edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 1, &[]));
    let acked = produce(&edge.kafka, &[("telemetry", 1)], 0, 3000);
    let started = std::time::Instant::now();
    edge.wait_uplink("caught up", Duration::from_secs(30), |u| {
        forwarded(u) == 3000
    });
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "3000 records in {took:?}"
    );
    assert_telemetry_once(&central.bootstrap(), 1, &acked);
}

/// Records deleted at the edge before they were forwarded (DeleteRecords while the
/// link is down; the free-disk floor does the same, below) are counted as lost on
/// `/health` and `/metrics`, and the uplink skips them cleanly: central gets exactly
/// the records after them, once each.
#[test]
fn records_deleted_before_forwarding_are_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = Proxy::start();
    let _central = central_behind(&proxy, &[]);
    let central_addr = proxy.addr.to_string();
    proxy.cut();
    let config = uplink(
        &central_addr,
        "rig7",
        TELEMETRY,
        "remote_timeout_ms = 3000\n",
    );
    let edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 1, &[]));
    let acked = produce(&edge.kafka, &[("telemetry", 1)], 0, 100);
    edge.wait_uplink("the backlog counted", Duration::from_secs(10), |u| {
        behind(u) == 100
    });
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("telemetry", 0, rdkafka::Offset::Offset(40))
        .unwrap();
    let admin = common::admin(&edge.kafka);
    let options = rdkafka::admin::AdminOptions::new();
    common::runtime()
        .block_on(admin.delete_records(&offsets, &options))
        .unwrap();
    let lost = edge.wait_uplink("the loss counted", Duration::from_secs(10), |u| {
        u["records_lost"] == 40 && behind(u) == 60
    });
    assert!(lost["bytes_behind"].as_u64().unwrap() > 0, "{lost}");

    proxy.restore();
    let done = edge.wait_uplink("caught up", Duration::from_secs(30), |u| {
        u["state"] == "up" && behind(u) == 0 && forwarded(u) == 60
    });
    assert_eq!(done["records_lost"], 40, "counted once: {done}");
    assert_central_holds_from(&central_addr, &acked, 40);
    let (_, metrics) = common::http_get(&edge.http, "/metrics");
    assert!(
        metrics.contains("agentlog_uplink_records_lost_total{uplink=\"central\"} 40"),
        "{metrics}"
    );
    assert!(metrics.contains("agentlog_uplink_bytes_behind{uplink=\"central\"} 0"));
}

/// The free-disk floor overrides the retention guard: with the link down and free disk
/// below `log.disk.free.min.bytes` (a floor no disk meets, raised at runtime), retention
/// deletes the expired segments the uplink holds (counted as lost on `/health` and
/// `/metrics`) but not the segment of records within `retention.ms`; once the floor is
/// lowered and the link is back, central gets exactly the records kept, once each.
#[test]
fn the_disk_floor_deletes_expired_unforwarded_segments_and_counts_them() {
    let dir = tempfile::tempdir().unwrap();
    let (proxy, _central, edge) = edge_with_link_cut(dir.path(), &["telemetry"]);
    let central_addr = proxy.addr.to_string();
    // A probe expiring about 2 s from now, so that the uplink holds the topic from
    // offset 0 before the expired records arrive (as in the retention test above).
    let now = agentlog_agents::event::now_ms();
    let mut acked = produce_at(&edge.kafka, &[("telemetry", 1)], 0, 1, now - 58_000);
    edge.wait_uplink("the topic found", Duration::from_secs(10), |u| {
        behind(u) == 1
    });
    acked.extend(produce_at(
        &edge.kafka,
        &[("telemetry", 1)],
        1,
        150,
        now - 3_600_000,
    ));
    acked.extend(produce(&edge.kafka, &[("telemetry", 1)], 151, 50));
    assert_eq!(acked.len(), 201);
    edge.wait_uplink("all behind", Duration::from_secs(10), |u| behind(u) == 201);
    assert_eq!(common::watermarks(&edge.kafka, "telemetry", 0), (0, 201));

    set_disk_floor(&edge, "1000000000000000000");
    let start = common::poll_until(Duration::from_secs(20), "the floor to delete", || {
        let (low, _) = common::watermarks(&edge.kafka, "telemetry", 0);
        (low > 0).then_some(low)
    });
    // Passes keep running below the floor: nothing within retention.ms goes.
    std::thread::sleep(Duration::from_secs(1));
    let (low, high) = common::watermarks(&edge.kafka, "telemetry", 0);
    assert_eq!((low, high), (start, 201), "only expired segments go");
    assert!(
        start <= 151,
        "a segment of fresh records was deleted: {start}"
    );
    let lost = edge.wait_uplink("the loss counted", Duration::from_secs(10), |u| {
        u["records_lost"] == start && behind(u) == (201 - start) as u64
    });
    eprintln!("below the floor: {lost}");
    let (_, metrics) = common::http_get(&edge.http, "/metrics");
    for series in [
        format!("agentlog_uplink_records_lost_total{{uplink=\"central\"}} {start}\n"),
        format!("agentlog_disk_floor_records_deleted_total {start}\n"),
    ] {
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }

    set_disk_floor(&edge, "0");
    proxy.restore();
    edge.wait_uplink("caught up", Duration::from_secs(30), |u| {
        u["state"] == "up" && behind(u) == 0 && forwarded(u) == (201 - start) as u64
    });
    assert_central_holds_from(&central_addr, &acked, start as usize);
}

/// Sets the edge broker's `log.disk.free.min.bytes` at runtime (AlterConfigs).
fn set_disk_floor(edge: &Edge, bytes: &str) {
    use rdkafka::admin::{AlterConfig, ResourceSpecifier};
    let floor =
        AlterConfig::new(ResourceSpecifier::Broker(1)).set("log.disk.free.min.bytes", bytes);
    let admin = common::admin(&edge.kafka);
    let options = rdkafka::admin::AdminOptions::new();
    let results = common::runtime()
        .block_on(admin.alter_configs([&floor], &options))
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

/// Asserts central's `telemetry` partition 0 holds exactly the acknowledged records
/// from index `from` on, in order, each with its local offset as `origin.offset`.
fn assert_central_holds_from(central: &str, acked: &[Sent], from: usize) {
    let held = uplink_common::read_committed(central, "telemetry", 1);
    let got: Vec<(String, String)> = held[&0]
        .iter()
        .map(|m| {
            let key = rdkafka::Message::key(m).unwrap_or_default();
            let origin = uplink_common::header(m, "origin.offset").unwrap();
            (String::from_utf8_lossy(key).into_owned(), origin)
        })
        .collect();
    let expected: Vec<(String, String)> = acked[from..]
        .iter()
        .enumerate()
        .map(|(i, s)| (s.key.clone(), (from + i).to_string()))
        .collect();
    assert_eq!(got, expected);
}

/// Partitions added to a forwarded local topic (CreatePartitions) after the uplink
/// started are picked up: the remote topic grows, and records of the new partitions
/// reach central exactly once like the others.
#[test]
fn partitions_added_locally_are_forwarded() {
    let central = common::BrokerProcess::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = uplink(&central.bootstrap(), "rig7", TELEMETRY, "");
    let edge = Edge::start(dir.path(), &config);
    common::runtime().block_on(common::create_topic(&edge.kafka, "telemetry", 1, &[]));
    let mut acked = produce(&edge.kafka, &[("telemetry", 1)], 0, 50);
    edge.wait_uplink(
        "the first partition forwarded",
        Duration::from_secs(30),
        |u| forwarded(u) == 50,
    );
    let admin = common::admin(&edge.kafka);
    let grow = rdkafka::admin::NewPartitions::new("telemetry", 3);
    let options = rdkafka::admin::AdminOptions::new();
    let results = common::runtime()
        .block_on(admin.create_partitions([&grow], &options))
        .unwrap();
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    acked.extend(produce(&edge.kafka, &[("telemetry", 3)], 50, 150));
    assert_eq!(acked.len(), 200);
    edge.wait_uplink("every partition forwarded", Duration::from_secs(30), |u| {
        forwarded(u) == 200 && behind(u) == 0
    });
    assert_telemetry_once(&central.bootstrap(), 3, &acked);
}

/// Asserts central's `telemetry` (not renamed, from site `rig7`) holds the acknowledged
/// `telemetry` records exactly once.
fn assert_telemetry_once(central: &str, partitions: i32, acked: &[Sent]) {
    assert_exactly_once(central, "telemetry", "telemetry", partitions, "rig7", acked);
}
