//! ListOffsets by timestamp through librdkafka's offsets_for_times, plus the raw
//! answers (exact timestamps, max timestamp) and watermarks.

mod common;

use std::time::Duration;

use common::{BrokerProcess, RawClient};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

const TOPIC: &str = "times";
const T0: i64 = 1_650_000_000_000;

/// Sends each inner slice as its own batch (flush between them) to `partition`.
fn produce_batches(producer: &BaseProducer, partition: i32, batches: &[&[i64]]) {
    let mut n = 0;
    for batch in batches {
        for ts in *batch {
            let value = format!("p{partition}-r{n}");
            producer
                .send(
                    BaseRecord::to(TOPIC)
                        .partition(partition)
                        .key("k")
                        .payload(&value)
                        .timestamp(*ts),
                )
                .map_err(|(e, _)| e)
                .expect("enqueue");
            n += 1;
        }
        producer.flush(Duration::from_secs(20)).expect("flush");
    }
}

fn offsets_for(consumer: &BaseConsumer, queries: &[(i32, i64)]) -> Vec<Offset> {
    queries
        .iter()
        .map(|(partition, ts)| {
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(TOPIC, *partition, Offset::Offset(*ts))
                .unwrap();
            let answer = consumer
                .offsets_for_times(list, Duration::from_secs(10))
                .expect("offsets_for_times");
            let element = answer.find_partition(TOPIC, *partition).expect("partition");
            assert!(
                element.error().is_ok(),
                "error for {partition}@{ts}: {:?}",
                element.error()
            );
            element.offset()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_for_times_and_watermarks() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, TOPIC, 2, &[]).await;

    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = common::producer_config(&b)
            .set("linger.ms", "1000")
            .create()
            .unwrap();
        // Partition 0: offsets 0-4 then 5-9, timestamps t0, t0+10, ..., t0+90.
        produce_batches(
            &producer,
            0,
            &[
                &[T0, T0 + 10, T0 + 20, T0 + 30, T0 + 40],
                &[T0 + 50, T0 + 60, T0 + 70, T0 + 80, T0 + 90],
            ],
        );
        // Partition 1: timestamps not in offset order inside the second batch.
        produce_batches(
            &producer,
            1,
            &[
                &[T0 + 100, T0 + 110, T0 + 120],
                &[T0 + 200, T0 + 150, T0 + 300, T0 + 250],
            ],
        );

        // The batches are what the test means them to be.
        let mut raw = RawClient::connect(&b);
        let data = common::raw_fetch(&mut raw, TOPIC, 0, 0, 0, 1);
        let info: Vec<(i64, i32)> = common::batch_info(data.records.as_ref().unwrap())
            .iter()
            .map(|i| (i.min_offset, i.record_count))
            .collect();
        assert_eq!(info, vec![(0, 5), (5, 5)], "partition 0 batches");

        let consumer: BaseConsumer = common::consumer_config(&b).create().unwrap();
        assert_eq!(
            consumer
                .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
                .unwrap(),
            (0, 10)
        );
        assert_eq!(
            consumer
                .fetch_watermarks(TOPIC, 1, Duration::from_secs(10))
                .unwrap(),
            (0, 7)
        );

        let answers = offsets_for(
            &consumer,
            &[
                (0, T0 - 1_000_000), // before everything: the first offset
                (0, T0),             // exactly the first record
                (0, T0 + 20),        // exactly a record inside the first batch
                (0, T0 + 25),        // between records 2 and 3 of the first batch
                (0, T0 + 45),        // between the batches
                (0, T0 + 71),        // inside the second batch
                (0, T0 + 90),        // the very last record
                (0, T0 + 91),        // after everything: none (-1 = OFFSET_END)
                (1, T0 + 115),       // partition 1, first batch
                (1, T0 + 140),       // first record in offset order with ts >= target: t0+200 @3
                (1, T0 + 201),       // t0+300 @5 (t0+250 @6 comes later in offset order)
                (1, T0 + 260),       // t0+300 @5
                (1, T0 + 301),       // nothing
            ],
        );
        assert_eq!(
            answers,
            vec![
                Offset::Offset(0),
                Offset::Offset(0),
                Offset::Offset(2),
                Offset::Offset(3),
                Offset::Offset(5),
                Offset::Offset(8),
                Offset::Offset(9),
                Offset::End,
                Offset::Offset(2),
                Offset::Offset(3),
                Offset::Offset(5),
                Offset::Offset(5),
                Offset::End,
            ]
        );

        // Raw answers also carry the found record's timestamp; -3 is the max timestamp.
        let mut raw = RawClient::connect(&b);
        let found = common::raw_list_offsets(&mut raw, TOPIC, 0, T0 + 25);
        assert_eq!(
            (found.error_code, found.offset, found.timestamp),
            (0, 3, T0 + 30)
        );
        let found = common::raw_list_offsets(&mut raw, TOPIC, 1, T0 + 140);
        assert_eq!(
            (found.error_code, found.offset, found.timestamp),
            (0, 3, T0 + 200)
        );
        let none = common::raw_list_offsets(&mut raw, TOPIC, 0, T0 + 91);
        assert_eq!((none.error_code, none.offset, none.timestamp), (0, -1, -1));
        let latest = common::raw_list_offsets(&mut raw, TOPIC, 0, -1);
        assert_eq!((latest.error_code, latest.offset), (0, 10));
        let earliest = common::raw_list_offsets(&mut raw, TOPIC, 1, -2);
        assert_eq!((earliest.error_code, earliest.offset), (0, 0));
        let max = common::raw_list_offsets(&mut raw, TOPIC, 1, -3);
        assert_eq!(
            (max.error_code, max.offset, max.timestamp),
            (0, 5, T0 + 300)
        );
        let max = common::raw_list_offsets(&mut raw, TOPIC, 0, -3);
        assert_eq!((max.error_code, max.offset, max.timestamp), (0, 9, T0 + 90));
        let unknown = common::raw_list_offsets(&mut raw, TOPIC, 7, -1);
        assert_eq!(unknown.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_partition_offsets() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, TOPIC, 1, &[]).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = common::consumer_config(&b).create().unwrap();
        assert_eq!(
            consumer
                .fetch_watermarks(TOPIC, 0, Duration::from_secs(10))
                .unwrap(),
            (0, 0)
        );
        assert_eq!(
            offsets_for(&consumer, &[(0, 0), (0, T0)]),
            vec![Offset::End, Offset::End]
        );
        let mut raw = RawClient::connect(&b);
        let max = common::raw_list_offsets(&mut raw, TOPIC, 0, -3);
        assert_eq!((max.error_code, max.offset, max.timestamp), (0, -1, -1));
    })
    .await
    .unwrap();
}

