//! The group state machine under a paused tokio clock: timeouts are exact and instant.

use std::time::Duration;

use bytes::Bytes;

use super::subscription::encode_subscription;
use super::*;

struct Fixture {
    dir: tempfile::TempDir,
    groups: GroupCoordinator,
}

fn open_db(dir: &std::path::Path) -> sled::Db {
    crate::broker::open_metadata(dir).unwrap()
}

fn open_at(dir: &std::path::Path, delay_ms: u64) -> GroupCoordinator {
    let db = open_db(dir);
    GroupCoordinator::open(
        &db,
        GroupSettings {
            initial_rebalance_delay: Duration::from_millis(delay_ms),
            ..GroupSettings::default()
        },
    )
    .unwrap()
}

fn fixture(delay_ms: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let groups = open_at(dir.path(), delay_ms);
    Fixture { dir, groups }
}

fn params(member_id: &str, instance: Option<&str>, topics: &[&str]) -> JoinParams {
    JoinParams {
        group_id: "g".into(),
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
        client_id: "client".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: 10_000,
        rebalance_timeout_ms: 30_000,
        protocol_type: "consumer".into(),
        protocols: vec![("range".into(), Bytes::from(encode_subscription(topics)))],
        require_known_member_id: false,
    }
}

fn sync(member: &JoinOutcome, assignments: Vec<(String, Bytes)>) -> SyncParams {
    SyncParams {
        group_id: "g".into(),
        generation_id: member.generation_id,
        member_id: member.member_id.clone(),
        assignments,
        ..Default::default()
    }
}

fn hb(member_id: &str, generation_id: i32, instance: Option<&str>) -> HeartbeatParams {
    HeartbeatParams {
        group_id: "g".into(),
        generation_id,
        member_id: member_id.into(),
        group_instance_id: instance.map(str::to_string),
    }
}

/// One offset for t-0, as member `member_id` of generation `generation_id` commits it.
fn commit(generation_id: i32, member_id: &str, offset: i64) -> CommitParams {
    CommitParams {
        group_id: "g".into(),
        generation_id,
        member_id: member_id.into(),
        group_instance_id: None,
        offsets: vec![CommitOffset {
            topic: "t".into(),
            partition: 0,
            offset,
            leader_epoch: -1,
            metadata: Some("m".into()),
        }],
    }
}

fn state(groups: &GroupCoordinator) -> GroupState {
    groups.describe("g").unwrap().state
}

/// A new member joins a group of one (`member_id`), who rejoins: returns the next
/// generation's outcomes for the member who rejoined and for the newcomer.
async fn second_member_joins(
    groups: &GroupCoordinator,
    member_id: &str,
) -> (JoinOutcome, JoinOutcome) {
    let newcomer = groups.begin_join(params("", None, &["t"]));
    let rejoined = groups.join(params(member_id, None, &["t"])).await.unwrap();
    (rejoined, newcomer.outcome().await.unwrap())
}

/// Joins everyone in one rebalance and syncs with one-byte assignments naming the
/// member's index. Returns the join outcomes in the order given.
async fn form(groups: &GroupCoordinator, joins: Vec<JoinParams>) -> Vec<JoinOutcome> {
    let waits: Vec<JoinWait> = joins.into_iter().map(|p| groups.begin_join(p)).collect();
    let mut outcomes = Vec::new();
    for wait in waits {
        outcomes.push(wait.outcome().await.unwrap());
    }
    let leader = outcomes
        .iter()
        .find(|o| o.member_id == o.leader)
        .expect("a leader")
        .clone();
    assert_eq!(leader.members.len(), outcomes.len());
    let mut syncs = Vec::new();
    for o in outcomes.iter().filter(|o| o.member_id != o.leader) {
        syncs.push(groups.begin_sync(sync(o, vec![])));
    }
    let assignments = outcomes
        .iter()
        .enumerate()
        .map(|(i, o)| (o.member_id.clone(), Bytes::from(vec![i as u8])))
        .collect();
    groups.sync(sync(&leader, assignments)).await.unwrap();
    for s in syncs {
        s.outcome().await.unwrap();
    }
    outcomes
}

