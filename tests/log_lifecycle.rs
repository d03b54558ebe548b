//! Log lifecycle against the real binary: retention by time and size, DeleteRecords,
//! compaction (and SIGKILL during it), AlterConfigs / DescribeConfigs, CreatePartitions
//! and the free-disk guard.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::BrokerProcess;
use kafka_protocol::messages::alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::AlterConfigsRequest;
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};

fn opts() -> AdminOptions {
    AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)))
}

fn block<F: std::future::Future>(future: F) -> F::Output {
    futures::executor::block_on(future)
}

/// Produces `records` (key, value: None = tombstone) to partition 0 in order, in
/// batches of 500, and waits for all.
fn produce(bootstrap: &str, topic: &str, records: impl Iterator<Item = (String, Option<String>)>) {
    produce_batched(bootstrap, topic, 500, records)
}

/// As [`produce`], with at most `per_batch` records per batch (small batches make
/// many small segments).
fn produce_batched(
    bootstrap: &str,
    topic: &str,
    per_batch: usize,
    records: impl Iterator<Item = (String, Option<String>)>,
) {
    let producer: BaseProducer = common::producer_config(bootstrap)
        .set("max.in.flight.requests.per.connection", "1")
        .set("batch.num.messages", per_batch.to_string())
        .create()
        .expect("producer");
    for (key, value) in records {
        loop {
            let mut record = BaseRecord::<String, String>::to(topic)
                .partition(0)
                .key(&key);
            if let Some(v) = &value {
                record = record.payload(v);
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((error, _)) => {
                    assert!(
                        matches!(
                            error,
                            rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::QueueFull
                            )
                        ),
                        "send failed: {error}"
                    );
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

/// Every message of partition 0 from `from` (reset to earliest) up to the high watermark.
fn consume_all(bootstrap: &str, topic: &str, from: i64) -> Vec<OwnedMessage> {
    let (_, high) = common::watermarks(bootstrap, topic, 0);
    let consumer: BaseConsumer = common::consumer_config(bootstrap)
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Offset(from))
        .expect("offset");
    consumer.assign(&list).expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut out = Vec::new();
    while out
        .last()
        .is_none_or(|m: &OwnedMessage| m.offset() < high - 1)
    {
        assert!(
            Instant::now() < deadline,
            "consumed only {} messages",
            out.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => out.push(message.detach()),
            Some(Err(error)) => panic!("consumer error: {error}"),
        }
    }
    out
}

fn partition_dir(broker: &BrokerProcess, topic: &str, partition: i32) -> PathBuf {
    broker
        .data_dir()
        .join("logs")
        .join(format!("{topic}-{partition}"))
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn log_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .count()
        })
        .unwrap_or(0)
}

fn alter_topic(bootstrap: &str, topic: &str, configs: &[(&str, &str)]) {
    let admin = common::admin(bootstrap);
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (k, v) in configs {
        alter = alter.set(k, v);
    }
    let results = block(admin.alter_configs([&alter], &opts())).expect("alter_configs");
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
}

#[test]
fn time_retention_trims_segments_and_consumers_reset_to_the_new_start() {
    let broker = BrokerProcess::start(&["log.retention.check.interval.ms=200"]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(
        &bootstrap,
        "ret-time",
        1,
        &[("segment.bytes", "4096"), ("retention.ms", "1500")],
    ));
    produce_batched(
        &bootstrap,
        "ret-time",
        20,
        (0..3000).map(|i| {
            (
                format!("k{i}"),
                Some(format!("value-{i}-{}", "x".repeat(60))),
            )
        }),
    );
    let dir = partition_dir(&broker, "ret-time", 0);
    assert!(log_files(&dir) > 20, "tiny segments expected");
    // Everything expires: sealed segments go, and the idle active one is rolled and goes.
    let low = common::poll_until(
        Duration::from_secs(20),
        "retention to empty the log",
        || {
            let (low, high) = common::watermarks(&bootstrap, "ret-time", 0);
            (low == high && high == 3000).then_some(low)
        },
    );
    assert_eq!(low, 3000);
    // The log start moves (and is persisted) before the files go, as in Kafka, so the
    // files may still be on their way out when the watermarks already say empty.
    common::poll_until(
        Duration::from_secs(10),
        "retention to remove the expired segment files",
        || (log_files(&dir) <= 2).then_some(()),
    );
    // Stop expiring, add records: a consumer positioned at 0 resets to the new start.
    alter_topic(
        &bootstrap,
        "ret-time",
        &[("segment.bytes", "4096"), ("retention.ms", "-1")],
    );
    produce(
        &bootstrap,
        "ret-time",
        (0..10).map(|i| (format!("n{i}"), Some("new".to_string()))),
    );
    let messages = consume_all(&bootstrap, "ret-time", 0);
    assert_eq!(messages.len(), 10);
    assert_eq!(messages[0].offset(), 3000);
    // A consumer that refuses to reset gets the error instead.
    let strict = common::assigned_consumer(&bootstrap, "ret-time", &[(0, 5)]);
    let error = common::poll_until(
        Duration::from_secs(10),
        "an out-of-range error",
        || match strict.poll(Duration::from_millis(100)) {
            Some(Err(error)) => Some(error.to_string()),
            Some(Ok(m)) => panic!("read offset {} below the log start", m.offset()),
            None => None,
        },
    );
    assert!(error.to_lowercase().contains("offset"), "{error}");
}

#[test]
fn size_retention_keeps_the_partition_near_retention_bytes() {
    let broker = BrokerProcess::start(&["log.retention.check.interval.ms=200"]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(
        &bootstrap,
        "ret-size",
        1,
        &[("segment.bytes", "8192"), ("retention.bytes", "32768")],
    ));
    produce_batched(
        &bootstrap,
        "ret-size",
        20,
        (0..4000).map(|i| (format!("k{i}"), Some("y".repeat(150)))),
    );
    let dir = partition_dir(&broker, "ret-size", 0);
    let log_bytes = || -> u64 {
        std::fs::read_dir(&dir)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(u64::MAX)
    };
    // Settled, not just small enough: a log just under the bound can still lose one more
    // segment to the next pass (Kafka deletes while size - segment >= retention.bytes), and
    // a pass between reading the low watermark and consuming would make the consumer reset.
    // So wait until the low watermark holds across several retention intervals.
    let (low, high) = common::poll_until(Duration::from_secs(20), "size retention", || {
        let before = common::watermarks(&bootstrap, "ret-size", 0);
        std::thread::sleep(Duration::from_millis(1000));
        let after = common::watermarks(&bootstrap, "ret-size", 0);
        (before == after && log_bytes() <= 32768 + 8192).then_some(after)
    });
    assert_eq!(high, 4000);
    assert!(low > 3000, "low watermark {low}");
    let messages = consume_all(&bootstrap, "ret-size", low);
    assert_eq!(messages.len() as i64, high - low);
    assert!(std::fs::read_to_string(dir.join("log-start-offset"))
        .unwrap()
        .starts_with("v1 "));
}

#[test]
fn delete_records_moves_the_low_watermark_and_survives_a_crash() {
    let mut broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(
        &bootstrap,
        "trim",
        1,
        &[("segment.bytes", "4096")],
    ));
    produce_batched(
        &bootstrap,
        "trim",
        50,
        (0..1000).map(|i| (format!("k{i}"), Some(format!("v{i}")))),
    );
    let admin = common::admin(&bootstrap);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("trim", 0, Offset::Offset(600))
        .unwrap();
    let result = block(admin.delete_records(&offsets, &opts())).expect("delete_records");
    let element = result.find_partition("trim", 0).expect("partition result");
    assert!(element.error().is_ok(), "{:?}", element.error());
    assert_eq!(element.offset(), Offset::Offset(600));
    assert_eq!(common::watermarks(&bootstrap, "trim", 0), (600, 1000));
    // Beyond the high watermark: refused.
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset("trim", 0, Offset::Offset(5000))
        .unwrap();
    let refused = block(admin.delete_records(&beyond, &opts()));
    let refused_ok = refused
        .ok()
        .and_then(|l| l.find_partition("trim", 0).map(|e| e.error().is_ok()));
    assert_ne!(
        refused_ok,
        Some(true),
        "deleting beyond the high watermark succeeded"
    );

    broker.kill();
    broker.restart();
    let bootstrap = broker.bootstrap();
    assert_eq!(common::watermarks(&bootstrap, "trim", 0), (600, 1000));
    let messages = consume_all(&bootstrap, "trim", 0);
    assert_eq!(messages.len(), 400);
    assert_eq!(messages[0].offset(), 600);
    assert_eq!(common::payload_of(&messages[0]).unwrap(), b"v600");
}

