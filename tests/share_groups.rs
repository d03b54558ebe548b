//! Share groups (KIP-932) over the wire, with raw Kafka-protocol requests against the
//! real binary: membership and its error codes, acquisition locks, delivery counts,
//! accept/release/reject, share sessions, the share-group offsets APIs, ListGroups and
//! DescribeGroups reporting, and state surviving a SIGKILL. Queue agents in the same
//! group as a wire member are tested in-process at the end.

mod agents_common;
mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlog_agents::{Agent, AgentSpec, Context, Event, HandlerError, OutRecord, Runtime, Sink};
use bytes::Bytes;
use common::{encode_batch, poll_until, raw_produce, BrokerProcess, RawClient};
use kafka_protocol::messages::alter_share_group_offsets_request::{
    AlterShareGroupOffsetsRequestPartition, AlterShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::delete_share_group_offsets_request::DeleteShareGroupOffsetsRequestTopic;
use kafka_protocol::messages::describe_share_group_offsets_request::{
    DescribeShareGroupOffsetsRequestGroup, DescribeShareGroupOffsetsRequestTopic,
};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::share_acknowledge_request::{
    AcknowledgePartition, AcknowledgeTopic, AcknowledgementBatch as AckBatch,
};
use kafka_protocol::messages::share_fetch_request::{
    AcknowledgementBatch as FetchAckBatch, FetchPartition, FetchTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

const INVALID_REQUEST: i16 = 42;
const UNKNOWN_MEMBER_ID: i16 = 25;
const FENCED_MEMBER_EPOCH: i16 = 110;
const INVALID_RECORD_STATE: i16 = 121;
const SHARE_SESSION_NOT_FOUND: i16 = 122;
const INVALID_SHARE_SESSION_EPOCH: i16 = 123;
const NON_EMPTY_GROUP: i16 = 68;

const ACCEPT: i8 = 1;
const RELEASE: i8 = 2;
const REJECT: i8 = 3;

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn topic_id(client: &mut RawClient, topic: &str) -> Uuid {
    let response = client.call(
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(TopicName(s(topic))))
        ])),
        12,
    );
    response.topics[0].topic_id
}

fn heartbeat(
    client: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    topics: Option<&[&str]>,
) -> ShareGroupHeartbeatResponse {
    client.call(
        &ShareGroupHeartbeatRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_member_id(s(member))
            .with_member_epoch(epoch)
            .with_subscribed_topic_names(
                topics.map(|t| t.iter().map(|n| TopicName(s(n))).collect()),
            ),
        1,
    )
}

fn join(client: &mut RawClient, group: &str, member: &str, topic: &str) -> i32 {
    let joined = heartbeat(client, group, member, 0, Some(&[topic][..]));
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    joined.member_epoch
}

/// A share fetch of partition 0 with optional acknowledgements.
fn share_fetch(
    client: &mut RawClient,
    group: &str,
    member: &str,
    session_epoch: i32,
    topic: Uuid,
    acks: Vec<(i64, i64, i8)>,
    max_wait_ms: i32,
) -> ShareFetchResponse {
    let partition = FetchPartition::default()
        .with_partition_index(0)
        .with_acknowledgement_batches(
            acks.into_iter()
                .map(|(first, last, kind)| {
                    FetchAckBatch::default()
                        .with_first_offset(first)
                        .with_last_offset(last)
                        .with_acknowledge_types(vec![kind])
                })
                .collect(),
        );
    client.call(
        &ShareFetchRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(session_epoch)
            .with_max_wait_ms(max_wait_ms)
            .with_max_records(100)
            .with_batch_size(100)
            .with_topics(vec![FetchTopic::default()
                .with_topic_id(topic)
                .with_partitions(vec![partition])]),
        1,
    )
}

fn acknowledge(
    client: &mut RawClient,
    group: &str,
    member: &str,
    session_epoch: i32,
    topic: Uuid,
    acks: Vec<(i64, i64, Vec<i8>)>,
) -> ShareAcknowledgeResponse {
    client.call(
        &ShareAcknowledgeRequest::default()
            .with_group_id(Some(GroupId(s(group))))
            .with_member_id(Some(s(member)))
            .with_share_session_epoch(session_epoch)
            .with_topics(vec![AcknowledgeTopic::default()
                .with_topic_id(topic)
                .with_partitions(vec![AcknowledgePartition::default()
                    .with_partition_index(0)
                    .with_acknowledgement_batches(
                        acks.into_iter()
                            .map(|(first, last, types)| {
                                AckBatch::default()
                                    .with_first_offset(first)
                                    .with_last_offset(last)
                                    .with_acknowledge_types(types)
                            })
                            .collect(),
                    )])]),
        1,
    )
}