#[tokio::test(start_paused = true)]
async fn three_members_join_and_sync_into_one_generation() {
    let f = fixture(100);
    let waits: Vec<JoinWait> = (0..3)
        .map(|_| f.groups.begin_join(params("", None, &["t"])))
        .collect();
    let mut outcomes = Vec::new();
    for w in waits {
        outcomes.push(w.outcome().await.unwrap());
    }
    assert!(outcomes.iter().all(|o| o.generation_id == 1));
    assert!(outcomes
        .iter()
        .all(|o| o.protocol_name.as_deref() == Some("range")));
    let leaders: Vec<_> = outcomes
        .iter()
        .filter(|o| o.member_id == o.leader)
        .collect();
    assert_eq!(leaders.len(), 1, "exactly one leader");
    assert_eq!(leaders[0].members.len(), 3);
    assert!(outcomes
        .iter()
        .filter(|o| o.member_id != o.leader)
        .all(|o| o.members.is_empty()));
    assert_eq!(state(&f.groups), GroupState::CompletingRebalance);

    // Followers wait for the leader's assignment.
    let followers: Vec<_> = outcomes
        .iter()
        .filter(|o| o.member_id != o.leader)
        .collect();
    let w1 = f.groups.begin_sync(sync(followers[0], vec![]));
    let w2 = f.groups.begin_sync(sync(followers[1], vec![]));
    assert!(matches!(w1, SyncWait::Waiting(_)));
    let assignments = outcomes
        .iter()
        .map(|o| (o.member_id.clone(), Bytes::from(o.member_id.clone())))
        .collect();
    let mine = f.groups.sync(sync(leaders[0], assignments)).await.unwrap();
    assert_eq!(mine.assignment, Bytes::from(leaders[0].member_id.clone()));
    assert_eq!(
        w1.outcome().await.unwrap().assignment,
        Bytes::from(followers[0].member_id.clone())
    );
    assert_eq!(
        w2.outcome().await.unwrap().assignment,
        Bytes::from(followers[1].member_id.clone())
    );
    let described = f.groups.describe("g").unwrap();
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.protocol, "range");
    assert_eq!(described.members.len(), 3);
    for o in &outcomes {
        assert_eq!(f.groups.heartbeat(hb(&o.member_id, 1, None)).await, Ok(()));
    }
}

