//! Crash safety of the real binary: SIGKILL under acks=all load keeps every
//! acknowledged record exactly once and in order; a damaged segment tail is truncated
//! on restart and the log continues from the last valid batch.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{BrokerProcess, RawClient};
use rdkafka::client::ClientContext;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, PurgeConfig, ThreadedProducer};
use rdkafka::Message;

/// Collects the sequence numbers whose delivery reports succeeded.
#[derive(Clone, Default)]
struct Acks {
    acked: Arc<Mutex<BTreeSet<u64>>>,
    count: Arc<AtomicUsize>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Self::DeliveryOpaque) {
        if result.is_ok() {
            assert!(
                self.acked.lock().unwrap().insert(*seq),
                "seq {seq} acked twice"
            );
            self.count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn sigkill_under_load_keeps_every_acked_record(partitions: i32, kill_after: usize) {
    let runtime = common::runtime();
    let mut broker = BrokerProcess::start(&["log.flush.policy=batch"]);
    let bootstrap = broker.bootstrap();
    runtime.block_on(common::create_topic(&bootstrap, "crash", partitions, &[]));

    let acks = Acks::default();
    let producer: ThreadedProducer<Acks> = common::producer_config(&bootstrap)
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.send.max.retries", "0")
        .set("message.timeout.ms", "10000")
        .set("queue.buffering.max.messages", "20000")
        .create_with_context(acks.clone())
        .expect("producer");
    let producer = Arc::new(producer);
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let (producer, stop, sent) = (producer.clone(), stop.clone(), sent.clone());
        std::thread::spawn(move || {
            let mut seq: u64 = 0;
            while !stop.load(Ordering::SeqCst) {
                let value = format!("record-{seq}");
                let key = seq.to_be_bytes();
                let record = BaseRecord::with_opaque_to("crash", Box::new(seq))
                    .partition((seq % partitions as u64) as i32)
                    .key(&key[..])
                    .payload(&value);
                match producer.send(record) {
                    Ok(()) => {
                        seq += 1;
                        sent.store(seq as usize, Ordering::SeqCst);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        })
    };

    common::poll_until(
        Duration::from_secs(90),
        "enough acknowledged records",
        || (acks.count.load(Ordering::SeqCst) >= kill_after).then_some(()),
    );
    broker.kill();
    stop.store(true, Ordering::SeqCst);
    sender.join().unwrap();
    let sent = sent.load(Ordering::SeqCst) as u64;
    // Whatever was not acknowledged by now never will be: fail it and drain reports.
    producer.purge(PurgeConfig::default().queue().inflight());
    let _ = producer.flush(Duration::from_secs(15));
    drop(producer);
    let acked = acks.acked.lock().unwrap().clone();
    assert!(acked.len() >= kill_after);
    assert!(
        sent > acked.len() as u64,
        "the broker should have died mid-stream (sent {sent}, acked {})",
        acked.len()
    );

    broker.restart();
    let bootstrap = broker.bootstrap();
    for p in 0..partitions {
        let (low, high) = common::watermarks(&bootstrap, "crash", p);
        println!(
            "partition {p}: sent {sent} in total, acked {} in total, high watermark after restart {high}",
            acked.len()
        );
        assert_eq!(low, 0, "log start of partition {p}");
        let acked_here: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|s| s % partitions as u64 == p as u64)
            .collect();
        assert!(
            high >= acked_here.len() as i64,
            "partition {p}: high watermark {high} below {} acked records",
            acked_here.len()
        );
        let messages = common::consume_exactly(
            &bootstrap,
            "crash",
            &[(p, 0)],
            high as usize,
            Duration::from_secs(60),
        );
        let mut seqs = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(m.offset(), i as i64, "partition {p} offsets contiguous");
            let seq = u64::from_be_bytes(m.key().expect("key").try_into().expect("8-byte key"));
            assert_eq!(m.payload(), Some(format!("record-{seq}").as_bytes()));
            assert_eq!(
                seq % partitions as u64,
                p as u64,
                "seq {seq} in partition {p}"
            );
            if let Some(prev) = seqs.last() {
                assert!(
                    *prev < seq,
                    "partition {p}: seq {seq} at offset {i} after {prev} (duplicate or reordered)"
                );
            }
            seqs.push(seq);
        }
        let present: BTreeSet<u64> = seqs.iter().copied().collect();
        let missing: Vec<u64> = acked_here
            .iter()
            .copied()
            .filter(|s| !present.contains(s))
            .take(10)
            .collect();
        assert!(
            missing.is_empty(),
            "partition {p}: acknowledged records lost after SIGKILL, e.g. {missing:?}"
        );
        // One producer, no retries, in-order appends: the log is a prefix of what was sent.
        for (i, seq) in seqs.iter().enumerate() {
            assert_eq!(
                *seq,
                p as u64 + i as u64 * partitions as u64,
                "partition {p} offset {i}"
            );
        }

        // The log continues where it ended.
        let mut raw = RawClient::connect(&bootstrap);
        let response = common::raw_produce(
            &mut raw,
            "crash",
            p,
            common::encode_batch(&[(Some(b"after"), Some(b"restart"), 1)]),
        );
        assert_eq!(
            (response.error_code, response.base_offset),
            (0, high),
            "partition {p}"
        );
    }
    broker.terminate();
}

#[test]
fn sigkill_single_partition_keeps_acked_records() {
    sigkill_under_load_keeps_every_acked_record(1, 20_000);
}

#[test]
fn sigkill_three_partitions_keeps_acked_records() {
    sigkill_under_load_keeps_every_acked_record(3, 15_000);
}

// ---------------------------------------------------------------------------------

/// The segment files of one partition, by name.
fn segments(data_dir: &Path, topic: &str, partition: i32) -> Vec<PathBuf> {
    let dir = data_dir.join("logs").join(format!("{topic}-{partition}"));
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs
}

/// (start, end) byte ranges of the batches at the start of a segment file, walking the
/// v2 batch headers (base offset i64, batch length i32) until the data ends.
fn batch_ranges(bytes: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges = Vec::new();
    let mut at = 0usize;
    while at + 12 <= bytes.len() {
        let length = i32::from_be_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        if length <= 0 {
            break; // preallocated zeros, if any
        }
        let end = at + 12 + length as usize;
        if end > bytes.len() {
            break;
        }
        ranges.push((at, end));
        at = end;
    }
    ranges
}

fn ten_values(first: usize) -> Vec<(Vec<u8>, i64)> {
    (first..first + 10)
        .map(|i| {
            (
                format!("rec-{i}").into_bytes(),
                1_700_000_000_000 + i as i64,
            )
        })
        .collect()
}

fn produce_ten(client: &mut RawClient, first: usize) -> i64 {
    let values = ten_values(first);
    let refs: Vec<common::RawRecord<'_>> = values
        .iter()
        .map(|(v, t)| (None, Some(&v[..]), *t))
        .collect();
    let response = common::raw_produce(client, "torn", 0, common::encode_batch(&refs));
    assert_eq!(response.error_code, 0, "produce error");
    response.base_offset
}

/// Reads the whole partition with the raw client and returns the values.
fn all_values(client: &mut RawClient) -> Vec<String> {
    let mut values = Vec::new();
    let mut offset = 0i64;
    loop {
        let data = common::raw_fetch(client, "torn", 0, offset, 0, 1);
        assert_eq!(data.error_code, 0, "fetch error at offset {offset}");
        let mut buf = data.records.clone().expect("records");
        let records: Vec<_> =
            match kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf) {
                Ok(sets) => sets.into_iter().flat_map(|s| s.records).collect(),
                Err(error) => panic!(
                    "the broker served an invalid batch at offset {offset} after restart: {error}"
                ),
            };
        let records: Vec<_> = records.into_iter().filter(|r| r.offset >= offset).collect();
        if records.is_empty() {
            assert_eq!(offset, data.high_watermark);
            return values;
        }
        for r in records {
            assert_eq!(r.offset, offset, "offsets contiguous");
            values.push(String::from_utf8(r.value.unwrap().to_vec()).unwrap());
            offset += 1;
        }
    }
}

fn expected_values(batches: &[usize]) -> Vec<String> {
    batches
        .iter()
        .flat_map(|first| (*first..first + 10).map(|i| format!("rec-{i}")))
        .collect()
}

#[derive(Clone, Copy, Debug)]
enum Stop {
    /// SIGTERM: a clean shutdown (the broker writes its recovery point).
    Clean,
    /// SIGKILL: a crash.
    Crash,
}

#[derive(Clone, Copy, Debug)]
enum Damage {
    /// XOR the last 6 bytes of the last batch (its CRC no longer matches).
    Garble,
    /// Cut the last 5 bytes off the last batch (a torn write).
    Truncate,
}

fn stop(broker: &mut BrokerProcess, how: Stop) {
    match how {
        Stop::Clean => broker.terminate(),
        Stop::Crash => broker.kill(),
    }
}

/// Damages the last of exactly three batches in the active segment of torn-0.
fn damage_last_batch(data_dir: &Path, damage: Damage) {
    let logs = segments(data_dir, "torn", 0);
    let active = logs.last().expect("a segment file").clone();
    let mut bytes = std::fs::read(&active).unwrap();
    let ranges = batch_ranges(&bytes);
    assert_eq!(ranges.len(), 3, "three batches in {}", active.display());
    let (_, end) = ranges[2];
    assert!(
        bytes[end..].iter().all(|&b| b == 0),
        "past the batches the segment file holds only reserved space (zeros)"
    );
    match damage {
        Damage::Garble => {
            for b in &mut bytes[end - 6..end] {
                *b ^= 0xA5;
            }
            std::fs::write(&active, &bytes).unwrap();
        }
        Damage::Truncate => {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&active)
                .unwrap();
            file.set_len((end - 5) as u64).unwrap();
        }
    }
}

