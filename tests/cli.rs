//! The operator commands (`agentlog topic|group|produce|consume|cluster|decisions`) as
//! a user runs them: the real binary as a child process against a real broker process,
//! their JSON output parsed, and what they changed checked with rdkafka.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use agentlog_agents::envelope::rfc3339;
use agentlog_agents::Envelope;
use common::{consumer_config, producer_config, BrokerProcess};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{json, Value};

/// 2024-05-01T12:00:00Z in ms: the time inside the decision envelopes.
const T0: i64 = 1_714_564_800_000;

/// A minute ago, in ms: record timestamps the time-based tests read (older ones would
/// fall to the broker's 7-day retention during the test).
fn recent() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970");
    i64::try_from(now.as_millis()).expect("ms fit i64") - 60_000
}

/// `agentlog ARGS -b BOOTSTRAP` with `stdin`, to completion.
fn agentlog(bootstrap: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(args)
        .args(["-b", bootstrap])
        .env("AGENTLOG_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run agentlog");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("agentlog output")
}

/// Runs a command that must succeed; its stdout.
fn ok(bootstrap: &str, args: &[&str]) -> String {
    ok_with_input(bootstrap, args, "")
}

fn ok_with_input(bootstrap: &str, args: &[&str], stdin: &str) -> String {
    let output = agentlog(bootstrap, args, stdin);
    assert!(
        output.status.success(),
        "agentlog {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 stdout")
}

/// Runs a command with `--output json` that must succeed; its parsed stdout.
fn json_of(bootstrap: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.extend(["-o", "json"]);
    let stdout = ok(bootstrap, &args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {stdout}"))
}

/// Runs a command that must fail with exit code 1 and exactly one line on stderr; the line.
fn fails(bootstrap: &str, args: &[&str]) -> String {
    let output = agentlog(bootstrap, args, "");
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(1), "agentlog {args:?}: {stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one error line: {stderr:?}"
    );
    stderr
}

/// `(partition, offset)` of each committed offset of `group` on `topic`'s partitions.
fn committed(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i32, i64)> {
    let mut config = consumer_config(bootstrap);
    config.set("group.id", group);
    let consumer: BaseConsumer = config.create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for partition in 0..partitions {
        list.add_partition(topic, partition);
    }
    let found = consumer
        .committed_offsets(list, Duration::from_secs(10))
        .expect("committed offsets");
    found
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(n) => (e.partition(), n),
            other => panic!("no committed offset on {}: {other:?}", e.partition()),
        })
        .collect()
}

/// A record to produce: partition, timestamp, key, value and headers.
type TestRecord<'a> = (i32, i64, &'a str, &'a [u8], &'a [(&'a str, &'a str)]);

