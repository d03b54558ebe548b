//! KIP-848's consumer group protocol against the real binary: librdkafka with
//! `group.protocol=consumer` sharing partitions and handing them over, the wire-level
//! rules (member epochs, fencing, static members, stale commits) with raw requests, and
//! the group and its offsets across a broker restart.

mod common;
mod groups_common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{poll_until, BrokerProcess, PolledMember, RawClient};
use groups_common::{create_topic, SETTINGS};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);

fn consumer(addr: &str, group: &str, extra: &[(&str, &str)]) -> BaseConsumer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("consumer")
}

/// A consumer-protocol member of `group` subscribed to `topic`, polled on its own thread.
fn member(addr: &str, group: &str, topic: &str) -> PolledMember {
    let consumer = consumer(addr, group, &[]);
    consumer.subscribe(&[topic]).expect("subscribe");
    PolledMember::start(consumer, Duration::from_millis(50))
}

fn list_groups(addr: &str) -> Vec<(String, String, String)> {
    let response = RawClient::connect(addr).call(&ListGroupsRequest::default(), 5);
    assert_eq!(response.error_code, 0);
    response
        .groups
        .into_iter()
        .map(|g| {
            (
                g.group_id.0.to_string(),
                g.group_type.to_string(),
                g.group_state.to_string(),
            )
        })
        .collect()
}

#[test]
fn consumers_share_partitions_and_a_leaver_hands_everything_over() {
    let broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    create_topic(&addr, "kip848", 6);
    let a = member(&addr, "g848", "kip848");
    let b = member(&addr, "g848", "kip848");
    let all: BTreeSet<i32> = (0..6).collect();
    poll_until(WAIT, "two members splitting six partitions", || {
        let (x, y) = (a.assignment(), b.assignment());
        let union: BTreeSet<i32> = x.union(&y).copied().collect();
        (x.is_disjoint(&y) && union == all && x.len() == 3 && y.len() == 3).then_some(())
    });
    let groups = list_groups(&addr);
    assert!(
        groups.contains(&("g848".into(), "consumer".into(), "Stable".into())),
        "{groups:?}"
    );
    let described = RawClient::connect(&addr).call(
        &ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_static_str("g848"))]),
        1,
    );
    let group = &described.groups[0];
    assert_eq!(group.error_code, 0);
    assert_eq!(group.members.len(), 2);
    assert_eq!(group.assignor_name.as_str(), "uniform");
    drop(a);
    poll_until(WAIT, "the remaining member owning all six", || {
        (b.assignment() == all).then_some(())
    });
}

fn join(
    client: &mut RawClient,
    group: &str,
    member: &str,
    instance: Option<&str>,
    topic: &str,
) -> ConsumerGroupHeartbeatResponse {
    client.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_member_epoch(0)
            .with_instance_id(instance.map(|i| StrBytes::from_string(i.into())))
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_string(topic.into()))]))
            .with_topic_partitions(Some(Vec::new())),
        1,
    )
}

fn heartbeat(
    client: &mut RawClient,
    group: &str,
    member: &str,
    epoch: i32,
    owned: Option<Vec<TopicPartitions>>,
) -> ConsumerGroupHeartbeatResponse {
    client.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_member_epoch(epoch)
            .with_rebalance_timeout_ms(-1)
            .with_topic_partitions(owned),
        1,
    )
}

fn commit(client: &mut RawClient, group: &str, member: &str, epoch: i32) -> i16 {
    let response = client.call(
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.into())))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_generation_id_or_member_epoch(epoch)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("raw848")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])]),
        9,
    );
    response.topics[0].partitions[0].error_code
}

