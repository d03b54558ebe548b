//! Classic and consumer-protocol members in one group (KIP-848's online upgrade and
//! downgrade, Kafka 4's `group.consumer.migration.policy=bidirectional`), against the
//! real binary: librdkafka classic consumers (cooperative-sticky and range) sharing a
//! group with a `group.protocol=consumer` one, every record counted across the upgrade
//! and the downgrade. The wire rules, with raw requests: groups_migration_wire.rs.

mod common;
mod groups_common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{poll_until, BrokerProcess, RawClient};
use groups_common::{group_type_and_state, produce, SETTINGS};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(90);
const PARTITIONS: i32 = 6;
/// Records produced before the upgrade, while both kinds share the group, and after
/// the downgrade.
const PER_PHASE: usize = 300;

/// Every record any member consumed, by (partition, offset), with how often.
type Seen = Arc<Mutex<BTreeMap<(i32, i64), usize>>>;

/// A member consuming on its own thread, committing each record synchronously before
/// it polls again, so whatever it consumed is committed before it can lose a partition.
struct Member {
    stop: Arc<AtomicBool>,
    assignment: Arc<Mutex<BTreeSet<i32>>>,
    failed_commits: Arc<Mutex<usize>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Member {
    fn start(
        addr: &str,
        group: &str,
        topic: &str,
        protocol: &[(&str, &str)],
        seen: &Seen,
    ) -> Member {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", addr)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false");
        for (k, v) in protocol {
            config.set(*k, *v);
        }
        let consumer: BaseConsumer = config.create().expect("consumer");
        consumer.subscribe(&[topic]).expect("subscribe");
        let stop = Arc::new(AtomicBool::new(false));
        let assignment = Arc::new(Mutex::new(BTreeSet::new()));
        let failed_commits = Arc::new(Mutex::new(0));
        let handle = {
            let (stop, assignment, failed, seen) = (
                stop.clone(),
                assignment.clone(),
                failed_commits.clone(),
                seen.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
                        if let Ok(mut seen) = seen.lock() {
                            *seen
                                .entry((message.partition(), message.offset()))
                                .or_default() += 1;
                        }
                        // A commit racing the member's own rejoin is refused as in
                        // Kafka (ILLEGAL_GENERATION once JoinGroup moved its epoch,
                        // REBALANCE_IN_PROGRESS while a classic group completes its
                        // rebalance); the application retries without polling, so it
                        // cannot have lost the partition meanwhile.
                        let mut attempts = 0;
                        while let Err(error) = consumer.commit_message(&message, CommitMode::Sync) {
                            eprintln!("commit refused, retrying: {error}");
                            attempts += 1;
                            if attempts == 100 {
                                if let Ok(mut n) = failed.lock() {
                                    *n += 1;
                                }
                                break;
                            }
                            std::thread::sleep(Duration::from_millis(50));
                        }
                    }
                    if let Ok(list) = consumer.assignment() {
                        if let Ok(mut slot) = assignment.lock() {
                            *slot = list.elements().iter().map(|e| e.partition()).collect();
                        }
                    }
                }
                // Leaves the group (LeaveGroup, or a heartbeat with epoch -1).
                consumer.unsubscribe();
                let deadline = std::time::Instant::now() + Duration::from_secs(5);
                while std::time::Instant::now() < deadline
                    && consumer.assignment().map(|a| a.count()).unwrap_or(0) > 0
                {
                    let _ = consumer.poll(Duration::from_millis(50));
                }
                drop(consumer);
            })
        };
        Member {
            stop,
            assignment,
            failed_commits,
            handle: Some(handle),
        }
    }

    fn assignment(&self) -> BTreeSet<i32> {
        self.assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    fn failed_commits(&self) -> usize {
        self.failed_commits.lock().map(|n| *n).unwrap_or(0)
    }

    /// Stops consuming and leaves the group.
    fn leave(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
        self.failed_commits()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// A producer writing one record every few milliseconds on its own thread.
struct Background {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<usize>>,
}

impl Background {
    fn start(addr: &str, topic: &str) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let producer: BaseProducer = common::producer_config(addr).create().expect("producer");
        let (flag, topic) = (stop.clone(), topic.to_string());
        let handle = std::thread::spawn(move || {
            let mut sent = 0usize;
            while !flag.load(Ordering::SeqCst) {
                let key = format!("bg-{sent}");
                if producer
                    .send(BaseRecord::to(&topic).key(&key).payload(&key))
                    .is_ok()
                {
                    sent += 1;
                }
                producer.poll(Duration::from_millis(3));
            }
            producer.flush(Duration::from_secs(30)).expect("flush");
            sent
        });
        Background {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops producing; how many records it wrote.
    fn stop(mut self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.handle
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default()
    }
}

fn consumed(seen: &Seen) -> usize {
    seen.lock().map(|s| s.len()).unwrap_or(0)
}

fn split_evenly(a: &Member, b: &Member) -> Option<()> {
    let (x, y) = (a.assignment(), b.assignment());
    let union: BTreeSet<i32> = x.union(&y).copied().collect();
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    (x.is_disjoint(&y) && union == all && x.len() == 3 && y.len() == 3).then_some(())
}

/// Classic member alone, then a consumer-protocol member joins (upgrade), then leaves
/// (downgrade), with records produced in each phase and continuously through both
/// conversions; each is consumed exactly once and the committed offsets reach the end
/// of every partition, also after a restart.
fn upgrade_and_downgrade_with(strategy: &str) {
    let mut broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    let topic = format!("mig-{strategy}");
    let group = format!("gmig-{strategy}");
    groups_common::create_topic(&addr, &topic, PARTITIONS);
    let seen: Seen = Arc::default();
    let classic_protocol = [
        ("group.protocol", "classic"),
        ("partition.assignment.strategy", strategy),
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ];
    let classic = Member::start(&addr, &group, &topic, &classic_protocol, &seen);
    produce(&addr, &topic, 0, PER_PHASE);
    poll_until(WAIT, "the classic member consuming phase one", || {
        (consumed(&seen) == PER_PHASE && classic.assignment().len() == PARTITIONS as usize)
            .then_some(())
    });
    let (kind, protocol_type, _) = group_type_and_state(&addr, &group).expect("listed");
    assert_eq!(
        (kind.as_str(), protocol_type.as_str()),
        ("classic", "consumer")
    );

    // Records keep coming through both conversions.
    let background = Background::start(&addr, &topic);

    // Upgrade: a consumer-protocol member joins the classic group.
    let modern = Member::start(
        &addr,
        &group,
        &topic,
        &[("group.protocol", "consumer")],
        &seen,
    );
    poll_until(
        WAIT,
        "classic and consumer members splitting the partitions",
        || split_evenly(&classic, &modern),
    );
    let (kind, protocol_type, _) = group_type_and_state(&addr, &group).expect("listed");
    assert_eq!(
        (kind.as_str(), protocol_type.as_str()),
        ("consumer", "consumer")
    );
    let described = RawClient::connect(&addr).call(
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_string(group.clone()))]),
        0,
    );
    assert_eq!(described.groups[0].error_code, 0);
    assert_eq!(described.groups[0].members.len(), 2);
    produce(&addr, &topic, PER_PHASE, PER_PHASE);
    poll_until(WAIT, "both members consuming phase two", || {
        (consumed(&seen) >= 2 * PER_PHASE).then_some(())
    });
    assert!(split_evenly(&classic, &modern).is_some());

    // Downgrade: the last consumer-protocol member leaves.
    let modern_failed = modern.leave();
    poll_until(WAIT, "the classic member owning everything again", || {
        (classic.assignment().len() == PARTITIONS as usize).then_some(())
    });
    poll_until(WAIT, "the group classic again", || {
        let (kind, _, state) = group_type_and_state(&addr, &group)?;
        (kind == "classic" && state == "Stable").then_some(())
    });
    produce(&addr, &topic, 2 * PER_PHASE, PER_PHASE);
    let background = background.stop();
    assert!(background > 0, "records produced during the conversions");
    let total: i64 = (0..PARTITIONS)
        .map(|p| common::watermarks(&addr, &topic, p).1)
        .sum();
    assert_eq!(total, (3 * PER_PHASE + background) as i64);
    poll_until(WAIT, "the classic member consuming everything", || {
        (consumed(&seen) as i64 == total).then_some(())
    });
    let classic_failed = classic.leave();

    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "consumed twice: {duplicated:?}");
    assert_eq!(seen.len() as i64, total, "every record consumed once");
    assert_eq!((modern_failed, classic_failed), (0, 0), "failed commits");
    let mut ends = BTreeMap::new();
    for p in 0..PARTITIONS {
        let (_, high) = common::watermarks(&addr, &topic, p);
        let offsets: BTreeSet<i64> = seen
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(offsets, (0..high).collect(), "partition {p} consumed whole");
        ends.insert(p, high);
    }

    // The group and its offsets survive a restart.
    broker.restart();
    let addr = broker.bootstrap();
    let (kind, _, state) = group_type_and_state(&addr, &group).expect("listed after restart");
    assert_eq!((kind.as_str(), state.as_str()), ("classic", "Empty"));
    let mut config = common::consumer_config(&addr);
    config.set("group.id", &group);
    let probe: BaseConsumer = config.create().expect("consumer");
    let mut wanted = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        wanted.add_partition(&topic, p);
    }
    let committed = probe
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("committed offsets");
    for e in committed.elements() {
        assert_eq!(
            e.offset(),
            Offset::Offset(ends[&e.partition()]),
            "partition {}",
            e.partition()
        );
    }
}

