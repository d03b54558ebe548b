//! Transactions and idempotence against the real binary with librdkafka: aborted data
//! invisible to read_committed consumers, the last stable offset holding consumers
//! back, a consume-transform-produce loop SIGKILLed over and over that still ends
//! exactly once, a broker restart in the middle of a transaction, and an idempotent
//! producer through a proxy that keeps cutting its connections.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{base_config, create_topic, BrokerProcess, RawClient};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

/// Producers poll their delivery reports on a background thread (transactions need it).
type BaseProducer = ThreadedProducer<DefaultProducerContext>;
use rdkafka::{Message, Offset, TopicPartitionList};

const SETTINGS: &[&str] = &[
    "group.initial.rebalance.delay.ms=0",
    "transaction.abort.timed.out.transaction.cleanup.interval.ms=200",
];

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

fn txn_producer(bootstrap: &str, id: &str, timeout_ms: u32) -> BaseProducer {
    let producer: BaseProducer = base_config(bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", timeout_ms.to_string())
        .set("socket.timeout.ms", timeout_ms.min(10_000).to_string())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", timeout_ms.min(30_000).to_string())
        .create()
        .expect("transactional producer");
    producer
        .init_transactions(Duration::from_secs(30))
        .expect("init_transactions");
    producer
}

fn consumer(bootstrap: &str, isolation: &str, group: &str) -> BaseConsumer {
    base_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer")
}

fn assign(consumer: &BaseConsumer, topic: &str, offset: Offset) {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, offset).unwrap();
    consumer.assign(&list).expect("assign");
}

/// Every payload readable from partition 0 of `topic` until `quiet` passes with nothing
/// new (or `expected` arrive).
fn read_all(
    bootstrap: &str,
    topic: &str,
    isolation: &str,
    expected: usize,
    quiet: Duration,
) -> Vec<String> {
    let consumer = consumer(bootstrap, isolation, "readers");
    assign(&consumer, topic, Offset::Beginning);
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                out.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into());
                last = Instant::now();
                if out.len() > expected {
                    // Anything beyond is a failure the caller reports; stop waiting.
                    last = Instant::now() - quiet;
                }
            }
            Some(Err(error)) => panic!("consumer error: {error}"),
            // Wait a little more to catch extras, but not the full quiet period.
            None if out.len() == expected && last.elapsed() > Duration::from_millis(1500) => break,
            None => {}
        }
    }
    out
}

fn send(producer: &BaseProducer, topic: &str, payload: &str) {
    producer
        .send(
            BaseRecord::<(), str>::to(topic)
                .payload(payload)
                .partition(0),
        )
        .expect("enqueue");
}

fn list_latest(bootstrap: &str, topic: &str, isolation_level: i8) -> i64 {
    let mut client = RawClient::connect(bootstrap);
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_current_leader_epoch(-1)
                .with_timestamp(-1)])]);
    let response = client.call(&request, 7);
    response.topics[0].partitions[0].offset
}

#[test]
fn aborted_transactions_are_invisible_to_read_committed_consumers_only() {
    let broker = BrokerProcess::start(SETTINGS);
    let bootstrap = broker.bootstrap();
    block_on(create_topic(&bootstrap, "abort", 1, &[]));
    let producer = txn_producer(&bootstrap, "abort-tx", 60_000);
    for round in 0..4 {
        producer.begin_transaction().expect("begin");
        for i in 0..5 {
            send(&producer, "abort", &format!("r{round}-{i}"));
        }
        if round % 2 == 0 {
            // Written first, so there is aborted data in the log to hide.
            producer.flush(Duration::from_secs(10)).expect("flush");
            producer
                .abort_transaction(Duration::from_secs(30))
                .expect("abort");
        } else {
            producer
                .commit_transaction(Duration::from_secs(30))
                .expect("commit");
        }
    }
    let committed = read_all(
        &bootstrap,
        "abort",
        "read_committed",
        10,
        Duration::from_secs(10),
    );
    let expected: Vec<String> = [1, 3]
        .iter()
        .flat_map(|r| (0..5).map(move |i| format!("r{r}-{i}")))
        .collect();
    assert_eq!(
        committed, expected,
        "read_committed sees committed records only"
    );
    let everything = read_all(
        &bootstrap,
        "abort",
        "read_uncommitted",
        20,
        Duration::from_secs(10),
    );
    assert_eq!(
        everything.len(),
        20,
        "read_uncommitted sees aborted records too"
    );
    // 20 records and 4 markers.
    common::poll_until(Duration::from_secs(10), "LSO past the last marker", || {
        (list_latest(&bootstrap, "abort", 1) == 24).then_some(())
    });
}