#[tokio::test(start_paused = true)]
async fn joining_and_leaving_members_trigger_rebalances() {
    let f = fixture(0);
    let first = form(&f.groups, vec![params("", None, &["t"])]).await;
    let a = first[0].clone();
    assert_eq!(a.generation_id, 1);

    // A second member joins: the group rebalances; the first learns from its heartbeat.
    let b_wait = f.groups.begin_join(params("", None, &["t"]));
    assert_eq!(state(&f.groups), GroupState::PreparingRebalance);
    assert_eq!(
        f.groups.heartbeat(hb(&a.member_id, 1, None)).await,
        Err(HeartbeatError::RebalanceInProgress)
    );
    let a2 = f
        .groups
        .join(params(&a.member_id, None, &["t"]))
        .await
        .unwrap();
    let b = b_wait.outcome().await.unwrap();
    assert_eq!((a2.generation_id, b.generation_id), (2, 2));
    assert_eq!(a2.leader, a.member_id, "the existing leader stays leader");
    assert_eq!(a2.members.len(), 2);

    // Syncing with the stale generation is refused.
    assert_eq!(
        f.groups.sync(sync(&a, vec![])).await,
        Err(SyncError::IllegalGeneration)
    );
    let b_sync = f.groups.begin_sync(sync(&b, vec![]));
    f.groups.sync(sync(&a2, vec![])).await.unwrap();
    b_sync.outcome().await.unwrap();

    // The leader leaves: the other member rejoins alone and becomes leader.
    let left = f
        .groups
        .leave(
            "g",
            vec![
                LeavingMember {
                    member_id: a.member_id.clone(),
                    group_instance_id: None,
                },
                LeavingMember {
                    member_id: "ghost".into(),
                    group_instance_id: None,
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(left, vec![Ok(()), Err(LeaveMemberError::UnknownMemberId)]);
    assert_eq!(state(&f.groups), GroupState::PreparingRebalance);
    let b2 = f
        .groups
        .join(params(&b.member_id, None, &["t"]))
        .await
        .unwrap();
    assert_eq!(b2.generation_id, 3);
    assert_eq!(b2.leader, b.member_id);

    // The last member leaves: the group is Empty.
    f.groups.sync(sync(&b2, vec![])).await.unwrap();
    f.groups
        .leave(
            "g",
            vec![LeavingMember {
                member_id: b.member_id.clone(),
                group_instance_id: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(state(&f.groups), GroupState::Empty);
}

#[tokio::test(start_paused = true)]
async fn a_silent_member_is_evicted_after_its_session_timeout() {
    let f = fixture(0);
    let a = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    let (a, b) = second_member_joins(&f.groups, &a.member_id).await;
    let b_sync = f.groups.begin_sync(sync(&b, vec![]));
    f.groups.sync(sync(&a, vec![])).await.unwrap();
    b_sync.outcome().await.unwrap();

    // A heartbeats every 3 s; B (its connection dropped) never does.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert_eq!(f.groups.heartbeat(hb(&a.member_id, 2, None)).await, Ok(()));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // 11 s: past B's 10 s session
    assert_eq!(
        f.groups.heartbeat(hb(&a.member_id, 2, None)).await,
        Err(HeartbeatError::RebalanceInProgress)
    );
    assert_eq!(
        f.groups.heartbeat(hb(&b.member_id, 2, None)).await,
        Err(HeartbeatError::UnknownMemberId)
    );
    let a3 = f
        .groups
        .join(params(&a.member_id, None, &["t"]))
        .await
        .unwrap();
    assert_eq!(a3.generation_id, 3);
    assert_eq!(a3.members.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn members_that_do_not_rejoin_are_removed_at_the_rebalance_timeout() {
    let f = fixture(0);
    let a = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    let (a, b) = second_member_joins(&f.groups, &a.member_id).await;
    let b_sync = f.groups.begin_sync(sync(&b, vec![]));
    f.groups.sync(sync(&a, vec![])).await.unwrap();
    b_sync.outcome().await.unwrap();

    // C joins; B rejoins; A keeps heartbeating but never rejoins.
    let c_wait = f.groups.begin_join(params("", None, &["t"]));
    let b_rejoin = f.groups.begin_join(params(&b.member_id, None, &["t"]));
    let started = tokio::time::Instant::now();
    let keep_alive = {
        let groups = f.groups.clone();
        let id = a.member_id.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(3)).await;
                if groups.heartbeat(hb(&id, 2, None)).await
                    != Err(HeartbeatError::RebalanceInProgress)
                {
                    return;
                }
            }
        })
    };
    let c = c_wait.outcome().await.unwrap();
    let b2 = b_rejoin.outcome().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(30),
        "waited for the rebalance timeout"
    );
    assert_eq!(c.generation_id, 3);
    assert_eq!(b2.generation_id, 3);
    let leader = if b2.leader == b2.member_id { &b2 } else { &c };
    assert_eq!(leader.members.len(), 2);
    assert!(leader.members.iter().all(|m| m.member_id != a.member_id));
    keep_alive.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let f = fixture(100);
    let outcomes = form(
        &f.groups,
        vec![
            params("", Some("i1"), &["t"]),
            params("", Some("i2"), &["t"]),
        ],
    )
    .await;
    let (s1, s2) = (&outcomes[0], &outcomes[1]);
    assert!(s1.member_id.starts_with("i1-"));
    let before = f
        .groups
        .describe("g")
        .unwrap()
        .members
        .iter()
        .find(|m| m.member_id == s1.member_id)
        .unwrap()
        .assignment
        .clone();

    // The process behind i1 restarts: it joins with no member id.
    let again = f.groups.join(params("", Some("i1"), &["t"])).await.unwrap();
    assert_ne!(again.member_id, s1.member_id);
    assert_eq!(again.generation_id, 1, "no new generation");
    // i1 joined first, so it leads: it learns the members but must not reassign (v9).
    assert_eq!(again.leader, again.member_id);
    assert!(again.skip_assignment);
    assert_eq!(again.members.len(), 2);
    assert_eq!(state(&f.groups), GroupState::Stable);
    let assignment = f
        .groups
        .sync(sync(&again, vec![]))
        .await
        .unwrap()
        .assignment;
    assert_eq!(assignment, before, "it gets its previous assignment back");
    assert_eq!(
        f.groups.heartbeat(hb(&s2.member_id, 1, Some("i2"))).await,
        Ok(())
    );
    assert_eq!(
        f.groups
            .heartbeat(hb(&again.member_id, 1, Some("i1")))
            .await,
        Ok(())
    );

    // The old incarnation is fenced everywhere.
    assert_eq!(
        f.groups.heartbeat(hb(&s1.member_id, 1, Some("i1"))).await,
        Err(HeartbeatError::FencedInstanceId)
    );
    assert_eq!(
        f.groups
            .join(params(&s1.member_id, Some("i1"), &["t"]))
            .await,
        Err(JoinError::FencedInstanceId)
    );
    // (Refused before any fsync, so the paused clock does not jump.)
    let stale = CommitParams {
        group_id: "g".into(),
        generation_id: 1,
        member_id: s1.member_id.clone(),
        group_instance_id: Some("i1".into()),
        offsets: vec![],
    };
    assert_eq!(
        f.groups.commit_offsets(stale).await,
        Err(CommitError::FencedInstanceId)
    );
    assert_eq!(f.groups.describe("g").unwrap().generation_id, 1);
}

// Real clock: a paused clock would jump past session timeouts while the commit
// waits for sled's (real) fsync.
#[tokio::test]
async fn commits_from_stale_generations_and_strangers_are_refused() {
    let f = fixture(0);
    // Standalone consumers may commit to a group nobody is in.
    assert_eq!(
        f.groups.commit_offsets(commit(-1, "", 3)).await,
        Ok(vec![Ok(())])
    );

    let a = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    assert_eq!(
        f.groups.commit_offsets(commit(-1, "", 4)).await,
        Err(CommitError::UnknownMemberId),
        "no standalone commits while the group has members"
    );
    assert_eq!(
        f.groups.commit_offsets(commit(0, &a.member_id, 4)).await,
        Err(CommitError::IllegalGeneration)
    );
    assert_eq!(
        f.groups.commit_offsets(commit(1, &a.member_id, 5)).await,
        Ok(vec![Ok(())])
    );
    // A rebalance completes; until the new generation is synced, commits wait.
    let (a2, _b) = second_member_joins(&f.groups, &a.member_id).await;
    assert_eq!(
        f.groups.commit_offsets(commit(2, &a2.member_id, 6)).await,
        Err(CommitError::RebalanceInProgress)
    );
    assert_eq!(
        f.groups.commit_offsets(commit(1, &a2.member_id, 6)).await,
        Err(CommitError::RebalanceInProgress)
    );
    let got = f.groups.fetch_offsets("g", None).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].offset, got[0].metadata.as_deref()), (5, Some("m")));
    let too_big = CommitParams {
        offsets: vec![CommitOffset {
            metadata: Some("x".repeat(MAX_OFFSET_METADATA_BYTES + 1)),
            ..Default::default()
        }],
        ..commit(-1, "", 0)
    };
    let other = CommitParams {
        group_id: "other".into(),
        ..too_big
    };
    assert_eq!(
        f.groups.commit_offsets(other).await,
        Ok(vec![Err(CommitPartitionError::MetadataTooLarge)])
    );
}

