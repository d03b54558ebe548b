//! Consumer groups against the real binary with librdkafka (rdkafka) and kcat: sharing
//! partitions, churn without loss, eviction of a killed member, static membership,
//! cooperative-sticky, offsets across a broker restart, and group administration.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{BrokerProcess, RawClient};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::{GroupId, OffsetDeleteRequest, TopicName};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);

/// Short rebalance delays and session floors so group tests run in seconds.
const GROUP_SETTINGS: &[&str] = &[
    "group.initial.rebalance.delay.ms=300",
    "group.min.session.timeout.ms=1000",
    "num.partitions=6",
];

fn create_topic(addr: &str, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .create()
        .expect("admin client");
    let results = futures::executor::block_on(admin.create_topics(
        &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

fn produce(addr: &str, topic: &str, from: usize, to: usize) {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", addr)
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    for seq in from..to {
        let key = format!("{seq}");
        let value = format!("v{seq}");
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&value)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Counts rebalances a consumer went through.
#[derive(Default)]
struct Counting {
    rebalances: AtomicUsize,
}

impl ClientContext for Counting {}

impl ConsumerContext for Counting {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if matches!(rebalance, Rebalance::Assign(_)) {
            self.rebalances.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// What a consumer thread shares with the test.
#[derive(Default)]
struct Seen {
    assignment: Mutex<BTreeSet<i32>>,
    /// (partition, offset, value) of every record consumed.
    records: Mutex<Vec<(i32, i64, String)>>,
    rebalances: AtomicUsize,
}

/// A consumer running on its own thread, polling until stopped.
struct Worker {
    stop: Arc<AtomicBool>,
    seen: Arc<Seen>,
    handle: Option<JoinHandle<()>>,
}

impl Worker {
    fn start(addr: &str, group: &str, topic: &str, extra: &[(&str, &str)]) -> Worker {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", addr)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("auto.commit.interval.ms", "200");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let consumer: BaseConsumer<Counting> = config
            .create_with_context(Counting::default())
            .expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Seen::default());
        let handle = {
            let stop = stop.clone();
            let seen = seen.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        let value = message
                            .payload()
                            .map(|v| String::from_utf8_lossy(v).into_owned())
                            .unwrap_or_default();
                        seen.records.lock().unwrap().push((
                            message.partition(),
                            message.offset(),
                            value,
                        ));
                    }
                    if let Ok(list) = consumer.assignment() {
                        *seen.assignment.lock().unwrap() =
                            list.elements().iter().map(|e| e.partition()).collect();
                    }
                    seen.rebalances.store(
                        consumer.context().rebalances.load(Ordering::SeqCst),
                        Ordering::SeqCst,
                    );
                }
                // Commit what was consumed, then close (LeaveGroup unless static).
                let _ = consumer.commit_consumer_state(CommitMode::Sync);
                drop(consumer);
            })
        };
        Worker {
            stop,
            seen,
            handle: Some(handle),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.seen.assignment.lock().unwrap().clone()
    }

    fn rebalances(&self) -> usize {
        self.seen.rebalances.load(Ordering::SeqCst)
    }

    fn close(mut self) -> Arc<Seen> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("consumer thread");
        }
        self.seen.clone()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// Waits until every partition is owned by exactly one worker (and each worker has
/// some when there are at least as many partitions as workers).
fn wait_disjoint_cover(workers: &[&Worker], partitions: i32) -> Vec<BTreeSet<i32>> {
    let deadline = Instant::now() + WAIT;
    loop {
        let sets: Vec<BTreeSet<i32>> = workers.iter().map(|w| w.assignment()).collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i32> = sets.iter().flatten().copied().collect();
        let all_busy = sets.iter().all(|s| !s.is_empty());
        if total == partitions as usize && union.len() == partitions as usize && all_busy {
            return sets;
        }
        assert!(
            Instant::now() < deadline,
            "no disjoint cover of {partitions} partitions: {sets:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_consumers_share_six_partitions_disjointly() {
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    create_topic(&broker.bootstrap(), "share", 6);
    let workers: Vec<Worker> = (0..3)
        .map(|_| Worker::start(&broker.bootstrap(), "g-share", "share", &[]))
        .collect();
    let sets = wait_disjoint_cover(&workers.iter().collect::<Vec<_>>(), 6);
    assert!(
        sets.iter().all(|s| s.len() == 2),
        "range gives 2 each: {sets:?}"
    );
    produce(&broker.bootstrap(), "share", 0, 600);
    let deadline = Instant::now() + WAIT;
    loop {
        let got: usize = workers
            .iter()
            .map(|w| w.seen.records.lock().unwrap().len())
            .sum();
        if got >= 600 {
            break;
        }
        assert!(Instant::now() < deadline, "consumed only {got} of 600");
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each consumer only saw its own partitions.
    for (w, set) in workers.iter().zip(&sets) {
        assert!(w
            .seen
            .records
            .lock()
            .unwrap()
            .iter()
            .all(|(p, _, _)| set.contains(p)));
    }
}

#[test]
fn churn_while_producing_loses_nothing() {
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    create_topic(&broker.bootstrap(), "churn", 6);
    const TOTAL: usize = 6000;
    let producing = {
        let addr = broker.bootstrap();
        std::thread::spawn(move || {
            for chunk in 0..30 {
                produce(&addr, "churn", chunk * 200, (chunk + 1) * 200);
                std::thread::sleep(Duration::from_millis(150));
            }
        })
    };
    let mut workers: Vec<Option<Worker>> = (0..3)
        .map(|_| Some(Worker::start(&broker.bootstrap(), "g-churn", "churn", &[])))
        .collect();
    wait_disjoint_cover(&workers.iter().flatten().collect::<Vec<_>>(), 6);
    std::thread::sleep(Duration::from_millis(800));
    workers.push(Some(Worker::start(
        &broker.bootstrap(),
        "g-churn",
        "churn",
        &[],
    )));
    wait_disjoint_cover(&workers.iter().flatten().collect::<Vec<_>>(), 6);
    std::thread::sleep(Duration::from_millis(800));
    let left = workers[1].take().expect("second worker").close();
    wait_disjoint_cover(&workers.iter().flatten().collect::<Vec<_>>(), 6);
    producing.join().expect("producer");

    let mut all: Vec<Arc<Seen>> = vec![left];
    let deadline = Instant::now() + WAIT;
    loop {
        let mut values: BTreeSet<String> = BTreeSet::new();
        for seen in all
            .iter()
            .map(|s| s.as_ref())
            .chain(workers.iter().flatten().map(|w| w.seen.as_ref()))
        {
            values.extend(
                seen.records
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|(_, _, v)| v.clone()),
            );
        }
        if values.len() == TOTAL {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {TOTAL} distinct records consumed",
            values.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for worker in workers.into_iter().flatten() {
        all.push(worker.close());
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for seen in &all {
        for (_, _, v) in seen.records.lock().unwrap().iter() {
            *counts.entry(v.clone()).or_default() += 1;
        }
    }
    let missing: Vec<usize> = (0..TOTAL)
        .filter(|i| !counts.contains_key(&format!("v{i}")))
        .collect();
    assert!(missing.is_empty(), "lost records: {missing:?}");
    let duplicates: usize = counts.values().map(|c| c - 1).sum();
    eprintln!("churn: {TOTAL} records, {duplicates} duplicates over 2 rebalances");
    // Duplicates come only from the uncommitted tail at a rebalance (auto-commit every
    // 200 ms, commits on revoke): far below one full re-read.
    assert!(duplicates < TOTAL / 4, "{duplicates} duplicates");
}

#[test]
fn a_killed_consumer_is_evicted_after_its_session_timeout() {
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    create_topic(&broker.bootstrap(), "evict", 6);
    let survivor = Worker::start(&broker.bootstrap(), "g-evict", "evict", &[]);
    let mut kcat = Command::new("kcat")
        .args(["-b", &broker.bootstrap(), "-G", "g-evict", "-q"])
        .args([
            "-X",
            "session.timeout.ms=6000",
            "-X",
            "heartbeat.interval.ms=500",
        ])
        .arg("evict")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kcat");
    let deadline = Instant::now() + WAIT;
    while survivor.assignment().len() != 3 {
        assert!(
            Instant::now() < deadline,
            "kcat never took half: {:?}",
            survivor.assignment()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    kcat.kill().expect("SIGKILL kcat");
    let killed = Instant::now();
    let _ = kcat.wait();
    while survivor.assignment().len() != 6 {
        assert!(killed.elapsed() < Duration::from_secs(30), "not taken over");
        std::thread::sleep(Duration::from_millis(100));
    }
    let took = killed.elapsed();
    eprintln!("taken over {took:?} after SIGKILL");
    assert!(
        took >= Duration::from_secs(4),
        "taken over before the session timeout ({took:?})"
    );
}

#[test]
fn a_restarted_static_member_rejoins_without_a_rebalance() {
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    create_topic(&broker.bootstrap(), "static", 6);
    let a = Worker::start(
        &broker.bootstrap(),
        "g-static",
        "static",
        &[("group.instance.id", "a")],
    );
    let b = Worker::start(
        &broker.bootstrap(),
        "g-static",
        "static",
        &[("group.instance.id", "b")],
    );
    let sets = wait_disjoint_cover(&[&a, &b], 6);
    std::thread::sleep(Duration::from_secs(1));
    let a_rebalances = a.rebalances();
    let b_before = sets[1].clone();
    b.close(); // a static member does not leave on close
    let b2 = Worker::start(
        &broker.bootstrap(),
        "g-static",
        "static",
        &[("group.instance.id", "b")],
    );
    let deadline = Instant::now() + WAIT;
    while b2.assignment() != b_before {
        assert!(
            Instant::now() < deadline,
            "b did not get its partitions back"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        a.rebalances(),
        a_rebalances,
        "the other member saw a rebalance"
    );
    assert_eq!(a.assignment(), sets[0]);
}

#[test]
fn cooperative_sticky_assigns_incrementally() {
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    create_topic(&broker.bootstrap(), "coop", 6);
    let coop = [("partition.assignment.strategy", "cooperative-sticky")];
    let a = Worker::start(&broker.bootstrap(), "g-coop", "coop", &coop);
    let b = Worker::start(&broker.bootstrap(), "g-coop", "coop", &coop);
    let first = wait_disjoint_cover(&[&a, &b], 6);
    let c = Worker::start(&broker.bootstrap(), "g-coop", "coop", &coop);
    let second = wait_disjoint_cover(&[&a, &b, &c], 6);
    // Sticky: a and b keep partitions they had.
    assert!(second[0].is_subset(&first[0]), "{first:?} -> {second:?}");
    assert!(second[1].is_subset(&first[1]), "{first:?} -> {second:?}");
    produce(&broker.bootstrap(), "coop", 0, 300);
    let deadline = Instant::now() + WAIT;
    loop {
        let got: usize = [&a, &b, &c]
            .iter()
            .map(|w| w.seen.records.lock().unwrap().len())
            .sum();
        if got >= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "consumed {got} of 300");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn committed_offsets_survive_a_broker_restart() {
    let mut broker = BrokerProcess::start(GROUP_SETTINGS);
    let addr = broker.bootstrap();
    create_topic(&addr, "resume", 1);
    produce(&addr, "resume", 0, 100);
    {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &addr)
            .set("group.id", "g-resume")
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .expect("consumer");
        consumer.subscribe(&["resume"]).unwrap();
        let mut read = 0;
        let deadline = Instant::now() + WAIT;
        while read < 60 {
            assert!(Instant::now() < deadline, "read only {read}");
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
            }
        }
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("resume", 0, Offset::Offset(60))
            .unwrap();
        consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    }
    broker.terminate();
    broker.restart();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "g-resume")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&["resume"]).unwrap();
    let deadline = Instant::now() + WAIT;
    let first = loop {
        assert!(Instant::now() < deadline, "nothing consumed after restart");
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) {
            break message.offset();
        }
    };
    assert_eq!(first, 60, "resumed where the group committed");
    let committed = consumer
        .committed(Duration::from_secs(10))
        .expect("committed");
    let elem = committed.elements_for_topic("resume");
    assert_eq!(elem[0].offset(), Offset::Offset(60));
}

#[test]
fn groups_can_be_listed_described_and_deleted() {
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    create_topic(&broker.bootstrap(), "adm", 2);
    create_topic(&broker.bootstrap(), "other", 1);
    produce(&broker.bootstrap(), "adm", 0, 10);
    let worker = Worker::start(
        &broker.bootstrap(),
        "g-adm",
        "adm",
        &[("client.id", "adm-client")],
    );
    wait_disjoint_cover(&[&worker], 2);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .create()
        .expect("admin client");
    let deadline = Instant::now() + WAIT;
    let group = loop {
        let list = admin
            .inner()
            .fetch_group_list(Some("g-adm"), Duration::from_secs(10))
            .expect("describe group");
        let info = &list.groups()[0];
        if info.state() == "Stable" {
            assert_eq!(info.protocol_type(), "consumer");
            assert_eq!(info.protocol(), "range");
            assert_eq!(info.members().len(), 1);
            let member = &info.members()[0];
            assert_eq!(member.client_id(), "adm-client");
            assert!(
                member.client_host().contains("127.0.0.1"),
                "{}",
                member.client_host()
            );
            assert!(member.metadata().is_some_and(|m| !m.is_empty()));
            assert!(member.assignment().is_some_and(|a| !a.is_empty()));
            break info.name().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "group never stable: {}",
            info.state()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(group, "g-adm");
    let all = admin
        .inner()
        .fetch_group_list(None, Duration::from_secs(10))
        .expect("list groups");
    assert!(all.groups().iter().any(|g| g.name() == "g-adm"));

    // Active members keep the group and its subscribed topics' offsets.
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let deleted = futures::executor::block_on(admin.delete_groups(&["g-adm"], &opts)).unwrap();
    assert_eq!(
        deleted[0],
        Err(("g-adm".to_string(), RDKafkaErrorCode::NonEmptyGroup))
    );
    let offset_delete = |topic: &str| {
        RawClient::connect(&broker.bootstrap()).call(
            &OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g-adm")))
                .with_topics(vec![OffsetDeleteRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        OffsetDeleteRequestPartition::default().with_partition_index(0)
                    ])]),
            0,
        )
    };
    let refused = offset_delete("adm");
    assert_eq!(refused.error_code, 0);
    assert_eq!(refused.topics[0].partitions[0].error_code, 86);
    let allowed = offset_delete("other");
    assert_eq!(allowed.topics[0].partitions[0].error_code, 0);

    // Once the member leaves, both go.
    worker.close();
    let deadline = Instant::now() + WAIT;
    loop {
        let deleted = futures::executor::block_on(admin.delete_groups(&["g-adm"], &opts)).unwrap();
        if deleted[0].is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "never deleted: {deleted:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = admin
        .inner()
        .fetch_group_list(None, Duration::from_secs(10))
        .expect("list groups");
    assert!(!all.groups().iter().any(|g| g.name() == "g-adm"));
    let gone = offset_delete("adm");
    assert_eq!(gone.error_code, 69, "GROUP_ID_NOT_FOUND");
}

#[test]
fn a_group_picks_up_partitions_added_by_create_partitions() {
    use rdkafka::admin::NewPartitions;
    let broker = BrokerProcess::start(GROUP_SETTINGS);
    let addr = broker.bootstrap();
    create_topic(&addr, "grows", 2);
    let fast_metadata = [("topic.metadata.refresh.interval.ms", "500")];
    let a = Worker::start(&addr, "g-grows", "grows", &fast_metadata);
    let b = Worker::start(&addr, "g-grows", "grows", &fast_metadata);
    wait_disjoint_cover(&[&a, &b], 2);

    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &addr)
        .create()
        .expect("admin client");
    let results = futures::executor::block_on(admin.create_partitions(
        &[NewPartitions::new("grows", 4)],
        &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
    ))
    .expect("create partitions");
    for result in results {
        result.expect("partitions added");
    }
    // The members notice the new partition count and rebalance over all four.
    wait_disjoint_cover(&[&a, &b], 4);
    produce(&addr, "grows", 0, 400);
    let deadline = Instant::now() + WAIT;
    loop {
        let seen = a.seen.records.lock().unwrap().len() + b.seen.records.lock().unwrap().len();
        if seen >= 400 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {seen} of 400 records consumed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let partitions: BTreeSet<i32> = a
        .seen
        .records
        .lock()
        .unwrap()
        .iter()
        .chain(b.seen.records.lock().unwrap().iter())
        .map(|(partition, _, _)| *partition)
        .collect();
    assert_eq!(
        partitions,
        (0..4).collect(),
        "records from the new partitions were consumed"
    );
}