const KEYS: i64 = 1000;
const UPDATES: i64 = 100_000;

fn key_of(i: i64) -> String {
    format!("key-{:04}", i % KEYS)
}

/// Update `i`: a tombstone in the last round for every 10th key.
fn update(i: i64) -> (String, Option<String>) {
    let tombstone = i >= UPDATES - KEYS && (i % KEYS) % 10 == 0;
    (
        key_of(i),
        (!tombstone).then(|| format!("{i}:{}", "v".repeat(40))),
    )
}

fn cleaned_up_to(dir: &Path) -> i64 {
    std::fs::read_to_string(dir.join("cleaner-checkpoint"))
        .ok()
        .and_then(|t| t.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn compaction_keeps_the_latest_value_of_every_key_at_its_original_offset() {
    let broker = BrokerProcess::start(&["log.cleaner.backoff.ms=200"]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(
        &bootstrap,
        "compacted",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "65536"),
            ("segment.ms", "1000"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "3000"),
        ],
    ));
    produce(&bootstrap, "compacted", (0..UPDATES).map(update));
    // A record after segment.ms rolls the segment holding the last updates.
    std::thread::sleep(Duration::from_millis(1100));
    produce(
        &bootstrap,
        "compacted",
        std::iter::once(("tail".to_string(), Some("t".to_string()))),
    );
    let dir = partition_dir(&broker, "compacted", 0);
    common::poll_until(
        Duration::from_secs(60),
        "the cleaner to cover every update",
        || (cleaned_up_to(&dir) >= UPDATES).then_some(()),
    );
    let check = |tombstones_gone: bool| -> Result<(), String> {
        let messages = consume_all(&bootstrap, "compacted", 0);
        let mut seen: HashMap<String, (i64, Option<String>)> = HashMap::new();
        for m in &messages {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let value = m.payload().map(|p| String::from_utf8_lossy(p).into_owned());
            if let Some(v) = &value {
                let original: i64 = v.split(':').next().unwrap_or("").parse().unwrap_or(-1);
                if key != "tail" && original != m.offset() {
                    return Err(format!("{key} moved from {original} to {}", m.offset()));
                }
            }
            if seen.insert(key.clone(), (m.offset(), value)).is_some() {
                return Err(format!("{key} appears twice"));
            }
        }
        for k in 0..KEYS {
            let last = UPDATES - KEYS + k;
            let (key, value) = update(last);
            match (value, seen.get(&key)) {
                (Some(v), Some((offset, Some(found)))) if *found == v && *offset == last => {}
                (None, None) if tombstones_gone => {}
                (None, Some((offset, None))) if !tombstones_gone && *offset == last => {}
                (want, got) => return Err(format!("{key}: want {want:?}, got {got:?}")),
            }
        }
        let expected = if tombstones_gone { 900 } else { 1000 } + 1;
        if messages.len() != expected {
            return Err(format!("{} records, {expected} expected", messages.len()));
        }
        Ok(())
    };
    // Right after cleaning (tombstones younger than delete.retention.ms) or later.
    let first = check(false);
    if let Err(error) = &first {
        assert!(check(true).is_ok(), "after compaction: {error}");
    }
    common::poll_until(Duration::from_secs(30), "tombstones to expire", || {
        check(true).ok()
    });
    assert!(
        dir_bytes(&dir) < 2_000_000,
        "{} bytes left",
        dir_bytes(&dir)
    );
}