#[tokio::test]
async fn transactional_commits_from_zombie_consumers_are_refused() {
    let f = fixture(0);
    let check =
        |generation: i32, member: &str| f.groups.check_txn_member("g", generation, member, None);
    // No group yet: a pre-KIP-447 producer (no member, generation -1) may stage offsets.
    assert_eq!(check(-1, ""), Ok(()));
    assert_eq!(check(-1, "who"), Err(TxnMemberError::UnknownMemberId));

    let a = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    assert_eq!(check(1, &a.member_id), Ok(()));
    assert_eq!(check(-1, ""), Ok(()), "older clients send neither field");
    assert_eq!(check(1, "stranger"), Err(TxnMemberError::UnknownMemberId));
    assert_eq!(
        check(7, &a.member_id),
        Err(TxnMemberError::IllegalGeneration)
    );

    // A second member joins: generation 2. A producer still holding generation 1's
    // metadata is a zombie, even though its member id is still in the group.
    let (a2, b) = second_member_joins(&f.groups, &a.member_id).await;
    assert_eq!(a2.generation_id, 2);
    assert_eq!(
        check(1, &a.member_id),
        Err(TxnMemberError::IllegalGeneration)
    );
    assert_eq!(check(2, &a2.member_id), Ok(()));
    assert_eq!(check(2, &b.member_id), Ok(()));
}

