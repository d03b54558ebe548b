//! The wire rules for classic members of a consumer group (KIP-848's online migration),
//! with raw requests against the real binary: generation = member epoch, protocol type
//! and name in JoinGroup, REBALANCE_IN_PROGRESS to revoke or collect released
//! partitions, commits checked against the epoch, session fencing, and the downgrades
//! (last consumer-protocol member leaving, timing out, or replaced by a classic static
//! member). The same with real clients: groups_migration.rs.

mod common;
mod groups_common;

use std::time::Duration;

use common::{poll_until, BrokerProcess, RawClient};
use groups_common::{group_type_and_state, SETTINGS};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

const WAIT: Duration = Duration::from_secs(90);

/// A consumer-protocol subscription (version 0) to `topic`.
fn subscription(topic: &str) -> bytes::Bytes {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(&(-1i32).to_be_bytes());
    bytes::Bytes::from(out)
}

fn classic_join(
    client: &mut RawClient,
    group: &str,
    member: &str,
    topic: &str,
) -> JoinGroupResponse {
    client.call(
        &JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription(topic))]),
        7,
    )
}

fn classic_heartbeat(client: &mut RawClient, group: &str, member: &str, generation: i32) -> i16 {
    client
        .call(
            &HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.into())))
                .with_member_id(StrBytes::from_string(member.into()))
                .with_generation_id(generation),
            4,
        )
        .error_code
}

fn classic_sync(
    client: &mut RawClient,
    group: &str,
    member: &str,
    generation: i32,
) -> SyncGroupResponse {
    client.call(
        &SyncGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_generation_id(generation)
            .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
            .with_protocol_name(Some(StrBytes::from_static_str("range"))),
        5,
    )
}