/// Finding a record inside a compressed batch needs the broker to decompress it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_lookup_inside_compressed_batches() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    let codecs = ["gzip", "snappy", "zstd", "none"];
    common::create_topic(&bootstrap, TOPIC, codecs.len() as i32, &[]).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        for (partition, codec) in codecs.iter().enumerate() {
            let producer: BaseProducer = common::producer_config(&b)
                .set("compression.codec", *codec)
                .set("linger.ms", "1000")
                .create()
                .unwrap();
            let timestamps: Vec<i64> = (0..20).map(|i| T0 + i * 10).collect();
            produce_batches(&producer, partition as i32, &[&timestamps[..]]);
            // One batch, compressed as asked.
            let mut raw = RawClient::connect(&b);
            let data = common::raw_fetch(&mut raw, TOPIC, partition as i32, 0, 0, 1);
            let info = common::batch_info(data.records.as_ref().unwrap());
            assert_eq!(info.len(), 1, "{codec}: one batch");
            assert_eq!(info[0].record_count, 20);
            let expected_codec = match *codec {
                "gzip" => 1,
                "snappy" => 2,
                "zstd" => 4,
                _ => 0,
            };
            assert_eq!(info[0].compression as u8, expected_codec, "{codec}");

            let consumer: BaseConsumer = common::consumer_config(&b).create().unwrap();
            let p = partition as i32;
            assert_eq!(
                offsets_for(
                    &consumer,
                    &[(p, T0 + 25), (p, T0 + 190), (p, T0 + 191), (p, T0 - 1)]
                ),
                vec![
                    Offset::Offset(3),
                    Offset::Offset(19),
                    Offset::End,
                    Offset::Offset(0)
                ],
                "{codec}"
            );
            let found = common::raw_list_offsets(&mut raw, TOPIC, p, T0 + 101);
            assert_eq!((found.offset, found.timestamp), (11, T0 + 110), "{codec}");
            let max = common::raw_list_offsets(&mut raw, TOPIC, p, -3);
            assert_eq!((max.offset, max.timestamp), (19, T0 + 190), "{codec}");
        }
    })
    .await
    .unwrap();
}