#[tokio::test(start_paused = true)]
async fn join_group_v4_asks_a_new_member_to_come_back_with_its_id() {
    let f = fixture(0);
    let mut p = params("", None, &["t"]);
    p.require_known_member_id = true;
    let Err(JoinError::MemberIdRequired { member_id }) = f.groups.join(p.clone()).await else {
        panic!("expected MEMBER_ID_REQUIRED")
    };
    assert!(member_id.starts_with("client-"));
    p.member_id = member_id.clone();
    let joined = f.groups.join(p.clone()).await.unwrap();
    assert_eq!(joined.member_id, member_id);
    assert_eq!(joined.generation_id, 1);
    // Before v4 the id is assigned at once.
    let old = params("", None, &["t"]);
    let wait = f.groups.begin_join(old);
    assert!(matches!(wait, JoinWait::Waiting(_)));
    // Static members never get MEMBER_ID_REQUIRED.
    let mut s = params("", Some("i9"), &["t"]);
    s.require_known_member_id = true;
    assert!(matches!(f.groups.begin_join(s), JoinWait::Waiting(_)));
    // An unknown id is refused; an inconsistent protocol too.
    assert_eq!(
        f.groups.join(params("who", None, &["t"])).await,
        Err(JoinError::UnknownMemberId)
    );
    let mut odd = params("", None, &["t"]);
    odd.protocols = vec![("roundrobin".into(), Bytes::new())];
    assert_eq!(
        f.groups.join(odd).await,
        Err(JoinError::InconsistentGroupProtocol)
    );
    let mut short = params("", None, &["t"]);
    short.session_timeout_ms = 10;
    assert_eq!(
        f.groups.join(short).await,
        Err(JoinError::InvalidSessionTimeout)
    );
}

#[tokio::test(start_paused = true)]
async fn the_protocol_every_member_supports_wins_by_vote() {
    let f = fixture(100);
    let mut a = params("", None, &["t"]);
    a.protocols = vec![
        ("cooperative-sticky".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    let mut b = a.clone();
    b.protocols = vec![
        ("range".into(), Bytes::new()),
        ("cooperative-sticky".into(), Bytes::new()),
    ];
    let mut c = a.clone();
    c.protocols = vec![
        ("roundrobin".into(), Bytes::new()),
        ("range".into(), Bytes::new()),
    ];
    let out = form(&f.groups, vec![a.clone(), b, c]).await;
    assert!(out
        .iter()
        .all(|o| o.protocol_name.as_deref() == Some("range")));
}

// Real clock: a paused clock would jump past session timeouts while the commit
// waits for sled's (real) fsync.
#[tokio::test]
async fn committed_offsets_and_groups_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let groups = open_at(dir.path(), 0);
        let a = form(&groups, vec![params("", None, &["t"])])
            .await
            .remove(0);
        let commit = CommitParams {
            group_id: "g".into(),
            generation_id: a.generation_id,
            member_id: a.member_id.clone(),
            group_instance_id: None,
            offsets: vec![
                CommitOffset {
                    topic: "t".into(),
                    partition: 0,
                    offset: 42,
                    leader_epoch: 7,
                    metadata: None,
                },
                CommitOffset {
                    topic: "t".into(),
                    partition: 1,
                    offset: 9,
                    leader_epoch: -1,
                    metadata: Some("x".into()),
                },
            ],
        };
        groups.commit_offsets(commit).await.unwrap();
    }
    let groups = open_at(dir.path(), 0);
    let mut got = groups
        .fetch_offsets("g", Some(vec![("t".into(), vec![0, 1, 2])]))
        .await
        .unwrap();
    got.sort_by_key(|o| o.partition);
    let summary: Vec<_> = got
        .iter()
        .map(|o| (o.partition, o.offset, o.leader_epoch))
        .collect();
    assert_eq!(summary, vec![(0, 42, 7), (1, 9, -1), (2, -1, -1)]);
    assert_eq!(got[1].metadata.as_deref(), Some("x"));
    assert_eq!(groups.committed("g").len(), 2);
    let listed = groups.list(&[], &[]);
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].state, GroupState::Empty.name());
    assert_eq!(listed[0].protocol_type, "consumer");
    // Generations continue rather than restart, so stale members stay stale.
    let again = groups.join(params("", None, &["t"])).await.unwrap();
    assert_eq!(again.generation_id, 2);
}