#[test]
fn sigkill_during_compaction_loses_no_key() {
    let mut broker = BrokerProcess::start(&["log.cleaner.backoff.ms=50"]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(
        &bootstrap,
        "crashy",
        1,
        &[
            ("cleanup.policy", "compact"),
            ("segment.bytes", "32768"),
            ("min.cleanable.dirty.ratio", "0.01"),
        ],
    ));
    let mut latest: HashMap<String, String> = HashMap::new();
    let mut next = 0i64;
    let mut round = |bootstrap: &str, n: i64, latest: &mut HashMap<String, String>| {
        let records: Vec<(String, Option<String>)> = (next..next + n)
            .map(|i| (key_of(i), Some(format!("{i}:{}", "w".repeat(60)))))
            .collect();
        for (k, v) in &records {
            latest.insert(k.clone(), v.clone().unwrap_or_default());
        }
        next += n;
        produce(bootstrap, "crashy", records.into_iter());
    };
    round(&bootstrap, 60_000, &mut latest);
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    for attempt in 0..6u64 {
        let delay = (seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(attempt * 7919))
            % 700;
        std::thread::sleep(Duration::from_millis(delay));
        broker.kill();
        broker.restart();
        round(&broker.bootstrap(), 5_000, &mut latest);
    }
    let bootstrap = broker.bootstrap();
    let dir = partition_dir(&broker, "crashy", 0);
    common::poll_until(Duration::from_secs(60), "a completed compaction", || {
        (cleaned_up_to(&dir) > 0).then_some(())
    });
    let messages = consume_all(&bootstrap, "crashy", 0);
    let mut found: HashMap<String, String> = HashMap::new();
    for m in &messages {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        found.insert(key, value);
    }
    assert_eq!(found.len(), latest.len());
    for (key, value) in &latest {
        assert_eq!(found.get(key), Some(value), "key {key}");
    }
    assert!(
        messages.len() < next as usize,
        "nothing was compacted ({} of {next})",
        messages.len()
    );
}

