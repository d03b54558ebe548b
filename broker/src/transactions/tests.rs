//! The coordinator against a real broker value: markers, LSO, aborted index, offsets,
//! fencing, timeouts and recovery after a reopen.

use agentlog_protocol::fixtures;
use bytes::{Bytes, BytesMut};
use kafka_protocol::records::Compression;

use super::*;
use crate::config::BrokerConfig;

fn open(dir: &std::path::Path, settings: &[(&str, &str)]) -> Broker {
    let mut config = BrokerConfig::with_data_dir(dir);
    for (name, value) in settings {
        config.set(name, value).unwrap();
    }
    Broker::open(config).unwrap()
}

fn txn_batch(producer_id: i64, epoch: i16, first_sequence: i32, count: i32) -> BytesMut {
    let records: Vec<_> = (0..count)
        .map(|i| {
            let value = Bytes::from(format!("v{}", first_sequence + i));
            let record = fixtures::record(i, None, Some(value), 1);
            fixtures::from_producer(record, producer_id, epoch, first_sequence, true)
        })
        .collect();
    fixtures::encode(&records, Compression::None)
}

fn partitions(topic: &str) -> Vec<(String, i32)> {
    vec![(topic.to_string(), 0)]
}

#[tokio::test]
async fn commit_and_abort_move_the_lso_and_fill_the_aborted_index() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), &[]);
    broker.topics.create("t", 1, Default::default()).unwrap();
    let topic = broker.topics.get("t").unwrap();
    let partition = topic.partition(0).unwrap();
    let txns = &broker.transactions;

    let (pid, epoch) = txns.init_producer(&broker, "tx", 60_000, None).unwrap();
    txns.add_partitions("tx", pid, epoch, &partitions("t"))
        .unwrap();
    partition.append(txn_batch(pid, epoch, 0, 3), None).unwrap();
    partition.log.wait_durable(3).await.unwrap();
    assert_eq!(
        partition.last_stable_offset(),
        0,
        "open transaction pins the LSO"
    );
    txns.end_txn(&broker, "tx", pid, epoch, false).unwrap();
    partition.log.wait_durable(4).await.unwrap();
    assert_eq!(partition.last_stable_offset(), 4);
    let aborted = partition.aborted_transactions(0, 4);
    assert_eq!(aborted.len(), 1);
    assert_eq!((aborted[0].first_offset, aborted[0].last_offset), (0, 3));

    txns.add_partitions("tx", pid, epoch, &partitions("t"))
        .unwrap();
    txns.add_offsets("tx", pid, epoch, "g", Persist::Durable)
        .unwrap();
    partition.append(txn_batch(pid, epoch, 3, 2), None).unwrap();
    let staged = StagedOffset {
        topic: "in".into(),
        partition: 0,
        offset: 42,
        leader_epoch: -1,
        metadata: None,
    };
    txns.stage_offsets("tx", "g", pid, epoch, vec![staged], Persist::Durable)
        .unwrap();
    assert!(txns.has_pending_offsets("g", "in", 0));
    assert_eq!(
        broker
            .groups
            .fetch_offsets_now("g", Some(vec![("in".into(), vec![0])]))
            .unwrap()[0]
            .offset,
        -1
    );
    txns.end_txn(&broker, "tx", pid, epoch, true).unwrap();
    assert!(!txns.has_pending_offsets("g", "in", 0));
    assert_eq!(
        broker
            .groups
            .fetch_offsets_now("g", Some(vec![("in".into(), vec![0])]))
            .unwrap()[0]
            .offset,
        42
    );
    partition.log.wait_durable(7).await.unwrap();
    assert_eq!(partition.last_stable_offset(), 7);
    assert_eq!(partition.aborted_transactions(4, 7), Vec::new());
    // A retried commit is answered as a success; an abort now is refused.
    assert!(txns
        .end_txn(&broker, "tx", pid, epoch, true)
        .unwrap()
        .is_empty());
    assert!(txns.end_txn(&broker, "tx", pid, epoch, false).is_err());
}

#[tokio::test]
async fn re_init_fences_the_old_producer_and_aborts_its_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open(dir.path(), &[]);
    broker.topics.create("t", 1, Default::default()).unwrap();
    let topic = broker.topics.get("t").unwrap();
    let partition = topic.partition(0).unwrap();
    let txns = &broker.transactions;
    let (pid, epoch) = txns.init_producer(&broker, "tx", 60_000, None).unwrap();
    txns.add_partitions("tx", pid, epoch, &partitions("t"))
        .unwrap();
    partition.append(txn_batch(pid, epoch, 0, 2), None).unwrap();
    let (pid2, epoch2) = txns.init_producer(&broker, "tx", 60_000, None).unwrap();
    assert_eq!(pid2, pid);
    assert!(epoch2 > epoch);
    partition.log.wait_durable(3).await.unwrap();
    assert_eq!(partition.last_stable_offset(), 3, "aborted on re-init");
    assert_eq!(partition.aborted_transactions(0, 3).len(), 1);
    assert!(matches!(
        txns.end_txn(&broker, "tx", pid, epoch, true),
        Err(EndTxnError::Check(TxnCheckError::Fenced))
    ));
    assert!(matches!(
        partition.append(txn_batch(pid, epoch, 2, 1), None),
        Err(crate::partition::PartitionAppendError::Sequence(_))
    ));
    assert_eq!(
        txns.init_producer(&broker, "tx", 1_000_000_000, None),
        Err(InitTxnError::InvalidTimeout(1_000_000_000))
    );
}