fn ack_error(response: &ShareAcknowledgeResponse) -> i16 {
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    response.responses[0].partitions[0].error_code
}

/// (offset, delivery count) of every acquired record in a fetch response.
fn acquired(response: &ShareFetchResponse) -> Vec<(i64, i16)> {
    assert_eq!(response.error_code, 0, "{:?}", response.error_message);
    response
        .responses
        .iter()
        .flat_map(|t| &t.partitions)
        .flat_map(|p| {
            assert_eq!(p.error_code, 0, "{:?}", p.error_message);
            &p.acquired_records
        })
        .flat_map(|r| (r.first_offset..=r.last_offset).map(move |o| (o, r.delivery_count)))
        .collect()
}

fn produce(client: &mut RawClient, topic: &str, n: usize) {
    let values: Vec<String> = (0..n).map(|i| format!("v{i}")).collect();
    let records: Vec<_> = values
        .iter()
        .map(|v| (None, Some(v.as_bytes()), 1_700_000_000_000))
        .collect();
    let response = raw_produce(client, topic, 0, encode_batch(&records));
    assert_eq!(response.error_code, 0);
}

fn create(client: &mut RawClient, topic: &str) {
    let response = client.call(
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s(topic)))
                .with_num_partitions(1)
                .with_replication_factor(1)]),
        7,
    );
    assert_eq!(response.topics[0].error_code, 0);
}

fn start_offset(client: &mut RawClient, group: &str, topic: &str) -> i64 {
    let response = client.call(
        &DescribeShareGroupOffsetsRequest::default().with_groups(vec![
            DescribeShareGroupOffsetsRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![DescribeShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s(topic)))
                    .with_partitions(vec![0])])),
        ]),
        0,
    );
    assert_eq!(response.groups[0].error_code, 0);
    response.groups[0].topics[0].partitions[0].start_offset
}