#[test]
fn configs_altered_through_the_admin_api_are_described_and_survive_restart() {
    let mut broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(
        &bootstrap,
        "cfg",
        1,
        &[("retention.ms", "1000")],
    ));
    alter_topic(
        &bootstrap,
        "cfg",
        &[
            ("retention.bytes", "123456"),
            ("cleanup.policy", "compact,delete"),
        ],
    );
    // Refusals are checked on the wire: rdkafka 0.39 reports every AlterConfigs
    // resource as Ok whatever its error code.
    let mut client = common::RawClient::connect(&bootstrap);
    for (kind, name, key, value, code) in [
        (2i8, "cfg", "retention.ms", "soon", 40i16),
        (2, "cfg", "no.such", "1", 40),
        (2, "missing", "retention.ms", "1", 3),
        (4, "1", "node.id", "7", 40),
        (4, "1", "log.retention.ms", "-7", 40),
    ] {
        let request =
            AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_string(name.to_string()))
                .with_configs(vec![AlterableConfig::default()
                    .with_name(StrBytes::from_string(key.to_string()))
                    .with_value(Some(StrBytes::from_string(value.to_string())))])]);
        let response = client.call(&request, 1);
        assert_eq!(
            response.responses[0].error_code, code,
            "{name} {key}={value}"
        );
    }
    let admin = common::admin(&bootstrap);
    // Broker: a dynamic setting is accepted.
    let dynamic =
        AlterConfig::new(ResourceSpecifier::Broker(1)).set("log.retention.bytes", "1048576");
    let results = block(admin.alter_configs([&dynamic], &opts())).expect("alter broker");
    assert!(results[0].is_ok(), "{results:?}");

    let check = |bootstrap: &str| {
        let admin = common::admin(bootstrap);
        let described = block(admin.describe_configs(
            [
                &ResourceSpecifier::Topic("cfg"),
                &ResourceSpecifier::Broker(1),
            ],
            &opts(),
        ))
        .expect("describe");
        let topic = described[0].as_ref().expect("topic described");
        let entry = |name: &str| topic.get(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(entry("retention.bytes").value.as_deref(), Some("123456"));
        assert_eq!(entry("retention.bytes").source, ConfigSource::DynamicTopic);
        assert_eq!(
            entry("cleanup.policy").value.as_deref(),
            Some("compact,delete")
        );
        // AlterConfigs replaces the whole set: retention.ms is back to its default.
        assert_eq!(entry("retention.ms").value.as_deref(), Some("604800000"));
        let broker = described[1].as_ref().expect("broker described");
        let bytes = broker
            .get("log.retention.bytes")
            .expect("log.retention.bytes");
        assert_eq!(bytes.value.as_deref(), Some("1048576"));
        assert_eq!(bytes.source, ConfigSource::DynamicBroker);
        assert!(!bytes.is_read_only);
        assert!(broker.get("node.id").expect("node.id").is_read_only);
    };
    check(&bootstrap);
    broker.terminate();
    broker.restart();
    check(&broker.bootstrap());
}