#[test]
fn an_open_transaction_holds_read_committed_consumers_at_the_lso() {
    let broker = BrokerProcess::start(SETTINGS);
    let bootstrap = broker.bootstrap();
    block_on(create_topic(&bootstrap, "lso", 1, &[]));
    let plain: BaseProducer = common::producer_config(&bootstrap)
        .create()
        .expect("producer");
    send(&plain, "lso", "before");
    plain.flush(Duration::from_secs(10)).expect("flush");

    let producer = txn_producer(&bootstrap, "lso-tx", 60_000);
    producer.begin_transaction().expect("begin");
    send(&producer, "lso", "in-txn");
    producer.flush(Duration::from_secs(10)).expect("flush");
    // Data after the open transaction is held back too.
    send(&plain, "lso", "after");
    plain.flush(Duration::from_secs(10)).expect("flush");

    assert_eq!(list_latest(&bootstrap, "lso", 0), 3, "high watermark");
    assert_eq!(list_latest(&bootstrap, "lso", 1), 1, "last stable offset");
    let held = read_all(
        &bootstrap,
        "lso",
        "read_committed",
        1,
        Duration::from_secs(3),
    );
    assert_eq!(held, vec!["before".to_string()]);

    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let released = read_all(
        &bootstrap,
        "lso",
        "read_committed",
        3,
        Duration::from_secs(10),
    );
    assert_eq!(released, vec!["before", "in-txn", "after"]);
    // The marker itself becomes visible once it is durable.
    common::poll_until(Duration::from_secs(10), "LSO past the marker", || {
        (list_latest(&bootstrap, "lso", 1) == 4).then_some(())
    });
}

#[test]
fn a_broker_restart_mid_transaction_never_blocks_consumers_forever() {
    let mut broker = BrokerProcess::start(SETTINGS);
    let bootstrap = broker.bootstrap();
    block_on(create_topic(&bootstrap, "restart", 1, &[]));
    {
        let producer = txn_producer(&bootstrap, "restart-tx", 5_000);
        producer.begin_transaction().expect("begin");
        for i in 0..10 {
            send(&producer, "restart", &format!("doomed-{i}"));
        }
        producer.flush(Duration::from_secs(10)).expect("flush");
        broker.kill();
        // The producer dies with the broker's connection, its transaction still open.
    }
    broker.restart();
    let bootstrap = broker.bootstrap();
    let plain: BaseProducer = common::producer_config(&bootstrap)
        .create()
        .expect("producer");
    send(&plain, "restart", "after-restart");
    plain.flush(Duration::from_secs(10)).expect("flush");
    // The open transaction is aborted when its 5 s timeout passes; then the record after
    // it becomes readable.
    let started = Instant::now();
    let seen = read_all(
        &bootstrap,
        "restart",
        "read_committed",
        1,
        Duration::from_secs(20),
    );
    assert_eq!(seen, vec!["after-restart".to_string()]);
    assert!(started.elapsed() < Duration::from_secs(20));
    // A new producer of the same transactional id works normally.
    let producer = txn_producer(&bootstrap, "restart-tx", 5_000);
    producer.begin_transaction().expect("begin");
    send(&producer, "restart", "second");
    producer
        .commit_transaction(Duration::from_secs(30))
        .expect("commit");
    let seen = read_all(
        &bootstrap,
        "restart",
        "read_committed",
        2,
        Duration::from_secs(10),
    );
    assert_eq!(seen, vec!["after-restart", "second"]);
}