#[test]
fn share_group_delivery_acknowledgement_and_error_codes() {
    let broker = BrokerProcess::start(&[
        "group.share.record.lock.duration.ms=2000",
        "group.share.delivery.count.limit=2",
    ]);
    let mut c = RawClient::connect(&broker.bootstrap());
    create(&mut c, "q");
    let q = topic_id(&mut c, "q");

    // Membership and its errors.
    let epoch = join(&mut c, "sg", "m1", "q");
    let joined = heartbeat(&mut c, "sg", "m1", epoch, None);
    assert_eq!((joined.error_code, joined.member_epoch), (0, epoch));
    assert_eq!(
        heartbeat(&mut c, "sg", "m1", epoch + 5, None).error_code,
        FENCED_MEMBER_EPOCH
    );
    assert_eq!(
        heartbeat(&mut c, "sg", "nobody", 3, None).error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        heartbeat(&mut c, "sg", "", 0, Some(&["q"][..])).error_code,
        INVALID_REQUEST
    );
    assert_eq!(
        heartbeat(&mut c, "sg", "m9", 0, None).error_code,
        INVALID_REQUEST
    );
    let first = heartbeat(&mut c, "sg", "m1", epoch, None);
    assert_eq!(
        first.error_code, 0,
        "the member survives refused heartbeats of others"
    );

    // Fetches from strangers and out-of-session requests.
    assert_eq!(
        share_fetch(&mut c, "sg", "nobody", 0, q, vec![], 0).error_code,
        UNKNOWN_MEMBER_ID
    );
    assert_eq!(
        share_fetch(&mut c, "sg", "m1", 3, q, vec![], 0).error_code,
        SHARE_SESSION_NOT_FOUND
    );
    assert_eq!(
        share_fetch(&mut c, "sg", "m1", 0, q, vec![(0, 0, ACCEPT)], 0).error_code,
        INVALID_REQUEST,
        "acknowledgements cannot open a session"
    );

    // The session starts at the end of the log (share.auto.offset.reset=latest).
    assert!(acquired(&share_fetch(&mut c, "sg", "m1", 0, q, vec![], 0)).is_empty());
    produce(&mut c, "q", 5);
    let got = acquired(&share_fetch(&mut c, "sg", "m1", 1, q, vec![], 5000));
    assert_eq!(got, (0..5).map(|o| (o, 1)).collect::<Vec<_>>());
    assert_eq!(
        share_fetch(&mut c, "sg", "m1", 7, q, vec![], 0).error_code,
        INVALID_SHARE_SESSION_EPOCH
    );

    // Accept 0-1, release 2, reject 3; 4 stays acquired until its lock expires.
    assert_eq!(
        acknowledge(&mut c, "sg", "m1", 0, q, vec![]).error_code,
        INVALID_SHARE_SESSION_EPOCH
    );
    let acked = acknowledge(
        &mut c,
        "sg",
        "m1",
        2,
        q,
        vec![(0, 1, vec![ACCEPT]), (2, 3, vec![RELEASE, REJECT])],
    );
    assert_eq!(ack_error(&acked), 0);
    let again = acknowledge(&mut c, "sg", "m1", 3, q, vec![(0, 0, vec![ACCEPT])]);
    assert_eq!(
        ack_error(&again),
        INVALID_RECORD_STATE,
        "acknowledged twice"
    );
    let never = acknowledge(&mut c, "sg", "m1", 4, q, vec![(40, 41, vec![ACCEPT])]);
    assert_eq!(ack_error(&never), INVALID_RECORD_STATE, "never acquired");
    let malformed = acknowledge(&mut c, "sg", "m1", 5, q, vec![(4, 4, vec![9])]);
    assert_eq!(ack_error(&malformed), INVALID_REQUEST);

    // A second member gets the released record now and 4 once m1's lock expires,
    // each on its second delivery.
    let mut c2 = RawClient::connect(&broker.bootstrap());
    join(&mut c2, "sg", "m2", "q");
    let mut seen = BTreeSet::new();
    let mut epoch2 = 0;
    poll_until(Duration::from_secs(30), "redeliveries to m2", || {
        let got = acquired(&share_fetch(&mut c2, "sg", "m2", epoch2, q, vec![], 1000));
        epoch2 += 1;
        seen.extend(got);
        (seen.len() == 2).then_some(())
    });
    assert_eq!(seen, BTreeSet::from([(2, 2), (4, 2)]));
    let late = acknowledge(&mut c, "sg", "m1", 6, q, vec![(4, 4, vec![ACCEPT])]);
    assert_eq!(
        ack_error(&late),
        INVALID_RECORD_STATE,
        "m1's lock timed out"
    );

    // Released (4) or timed out (2) at the delivery limit: archived, never delivered
    // again, and the start offset moves past them.
    let released = share_fetch(&mut c2, "sg", "m2", epoch2, q, vec![(4, 4, RELEASE)], 0);
    epoch2 += 1;
    assert_eq!(
        released.responses[0].partitions[0].acknowledge_error_code,
        0
    );
    poll_until(
        Duration::from_secs(30),
        "the start offset past the archived",
        || {
            let got = acquired(&share_fetch(&mut c2, "sg", "m2", epoch2, q, vec![], 200));
            epoch2 += 1;
            assert!(got.is_empty(), "archived records delivered again: {got:?}");
            (start_offset(&mut c, "sg", "q") == 5).then_some(())
        },
    );

    // Reporting: ShareGroupDescribe, ListGroups with the share type, DescribeGroups.
    let described = c.call(
        &ShareGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(s("sg")), GroupId(s("nope"))]),
        1,
    );
    let group = &described.groups[0];
    assert_eq!(
        (group.error_code, group.group_state.to_string()),
        (0, "Stable".to_string())
    );
    assert_eq!(group.assignor_name.to_string(), "simple");
    let members: BTreeSet<String> = group
        .members
        .iter()
        .map(|m| m.member_id.to_string())
        .collect();
    assert_eq!(
        members,
        BTreeSet::from(["m1".to_string(), "m2".to_string()])
    );
    assert_eq!(
        group.members[0].assignment.topic_partitions[0].partitions,
        vec![0]
    );
    assert_eq!(described.groups[1].error_code, 69, "GROUP_ID_NOT_FOUND");
    let listed = |c: &mut RawClient, types: Vec<&str>| -> Vec<(String, String, String)> {
        let response = c.call(
            &ListGroupsRequest::default().with_types_filter(types.into_iter().map(s).collect()),
            5,
        );
        response
            .groups
            .iter()
            .map(|g| {
                (
                    g.group_id.0.to_string(),
                    g.protocol_type.to_string(),
                    g.group_type.to_string(),
                )
            })
            .collect()
    };
    let share = ("sg".to_string(), "share".to_string(), "share".to_string());
    assert_eq!(listed(&mut c, vec![]), vec![share.clone()]);
    assert_eq!(listed(&mut c, vec!["Share"]), vec![share]);
    assert!(listed(&mut c, vec!["classic"]).is_empty());
    let classic = c.call(
        &DescribeGroupsRequest::default().with_groups(vec![GroupId(s("sg"))]),
        5,
    );
    assert_eq!(
        classic.groups[0].group_state.to_string(),
        "Dead",
        "not a classic group"
    );

    // Offsets can only be changed on an empty group.
    let alter = |c: &mut RawClient, offset: i64| {
        c.call(
            &AlterShareGroupOffsetsRequest::default()
                .with_group_id(GroupId(s("sg")))
                .with_topics(vec![AlterShareGroupOffsetsRequestTopic::default()
                    .with_topic_name(TopicName(s("q")))
                    .with_partitions(vec![
                        AlterShareGroupOffsetsRequestPartition::default()
                            .with_partition_index(0)
                            .with_start_offset(offset),
                    ])]),
            0,
        )
    };
    assert_eq!(alter(&mut c, 1).error_code, NON_EMPTY_GROUP);
    let m1_epoch = first.member_epoch;
    assert_eq!(heartbeat(&mut c, "sg", "m1", m1_epoch, None).error_code, 0);
    assert_eq!(heartbeat(&mut c, "sg", "m1", -1, None).member_epoch, -1);
    assert_eq!(heartbeat(&mut c2, "sg", "m2", -1, None).member_epoch, -1);
    assert_eq!(alter(&mut c, 1).error_code, 0);
    assert_eq!(start_offset(&mut c, "sg", "q"), 1);
    let deleted = c.call(
        &DeleteShareGroupOffsetsRequest::default()
            .with_group_id(GroupId(s("sg")))
            .with_topics(vec![
                DeleteShareGroupOffsetsRequestTopic::default().with_topic_name(TopicName(s("q")))
            ]),
        0,
    );
    assert_eq!(
        (deleted.error_code, deleted.responses[0].error_code),
        (0, 0)
    );
    assert_eq!(start_offset(&mut c, "sg", "q"), -1);
}

