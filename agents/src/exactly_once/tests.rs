//! The embedded transactional producer against a real in-process broker: what a
//! read_committed reader and the group see after an abort, a commit and a fencing.

use std::sync::Arc;
use std::time::Duration;

use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;
use serde_json::json;

use super::{Transaction, TxnError};
use crate::backend::{Backend, EmbeddedBackend, Position, Sink, Source, StartAt};
use crate::event::OutRecord;
use crate::state::StateStore;
use crate::test_transactions::values;

fn record(value: &str) -> OutRecord {
    OutRecord {
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        ..OutRecord::default()
    }
}

async fn broker() -> (EmbeddedBroker, EmbeddedBackend) {
    let broker = EmbeddedBroker::start_with(|config| {
        config.set("group.initial.rebalance.delay.ms", "0").unwrap();
        config.set("num.partitions", "1").unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    (broker, backend)
}

async fn committed_values(backend: &EmbeddedBackend, topic: &str) -> Vec<String> {
    let events = backend
        .read_topic(topic, StartAt::Earliest)
        .await
        .unwrap()
        .collect_all()
        .await
        .unwrap();
    values(&events)
}

fn read_up_to(next_offset: i64) -> Vec<Position> {
    vec![Position {
        topic: "in".to_string(),
        partition: 0,
        next_offset,
    }]
}

/// An aborted transaction's records stay in the log but no read_committed reader sees
/// them, and its state writes never reach the store; a committed one's records, state
/// and offsets all arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aborted_work_is_invisible_and_committed_work_lands_with_its_offsets() {
    let (_broker, backend) = broker().await;
    backend
        .produce("in", vec![record("a"), record("b")])
        .await
        .unwrap();
    let mut source = backend
        .subscribe("eos", &["in".to_string()], "test")
        .await
        .unwrap();
    assert_eq!(source.poll(Duration::from_secs(5)).await.unwrap().len(), 2);
    let txn = backend.transactional("eos-test-0").await.unwrap();
    let store = Arc::new(StateStore::default());

    txn.begin().unwrap();
    txn.produce_all(vec![("out".to_string(), vec![record("aborted")])])
        .await
        .unwrap();
    txn.apply_state(&store, &[("k".to_string(), Some(json!(1)))]);
    txn.abort().await;
    assert_eq!(
        store.get("k"),
        None,
        "an aborted transaction's state was applied"
    );

    txn.begin().unwrap();
    txn.produce("out", vec![record("committed")]).await.unwrap();
    txn.apply_state(&store, &[("k".to_string(), Some(json!(2)))]);
    txn.commit(&source, read_up_to(2)).await.unwrap();

    assert_eq!(store.get("k"), Some(json!(2)));
    assert_eq!(committed_values(&backend, "out").await, ["committed"]);
    let out = backend.broker().topics.get("out").unwrap();
    // aborted record, its marker, committed record, its marker
    assert_eq!(out.partitions[0].log.high_watermark(), 4);
    let offsets = backend.broker().groups.committed("eos");
    assert_eq!(offsets.len(), 1);
    assert_eq!(offsets[0].offset, 2);
}

/// A second producer with the same transactional id (a restarted instance) aborts
/// what the first left open and fences it: the zombie can neither write nor commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_instance_fences_its_zombie() {
    let (_broker, backend) = broker().await;
    backend.produce("in", vec![record("a")]).await.unwrap();
    let mut source = backend
        .subscribe("eos", &["in".to_string()], "test")
        .await
        .unwrap();
    assert_eq!(source.poll(Duration::from_secs(5)).await.unwrap().len(), 1);
    let zombie = backend.transactional("eos-test-0").await.unwrap();
    zombie.begin().unwrap();
    zombie.produce("out", vec![record("zombie")]).await.unwrap();

    let fresh = backend.transactional("eos-test-0").await.unwrap();
    assert!(
        zombie.produce("out", vec![record("late")]).await.is_err(),
        "a fenced producer wrote"
    );
    let refused = zombie.commit(&source, read_up_to(1)).await;
    assert!(
        matches!(refused, Err(TxnError::Failed(_) | TxnError::Fenced(_))),
        "{refused:?}"
    );
    assert!(committed_values(&backend, "out").await.is_empty());
    assert!(backend.broker().groups.committed("eos").is_empty());

    fresh.begin().unwrap();
    fresh.produce("out", vec![record("fresh")]).await.unwrap();
    fresh.commit(&source, read_up_to(1)).await.unwrap();
    assert_eq!(committed_values(&backend, "out").await, ["fresh"]);
}
