use super::murmur2;
use crate::backend::{Backend, EmbeddedBackend, Sink, StartAt};
use crate::event::OutRecord;
use bytes::Bytes;

/// An embedded backend acting as a principal is held to the broker's ACLs: refused
/// with a clear error (no panic) until an ACL allows it.
#[tokio::test]
async fn a_principal_is_held_to_the_acls() {
    use agentlog_broker::authz::{AclBinding, Operation, PatternType, Permission, ResourceType};
    let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
        config.set("num.partitions", "1").unwrap();
        config.set("authorizer.enable", "true").unwrap();
    })
    .await
    .unwrap();
    let shared = broker.running().broker.clone();
    let backend = EmbeddedBackend::new(shared.clone()).with_principal("User:scorer");
    let record = || OutRecord {
        value: Some(Bytes::from_static(b"v")),
        ..OutRecord::default()
    };
    let refused = backend.produce("scores", vec![record()]).await.unwrap_err();
    assert!(
        matches!(&refused, crate::backend::ProduceError::NotAuthorized(r) if r.contains("User:scorer")),
        "{refused}"
    );
    let allow = |kind, name: &str, op| AclBinding {
        resource_type: kind,
        name: name.to_string(),
        pattern: PatternType::Literal,
        principal: "User:scorer".to_string(),
        host: "*".to_string(),
        operation: op,
        permission: Permission::Allow,
    };
    shared
        .authorizer
        .create(&[allow(ResourceType::Topic, "scores", Operation::All)])
        .unwrap();
    backend.produce("scores", vec![record()]).await.unwrap();
    let Err(refused) = backend
        .subscribe("scorers", &["scores".to_string()], "t")
        .await
    else {
        panic!("joined a group without READ on it");
    };
    assert!(
        matches!(refused, crate::backend::ConsumeError::NotAuthorized(_)),
        "{refused}"
    );
    // The broker's own (unnamed) backend is not checked.
    EmbeddedBackend::new(shared)
        .produce("other", vec![record()])
        .await
        .unwrap();
}

/// Records produced with timestamp 0 used to be stored as written (1970): the next
/// retention pass rolled the segment and deleted them, and a consumer behind them
/// was reset past records it never read (seen as skipped offsets in rag_freshness).
#[tokio::test]
async fn unset_timestamps_are_stamped_so_retention_keeps_fresh_records() {
    let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
        config.set("num.partitions", "1").unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    let before = crate::event::now_ms();
    for i in 0..3 {
        let record = OutRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Vec::new(),
            timestamp: 0,
        };
        backend.produce("fresh", vec![record]).await.unwrap();
    }
    // Kept: a record with an explicit timestamp, however old.
    let old = OutRecord {
        value: Some(Bytes::from_static(b"old")),
        timestamp: 5,
        ..OutRecord::default()
    };
    backend.produce("fresh", vec![old]).await.unwrap();
    agentlog_broker::lifecycle::retention_pass(backend.broker());

    let events = backend
        .read_topic("fresh", StartAt::Earliest)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    let offsets: Vec<i64> = events.iter().map(|e| e.offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3], "records lost to retention");
    assert!(events[..3].iter().all(|e| e.timestamp >= before));
    assert_eq!(events[3].timestamp, 5);
}

/// Agents read as the Kafka backend's read_committed consumers do: an aborted
/// transaction's records never reach a handler, and an open one's only once it
/// commits; records after the open transaction wait for it.
#[tokio::test]
async fn agents_see_committed_records_only() {
    use crate::backend::{Sink as _, Source};
    use crate::test_transactions::{commit_open, values, write_outcomes, COMMITTED, OPEN};

    let broker = agentlog_broker::EmbeddedBroker::start_with(|config| {
        config.set("group.initial.rebalance.delay.ms", "0").unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    backend.ensure_topic("tx", 1, false).await.unwrap();
    let topic = backend.broker().topics.get("tx").unwrap();
    write_outcomes(&topic.partitions[0]);

    let read = backend
        .read_topic("tx", StartAt::Earliest)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    assert_eq!(values(&read), COMMITTED);

    let mut source = backend
        .subscribe("readers", &["tx".to_string()], "test")
        .await
        .unwrap();
    let polled = source
        .poll(std::time::Duration::from_millis(200))
        .await
        .unwrap();
    assert_eq!(values(&polled), COMMITTED);
    let waiting = source
        .poll(std::time::Duration::from_millis(100))
        .await
        .unwrap();
    assert!(
        waiting.is_empty(),
        "an open transaction was read: {waiting:?}"
    );

    commit_open(&topic.partitions[0]);
    let polled = source
        .poll(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(values(&polled), [OPEN]);
}

#[test]
fn only_unset_timestamps_are_stamped() {
    let mut records = vec![
        OutRecord::default(),
        OutRecord {
            timestamp: -1,
            ..OutRecord::default()
        },
        OutRecord {
            timestamp: 7,
            ..OutRecord::default()
        },
    ];
    super::stamp_unset_timestamps(&mut records, 1_000);
    let stamped: Vec<i64> = records.iter().map(|r| r.timestamp).collect();
    assert_eq!(stamped, vec![1_000, -1, 7]);
}

#[test]
fn murmur2_matches_kafka() {
    // Values from Kafka's UtilsTest.testMurmur2.
    assert_eq!(murmur2(b"21") as i32, -973_932_308);
    assert_eq!(murmur2(b"foobar") as i32, -790_332_482);
    assert_eq!(murmur2(b"a-little-bit-long-string") as i32, -985_981_536);
    assert_eq!(
        murmur2(b"a-little-bit-longer-string") as i32,
        -1_486_304_829
    );
    assert_eq!(
        murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8") as i32,
        -58_897_971
    );
}