/// Produces records with rdkafka (exact partitions and timestamps).
fn produce(bootstrap: &str, topic: &str, records: &[TestRecord<'_>]) {
    let producer: BaseProducer = producer_config(bootstrap).create().expect("producer");
    for (partition, timestamp, key, value, headers) in records {
        let mut owned = OwnedHeaders::new();
        for (name, value) in *headers {
            owned = owned.insert(Header {
                key: name,
                value: Some(*value),
            });
        }
        let record = rdkafka::producer::BaseRecord::to(topic)
            .partition(*partition)
            .timestamp(*timestamp)
            .key(*key)
            .payload(*value)
            .headers(owned);
        producer.send(record).map_err(|(e, _)| e).expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

#[test]
fn topics_are_created_described_altered_extended_and_deleted() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    let created = ok(
        b,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "2",
            "-c",
            "retention.ms=60000",
        ],
    );
    assert_eq!(created, "created topic orders\n");
    let list = json_of(b, &["topic", "list"]);
    assert!(
        list.as_array()
            .unwrap()
            .contains(&json!({"topic": "orders", "partitions": 2})),
        "{list}"
    );

    let config_of = |described: &Value, name: &str| {
        described["configs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["config"] == name)
            .map(|c| (c["value"].clone(), c["source"].clone()))
    };
    let described = json_of(b, &["topic", "describe", "orders"]);
    assert_eq!(
        described["partitions"].as_array().unwrap().len(),
        2,
        "{described}"
    );
    assert_eq!(described["partitions"][1]["high"], 0);
    assert_eq!(
        config_of(&described, "retention.ms"),
        Some((json!("60000"), json!("DynamicTopic")))
    );

    // Setting one config keeps the other override.
    ok(
        b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--set",
            "cleanup.policy=compact",
        ],
    );
    let described = json_of(b, &["topic", "describe", "orders"]);
    assert_eq!(
        config_of(&described, "cleanup.policy").unwrap().0,
        "compact"
    );
    assert_eq!(config_of(&described, "retention.ms").unwrap().0, "60000");
    ok(
        b,
        &[
            "topic",
            "alter-config",
            "orders",
            "--delete",
            "retention.ms",
        ],
    );
    let described = json_of(b, &["topic", "describe", "orders"]);
    assert_ne!(
        config_of(&described, "retention.ms").unwrap().1,
        "DynamicTopic"
    );
    assert_eq!(
        config_of(&described, "cleanup.policy").unwrap().0,
        "compact"
    );

    ok(b, &["topic", "add-partitions", "orders", "-n", "2"]);
    let described = json_of(b, &["topic", "describe", "orders"]);
    assert_eq!(
        described["partitions"].as_array().unwrap().len(),
        4,
        "{described}"
    );

    assert_eq!(ok(b, &["topic", "delete", "orders"]), "deleted orders\n");
    let error = fails(b, &["topic", "describe", "orders"]);
    assert!(error.contains("topic orders does not exist"), "{error}");
}

#[test]
fn produced_lines_come_back_with_keys_headers_and_the_format() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    ok(b, &["topic", "create", "lines", "-p", "1"]);
    let input = "k1:v1\nk2:v:2\nno key here\n";
    let args = [
        "produce", "lines", "-K", ":", "-H", "env=test", "-H", "team=ops", "-z", "zstd",
    ];
    ok_with_input(b, &args, input);

    let printed = ok(
        b,
        &["consume", "lines", "-f", "%t|%p|%o|%k|%v|%h", "-n", "3"],
    );
    assert_eq!(
        printed,
        "lines|0|0|k1|v1|env=test,team=ops\nlines|0|1|k2|v:2|env=test,team=ops\nlines|0|2||no key here|env=test,team=ops\n"
    );
    let from_one = ok(
        b,
        &[
            "consume", "lines", "--from", "offset:1", "--exit", "-o", "json",
        ],
    );
    let records: Vec<Value> = from_one
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON record per line"))
        .collect();
    assert_eq!(records.len(), 2, "{from_one}");
    assert_eq!(records[0]["key"], "k2");
    assert_eq!(records[0]["headers"], json!({"env": "test", "team": "ops"}));
    assert_eq!(records[1]["key"], Value::Null);

    // Values that are not UTF-8 print as hex; time lookups start at the first record
    // at or after the time.
    let later = recent() + 3_600_000;
    produce(b, "lines", &[(0, later, "bin", &[0xff, 0x00], &[])]);
    assert_eq!(
        ok(
            b,
            &["consume", "lines", "--from", "offset:3", "-e", "-f", "%k %v %T"]
        ),
        format!("bin 0xff00 {later}\n")
    );
    let at = format!("time:{}", rfc3339(later));
    let at = at.as_str();
    assert_eq!(
        ok(b, &["consume", "lines", "--from", at, "-e", "-f", "%o"]),
        "3\n"
    );
    assert_eq!(ok(b, &["consume", "lines", "--from", "end", "-e"]), "");
}

#[test]
fn consume_follows_new_records_until_stopped() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap();
    ok(&b, &["topic", "create", "live", "-p", "1"]);
    ok_with_input(&b, &["produce", "live"], "first\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["consume", "live", "-b", &b])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("consume");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    assert_eq!(lines.next().expect("a line").expect("read"), "first");
    // Produced after the first line arrived: only a follower sees it.
    ok_with_input(&b, &["produce", "live"], "second\n");
    assert_eq!(lines.next().expect("a line").expect("read"), "second");
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "still following"
    );
    child.kill().expect("kill");
    child.wait().expect("wait");
}

