//! The binary's process contract: the listening line, SIGTERM with busy connections
//! exits 0 promptly, and what was acknowledged before a clean stop is there after it.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BrokerProcess, RawClient};

fn one_record(i: i64) -> bytes::Bytes {
    let value = format!("r{i}");
    common::encode_batch(&[(None, Some(value.as_bytes()), 1_700_000_000_000 + i)])
}

#[test]
fn prints_one_listening_line_per_listener() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut addresses = Vec::new();
    for _ in 0..2 {
        let line = lines.next().expect("a listening line").unwrap();
        let address = line
            .strip_prefix("agentlog listening on 127.0.0.1:")
            .unwrap_or_else(|| panic!("unexpected stdout line {line:?}"));
        let port: u16 = address.parse().expect("a port");
        assert_ne!(port, 0);
        addresses.push(format!("127.0.0.1:{port}"));
    }
    assert_ne!(addresses[0], addresses[1]);
    for address in &addresses {
        let mut client = RawClient::connect(address);
        let response = client.call(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
        assert_eq!(response.error_code, 0);
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn sigterm_exits_zero_and_keeps_acked_data() {
    let runtime = common::runtime();
    let mut broker = BrokerProcess::start(&[]);
    runtime.block_on(common::create_topic(&broker.bootstrap(), "life", 1, &[]));
    let mut client = RawClient::connect(&broker.bootstrap());
    for i in 0..3 {
        let response = common::raw_produce_acks(&mut client, "life", 0, one_record(i), 1);
        assert_eq!((response.error_code, response.base_offset), (0, i));
    }
    // acks=1 answers before the group commit; visibility follows once it ran.
    common::poll_until(
        Duration::from_secs(10),
        "acks=1 records to become visible",
        || (common::raw_list_offsets(&mut client, "life", 0, -1).offset == 3).then_some(()),
    );
    // One more acks=1 record immediately before the stop: the shutdown flush keeps it.
    let response = common::raw_produce_acks(&mut client, "life", 0, one_record(3), 1);
    assert_eq!((response.error_code, response.base_offset), (0, 3));
    let _idle = std::net::TcpStream::connect(broker.bootstrap()).unwrap();
    let started = Instant::now();
    broker.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        started.elapsed()
    );

    broker.restart();
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(
        common::raw_list_offsets(&mut client, "life", 0, -1).offset,
        4
    );
    let data = common::raw_fetch(&mut client, "life", 0, 0, 0, 1);
    let values: Vec<String> = common::decode_records(data.records.as_ref().unwrap())
        .into_iter()
        .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap())
        .collect();
    assert_eq!(values, vec!["r0", "r1", "r2", "r3"]);
    broker.terminate();
}

/// Graceful shutdown waits for every connection, and a connection waits for its parked
/// fetch, so a client's max_wait_ms (up to i32::MAX) bounds how long SIGTERM takes.
/// Kafka does not let a delayed fetch hold up shutdown; neither should we.
#[test]
fn sigterm_does_not_wait_for_parked_fetches() {
    let runtime = common::runtime();
    let mut broker = BrokerProcess::start(&[]);
    runtime.block_on(common::create_topic(&broker.bootstrap(), "parked", 1, &[]));
    let mut poller = RawClient::connect(&broker.bootstrap());
    // The empty partition's high watermark is 0: this fetch parks for up to 20 s.
    let _parked = poller.send(
        &common::fetch_request("parked", 0, 0, 20_000, 1),
        common::FETCH_VERSION,
    );
    // Prove it is parked: a request pipelined behind it stays unanswered meanwhile.
    let _behind = poller.send(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
    assert!(
        common::silent_for(&mut poller.stream, Duration::from_millis(300)),
        "the fetch should be parked"
    );
    let started = Instant::now();
    broker.terminate();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?} with a fetch parked for 20 s",
        started.elapsed()
    );
}

#[test]
fn without_fsync_policy_acks_one_is_visible_at_once() {
    for policy in ["log.flush.policy=none", "log.flush.policy=interval"] {
        let runtime = common::runtime();
        let mut broker = BrokerProcess::start(&[policy]);
        runtime.block_on(common::create_topic(&broker.bootstrap(), "nofsync", 1, &[]));
        let mut client = RawClient::connect(&broker.bootstrap());
        for i in 0..5 {
            let response = common::raw_produce_acks(&mut client, "nofsync", 0, one_record(i), 1);
            assert_eq!(
                (response.error_code, response.base_offset),
                (0, i),
                "{policy}"
            );
            // The high watermark moves on write under these policies.
            assert_eq!(
                common::raw_list_offsets(&mut client, "nofsync", 0, -1).offset,
                i + 1,
                "{policy}"
            );
        }
        broker.terminate();
    }
}