#[test]
fn member_epochs_fence_stale_members_and_commits() {
    let broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    create_topic(&addr, "raw848", 2);
    let mut c = RawClient::connect(&addr);
    let joined = join(&mut c, "graw", "m-1", None, "raw848");
    assert_eq!(joined.error_code, 0, "{:?}", joined.error_message);
    assert_eq!(joined.member_epoch, 1);
    assert_eq!(joined.heartbeat_interval_ms, 500);
    let assigned = joined.assignment.expect("assignment on join");
    assert_eq!(assigned.topic_partitions[0].partitions, vec![0, 1]);
    let epoch = joined.member_epoch;

    // Commits carry the member epoch: the current one works, another is stale.
    assert_eq!(commit(&mut c, "graw", "m-1", epoch), 0);
    assert_eq!(
        commit(&mut c, "graw", "m-1", epoch + 5),
        ResponseError::StaleMemberEpoch.code()
    );
    assert_eq!(
        commit(&mut c, "graw", "nobody", epoch),
        ResponseError::UnknownMemberId.code()
    );
    // OffsetFetch v9 checks the member too.
    let fetched = c.call(
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(StrBytes::from_static_str("graw")))
            .with_member_id(Some(StrBytes::from_static_str("m-1")))
            .with_member_epoch(epoch + 1)]),
        9,
    );
    assert_eq!(
        fetched.groups[0].error_code,
        ResponseError::StaleMemberEpoch.code()
    );

    // A heartbeat from the future, or from nobody, is refused with Kafka's codes.
    let ahead = heartbeat(&mut c, "graw", "m-1", epoch + 1, None);
    assert_eq!(ahead.error_code, ResponseError::FencedMemberEpoch.code());
    let unknown = heartbeat(&mut c, "graw", "ghost", 3, None);
    assert_eq!(unknown.error_code, ResponseError::UnknownMemberId.code());
    let bad = heartbeat(&mut c, "graw", "m-1", -7, None);
    assert_eq!(bad.error_code, ResponseError::InvalidRequest.code());

    // A second member: m-1 must revoke one partition before m-2 gets it.
    let second = join(&mut c, "graw", "m-2", None, "raw848");
    assert_eq!(second.error_code, 0);
    assert_eq!(second.member_epoch, 2);
    let owned = |parts: Vec<i32>| {
        Some(vec![TopicPartitions::default()
            .with_topic_id(assigned.topic_partitions[0].topic_id)
            .with_partitions(parts)])
    };
    let revoke = heartbeat(&mut c, "graw", "m-1", epoch, owned(vec![0, 1]));
    assert_eq!(revoke.error_code, 0);
    assert_eq!(
        revoke.member_epoch, epoch,
        "stays at its epoch until it revokes"
    );
    let kept = revoke.assignment.expect("revocation").topic_partitions;
    assert_eq!(kept[0].partitions.len(), 1);
    let mine = kept[0].partitions.clone();
    let acked = heartbeat(&mut c, "graw", "m-1", epoch, owned(mine.clone()));
    assert_eq!(acked.member_epoch, 2);
    let theirs = heartbeat(&mut c, "graw", "m-2", 2, owned(Vec::new()));
    let got = theirs.assignment.expect("freed partition").topic_partitions;
    assert_eq!(got[0].partitions.len(), 1);
    assert_ne!(got[0].partitions, mine);
    // The old epoch no longer commits.
    assert_eq!(
        commit(&mut c, "graw", "m-1", epoch),
        ResponseError::StaleMemberEpoch.code()
    );

    // Static members: an instance id in use cannot be taken; after a temporary leave
    // (-2) the successor inherits the assignment without a new epoch.
    let s1 = join(&mut c, "gstatic", "s-1", Some("inst"), "raw848");
    assert_eq!(s1.error_code, 0);
    let taken = join(&mut c, "gstatic", "s-2", Some("inst"), "raw848");
    assert_eq!(taken.error_code, ResponseError::UnreleasedInstanceId.code());
    let left = c.call(
        &ConsumerGroupHeartbeatRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("gstatic")))
            .with_member_id(StrBytes::from_static_str("s-1"))
            .with_instance_id(Some(StrBytes::from_static_str("inst")))
            .with_member_epoch(-2),
        1,
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.member_epoch, -2);
    let back = join(&mut c, "gstatic", "s-2", Some("inst"), "raw848");
    assert_eq!(back.error_code, 0);
    assert_eq!(back.member_epoch, s1.member_epoch);
    assert_eq!(
        back.assignment.expect("inherited").topic_partitions[0].partitions,
        vec![0, 1]
    );
    let fenced = heartbeat(&mut c, "gstatic", "s-1", s1.member_epoch, None);
    assert_eq!(fenced.error_code, ResponseError::UnknownMemberId.code());

    // Regex subscriptions (RE2 syntax, whole-name match) are resolved by the broker.
    let by_regex = |c: &mut RawClient, regex: &str| {
        c.call(
            &ConsumerGroupHeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("gregex")))
                .with_member_id(StrBytes::from_static_str("r-1"))
                .with_rebalance_timeout_ms(30_000)
                .with_subscribed_topic_regex(Some(StrBytes::from_string(regex.into())))
                .with_topic_partitions(Some(Vec::new())),
            1,
        )
    };
    let invalid = by_regex(&mut c, "raw(");
    assert_eq!(
        invalid.error_code,
        ResponseError::InvalidRegularExpression.code()
    );
    let matched = by_regex(&mut c, "raw8.*");
    assert_eq!(matched.error_code, 0, "{:?}", matched.error_message);
    let parts = matched
        .assignment
        .expect("regex assignment")
        .topic_partitions;
    assert_eq!(parts[0].topic_id, assigned.topic_partitions[0].topic_id);
    assert_eq!(parts[0].partitions, vec![0, 1]);

    // A classic JoinGroup joins a consumer group with members only with the consumer
    // protocol type (classic members: tests/groups_migration.rs).
    let classic = c.call(
        &JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("graw")))
            .with_session_timeout_ms(6000)
            .with_rebalance_timeout_ms(6000)
            .with_protocol_type(StrBytes::from_static_str("connect"))
            .with_protocols(vec![
                kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(bytes::Bytes::new()),
            ]),
        5,
    );
    assert_eq!(
        classic.error_code,
        ResponseError::InconsistentGroupProtocol.code()
    );
}