#[tokio::test]
async fn hung_transactions_time_out_and_state_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (pid, epoch) = {
        let broker = open(dir.path(), &[]);
        broker.topics.create("t", 1, Default::default()).unwrap();
        let topic = broker.topics.get("t").unwrap();
        let partition = topic.partition(0).unwrap();
        let txns = &broker.transactions;
        let ids = txns.init_producer(&broker, "tx", 50, None).unwrap();
        txns.add_partitions("tx", ids.0, ids.1, &partitions("t"))
            .unwrap();
        partition
            .append(txn_batch(ids.0, ids.1, 0, 2), None)
            .unwrap();
        partition.log.wait_durable(2).await.unwrap();
        broker.flush();
        ids
    };
    let broker = open(dir.path(), &[]);
    broker.transactions.recover(&broker);
    let topic = broker.topics.get("t").unwrap();
    let partition = topic.partition(0).unwrap();
    assert_eq!(partition.last_stable_offset(), 0, "still open after reopen");
    let meta = broker.transactions.describe("tx").unwrap();
    assert_eq!((meta.state, meta.producer_id), (TxnState::Ongoing, pid));
    tokio::time::sleep(Duration::from_millis(60)).await;
    broker.transactions.abort_expired(&broker);
    partition.log.wait_durable(3).await.unwrap();
    assert_eq!(partition.last_stable_offset(), 3);
    assert_eq!(partition.aborted_transactions(0, 3).len(), 1);
    let meta = broker.transactions.describe("tx").unwrap();
    assert_eq!(meta.state, TxnState::CompleteAbort);
    assert_eq!(meta.epoch, epoch + 1, "the timed-out producer is fenced");
}

#[tokio::test]
async fn a_prepared_commit_is_completed_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = open(dir.path(), &[]);
        broker.topics.create("t", 1, Default::default()).unwrap();
        let topic = broker.topics.get("t").unwrap();
        let partition = topic.partition(0).unwrap();
        let txns = &broker.transactions;
        let (pid, epoch) = txns.init_producer(&broker, "tx", 60_000, None).unwrap();
        txns.add_partitions("tx", pid, epoch, &partitions("t"))
            .unwrap();
        partition.append(txn_batch(pid, epoch, 0, 2), None).unwrap();
        partition.log.wait_durable(2).await.unwrap();
        // The crash comes after PrepareCommit is durable and before any marker.
        let mut txns_map = txns.lock();
        let meta = txns_map.get_mut("tx").unwrap();
        meta.state = TxnState::PrepareCommit;
        txns.persist(meta, Persist::Durable).unwrap();
        drop(txns_map);
        broker.flush();
    }
    let broker = open(dir.path(), &[]);
    broker.transactions.recover(&broker);
    let topic = broker.topics.get("t").unwrap();
    let partition = topic.partition(0).unwrap();
    partition.log.wait_durable(3).await.unwrap();
    assert_eq!(partition.last_stable_offset(), 3);
    assert!(partition.aborted_transactions(0, 3).is_empty());
    assert_eq!(
        broker.transactions.describe("tx").unwrap().state,
        TxnState::CompleteCommit
    );
}

#[tokio::test]
async fn the_aborted_index_is_rebuilt_from_the_log_and_from_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    {
        let broker = open(dir.path(), &[]);
        broker.topics.create("t", 1, Default::default()).unwrap();
        let topic = broker.topics.get("t").unwrap();
        let partition = topic.partition(0).unwrap();
        let txns = &broker.transactions;
        let (pid, epoch) = txns.init_producer(&broker, "tx", 60_000, None).unwrap();
        for (round, commit) in [false, true, false].into_iter().enumerate() {
            txns.add_partitions("tx", pid, epoch, &partitions("t"))
                .unwrap();
            let sequence = i32::try_from(round).unwrap() * 2;
            partition
                .append(txn_batch(pid, epoch, sequence, 2), None)
                .unwrap();
            for (log, end) in txns.end_txn(&broker, "tx", pid, epoch, commit).unwrap() {
                log.wait_durable(end).await.unwrap();
            }
        }
        // One more, left open.
        txns.add_partitions("tx", pid, epoch, &partitions("t"))
            .unwrap();
        partition.append(txn_batch(pid, epoch, 6, 1), None).unwrap();
        partition.log.wait_durable(10).await.unwrap();
        broker.flush();
    }
    let check = |broker: &Broker| {
        let topic = broker.topics.get("t").unwrap();
        let partition = topic.partition(0).unwrap();
        let aborted: Vec<(i64, i64)> = partition
            .aborted_transactions(0, 10)
            .iter()
            .map(|a| (a.first_offset, a.last_offset))
            .collect();
        assert_eq!(aborted, vec![(0, 2), (6, 8)]);
        assert_eq!(partition.aborted_transactions(3, 6), Vec::new());
        assert_eq!(partition.last_stable_offset(), 9, "the open transaction");
    };
    // Rebuilt by replaying the log (no snapshot was written).
    let broker = open(dir.path(), &[]);
    check(&broker);
    broker
        .topics
        .get("t")
        .unwrap()
        .partition(0)
        .unwrap()
        .save_producer_state()
        .unwrap();
    drop(broker);
    // Loaded from the snapshot.
    let broker = open(dir.path(), &[]);
    check(&broker);
}