// ---------------------------------------------------------------------------------
// Consume-transform-produce, SIGKILLed at random points.

const CTP_CHILD: &str = "AGENTLOG_TEST_CTP_CHILD";
const CTP_INPUT: usize = 3000;

/// The loop itself: runs only when re-invoked by the parent test with the env var set.
/// Reads `in` from the group's committed offset (read_committed), writes each record to
/// `out` inside a transaction together with the consumed offset, exits when `in` is
/// fully consumed.
#[test]
fn ctp_child() {
    let Ok(bootstrap) = std::env::var(CTP_CHILD) else {
        return; // only as a child of the test below
    };
    let producer = txn_producer(&bootstrap, "ctp-tx", 10_000);
    let consumer = consumer(&bootstrap, "read_committed", "ctp");
    assign(&consumer, "in", Offset::Stored);
    let metadata = consumer.group_metadata().expect("group metadata");
    let mut position: Option<i64> = None;
    loop {
        producer.begin_transaction().expect("begin");
        let mut batch = 0;
        let deadline = Instant::now() + Duration::from_millis(200);
        while batch < 10 && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => {
                    let payload = message.payload().unwrap_or_default();
                    producer
                        .send(
                            BaseRecord::<(), [u8]>::to("out")
                                .payload(payload)
                                .partition(0),
                        )
                        .expect("enqueue");
                    position = Some(message.offset() + 1);
                    batch += 1;
                }
                Some(Err(error)) => panic!("consume: {error}"),
                None => {}
            }
        }
        if let Some(next) = position {
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset("in", 0, Offset::Offset(next))
                .unwrap();
            producer
                .send_offsets_to_transaction(&offsets, &metadata, Duration::from_secs(30))
                .expect("send offsets");
        }
        producer
            .commit_transaction(Duration::from_secs(30))
            .expect("commit");
        // Done when the committed offset (ours, or a previous incarnation's) is the end.
        let done = position == Some(CTP_INPUT as i64)
            || (position.is_none()
                && consumer
                    .committed(Duration::from_secs(10))
                    .ok()
                    .and_then(|list| list.find_partition("in", 0).map(|p| p.offset()))
                    == Some(Offset::Offset(CTP_INPUT as i64)));
        if done {
            return;
        }
    }
}

fn spawn_child(bootstrap: &str) -> Child {
    Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "ctp_child", "--nocapture", "--test-threads=1"])
        .env(CTP_CHILD, bootstrap)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// A pseudo-random number from the clock: enough to vary where the kills land.
fn jitter(range_ms: u64) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    (nanos / 1000) % range_ms
}