#[test]
fn create_partitions_grows_a_topic_and_producers_use_the_new_partitions() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(&bootstrap, "grow", 1, &[]));
    let producer: BaseProducer = common::producer_config(&bootstrap)
        .set("topic.metadata.refresh.interval.ms", "200")
        .create()
        .expect("producer");
    producer
        .send(BaseRecord::to("grow").key("a").payload("before"))
        .ok();
    producer.flush(Duration::from_secs(10)).expect("flush");
    let admin = common::admin(&bootstrap);
    let results = block(admin.create_partitions([&NewPartitions::new("grow", 3)], &opts()))
        .expect("create_partitions");
    assert_eq!(results, vec![Ok("grow".to_string())]);
    let shrink = block(admin.create_partitions([&NewPartitions::new("grow", 2)], &opts()))
        .expect("create_partitions");
    assert!(shrink[0].is_err(), "shrinking was accepted");
    common::poll_until(
        Duration::from_secs(10),
        "the producer to see 3 partitions",
        || {
            let metadata = producer
                .client()
                .fetch_metadata(Some("grow"), Duration::from_secs(5))
                .ok()?;
            (metadata.topics().first()?.partitions().len() == 3).then_some(())
        },
    );
    for i in 0..300 {
        let key = format!("key-{i}");
        producer
            .send(BaseRecord::to("grow").key(&key).payload("after"))
            .expect("send");
    }
    producer.flush(Duration::from_secs(10)).expect("flush");
    for partition in 0..3 {
        let (_, high) = common::watermarks(&bootstrap, "grow", partition);
        assert!(high > 0, "partition {partition} got nothing");
    }
}

#[test]
fn produce_is_refused_while_disk_space_is_low_and_resumes_when_the_limit_drops() {
    // A minimum no disk can meet.
    let broker = BrokerProcess::start(&["log.disk.free.min.bytes=1000000000000000000"]);
    let bootstrap = broker.bootstrap();
    block(common::create_topic(&bootstrap, "full", 1, &[]));
    let mut client = common::RawClient::connect(&bootstrap);
    let batch = common::encode_batch(&[(Some(b"k"), Some(b"v"), 1)]);
    let refused = common::raw_produce(&mut client, "full", 0, batch.clone());
    assert_eq!(refused.error_code, 56, "KAFKA_STORAGE_ERROR expected");
    let admin = common::admin(&bootstrap);
    let lower = AlterConfig::new(ResourceSpecifier::Broker(1)).set("log.disk.free.min.bytes", "0");
    let results = block(admin.alter_configs([&lower], &opts())).expect("alter broker");
    assert!(results[0].is_ok(), "{results:?}");
    common::poll_until(Duration::from_secs(10), "produce to be accepted", || {
        let response = common::raw_produce(&mut client, "full", 0, batch.clone());
        (response.error_code == 0).then_some(())
    });
}