#[test]
fn cooperative_classic_member_through_upgrade_and_downgrade() {
    upgrade_and_downgrade_with("cooperative-sticky");
}

#[test]
fn eager_classic_member_through_upgrade_and_downgrade() {
    upgrade_and_downgrade_with("range");
}

/// The other way round: a classic consumer joins a consumer group (no upgrade needed),
/// the group's only consumer-protocol member leaves, the classic one takes everything,
/// with records produced throughout and each consumed once.
#[test]
fn a_classic_member_joins_a_consumer_group_and_outlives_it() {
    let broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    let (topic, group) = ("mig-join", "gmig-join");
    groups_common::create_topic(&addr, topic, PARTITIONS);
    let seen: Seen = Arc::default();
    let background = Background::start(&addr, topic);
    let modern = Member::start(
        &addr,
        group,
        topic,
        &[("group.protocol", "consumer")],
        &seen,
    );
    poll_until(WAIT, "the consumer member owning everything", || {
        (modern.assignment().len() == PARTITIONS as usize).then_some(())
    });
    let classic = Member::start(
        &addr,
        group,
        topic,
        &[
            ("group.protocol", "classic"),
            ("partition.assignment.strategy", "cooperative-sticky"),
            ("session.timeout.ms", "6000"),
            ("heartbeat.interval.ms", "500"),
        ],
        &seen,
    );
    poll_until(WAIT, "both members splitting the partitions", || {
        split_evenly(&classic, &modern)
    });
    let (kind, _, _) = group_type_and_state(&addr, group).expect("listed");
    assert_eq!(kind, "consumer");
    let described = RawClient::connect(&addr).call(
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str("gmig-join"))]),
        1,
    );
    let mut types: Vec<i8> = described.groups[0]
        .members
        .iter()
        .map(|m| m.member_type)
        .collect();
    types.sort();
    assert_eq!(
        types,
        vec![0, 1],
        "one classic, one consumer-protocol member"
    );
    let modern_failed = modern.leave();
    poll_until(
        WAIT,
        "the classic member owning everything in a classic group",
        || {
            let (kind, _, state) = group_type_and_state(&addr, group)?;
            (kind == "classic"
                && state == "Stable"
                && classic.assignment().len() == PARTITIONS as usize)
                .then_some(())
        },
    );
    let background = background.stop();
    let total: i64 = (0..PARTITIONS)
        .map(|p| common::watermarks(&addr, topic, p).1)
        .sum();
    assert_eq!(total, background as i64);
    poll_until(WAIT, "everything consumed", || {
        (consumed(&seen) as i64 == total).then_some(())
    });
    let classic_failed = classic.leave();
    let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "consumed twice: {duplicated:?}");
    assert_eq!(seen.len() as i64, total, "every record consumed once");
    assert_eq!((modern_failed, classic_failed), (0, 0), "failed commits");
}