/// The partitions of a consumer-protocol assignment (version, [topic, [partition]]).
fn assigned_partitions(assignment: &[u8]) -> Vec<i32> {
    let i32_at = |at: usize| {
        assignment
            .get(at..at + 4)
            .map_or(0, |b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let mut out = Vec::new();
    if i32_at(2) == 1 {
        let name_len = assignment
            .get(6..8)
            .map_or(0, |b| i16::from_be_bytes([b[0], b[1]]) as usize);
        let at = 8 + name_len;
        for i in 0..i32_at(at).max(0) as usize {
            out.push(i32_at(at + 4 + 4 * i));
        }
    }
    out
}

#[test]
fn a_classic_member_of_a_consumer_group_follows_the_member_epoch() {
    let broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    let admin = common::admin(&addr);
    futures::executor::block_on(admin.create_topics(
        &[rdkafka::admin::NewTopic::new(
            "rawmig",
            2,
            rdkafka::admin::TopicReplication::Fixed(1),
        )],
        &rdkafka::admin::AdminOptions::new(),
    ))
    .expect("create topics");
    let mut c = RawClient::connect(&addr);
    // A consumer-protocol member creates the group and owns both partitions.
    let joined = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("grawmig")))
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("rawmig"))]))
            .with_topic_partitions(Some(Vec::new())),
        1,
    );
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_epoch, 1);

    // A classic member joins: first MEMBER_ID_REQUIRED (v4+), then its epoch as the
    // generation, the consumer protocol type, its own protocol and no leader.
    let first = classic_join(&mut c, "grawmig", "", "rawmig");
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member = first.member_id.to_string();
    assert!(!member.is_empty());
    let second = classic_join(&mut c, "grawmig", &member, "rawmig");
    assert_eq!(second.error_code, 0);
    assert_eq!(second.generation_id, 2, "the new group epoch");
    assert_eq!(second.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(second.protocol_name.as_deref(), Some("range"));
    assert_eq!(second.leader.as_str(), "");
    assert!(second.members.is_empty());
    // Partition 1 (its target) is still owned by m-1: nothing yet.
    let synced = classic_sync(&mut c, "grawmig", &member, 2);
    assert_eq!(synced.error_code, 0);
    assert_eq!(assigned_partitions(&synced.assignment), Vec::<i32>::new());
    assert_eq!(
        classic_heartbeat(&mut c, "grawmig", &member, 1),
        ResponseError::IllegalGeneration.code()
    );
    assert_eq!(classic_heartbeat(&mut c, "grawmig", &member, 2), 0);
    // Its commits are checked against its epoch, as generation (ILLEGAL_GENERATION).
    let commit = |c: &mut RawClient, generation: i32| {
        use kafka_protocol::messages::offset_commit_request::{
            OffsetCommitRequestPartition, OffsetCommitRequestTopic,
        };
        c.call(
            &OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("grawmig")))
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_generation_id_or_member_epoch(generation)
                .with_topics(vec![OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("rawmig")))
                    .with_partitions(vec![OffsetCommitRequestPartition::default()
                        .with_partition_index(1)
                        .with_committed_offset(3)])]),
            8,
        )
        .topics[0]
            .partitions[0]
            .error_code
    };
    assert_eq!(commit(&mut c, 1), ResponseError::IllegalGeneration.code());
    assert_eq!(commit(&mut c, 2), 0);

    // m-1 revokes partition 1; the classic member is told to rejoin and gets it.
    let revoke = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("grawmig")))
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_member_epoch(1)
            .with_rebalance_timeout_ms(-1),
        1,
    );
    assert_eq!(revoke.error_code, 0);
    let kept = revoke
        .assignment
        .expect("an assignment without partition 1");
    assert_eq!(kept.topic_partitions[0].partitions.len(), 1);
    let owned =
        kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions::default()
            .with_topic_id(kept.topic_partitions[0].topic_id)
            .with_partitions(kept.topic_partitions[0].partitions.clone());
    let moved = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("grawmig")))
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_member_epoch(1)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(Some(vec![owned])),
        1,
    );
    assert_eq!(moved.member_epoch, 2);
    assert_eq!(
        classic_heartbeat(&mut c, "grawmig", &member, 2),
        ResponseError::RebalanceInProgress.code()
    );
    let rejoined = classic_join(&mut c, "grawmig", &member, "rawmig");
    assert_eq!(rejoined.generation_id, 2);
    let synced = classic_sync(&mut c, "grawmig", &member, 2);
    assert_eq!(synced.error_code, 0);
    let mine = assigned_partitions(&synced.assignment);
    assert_eq!(mine.len(), 1);
    assert!(!kept.topic_partitions[0].partitions.contains(&mine[0]));
    assert_eq!(classic_heartbeat(&mut c, "grawmig", &member, 2), 0);

    // The consumer-protocol member leaves: the group downgrades to a classic group at
    // the same generation, which rebalances.
    let left = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("grawmig")))
            .with_member_id(StrBytes::from_static_str("m-1"))
            .with_member_epoch(-1),
        1,
    );
    assert_eq!(left.error_code, 0);
    let (kind, _, state) = group_type_and_state(&addr, "grawmig").expect("listed");
    assert_eq!(
        (kind.as_str(), state.as_str()),
        ("classic", "PreparingRebalance")
    );
    assert_eq!(
        classic_heartbeat(&mut c, "grawmig", &member, 2),
        ResponseError::RebalanceInProgress.code()
    );
    let classic_again = classic_join(&mut c, "grawmig", &member, "rawmig");
    assert_eq!(classic_again.error_code, 0);
    assert_eq!(classic_again.generation_id, 3);
    assert_eq!(classic_again.leader.as_str(), member.as_str());

    // A classic group of another protocol type (Connect workers) is not upgraded.
    let connect = |c: &mut RawClient, member: &str| {
        c.call(
            &JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("gconnect")))
                .with_member_id(StrBytes::from_string(member.into()))
                .with_session_timeout_ms(6000)
                .with_rebalance_timeout_ms(30_000)
                .with_protocol_type(StrBytes::from_static_str("connect"))
                .with_protocols(vec![JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("sessioned"))
                    .with_metadata(subscription("rawmig"))]),
            7,
        )
    };
    let worker = connect(&mut c, "").member_id.to_string();
    assert_eq!(connect(&mut c, &worker).error_code, 0);
    let refused = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("gconnect")))
            .with_member_id(StrBytes::from_static_str("m-2"))
            .with_member_epoch(0)
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str("rawmig"))]))
            .with_topic_partitions(Some(Vec::new())),
        1,
    );
    assert_eq!(refused.error_code, ResponseError::GroupIdNotFound.code());
    let (kind, protocol_type, _) = group_type_and_state(&addr, "gconnect").expect("listed");
    assert_eq!(
        (kind.as_str(), protocol_type.as_str()),
        ("classic", "connect")
    );
}

/// ConsumerGroupHeartbeat for `m-1` in `group` at `epoch`, reporting `owned`.
fn consumer_heartbeat(
    c: &mut RawClient,
    group: &str,
    epoch: i32,
    owned: &[kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions],
) -> ConsumerGroupHeartbeatResponse {
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_static_str("m-1"))
        .with_member_epoch(epoch)
        .with_rebalance_timeout_ms(if epoch == 0 { 30_000 } else { -1 })
        .with_topic_partitions(Some(owned.to_vec()));
    if epoch == 0 {
        request = request.with_subscribed_topic_names(Some(vec![TopicName(
            StrBytes::from_static_str("rawtime"),
        )]));
    }
    c.call(&request, 1)
}

fn owned_of(
    response: &ConsumerGroupHeartbeatResponse,
) -> Option<Vec<kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions>> {
    response.assignment.as_ref().map(|a| {
        a.topic_partitions
            .iter()
            .map(|t| {
                kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions::default()
                    .with_topic_id(t.topic_id)
                    .with_partitions(t.partitions.clone())
            })
            .collect()
    })
}