#[test]
fn groups_show_lag_and_their_offsets_reset() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    ok(b, &["topic", "create", "events", "-p", "2"]);
    // Partition 0: 6 records at t0+0..5 ms; partition 1: 4 records at t0+0..3 ms.
    let t0 = recent();
    let mut records = Vec::new();
    for i in 0..6 {
        records.push((0, t0 + i, "k", &b"v"[..], &[][..]));
    }
    for i in 0..4 {
        records.push((1, t0 + i, "k", &b"v"[..], &[][..]));
    }
    produce(b, "events", &records);
    {
        let mut config = consumer_config(b);
        config.set("group.id", "billing");
        let consumer: BaseConsumer = config.create().expect("consumer");
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("events", 0, Offset::Offset(4))
            .unwrap();
        offsets
            .add_partition_offset("events", 1, Offset::Offset(1))
            .unwrap();
        consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    }
    let groups = json_of(b, &["group", "list"]);
    assert!(
        groups
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["group"] == "billing"),
        "{groups}"
    );
    let described = json_of(b, &["group", "describe", "billing"]);
    assert_eq!(
        described["offsets"],
        json!([
            {"topic": "events", "partition": 0, "committed": 4, "high_watermark": 6, "lag": 2},
            {"topic": "events", "partition": 1, "committed": 1, "high_watermark": 4, "lag": 3},
        ])
    );
    let table = ok(b, &["group", "describe", "billing"]);
    assert!(
        table.contains("events  0          4          6               2"),
        "{table}"
    );

    let reset = |args: &[&str]| {
        let mut all = vec!["group", "reset-offsets", "billing"];
        all.extend(args);
        json_of(b, &all)
    };
    let plan = reset(&["--to-earliest", "--dry-run"]);
    assert_eq!(
        plan["offsets"][0],
        json!({"topic": "events", "partition": 0, "old": 4, "new": 0})
    );
    assert_eq!(
        committed(b, "billing", "events", 2),
        [(0, 4), (1, 1)],
        "a dry run commits nothing"
    );

    reset(&["--to-offset", "2"]);
    assert_eq!(committed(b, "billing", "events", 2), [(0, 2), (1, 2)]);
    reset(&["--shift-by", "-1"]);
    assert_eq!(committed(b, "billing", "events", 2), [(0, 1), (1, 1)]);
    reset(&["--shift-by", "100", "--topic", "events"]);
    assert_eq!(
        committed(b, "billing", "events", 2),
        [(0, 6), (1, 4)],
        "clamped to the end"
    );
    reset(&["--to-datetime", &rfc3339(t0 + 3)]);
    assert_eq!(committed(b, "billing", "events", 2), [(0, 3), (1, 3)]);
    reset(&["--to-datetime", &(t0 + 5).to_string()]);
    assert_eq!(
        committed(b, "billing", "events", 2),
        [(0, 5), (1, 4)],
        "none after: the end"
    );
    reset(&["--to-earliest"]);
    assert_eq!(committed(b, "billing", "events", 2), [(0, 0), (1, 0)]);
    reset(&["--to-latest"]);
    assert_eq!(committed(b, "billing", "events", 2), [(0, 6), (1, 4)]);

    let error = fails(
        b,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--to-datetime",
            "yesterday",
        ],
    );
    assert!(
        error.contains("yesterday: expected an RFC 3339 time"),
        "{error}"
    );

    // A group with a live member is not reset under it (its commits would win).
    {
        let mut config = consumer_config(b);
        config.set("group.id", "billing");
        let member: BaseConsumer = config.create().expect("consumer");
        member.subscribe(&["events"]).expect("subscribe");
        common::poll_until(Duration::from_secs(30), "a partition assignment", || {
            member.poll(Duration::from_millis(100));
            let assigned = member.assignment().ok()?.count();
            (assigned > 0).then_some(())
        });
        let error = fails(b, &["group", "reset-offsets", "billing", "--to-earliest"]);
        assert!(error.contains("stop its consumers first"), "{error}");
        let plan = reset(&["--to-earliest", "--dry-run"]);
        assert_eq!(plan["offsets"][1]["new"], 0, "{plan}");
        let described = json_of(b, &["group", "describe", "billing"]);
        assert_eq!(described["state"], "Stable", "{described}");
        assert_eq!(
            described["members"].as_array().unwrap().len(),
            1,
            "{described}"
        );
    }
    assert_eq!(committed(b, "billing", "events", 2), [(0, 6), (1, 4)]);

    assert_eq!(ok(b, &["group", "delete", "billing"]), "deleted billing\n");
    let error = fails(b, &["group", "describe", "billing"]);
    assert!(error.contains("group billing does not exist"), "{error}");
}

#[test]
fn consuming_with_a_group_commits_what_was_printed() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    ok(b, &["topic", "create", "jobs", "-p", "1"]);
    ok_with_input(b, &["produce", "jobs"], "a\nb\nc\n");
    assert_eq!(
        ok(b, &["consume", "jobs", "-g", "workers", "-n", "2"]),
        "a\nb\n"
    );
    assert_eq!(committed(b, "workers", "jobs", 1), [(0, 2)]);
    assert_eq!(
        ok(b, &["consume", "jobs", "-g", "workers", "-n", "1"]),
        "c\n"
    );
    let described = json_of(b, &["group", "describe", "workers"]);
    assert_eq!(described["offsets"][0]["lag"], 0, "{described}");
}