#[test]
fn consume_transform_produce_killed_at_random_points_is_exactly_once() {
    let broker = BrokerProcess::start(SETTINGS);
    let bootstrap = broker.bootstrap();
    block_on(create_topic(&bootstrap, "in", 1, &[]));
    block_on(create_topic(&bootstrap, "out", 1, &[]));
    let input: Vec<String> = (0..CTP_INPUT).map(|i| format!("record-{i:05}")).collect();
    let plain: BaseProducer = common::producer_config(&bootstrap)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    for payload in &input {
        send(&plain, "in", payload);
    }
    plain.flush(Duration::from_secs(30)).expect("flush input");

    let mut kills = 0;
    while kills < 10 {
        let mut child = spawn_child(&bootstrap);
        // Startup (process, init_transactions, offsets) takes about a second; the kill
        // lands anywhere after that, usually inside a transaction.
        std::thread::sleep(Duration::from_millis(1200 + jitter(2000)));
        if child.try_wait().expect("try_wait").is_some() {
            break; // finished before we could kill it
        }
        child.kill().expect("SIGKILL child");
        let _ = child.wait();
        kills += 1;
    }
    let mut child = spawn_child(&bootstrap);
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "the final loop did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "final loop failed: {status:?}");
    assert!(
        kills >= 3,
        "the loop finished before it was killed enough ({kills})"
    );

    let output = read_all(
        &bootstrap,
        "out",
        "read_committed",
        CTP_INPUT,
        Duration::from_secs(30),
    );
    assert_eq!(
        output.len(),
        input.len(),
        "exactly once: no loss, no duplicates"
    );
    assert_eq!(output, input, "in order");
    // The uncommitted view holds the aborted attempts too (unless every kill landed
    // between transactions, which is unlikely but not wrong).
    let raw = read_all(
        &bootstrap,
        "out",
        "read_uncommitted",
        usize::MAX - 1,
        Duration::from_secs(3),
    );
    assert!(raw.len() >= input.len());
    eprintln!(
        "{kills} kills; {} records written in total for {} committed",
        raw.len(),
        input.len()
    );
}

// ---------------------------------------------------------------------------------
// Idempotent producer through a connection-cutting proxy.

/// Forwards connections to `upstream`, cutting each one after `cut_after` bytes from the
/// client, so produce requests are lost mid-flight and retried.
struct CuttingProxy {
    port: u16,
    upstream: Arc<Mutex<String>>,
    cuts: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(cut_after: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
        let port = listener.local_addr().unwrap().port();
        let upstream = Arc::new(Mutex::new(String::new()));
        let cuts = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (up, cut, stopping) = (upstream.clone(), cuts.clone(), stop.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopping.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(client) = client else { continue };
                let target = up.lock().unwrap().clone();
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                let cut = cut.clone();
                spawn_pipe(client, server, cut_after, cut);
            }
        });
        CuttingProxy {
            port,
            upstream,
            cuts,
            stop,
        }
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn spawn_pipe(client: TcpStream, server: TcpStream, cut_after: usize, cuts: Arc<AtomicUsize>) {
    let (mut client_read, mut server_write) =
        (client.try_clone().unwrap(), server.try_clone().unwrap());
    let (mut server_read, mut client_write) = (server, client);
    let closer_a = client_read.try_clone().unwrap();
    let closer_b = server_write.try_clone().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        loop {
            let n = match client_read.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Cut in the middle of a request once the budget is spent.
            let allowed = n.min(cut_after.saturating_sub(total).max(1));
            if server_write.write_all(&buf[..allowed]).is_err() {
                break;
            }
            total += allowed;
            if total >= cut_after {
                cuts.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        let _ = closer_a.shutdown(std::net::Shutdown::Both);
        let _ = closer_b.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_read, &mut client_write);
        let _ = client_write.shutdown(std::net::Shutdown::Both);
    });
}