#[test]
fn silent_members_are_fenced_and_losing_the_last_consumer_member_downgrades() {
    let broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    groups_common::create_topic(&addr, "rawtime", 2);
    let mut c = RawClient::connect(&addr);
    let joined = consumer_heartbeat(&mut c, "gtime", 0, &[]);
    assert_eq!(joined.error_code, 0);
    let mut epoch = joined.member_epoch;
    let mut owned = owned_of(&joined).expect("assignment");

    // A classic member joins (6 s session), then falls silent: it is fenced and
    // m-1 gets both partitions back.
    let id = classic_join(&mut c, "gtime", "", "rawtime")
        .member_id
        .to_string();
    let silent = classic_join(&mut c, "gtime", &id, "rawtime");
    assert_eq!(silent.error_code, 0);
    poll_until(WAIT, "m-1 owning both partitions after the fencing", || {
        let response = consumer_heartbeat(&mut c, "gtime", epoch, &owned);
        assert_eq!(response.error_code, 0, "{:?}", response.error_message);
        epoch = response.member_epoch;
        if let Some(now) = owned_of(&response) {
            owned = now;
        }
        std::thread::sleep(Duration::from_millis(200));
        (owned.iter().map(|t| t.partitions.len()).sum::<usize>() == 2).then_some(())
    });
    assert_eq!(
        classic_heartbeat(&mut c, "gtime", &id, silent.generation_id),
        ResponseError::UnknownMemberId.code()
    );

    // Another classic member joins and keeps heartbeating; m-1 falls silent and is
    // fenced after its session (6 s): the group downgrades and the classic member
    // rebalances into a classic group of its own.
    let id = classic_join(&mut c, "gtime", "", "rawtime")
        .member_id
        .to_string();
    let mut generation = classic_join(&mut c, "gtime", &id, "rawtime").generation_id;
    poll_until(WAIT, "the group classic and stable again", || {
        match classic_heartbeat(&mut c, "gtime", &id, generation) {
            0 => {}
            code if code == ResponseError::RebalanceInProgress.code() => {
                let rejoined = classic_join(&mut c, "gtime", &id, "rawtime");
                assert_eq!(rejoined.error_code, 0);
                generation = rejoined.generation_id;
                let sync = SyncGroupRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("gtime")))
                    .with_member_id(StrBytes::from_string(id.clone()))
                    .with_generation_id(generation)
                    .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                    .with_protocol_name(Some(StrBytes::from_static_str("range")));
                assert_eq!(c.call(&sync, 5).error_code, 0);
            }
            code => panic!("heartbeat error {code}"),
        }
        std::thread::sleep(Duration::from_millis(300));
        let (kind, _, state) = group_type_and_state(&addr, "gtime")?;
        (kind == "classic" && state == "Stable").then_some(())
    });
    let fenced = consumer_heartbeat(&mut c, "gtime", epoch, &owned);
    assert_eq!(fenced.error_code, ResponseError::GroupIdNotFound.code());
}

#[test]
fn a_classic_static_member_replacing_the_last_consumer_member_downgrades_the_group() {
    let broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    groups_common::create_topic(&addr, "rawstatic", 2);
    let mut c = RawClient::connect(&addr);
    let joined = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("gstatic")))
            .with_member_id(StrBytes::from_static_str("s-1"))
            .with_member_epoch(0)
            .with_instance_id(Some(StrBytes::from_static_str("inst")))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_static_str(
                "rawstatic",
            ))]))
            .with_topic_partitions(Some(Vec::new())),
        1,
    );
    assert_eq!(joined.error_code, 0);
    assert_eq!(joined.member_epoch, 1);

    // The same instance restarts as a classic consumer: it takes s-1's place, epoch and
    // assignment, and the group, classic members only now, turns classic without a
    // rebalance (Kafka's validateOnlineDowngradeWithReplacedMemberId).
    let replaced = c.call(
        &JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("gstatic")))
            .with_group_instance_id(Some(StrBytes::from_static_str("inst")))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(30_000)
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(subscription("rawstatic"))]),
        7,
    );
    assert_eq!(replaced.error_code, 0);
    assert_eq!(replaced.generation_id, 1);
    let member = replaced.member_id.to_string();
    assert_ne!(member, "s-1");
    let (kind, _, state) = group_type_and_state(&addr, "gstatic").expect("listed");
    assert_eq!((kind.as_str(), state.as_str()), ("classic", "Stable"));
    let synced = classic_sync(&mut c, "gstatic", &member, 1);
    assert_eq!(synced.error_code, 0);
    let mut mine = assigned_partitions(&synced.assignment);
    mine.sort();
    assert_eq!(mine, vec![0, 1], "s-1's assignment");
    assert_eq!(classic_heartbeat(&mut c, "gstatic", &member, 1), 0);
}