// Real clock: a paused clock would jump past session timeouts while the commit
// waits for sled's (real) fsync.
#[tokio::test]
async fn offsets_of_subscribed_topics_cannot_be_deleted_and_groups_with_members_stay() {
    let f = fixture(0);
    let a = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    let commit = |topic: &str| CommitOffset {
        topic: topic.into(),
        partition: 0,
        offset: 1,
        leader_epoch: -1,
        metadata: None,
    };
    f.groups
        .commit_offsets(CommitParams {
            group_id: "g".into(),
            generation_id: 1,
            member_id: a.member_id.clone(),
            group_instance_id: None,
            offsets: vec![commit("t"), commit("u")],
        })
        .await
        .unwrap();
    let results = f
        .groups
        .delete_offsets("g", vec![("t".into(), vec![0]), ("u".into(), vec![0])])
        .await
        .unwrap();
    assert_eq!(
        results,
        vec![
            (
                "t".into(),
                0,
                Err(DeleteOffsetPartitionError::GroupSubscribedToTopic)
            ),
            ("u".into(), 0, Ok(())),
        ]
    );
    assert_eq!(f.groups.committed("g").len(), 1);
    assert_eq!(
        f.groups.delete("g").await,
        Err(DeleteGroupError::NonEmptyGroup)
    );
    assert_eq!(
        f.groups.delete("nope").await,
        Err(DeleteGroupError::GroupIdNotFound)
    );
    f.groups
        .leave(
            "g",
            vec![LeavingMember {
                member_id: a.member_id.clone(),
                group_instance_id: None,
            }],
        )
        .await
        .unwrap();
    assert_eq!(f.groups.delete("g").await, Ok(()));
    assert!(f.groups.committed("g").is_empty());
    assert!(f.groups.list(&[], &[]).is_empty());
    drop(f.dir);
}

#[tokio::test(start_paused = true)]
async fn shutdown_answers_every_waiting_join_at_once() {
    let f = fixture(100);
    let waiting = f.groups.begin_join(params("", None, &["t"]));
    f.groups.shutdown();
    assert_eq!(
        waiting.outcome().await,
        Err(JoinError::CoordinatorNotAvailable)
    );
    assert_eq!(
        f.groups.join(params("", None, &["t"])).await,
        Err(JoinError::CoordinatorNotAvailable)
    );
}

// Real clock: commits wait for sled's fsync.
#[tokio::test]
async fn offsets_of_groups_without_members_expire_after_the_retention() {
    let dir = tempfile::tempdir().unwrap();
    let db = open_db(dir.path());
    let groups = GroupCoordinator::open(
        &db,
        GroupSettings {
            initial_rebalance_delay: Duration::ZERO,
            offsets_retention: Duration::from_millis(200),
            ..GroupSettings::default()
        },
    )
    .unwrap();
    let commit = |group: &str| CommitParams {
        group_id: group.into(),
        generation_id: -1,
        offsets: vec![CommitOffset {
            topic: "t".into(),
            partition: 0,
            offset: 1,
            leader_epoch: -1,
            metadata: None,
        }],
        ..Default::default()
    };
    groups.commit_offsets(commit("abandoned")).await.unwrap();
    groups.commit_offsets(commit("g")).await.unwrap();
    let member = groups.join(params("", None, &["t"])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    groups.expire_offsets();
    assert!(groups.committed("abandoned").is_empty());
    assert_eq!(
        groups.committed("g").len(),
        1,
        "a group with members keeps its offsets"
    );
    let listed: Vec<String> = groups
        .list(&[], &[])
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    assert_eq!(listed, vec!["g".to_string()]);
    assert_eq!(member.generation_id, 1);
}

/// Issue 19, item 9: kafkajs on a retriable error commits what it processed, sends
/// LeaveGroup, restarts as a new member and asks OffsetFetch where to resume. The commit
/// must be what the next generation reads; a commit the old incarnation sends after
/// leaving is refused (UNKNOWN_MEMBER_ID, as Kafka answers) instead of being applied late.
// Real clock: the commits wait for sled's (real) fsync, which a paused clock would let
// the member's session timer overtake.
#[tokio::test]
async fn a_crashed_member_that_rejoins_resumes_from_its_last_commit() {
    let f = fixture(0);
    let old = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    let committed = f
        .groups
        .commit_offsets(commit(old.generation_id, &old.member_id, 21));
    assert_eq!(committed.await, Ok(vec![Ok(())]));
    let leaving = LeavingMember {
        member_id: old.member_id.clone(),
        ..Default::default()
    };
    assert_eq!(f.groups.leave("g", vec![leaving]).await, Ok(vec![Ok(())]));
    assert_eq!(state(&f.groups), GroupState::Empty);
    let late = f
        .groups
        .commit_offsets(commit(old.generation_id, &old.member_id, 25));
    assert_eq!(late.await, Err(CommitError::UnknownMemberId));

    let new = form(&f.groups, vec![params("", None, &["t"])])
        .await
        .remove(0);
    assert!(new.generation_id > old.generation_id);
    let asked = Some(vec![("t".to_string(), vec![0])]);
    let resume = f.groups.fetch_offsets("g", asked).await.unwrap();
    assert_eq!(resume.len(), 1);
    assert_eq!(resume[0].offset, 21);
}