#[test]
fn idempotent_producer_through_a_cutting_proxy_delivers_exactly_once_in_order() {
    const COUNT: usize = 20_000;
    let proxy = CuttingProxy::start(64 * 1024);
    let advertise = format!("advertise=127.0.0.1:{}", proxy.port);
    let mut settings = SETTINGS.to_vec();
    settings.push(&advertise);
    let broker = BrokerProcess::start(&settings);
    *proxy.upstream.lock().unwrap() = broker.bootstrap();
    let bootstrap = format!("127.0.0.1:{}", proxy.port);
    block_on(create_topic(&bootstrap, "idem", 1, &[]));

    let producer: BaseProducer = base_config(&bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "2")
        .set("batch.size", "16384")
        .set("retry.backoff.ms", "20")
        .set("message.timeout.ms", "120000")
        .set("reconnect.backoff.ms", "10")
        .set("reconnect.backoff.max.ms", "100")
        .create()
        .expect("idempotent producer");
    for i in 0..COUNT {
        loop {
            match producer.send(
                BaseRecord::<(), str>::to("idem")
                    .payload(&format!("m{i:06}"))
                    .partition(0),
            ) {
                Ok(()) => break,
                Err((error, _)) => {
                    assert!(
                        matches!(
                            error.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "enqueue: {error}"
                    );
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120)).expect("flush");
    let cuts = proxy.cuts.load(Ordering::Relaxed);
    assert!(cuts >= 3, "the proxy cut only {cuts} connections");

    // The consumer goes through the proxy too (metadata advertises it); it sends few
    // bytes, so it is rarely cut, and reconnects when it is.
    let got = read_all(
        &bootstrap,
        "idem",
        "read_uncommitted",
        COUNT,
        Duration::from_secs(20),
    );
    let mut seen = HashMap::new();
    for payload in &got {
        *seen.entry(payload.clone()).or_insert(0) += 1;
    }
    let duplicates = seen.values().filter(|c| **c > 1).count();
    assert_eq!(duplicates, 0, "{duplicates} records were written twice");
    let expected: Vec<String> = (0..COUNT).map(|i| format!("m{i:06}")).collect();
    assert_eq!(got.len(), COUNT);
    assert_eq!(got, expected, "every record once, in order");
    eprintln!("{cuts} connections cut");
}

/// TxnOffsetCommit v3 from a producer whose consumer's group metadata is stale is
/// refused with Kafka's codes (KIP-447), over the wire, before any transaction check.
#[test]
fn txn_offset_commit_v3_refuses_stale_group_metadata() {
    use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
    use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
    use kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use kafka_protocol::messages::{
        GroupId, JoinGroupRequest, ProducerId, SyncGroupRequest, TransactionalId,
        TxnOffsetCommitRequest,
    };

    let broker = BrokerProcess::start(SETTINGS);
    let mut client = RawClient::connect(&broker.bootstrap());
    let group = || GroupId(StrBytes::from_static_str("kip447"));
    let joined = client.call(
        &JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(&[0, 0, 0, 0, 0, 0]))]),
        3,
    );
    assert_eq!(joined.error_code, 0);
    let synced = client.call(
        &SyncGroupRequest::default()
            .with_group_id(group())
            .with_generation_id(joined.generation_id)
            .with_member_id(joined.member_id.clone())
            .with_assignments(vec![SyncGroupRequestAssignment::default()
                .with_member_id(joined.member_id.clone())
                .with_assignment(bytes::Bytes::new())]),
        3,
    );
    assert_eq!(synced.error_code, 0);

    let commit = |generation: i32, member: StrBytes| {
        TxnOffsetCommitRequest::default()
            .with_transactional_id(TransactionalId(StrBytes::from_static_str("kip447-tx")))
            .with_group_id(group())
            .with_producer_id(ProducerId(1))
            .with_producer_epoch(0)
            .with_generation_id(generation)
            .with_member_id(member)
            .with_topics(vec![TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("in")))
                .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])])
    };
    let code = |client: &mut RawClient, request: &TxnOffsetCommitRequest| {
        client.call(request, 3).topics[0].partitions[0].error_code
    };
    // ILLEGAL_GENERATION: a zombie holding an older generation's metadata.
    let stale = commit(joined.generation_id - 1, joined.member_id.clone());
    assert_eq!(code(&mut client, &stale), 22);
    // UNKNOWN_MEMBER_ID: a member the group never had.
    let stranger = commit(joined.generation_id, StrBytes::from_static_str("stranger"));
    assert_eq!(code(&mut client, &stranger), 25);
    // The current member passes the group check and meets the transaction checks
    // instead (this producer id never began a transaction).
    let current = commit(joined.generation_id, joined.member_id.clone());
    let current_code = code(&mut client, &current);
    assert!(![0, 22, 25].contains(&current_code), "{current_code}");
}