/// Three batches (offsets 0-9, 10-19, 20-29), a stop, damage to the last batch, a
/// restart: the first two batches are served, nothing after, and new records continue
/// at offset 20. Then the same once more on the repaired log.
fn damaged_tail_is_truncated(how: Stop, damage: Damage) {
    let runtime = common::runtime();
    let mut broker = BrokerProcess::start(&[]);
    runtime.block_on(common::create_topic(&broker.bootstrap(), "torn", 1, &[]));
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(produce_ten(&mut client, 0), 0);
    assert_eq!(produce_ten(&mut client, 10), 10);
    assert_eq!(produce_ten(&mut client, 20), 20);
    drop(client);
    stop(&mut broker, how);
    damage_last_batch(broker.data_dir(), damage);

    broker.restart();
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(
        all_values(&mut client),
        expected_values(&[0, 10]),
        "after {how:?} + {damage:?}"
    );
    assert_eq!(
        common::raw_list_offsets(&mut client, "torn", 0, -1).offset,
        20
    );
    assert_eq!(
        produce_ten(&mut client, 100),
        20,
        "new records continue from the truncation point"
    );
    assert_eq!(all_values(&mut client), expected_values(&[0, 10, 100]));
    drop(client);
    stop(&mut broker, how);

    // Once more: the repaired log has three batches again.
    damage_last_batch(broker.data_dir(), damage);
    broker.restart();
    let mut client = RawClient::connect(&broker.bootstrap());
    assert_eq!(
        all_values(&mut client),
        expected_values(&[0, 10]),
        "second {how:?} + {damage:?}"
    );
    assert_eq!(produce_ten(&mut client, 200), 20);
    assert_eq!(produce_ten(&mut client, 300), 30);
    assert_eq!(all_values(&mut client), expected_values(&[0, 10, 200, 300]));
    drop(client);
    broker.terminate();
}

#[test]
fn garbled_tail_after_sigkill_is_truncated() {
    damaged_tail_is_truncated(Stop::Crash, Damage::Garble);
}

#[test]
fn torn_tail_after_sigkill_is_truncated() {
    damaged_tail_is_truncated(Stop::Crash, Damage::Truncate);
}

#[test]
fn torn_tail_after_clean_shutdown_is_truncated() {
    damaged_tail_is_truncated(Stop::Clean, Damage::Truncate);
}

/// The brief's scenario: the last bytes of the active segment are garbled after a clean
/// shutdown. The broker trusts the prefix covered by its `recovery-point` file and does
/// not re-validate it, so this fails while that design stands (see the report).
#[test]
fn garbled_tail_after_clean_shutdown_is_truncated() {
    damaged_tail_is_truncated(Stop::Clean, Damage::Garble);
}