#[test]
fn acknowledged_records_are_not_redelivered_after_sigkill_and_unacknowledged_are_not_lost() {
    let mut broker = BrokerProcess::start(&[]);
    let mut c = RawClient::connect(&broker.bootstrap());
    create(&mut c, "jobs");
    let jobs = topic_id(&mut c, "jobs");
    join(&mut c, "workers", "w1", "jobs");
    assert!(acquired(&share_fetch(&mut c, "workers", "w1", 0, jobs, vec![], 0)).is_empty());
    produce(&mut c, "jobs", 10);
    let got = acquired(&share_fetch(&mut c, "workers", "w1", 1, jobs, vec![], 5000));
    assert_eq!(got.len(), 10);
    // Accept 0-3 and reject 4 (answered: durable), keep 5-9 in flight, then SIGKILL.
    let acked = acknowledge(
        &mut c,
        "workers",
        "w1",
        2,
        jobs,
        vec![(0, 3, vec![ACCEPT]), (4, 4, vec![REJECT])],
    );
    assert_eq!(ack_error(&acked), 0);
    broker.restart();

    let mut c = RawClient::connect(&broker.bootstrap());
    join(&mut c, "workers", "w2", "jobs");
    let mut seen = Vec::new();
    let mut epoch = 0;
    poll_until(
        Duration::from_secs(30),
        "the unacknowledged records",
        || {
            seen.extend(acquired(&share_fetch(
                &mut c,
                "workers",
                "w2",
                epoch,
                jobs,
                vec![],
                1000,
            )));
            epoch += 1;
            (seen.len() >= 5).then_some(())
        },
    );
    let offsets: Vec<i64> = seen.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (5..10).collect::<Vec<_>>(), "{seen:?}");
    assert!(
        seen.iter().all(|(_, count)| *count == 2),
        "second delivery: {seen:?}"
    );
    let done = acknowledge(
        &mut c,
        "workers",
        "w2",
        epoch,
        jobs,
        vec![(5, 9, vec![ACCEPT])],
    );
    assert_eq!(ack_error(&done), 0);
    assert_eq!(start_offset(&mut c, "workers", "jobs"), 10);
}

/// Records every event it handles; fails the ones whose value is `poison`.
#[derive(Clone, Default)]
struct Recorder {
    handled: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl Agent for Recorder {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        self.handled
            .lock()
            .unwrap()
            .push((event.partition, event.offset));
        Ok(())
    }
}

fn record(i: usize) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(format!("k{i}"))),
        value: Some(Bytes::from(format!("{i}"))),
        headers: Vec::new(),
        timestamp: agentlog_agents::event::now_ms(),
    }
}

/// A wire share-group member driven from blocking tasks.
struct Wire {
    client: RawClient,
    topic: Uuid,
    epoch: i32,
}

