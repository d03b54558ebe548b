//! Raw sockets sending malformed, oversized, unknown and random frames: the broker
//! closes those connections, answers what Kafka answers, and keeps serving everyone.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, BytesMut};
use common::BrokerProcess;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::Message;

fn connect(bootstrap: &str) -> TcpStream {
    let stream = TcpStream::connect(bootstrap).expect("connect");
    stream.set_nodelay(true).unwrap();
    stream
}

/// A request frame: length prefix, header v1 (api key, version, correlation id,
/// client id), body.
fn frame(api_key: i16, version: i16, correlation_id: i32, body: &[u8]) -> Vec<u8> {
    let client_id = b"hostile";
    let mut inner = BytesMut::new();
    inner.put_i16(api_key);
    inner.put_i16(version);
    inner.put_i32(correlation_id);
    inner.put_i16(client_id.len() as i16);
    inner.put_slice(client_id);
    inner.put_slice(body);
    let mut out = Vec::with_capacity(inner.len() + 4);
    out.extend_from_slice(&(inner.len() as i32).to_be_bytes());
    out.extend_from_slice(&inner);
    out
}

/// A fresh librdkafka producer and consumer still work: one record round trip.
fn assert_still_serves(broker: &mut BrokerProcess, topic: &str) {
    assert!(broker.is_alive(), "the broker process died");
    let bootstrap = broker.bootstrap();
    let producer: BaseProducer = common::producer_config(&bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to(topic)
                .partition(0)
                .key("k")
                .payload("still alive"),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer
        .flush(Duration::from_secs(20))
        .expect("produce after hostile input");
    let messages =
        common::consume_exactly(&bootstrap, topic, &[(0, 0)], 1, Duration::from_secs(20));
    assert_eq!(messages[0].payload(), Some(&b"still alive"[..]));
    assert_eq!(messages[0].offset(), 0);
    assert!(broker.is_alive(), "the broker process died");
}

#[test]
fn produce_v3_with_huge_topic_count_does_not_crash() {
    let mut broker = BrokerProcess::start(&[]);
    let mut body = Vec::new();
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional_id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks
    body.extend_from_slice(&30_000i32.to_be_bytes()); // timeout_ms
    body.extend_from_slice(&0x7fff_ffffi32.to_be_bytes()); // topics: 2^31-1 entries, none sent
    assert_eq!(body.len(), 12);
    let mut stream = connect(&broker.bootstrap());
    stream.write_all(&frame(0, 3, 1, &body)).unwrap();
    assert!(
        common::is_closed_within(&mut stream, Duration::from_secs(5)),
        "a malformed produce must close the connection"
    );
    assert_still_serves(&mut broker, "after-huge-count");
}

#[test]
fn huge_length_prefix_closes_the_connection() {
    let mut broker = BrokerProcess::start(&[]);
    let mut stream = connect(&broker.bootstrap());
    stream.write_all(&0x7fff_ffffi32.to_be_bytes()).unwrap();
    stream.write_all(&[0u8; 64]).unwrap();
    assert!(common::is_closed_within(
        &mut stream,
        Duration::from_secs(5)
    ));
    let mut negative = connect(&broker.bootstrap());
    negative.write_all(&(-5i32).to_be_bytes()).unwrap();
    assert!(common::is_closed_within(
        &mut negative,
        Duration::from_secs(5)
    ));
    assert_still_serves(&mut broker, "after-huge-prefix");
}

#[test]
fn unknown_api_key_closes_the_connection() {
    let mut broker = BrokerProcess::start(&[]);
    let mut stream = connect(&broker.bootstrap());
    stream.write_all(&frame(999, 0, 42, &[])).unwrap();
    assert!(common::is_closed_within(
        &mut stream,
        Duration::from_secs(5)
    ));
    // A key Kafka defines but this broker does not implement (CreateDelegationToken = 38).
    let mut stream = connect(&broker.bootstrap());
    stream.write_all(&frame(38, 2, 43, &[0; 32])).unwrap();
    assert!(common::is_closed_within(
        &mut stream,
        Duration::from_secs(5)
    ));
    assert!(broker.is_alive());
}

#[test]
fn api_versions_with_unknown_version_gets_a_v0_error_answer() {
    let broker = BrokerProcess::start(&[]);
    let mut stream = connect(&broker.bootstrap());
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    // v99 could carry anything after the header; a v3-style body is typical.
    stream
        .write_all(&frame(18, 99, 0x1234_5678, &[0, 0, 0]))
        .unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).unwrap();
    let len = i32::from_be_bytes(prefix);
    assert!(len > 0 && len < 10_000, "response length {len}");
    let mut body = vec![0u8; len as usize];
    stream.read_exact(&mut body).unwrap();
    let mut buf = &body[..];
    assert_eq!(buf.get_i32(), 0x1234_5678, "correlation id");
    assert_eq!(buf.get_i16(), 35, "UNSUPPORTED_VERSION");
    let count = buf.get_i32();
    assert!(count > 0, "the key list must not be empty");
    let mut keys = Vec::new();
    for _ in 0..count {
        keys.push((buf.get_i16(), buf.get_i16(), buf.get_i16()));
    }
    assert_eq!(buf.remaining(), 0, "v0 has nothing after the key list");
    assert!(keys.contains(&(18, 0, 4)), "ApiVersions 0-4 in {keys:?}");
    assert!(keys.contains(&(0, 3, 11)), "Produce 3-11 in {keys:?}");
    assert!(keys.contains(&(1, 4, 16)), "Fetch 4-16 in {keys:?}");
    // The connection stays usable, and a real v3 ApiVersions lists the same table.
    let mut client = common::RawClient {
        stream,
        next_correlation: 100,
    };
    let response = client.call(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
    assert_eq!(response.error_code, 0);
    let v3: Vec<(i16, i16, i16)> = response
        .api_keys
        .iter()
        .map(|k| (k.api_key, k.min_version, k.max_version))
        .collect();
    assert_eq!(
        keys, v3,
        "the v0 error answer must carry the full key table"
    );
}

/// xorshift64*: deterministic garbage.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[test]
fn random_garbage_frames_leave_the_broker_serving() {
    let mut broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    // Real api keys and versions (some valid, some not) with random bodies, plus pure
    // noise, each on its own connection.
    let keys: [i16; 10] = [0, 1, 2, 3, 18, 19, 20, 32, 60, 11];
    for i in 0..200 {
        let mut stream = connect(&bootstrap);
        let bytes = match i % 4 {
            0 => {
                // Pure noise, any length prefix.
                let n = rng.below(300) as usize;
                rng.bytes(n)
            }
            1 => {
                // Plausible prefix, noise inside.
                let n = rng.below(400) as usize;
                let mut v = (n as i32).to_be_bytes().to_vec();
                v.extend(rng.bytes(n));
                v
            }
            _ => {
                let key = keys[rng.below(keys.len() as u64) as usize];
                let version = rng.below(18) as i16;
                let n = rng.below(200) as usize;
                let body = rng.bytes(n);
                frame(key, version, i, &body)
            }
        };
        let _ = stream.write_all(&bytes);
        // Sometimes close straight away, sometimes wait for the broker's reaction.
        if i % 3 == 0 {
            let _ = common::is_closed_within(&mut stream, Duration::from_millis(100));
        }
    }
    assert_still_serves(&mut broker, "after-garbage");
}

#[test]
fn idle_and_half_frame_connections_do_not_block_others() {
    let mut broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    let _idle: Vec<TcpStream> = (0..20).map(|_| connect(&bootstrap)).collect();
    let mut half = connect(&bootstrap);
    half.write_all(&[0, 0]).unwrap(); // half a length prefix
    let mut partial = connect(&bootstrap);
    partial.write_all(&100i32.to_be_bytes()).unwrap();
    partial.write_all(&[0, 18, 0, 0]).unwrap(); // 4 of 100 announced bytes

    let started = Instant::now();
    let mut client = common::RawClient::connect(&bootstrap);
    let response = client.call(&kafka_protocol::messages::ApiVersionsRequest::default(), 3);
    assert_eq!(response.error_code, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_still_serves(&mut broker, "beside-idle");
    let consumer: BaseConsumer = common::consumer_config(&bootstrap).create().unwrap();
    drop(consumer);
    assert!(broker.is_alive());
}