#[test]
fn cluster_info_lists_the_broker_controller_and_api_versions() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    let info = json_of(b, &["cluster", "info"]);
    let port: i64 = b.rsplit(':').next().unwrap().parse().unwrap();
    assert_eq!(info["brokers"][0]["port"], port, "{info}");
    assert_eq!(info["controller"], info["brokers"][0]["id"], "{info}");
    let apis: Vec<&str> = info["api_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["api"].as_str().unwrap())
        .collect();
    for api in [
        "Produce",
        "Fetch",
        "Metadata",
        "ApiVersions",
        "OffsetCommit",
    ] {
        assert!(apis.contains(&api), "{api} in {apis:?}");
    }
    let table = ok(b, &["cluster", "info"]);
    assert!(table.contains("controller: "), "{table}");
}

#[test]
fn decisions_tail_pretty_prints_envelopes_and_filters_by_trace() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    ok(b, &["topic", "create", "agent.decisions.triage", "-p", "1"]);
    let decision = |trace: &str, route: &str, at: i64| {
        let mut envelope = Envelope::new(
            "decision",
            "triage",
            Some(trace.to_string()),
            json!({"decision": "route", "details": {"route": route}}),
        );
        envelope.timestamp = at;
        serde_json::to_vec(&envelope).unwrap()
    };
    let (first, second) = ("a".repeat(32), "b".repeat(32));
    let one = decision(&first, "billing", T0);
    let two = decision(&second, "tech", T0 + 1000);
    let now = recent();
    produce(
        b,
        "agent.decisions.triage",
        &[
            (0, now, "", &one, &[("ce_traceid", &first)]),
            (0, now, "", &two, &[("ce_traceid", &second)]),
            (0, now, "", b"not json", &[]),
        ],
    );
    let all = ok(b, &["decisions", "tail", "triage"]);
    assert!(
        all.starts_with(&format!(
            "2024-05-01T12:00:00.000Z  triage  route  trace {first}  at 0/0\n    {{\n      \"route\": \"billing\"\n    }}\n"
        )),
        "{all}"
    );
    assert!(
        all.contains(&format!(
            "2024-05-01T12:00:01.000Z  triage  route  trace {second}  at 0/1"
        )),
        "{all}"
    );
    assert!(all.contains("0/2  (not an envelope) not json"), "{all}");

    let only = ok(
        b,
        &[
            "decisions",
            "tail",
            "triage",
            "--trace",
            &second,
            "-o",
            "json",
        ],
    );
    let lines: Vec<Value> = only
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{only}");
    assert_eq!(lines[0]["envelope"]["data"]["details"]["route"], "tech");
    assert_eq!(lines[0]["position"], "0/1");

    let error = fails(b, &["decisions", "tail", "nobody"]);
    assert!(
        error.contains("topic agent.decisions.nobody does not exist"),
        "{error}"
    );
}

#[test]
fn bad_input_is_one_clear_line_and_a_non_zero_exit() {
    let broker = BrokerProcess::start(&[]);
    let b = &broker.bootstrap();
    for args in [
        &["consume", "missing", "-n", "1"][..],
        &["produce", "missing"],
        &["topic", "describe", "missing"],
        &["topic", "add-partitions", "missing", "-n", "1"],
    ] {
        let error = fails(b, args);
        assert!(
            error.contains("topic missing does not exist"),
            "{args:?}: {error}"
        );
    }
    assert_eq!(
        json_of(b, &["topic", "list"]),
        json!([]),
        "nothing was auto-created"
    );

    let error = fails(b, &["topic", "list", "-X", "no.such.property=1"]);
    assert!(
        error.contains("invalid client property") && error.contains("no.such.property"),
        "{error}"
    );
    ok(b, &["topic", "create", "t", "-p", "1"]);
    let error = fails(b, &["consume", "t", "--partition", "7", "-n", "1"]);
    assert!(error.contains("topic t has no partition 7"), "{error}");

    let started = Instant::now();
    let error = fails("127.0.0.1:1", &["topic", "list", "--timeout", "2"]);
    assert!(
        error.contains("cannot reach the cluster at 127.0.0.1:1 within 2s"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );

    let output = agentlog(b, &["consume", "t", "--from", "time:yesterday"], "");
    assert_eq!(output.status.code(), Some(2), "a usage error");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .lines()
            .next()
            .unwrap_or_default()
            .contains("expected an RFC 3339 time"),
        "{stderr}"
    );
}