impl Wire {
    fn join(bootstrap: &str, group: &str, topic_name: &str) -> Wire {
        let mut client = RawClient::connect(bootstrap);
        let topic = topic_id(&mut client, topic_name);
        join(&mut client, group, "wire", topic_name);
        Wire {
            client,
            topic,
            epoch: 0,
        }
    }

    /// One share fetch carrying `acks`; the offsets acquired.
    fn fetch(&mut self, acks: Vec<(i64, i64, i8)>, max_wait_ms: i32) -> Vec<(i64, i16)> {
        let response = share_fetch(
            &mut self.client,
            "crew",
            "wire",
            self.epoch,
            self.topic,
            acks,
            max_wait_ms,
        );
        self.epoch += 1;
        for partition in response.responses.iter().flat_map(|t| &t.partitions) {
            assert_eq!(
                partition.acknowledge_error_code, 0,
                "{:?}",
                partition.acknowledge_error_message
            );
        }
        acquired(&response)
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

/// Queue agents and a wire share consumer in one share group: every event is handled
/// once, by one of them; an event whose earlier deliveries were never acknowledged is
/// dead-lettered on its last delivery instead of being run again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_agents_share_a_group_with_wire_members_and_dead_letter_at_the_limit() {
    let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
        config
            .set("group.share.record.lock.duration.ms", "1000")
            .unwrap();
        config.set("group.share.delivery.count.limit", "2").unwrap();
    })
    .await
    .unwrap();
    let backend = agentlog_agents::EmbeddedBackend::new(broker.running().broker.clone());
    backend.ensure_topic("tasks", 1, false).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let recorder = Recorder::default();
    let spec = AgentSpec::new("crew", &["tasks"]).instances(3).queue();
    let mut swarm = runtime.start(spec.clone(), recorder.clone()).await.unwrap();

    // The agents alone first: they start at the log start.
    backend
        .produce("tasks", (0..20).map(record).collect())
        .await
        .unwrap();
    let handled = recorder.handled.clone();
    agents_common::eventually("the agents handle 20", Duration::from_secs(30), || {
        handled.lock().unwrap().len() == 20
    })
    .await;

    // Then a wire member parks a fetch and 80 more arrive: both kinds get some.
    let bootstrap = broker.bootstrap();
    let mut wire = blocking(move || Wire::join(&bootstrap, "crew", "tasks")).await;
    let parked = tokio::task::spawn_blocking(move || {
        let got = wire.fetch(vec![], 10_000);
        (wire, got)
    });
    backend
        .produce("tasks", (20..100).map(record).collect())
        .await
        .unwrap();
    let (mut wire, mut got) = parked.await.unwrap();
    let mut by_wire: Vec<i64> = Vec::new();
    for round in 0.. {
        by_wire.extend(got.iter().map(|(o, _)| *o));
        let acks = got.iter().map(|(o, _)| (*o, *o, ACCEPT)).collect();
        let total = handled.lock().unwrap().len() + by_wire.len();
        if total >= 100 && got.is_empty() {
            break;
        }
        assert!(round < 300, "handled {total} of 100");
        let (back, next) = blocking(move || {
            let next = wire.fetch(acks, 200);
            (wire, next)
        })
        .await;
        wire = back;
        got = next;
    }
    let by_agents: Vec<i64> = handled.lock().unwrap().iter().map(|(_, o)| *o).collect();
    assert!(!by_wire.is_empty(), "the wire member got none");
    let mut all: Vec<i64> = by_agents.iter().chain(&by_wire).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..100).collect::<Vec<_>>(),
        "each event handled exactly once"
    );

    // A poison pill: the wire member takes it and never acknowledges; the agents get
    // it on the last delivery the group allows and dead-letter it.
    swarm.stop().await;
    backend.produce("tasks", vec![record(100)]).await.unwrap();
    let (wire, taken) = blocking(move || {
        let taken = wire.fetch(vec![], 5_000);
        (wire, taken)
    })
    .await;
    assert_eq!(taken, vec![(100, 1)]);
    swarm = runtime.start(spec, recorder.clone()).await.unwrap();
    let mut dead = Vec::new();
    for _ in 0..300 {
        dead = agents_common::read_all(&backend, "tasks.dlq").await;
        if !dead.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(dead.len(), 1, "the poison pill is dead-lettered");
    assert_eq!(dead[0].header_str("dlq.original.offset"), Some("100"));
    assert!(
        !handled.lock().unwrap().iter().any(|(_, o)| *o == 100),
        "not run again"
    );
    swarm.stop().await;
    drop(wire);
}