#[test]
fn committed_offsets_and_the_group_survive_a_restart() {
    let mut broker = BrokerProcess::start(SETTINGS);
    let addr = broker.bootstrap();
    create_topic(&addr, "resume848", 1);
    groups_common::produce(&addr, "resume848", 0, 100);
    {
        let consumer = consumer(&addr, "g-resume848", &[]);
        consumer.subscribe(&["resume848"]).unwrap();
        let mut read = 0;
        poll_until(WAIT, "60 records", || {
            if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
                read += 1;
            }
            (read >= 60).then_some(())
        });
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset("resume848", 0, Offset::Offset(60))
            .unwrap();
        consumer.commit(&offsets, CommitMode::Sync).expect("commit");
    }
    broker.terminate();
    broker.restart();
    let addr = broker.bootstrap();
    let groups = list_groups(&addr);
    assert!(
        groups
            .iter()
            .any(|(id, ty, _)| id == "g-resume848" && ty == "consumer"),
        "{groups:?}"
    );
    let consumer = consumer(&addr, "g-resume848", &[]);
    consumer.subscribe(&["resume848"]).unwrap();
    let first = poll_until(WAIT, "a record after the restart", || {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => Some(message.offset()),
            _ => None,
        }
    });
    assert_eq!(first, 60, "resumed where the group committed");
}

#[test]
fn a_silent_member_is_expired_and_its_partitions_move() {
    let broker = BrokerProcess::start(&[
        "group.consumer.heartbeat.interval.ms=200",
        "group.consumer.session.timeout.ms=1000",
    ]);
    let addr = broker.bootstrap();
    create_topic(&addr, "expire848", 2);
    let mut c = RawClient::connect(&addr);
    let silent = join(&mut c, "gexpire", "quiet", None, "expire848");
    assert_eq!(silent.error_code, 0);
    let topic_id = silent.assignment.expect("assignment").topic_partitions[0].topic_id;
    let joined = join(&mut c, "gexpire", "alive", None, "expire848");
    assert_eq!(joined.error_code, 0);
    // "quiet" never heartbeats again (so never revokes); once its session passes the
    // broker removes it and "alive" gets both partitions.
    let mut epoch = joined.member_epoch;
    let mut owned: Vec<i32> = Vec::new();
    poll_until(WAIT, "the live member owning both partitions", || {
        let hb = heartbeat(
            &mut c,
            "gexpire",
            "alive",
            epoch,
            Some(vec![TopicPartitions::default()
                .with_topic_id(topic_id)
                .with_partitions(owned.clone())]),
        );
        assert_eq!(hb.error_code, 0, "{:?}", hb.error_message);
        epoch = hb.member_epoch;
        if let Some(a) = hb.assignment {
            owned = a
                .topic_partitions
                .iter()
                .flat_map(|t| t.partitions.clone())
                .collect();
        }
        std::thread::sleep(Duration::from_millis(200));
        (owned == vec![0, 1]).then_some(())
    });
    let gone = heartbeat(&mut c, "gexpire", "quiet", silent.member_epoch, None);
    assert_eq!(gone.error_code, ResponseError::UnknownMemberId.code());
}
