//! Many small segments: reads, time lookups and restarts (clean and crash) across
//! segment boundaries, with the sealed segments' index files in play.

mod common;

use std::time::Duration;

use common::BrokerProcess;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, Timestamp, TopicPartitionList};

const TOPIC: &str = "rolled";
const T0: i64 = 1_690_000_000_000;
const N: i64 = 30_000;

fn value_of(i: i64) -> String {
    format!("segment-record-{i:08}-{}", "s".repeat((i % 50) as usize))
}

/// Every third record shares its predecessor's timestamp, so lookups have ties.
fn timestamp_of(i: i64) -> i64 {
    T0 + (i - i / 3) * 2
}

fn produce(bootstrap: &str, from: i64, to: i64) {
    let producer: BaseProducer = common::producer_config(bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "500")
        .create()
        .unwrap();
    for i in from..to {
        let value = value_of(i);
        let key = i.to_be_bytes();
        loop {
            match producer.send(
                BaseRecord::to(TOPIC)
                    .partition(0)
                    .key(&key[..])
                    .payload(&value)
                    .timestamp(timestamp_of(i)),
            ) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

fn verify(bootstrap: &str, count: i64) {
    assert_eq!(common::watermarks(bootstrap, TOPIC, 0), (0, count));
    let messages = common::consume_exactly(
        bootstrap,
        TOPIC,
        &[(0, 0)],
        count as usize,
        Duration::from_secs(60),
    );
    for (i, m) in messages.iter().enumerate() {
        let i = i as i64;
        assert_eq!(m.offset(), i);
        assert_eq!(m.key(), Some(&i.to_be_bytes()[..]), "key at offset {i}");
        assert_eq!(
            m.payload(),
            Some(value_of(i).as_bytes()),
            "value at offset {i}"
        );
        assert_eq!(m.timestamp(), Timestamp::CreateTime(timestamp_of(i)));
    }
    // Reading from the middle lands exactly, whatever segment holds the offset.
    for start in [1, 4_999, 12_345, count - 1] {
        let tail =
            common::consume_exactly(bootstrap, TOPIC, &[(0, start)], 1, Duration::from_secs(20));
        assert_eq!(tail[0].offset(), start);
        assert_eq!(tail[0].payload(), Some(value_of(start).as_bytes()));
    }
    // Time lookups: the first offset whose timestamp is >= the target.
    let consumer: BaseConsumer = common::consumer_config(bootstrap).create().unwrap();
    for target_offset in [0i64, 2, 3, 7_777, 15_001, 20_000, count - 1] {
        let target = timestamp_of(target_offset);
        let first = (0..count).find(|i| timestamp_of(*i) >= target).unwrap();
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(TOPIC, 0, Offset::Offset(target))
            .unwrap();
        let answer = consumer
            .offsets_for_times(list, Duration::from_secs(10))
            .unwrap();
        assert_eq!(
            answer.find_partition(TOPIC, 0).unwrap().offset(),
            Offset::Offset(first),
            "offset for time {target} (record {target_offset})"
        );
        // One millisecond later: between records.
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(TOPIC, 0, Offset::Offset(target + 1))
            .unwrap();
        let answer = consumer
            .offsets_for_times(list, Duration::from_secs(10))
            .unwrap();
        let next = (0..count).find(|i| timestamp_of(*i) > target);
        let expected = next.map_or(Offset::End, Offset::Offset);
        assert_eq!(
            answer.find_partition(TOPIC, 0).unwrap().offset(),
            expected,
            "time {}",
            target + 1
        );
    }
}

fn segment_count(broker: &BrokerProcess) -> usize {
    std::fs::read_dir(broker.data_dir().join("logs").join(format!("{TOPIC}-0")))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_lookups_and_restarts_across_many_segments() {
    let mut broker = BrokerProcess::start(&["log.segment.bytes=65536"]);
    common::create_topic(&broker.bootstrap(), TOPIC, 1, &[]).await;
    tokio::task::spawn_blocking(move || {
        produce(&broker.bootstrap(), 0, N);
        let segments = segment_count(&broker);
        assert!(
            segments >= 10,
            "only {segments} segments with segment.bytes=65536"
        );
        verify(&broker.bootstrap(), N);

        broker.terminate();
        broker.restart();
        assert_eq!(
            segment_count(&broker),
            segments,
            "segments after a clean restart"
        );
        verify(&broker.bootstrap(), N);

        produce(&broker.bootstrap(), N, N + 5_000);
        broker.kill();
        broker.restart();
        verify(&broker.bootstrap(), N + 5_000);
        broker.terminate();
    })
    .await
    .unwrap();
}
