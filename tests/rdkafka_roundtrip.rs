//! The real binary against librdkafka: every codec, keys, headers, timestamps, offsets;
//! topic administration (auto-creation, CreateTopics errors, DeleteTopics,
//! DescribeConfigs).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::BrokerProcess;
use rdkafka::admin::{
    AdminOptions, ConfigSource, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Timestamp};

const TOPIC: &str = "roundtrip";
const PARTITIONS: i32 = 3;
const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];
const PER_CODEC: usize = 20_000;
const T0: i64 = 1_600_000_000_000;

fn key_of(codec: usize, seq: usize) -> String {
    format!("{}-{seq:06}", CODECS[codec])
}

/// Values of varying length and content, compressible but not trivially so.
fn value_of(codec: usize, seq: usize) -> Vec<u8> {
    let len = (seq * 7 + codec * 13) % 300;
    let mut value = format!("value:{codec}:{seq}:").into_bytes();
    value.extend((0..len).map(|i| b'a' + ((i * 31 + seq) % 26) as u8));
    value
}

fn timestamp_of(codec: usize, seq: usize) -> i64 {
    T0 + codec as i64 * 1_000_000 + seq as i64
}

fn partition_of(seq: usize) -> i32 {
    (seq % PARTITIONS as usize) as i32
}

/// Records every delivery report: (codec, seq) -> (partition, offset), and failures.
/// (codec, seq) -> (partition, offset) of every successful delivery.
type Delivered = Arc<Mutex<HashMap<(usize, usize), (i32, i64)>>>;

struct Reports {
    codec: usize,
    delivered: Delivered,
    failures: Arc<AtomicUsize>,
    first_failure: Arc<Mutex<Option<String>>>,
}

impl ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<usize>;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: Self::DeliveryOpaque) {
        match result {
            Ok(message) => {
                let previous = self
                    .delivered
                    .lock()
                    .unwrap()
                    .insert((self.codec, *seq), (message.partition(), message.offset()));
                assert!(previous.is_none(), "two delivery reports for one record");
            }
            Err((error, _)) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
                self.first_failure
                    .lock()
                    .unwrap()
                    .get_or_insert_with(|| format!("{} #{seq}: {error}", CODECS[self.codec]));
            }
        }
    }
}

fn produce_codec(bootstrap: String, codec: usize, reports: Reports) {
    let producer: BaseProducer<Reports> = common::producer_config(&bootstrap)
        .set("compression.codec", CODECS[codec])
        .set("linger.ms", "50")
        .set("batch.num.messages", "10000")
        .set("batch.size", "1000000")
        .create_with_context(reports)
        .expect("producer");
    for seq in 0..PER_CODEC {
        let key = key_of(codec, seq);
        let value = value_of(codec, seq);
        let seq_bytes = (seq as u64).to_be_bytes();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "codec",
                value: Some(CODECS[codec].as_bytes()),
            })
            .insert(Header {
                key: "seq",
                value: Some(&seq_bytes[..]),
            });
        if seq.is_multiple_of(5) {
            headers = headers.insert(Header::<&[u8]> {
                key: "null-header",
                value: None,
            });
        }
        let mut opaque = Box::new(seq);
        loop {
            let record = BaseRecord::with_opaque_to(TOPIC, opaque)
                .partition(partition_of(seq))
                .key(&key)
                .payload(&value)
                .timestamp(timestamp_of(codec, seq))
                .headers(headers.clone());
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), record)) => {
                    opaque = record.delivery_opaque;
                    producer.poll(Duration::from_millis(10));
                }
                Err((error, _)) => panic!("send {}: {error}", CODECS[codec]),
            }
        }
        if seq % 1000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_codec_roundtrips_keys_values_headers_offsets_timestamps() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, TOPIC, PARTITIONS, &[]).await;

    let delivered = Arc::new(Mutex::new(HashMap::new()));
    let failures = Arc::new(AtomicUsize::new(0));
    let first_failure = Arc::new(Mutex::new(None));
    let producers: Vec<_> = (0..CODECS.len())
        .map(|codec| {
            let reports = Reports {
                codec,
                delivered: delivered.clone(),
                failures: failures.clone(),
                first_failure: first_failure.clone(),
            };
            let b = bootstrap.clone();
            std::thread::spawn(move || produce_codec(b, codec, reports))
        })
        .collect();
    for p in producers {
        p.join().expect("producer thread");
    }
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "delivery failures, first: {:?}",
        first_failure.lock().unwrap()
    );
    let delivered = Arc::try_unwrap(delivered).unwrap().into_inner().unwrap();
    let total = CODECS.len() * PER_CODEC;
    assert_eq!(delivered.len(), total);

    let b = bootstrap.clone();
    let messages = tokio::task::spawn_blocking(move || {
        common::consume_exactly(
            &b,
            TOPIC,
            &[(0, 0), (1, 0), (2, 0)],
            total,
            Duration::from_secs(90),
        )
    })
    .await
    .unwrap();

    let mut next_offset = [0i64; PARTITIONS as usize];
    let mut last_seq: HashMap<(i32, usize), usize> = HashMap::new();
    let mut seen = HashMap::new();
    for m in &messages {
        let p = m.partition();
        assert!((0..PARTITIONS).contains(&p), "partition {p}");
        assert_eq!(m.topic(), TOPIC);
        assert_eq!(
            m.offset(),
            next_offset[p as usize],
            "offsets of partition {p} must be contiguous from 0"
        );
        next_offset[p as usize] += 1;

        let key = std::str::from_utf8(m.key().expect("key"))
            .unwrap()
            .to_string();
        let (codec_name, seq) = key.split_once('-').expect("key format");
        let codec = CODECS.iter().position(|c| *c == codec_name).expect("codec");
        let seq: usize = seq.parse().unwrap();
        assert_eq!(p, partition_of(seq), "record {key} in the wrong partition");
        assert_eq!(
            m.payload(),
            Some(&value_of(codec, seq)[..]),
            "value of {key}"
        );
        assert_eq!(
            m.timestamp(),
            Timestamp::CreateTime(timestamp_of(codec, seq)),
            "timestamp of {key}"
        );
        let headers = m.headers().expect("headers");
        let expected_count = if seq.is_multiple_of(5) { 3 } else { 2 };
        assert_eq!(headers.count(), expected_count, "header count of {key}");
        let h0 = headers.get(0);
        assert_eq!((h0.key, h0.value), ("codec", Some(codec_name.as_bytes())));
        let h1 = headers.get(1);
        assert_eq!(
            (h1.key, h1.value),
            ("seq", Some(&(seq as u64).to_be_bytes()[..]))
        );
        if seq.is_multiple_of(5) {
            let h2 = headers.get(2);
            assert_eq!((h2.key, h2.value), ("null-header", None));
        }
        // Per producer and partition, records come back in the order they were sent.
        if let Some(prev) = last_seq.insert((p, codec), seq) {
            assert!(prev < seq, "{key} after seq {prev} in partition {p}");
        }
        assert_eq!(
            delivered.get(&(codec, seq)),
            Some(&(p, m.offset())),
            "delivery report of {key} disagrees with where it was read"
        );
        assert!(seen.insert((codec, seq), ()).is_none(), "{key} read twice");
    }
    assert_eq!(seen.len(), total);

    // The stored batches are as the producers compressed them: every codec is on disk.
    let b = bootstrap.clone();
    let codecs = tokio::task::spawn_blocking(move || {
        let mut raw = common::RawClient::connect(&b);
        let mut codecs = std::collections::BTreeSet::new();
        let mut offset = 0i64;
        loop {
            let data = common::raw_fetch(&mut raw, TOPIC, 0, offset, 0, 1);
            assert_eq!(data.error_code, 0);
            let infos = common::batch_info(data.records.as_ref().unwrap());
            let Some(last) = infos.last() else { break };
            offset = last.min_offset + last.record_count as i64;
            for info in &infos {
                codecs.insert(info.compression as u8);
            }
            if offset >= data.high_watermark {
                break;
            }
        }
        codecs
    })
    .await
    .unwrap();
    // librdkafka sends lz4-configured batches uncompressed unless the broker advertises
    // FindCoordinator (see lz4_producer_batches_are_stored_lz4_compressed), so lz4 (3) is
    // not required here.
    let codecs: Vec<u8> = codecs.into_iter().filter(|c| *c != 3).collect();
    assert_eq!(codecs, vec![0, 1, 2, 4], "codecs stored in partition 0");
    for p in 0..PARTITIONS {
        let expected = (0..PER_CODEC).filter(|s| partition_of(*s) == p).count() * CODECS.len();
        assert_eq!(
            next_offset[p as usize], expected as i64,
            "records in partition {p}"
        );
        let b = bootstrap.clone();
        let marks = tokio::task::spawn_blocking(move || common::watermarks(&b, TOPIC, p))
            .await
            .unwrap();
        assert_eq!(marks, (0, expected as i64), "watermarks of partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producing_to_a_missing_topic_creates_it_with_num_partitions() {
    let broker = BrokerProcess::start(&["num.partitions=4"]);
    let bootstrap = broker.bootstrap();
    let producer: BaseProducer = common::producer_config(&bootstrap)
        .set("linger.ms", "0")
        .create()
        .unwrap();
    producer
        .send(
            BaseRecord::to("auto-created")
                .partition(2)
                .key("k")
                .payload("v")
                .timestamp(T0),
        )
        .map_err(|(e, _)| e)
        .expect("enqueue");
    producer.flush(Duration::from_secs(20)).expect("flush");

    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = common::consumer_config(&b).create().unwrap();
        let metadata = consumer
            .fetch_metadata(Some("auto-created"), Duration::from_secs(10))
            .expect("metadata");
        let topic = &metadata.topics()[0];
        assert_eq!(topic.name(), "auto-created");
        assert_eq!(topic.error(), None);
        let mut ids: Vec<i32> = topic.partitions().iter().map(|p| p.id()).collect();
        ids.sort();
        assert_eq!(ids, vec![0, 1, 2, 3]);
        for p in topic.partitions() {
            assert_eq!(p.leader(), 1, "leader of partition {}", p.id());
            assert_eq!(p.replicas(), &[1]);
            assert_eq!(p.isr(), &[1]);
        }
        let messages =
            common::consume_exactly(&b, "auto-created", &[(2, 0)], 1, Duration::from_secs(20));
        assert_eq!(messages[0].offset(), 0);
        assert_eq!(messages[0].key(), Some(&b"k"[..]));
        assert_eq!(messages[0].payload(), Some(&b"v"[..]));
        assert_eq!(common::watermarks(&b, "auto-created", 2), (0, 1));
        assert_eq!(common::watermarks(&b, "auto-created", 0), (0, 0));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_errors_and_delete_topics() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    let admin = common::admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));

    let first = NewTopic::new("doomed", 2, TopicReplication::Fixed(1));
    assert_eq!(
        admin.create_topics([&first], &options).await.unwrap(),
        vec![Ok("doomed".to_string())]
    );
    assert_eq!(
        admin.create_topics([&first], &options).await.unwrap(),
        vec![Err((
            "doomed".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );
    let triple = NewTopic::new("triple", 1, TopicReplication::Fixed(3));
    assert_eq!(
        admin.create_topics([&triple], &options).await.unwrap(),
        vec![Err((
            "triple".to_string(),
            RDKafkaErrorCode::InvalidReplicationFactor
        ))]
    );

    let bad_name = NewTopic::new("bad/name", 1, TopicReplication::Fixed(1));
    assert_eq!(
        admin.create_topics([&bad_name], &options).await.unwrap(),
        vec![Err((
            "bad/name".to_string(),
            RDKafkaErrorCode::InvalidTopic
        ))]
    );
    let bad_config =
        NewTopic::new("bad-config", 1, TopicReplication::Fixed(1)).set("cleanup.policy", "shred");
    assert_eq!(
        admin.create_topics([&bad_config], &options).await.unwrap(),
        vec![Err((
            "bad-config".to_string(),
            RDKafkaErrorCode::InvalidConfig
        ))]
    );
    let unknown_config =
        NewTopic::new("unknown-config", 1, TopicReplication::Fixed(1)).set("no.such.setting", "1");
    assert_eq!(
        admin
            .create_topics([&unknown_config], &options)
            .await
            .unwrap(),
        vec![Err((
            "unknown-config".to_string(),
            RDKafkaErrorCode::InvalidConfig
        ))]
    );
    let validate_only = NewTopic::new("validated", 3, TopicReplication::Fixed(1));
    assert_eq!(
        admin
            .create_topics(
                [&validate_only],
                &AdminOptions::new()
                    .operation_timeout(Some(Duration::from_secs(10)))
                    .validate_only(true)
            )
            .await
            .unwrap(),
        vec![Ok("validated".to_string())]
    );

    let b = bootstrap.clone();
    // All-topics metadata over the raw protocol (librdkafka's own all-topics request is
    // covered by protocol_versions::librdkafka_all_topics_metadata_is_answered).
    let names = move || {
        let names: Vec<String> = all_topics(&b).into_iter().map(|(name, _)| name).collect();
        let mut names = names;
        names.sort();
        names
    };
    let n = names.clone();
    let before = tokio::task::spawn_blocking(n).await.unwrap();
    assert_eq!(
        before,
        vec!["doomed".to_string()],
        "triple must not have been created"
    );
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let mut raw = common::RawClient::connect(&b);
        for p in 0..2 {
            let r = common::raw_produce(
                &mut raw,
                "doomed",
                p,
                common::encode_batch(&[(None, Some(&b"old"[..]), 1)]),
            );
            assert_eq!((r.error_code, r.base_offset), (0, 0));
        }
    })
    .await
    .unwrap();

    assert_eq!(
        admin.delete_topics(&["doomed"], &options).await.unwrap(),
        vec![Ok("doomed".to_string())]
    );
    let n = names.clone();
    let after = tokio::task::spawn_blocking(n).await.unwrap();
    assert_eq!(after, Vec::<String>::new());
    assert_eq!(
        admin.delete_topics(&["doomed"], &options).await.unwrap(),
        vec![Err((
            "doomed".to_string(),
            RDKafkaErrorCode::UnknownTopicOrPartition
        ))]
    );
    // The name can be reused, and the new topic is empty, also after a restart.
    assert_eq!(
        admin.create_topics([&first], &options).await.unwrap(),
        vec![Ok("doomed".to_string())]
    );
    drop(admin);
    let mut broker = broker;
    tokio::task::spawn_blocking(move || {
        let b = broker.bootstrap();
        assert_eq!(common::watermarks(&b, "doomed", 1), (0, 0));
        broker.terminate();
        broker.restart();
        let b = broker.bootstrap();
        let topics = all_topics(&b);
        assert_eq!(topics, vec![("doomed".to_string(), 2)]);
        assert_eq!(common::watermarks(&b, "doomed", 0), (0, 0));
        assert_eq!(common::watermarks(&b, "doomed", 1), (0, 0));
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_configs_reports_values_and_sources() {
    let broker = BrokerProcess::start(&["num.partitions=2"]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, "configured", 1, &[("retention.ms", "1234567")]).await;
    let admin = common::admin(&bootstrap);
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));

    let results = admin
        .describe_configs(
            [
                &ResourceSpecifier::Topic("configured"),
                &ResourceSpecifier::Broker(1),
            ],
            &options,
        )
        .await
        .expect("describe_configs");
    assert_eq!(results.len(), 2);
    let topic = results[0].as_ref().expect("topic resource");
    assert_eq!(
        topic.specifier,
        OwnedResourceSpecifier::Topic("configured".into())
    );
    let cleanup = topic.get("cleanup.policy").expect("cleanup.policy");
    assert_eq!(cleanup.value.as_deref(), Some("delete"));
    assert_eq!(cleanup.source, ConfigSource::Default);
    assert!(cleanup.is_default);
    let retention = topic.get("retention.ms").expect("retention.ms");
    assert_eq!(retention.value.as_deref(), Some("1234567"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    assert!(!retention.is_default);
    let segment = topic.get("segment.bytes").expect("segment.bytes");
    assert_eq!(segment.value.as_deref(), Some("1073741824"));
    assert_eq!(segment.source, ConfigSource::Default);

    let broker_res = results[1].as_ref().expect("broker resource");
    assert_eq!(broker_res.specifier, OwnedResourceSpecifier::Broker(1));
    let partitions = broker_res.get("num.partitions").expect("num.partitions");
    assert_eq!(partitions.value.as_deref(), Some("2"));
    assert_eq!(partitions.source, ConfigSource::StaticBroker);
    let max = broker_res
        .get("message.max.bytes")
        .expect("message.max.bytes");
    assert_eq!(max.value.as_deref(), Some("1048588"));
    assert_eq!(max.source, ConfigSource::Default);

    // rdkafka 0.39 drops per-resource errors of DescribeConfigs (it never calls
    // rd_kafka_ConfigResource_error): an unknown topic comes back as an empty resource.
    let missing = admin
        .describe_configs([&ResourceSpecifier::Topic("no-such-topic")], &options)
        .await
        .expect("describe_configs");
    assert_eq!(missing.len(), 1);
    assert_eq!(missing[0].as_ref().map(|r| r.entries.len()).ok(), Some(0));
    // The wire answer carries UNKNOWN_TOPIC_OR_PARTITION.
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
        use kafka_protocol::messages::DescribeConfigsRequest;
        use kafka_protocol::protocol::StrBytes;
        let mut raw = common::RawClient::connect(&b);
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("no-such-topic"))
                .with_configuration_keys(None),
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(StrBytes::from_static_str("configured"))
                .with_configuration_keys(Some(vec![StrBytes::from_static_str("retention.ms")])),
        ]);
        let response = raw.call(&request, 4);
        assert_eq!(response.results.len(), 2);
        assert_eq!(
            response.results[0].error_code, 3,
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(response.results[1].error_code, 0);
        let configs = &response.results[1].configs;
        assert_eq!(configs.len(), 1, "only the key asked for");
        assert_eq!(configs[0].name.as_str(), "retention.ms");
        assert_eq!(
            configs[0].value.as_ref().map(|v| v.as_str()),
            Some("1234567")
        );
        assert_eq!(configs[0].config_source, 1, "DYNAMIC_TOPIC_CONFIG");
    })
    .await
    .unwrap();
}

/// librdkafka only compresses with lz4 when the broker advertises FindCoordinator (its
/// RD_KAFKA_FEATURE_LZ4 is keyed on that API, as a proxy for Kafka >= 0.8.2); otherwise
/// it silently sends lz4-configured batches uncompressed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_producer_batches_are_stored_lz4_compressed() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, "lz4", 1, &[]).await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = common::producer_config(&b)
            .set("compression.codec", "lz4")
            .set("linger.ms", "100")
            .create()
            .unwrap();
        for seq in 0..1000 {
            let value = value_of(3, seq);
            producer
                .send(BaseRecord::to("lz4").partition(0).key("k").payload(&value))
                .map_err(|(e, _)| e)
                .expect("enqueue");
        }
        producer.flush(Duration::from_secs(20)).expect("flush");
        let mut raw = common::RawClient::connect(&b);
        let data = common::raw_fetch(&mut raw, "lz4", 0, 0, 0, 1);
        let batches: Vec<(u8, i32)> = common::batch_info(data.records.as_ref().unwrap())
            .iter()
            .map(|i| (i.compression as u8, i.record_count))
            .collect();
        // librdkafka sends a batch uncompressed when compressing does not make it
        // smaller (the first one or two batches of a few records); every batch of more
        // than a handful of records must be lz4.
        assert!(!batches.is_empty());
        assert!(
            batches.iter().filter(|(_, count)| *count > 10).all(|(codec, _)| *codec == 3)
                && batches.iter().any(|(codec, _)| *codec == 3),
            "librdkafka with compression.codec=lz4 stored batches (codec, records) {batches:?} (3 = lz4)"
        );
        let messages = common::consume_exactly(&b, "lz4", &[(0, 0)], 1000, Duration::from_secs(20));
        for (seq, m) in messages.iter().enumerate() {
            assert_eq!(m.offset(), seq as i64);
            assert_eq!(m.payload(), Some(&value_of(3, seq)[..]));
        }
    })
    .await
    .unwrap();
}

/// A topic created with message.timestamp.type=LogAppendTime (accepted by CreateTopics)
/// must hand out the broker's append time, as Kafka does: the produce response carries
/// log_append_time_ms and consumers see LogAppendTime timestamps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_append_time_topics_stamp_the_append_time() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::create_topic(
        &bootstrap,
        "appended",
        1,
        &[("message.timestamp.type", "LogAppendTime")],
    )
    .await;
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        };
        let before = now();
        let mut raw = common::RawClient::connect(&b);
        let response = common::raw_produce(
            &mut raw,
            "appended",
            0,
            common::encode_batch(&[
                (None, Some(&b"old"[..]), T0),
                (None, Some(&b"older"[..]), T0 - 5),
            ]),
        );
        let after = now();
        assert_eq!(response.error_code, 0);
        assert!(
            (before..=after).contains(&response.log_append_time_ms),
            "log_append_time_ms {} not in [{before}, {after}]",
            response.log_append_time_ms
        );
        let messages =
            common::consume_exactly(&b, "appended", &[(0, 0)], 2, Duration::from_secs(20));
        for m in &messages {
            assert_eq!(
                m.timestamp(),
                Timestamp::LogAppendTime(response.log_append_time_ms)
            );
        }
    })
    .await
    .unwrap();
}

fn raw_metadata(bootstrap: &str, topic: &str, allow_auto_create: bool) -> (i16, usize) {
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{MetadataRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    let mut raw = common::RawClient::connect(bootstrap);
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]))
        .with_allow_auto_topic_creation(allow_auto_create);
    let response = raw.call(&request, 12);
    assert_eq!(response.topics.len(), 1);
    let t = &response.topics[0];
    assert_eq!(t.name.as_ref().map(|n| n.0.as_str()), Some(topic));
    (t.error_code, t.partitions.len())
}

#[test]
fn metadata_auto_creates_only_when_allowed() {
    let broker = BrokerProcess::start(&["num.partitions=4"]);
    let b = broker.bootstrap();
    // librdkafka consumers ask without auto-creation: the topic stays missing.
    let consumer: BaseConsumer = common::consumer_config(&b).create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some("not-created"), Duration::from_secs(10))
        .expect("metadata");
    assert_eq!(
        metadata.topics()[0].error(),
        Some(rdkafka::types::RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
    );
    assert_eq!(raw_metadata(&b, "not-created", false), (3, 0));
    assert_eq!(
        raw_metadata(&b, "not-created", false),
        (3, 0),
        "still missing"
    );
    // With allow_auto_topic_creation the broker creates it with num.partitions,
    // answering that request LEADER_NOT_AVAILABLE as Kafka does.
    assert_eq!(raw_metadata(&b, "meta-created", true), (5, 0));
    assert_eq!(raw_metadata(&b, "meta-created", true), (0, 4));
    assert_eq!(raw_metadata(&b, "meta-created", false), (0, 4));
    assert_eq!(common::watermarks(&b, "meta-created", 3), (0, 0));
}

#[test]
fn auto_creation_can_be_disabled() {
    let broker = BrokerProcess::start(&["auto.create.topics.enable=false"]);
    let b = broker.bootstrap();
    assert_eq!(raw_metadata(&b, "never", true), (3, 0));
    let mut raw = common::RawClient::connect(&b);
    let response = common::raw_produce(
        &mut raw,
        "never",
        0,
        common::encode_batch(&[(None, Some(&b"x"[..]), 1)]),
    );
    assert_eq!(response.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    assert_eq!(raw_metadata(&b, "never", false), (3, 0));
}

/// A consumer tailing the log while a producer writes sees every record once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tailing_consumer_sees_records_as_they_arrive() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, "tail", 2, &[]).await;
    const COUNT: usize = 20_000;
    let b = bootstrap.clone();
    let consumer = std::thread::spawn(move || {
        common::consume_exactly(
            &b,
            "tail",
            &[(0, 0), (1, 0)],
            COUNT,
            Duration::from_secs(60),
        )
    });
    let b = bootstrap.clone();
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer = common::producer_config(&b)
            .set("linger.ms", "2")
            .create()
            .unwrap();
        for i in 0..COUNT {
            let value = format!("tail-{i}");
            loop {
                match producer.send(
                    BaseRecord::to("tail")
                        .partition((i % 2) as i32)
                        .key("t")
                        .payload(&value)
                        .timestamp(T0 + i as i64),
                ) {
                    Ok(()) => break,
                    Err(_) => {
                        producer.poll(Duration::from_millis(5));
                    }
                }
            }
            if i % 2_000 == 0 {
                // Let the consumer catch up now and then, so that it parks at the end.
                producer.flush(Duration::from_secs(10)).unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        producer.flush(Duration::from_secs(30)).unwrap();
    })
    .await
    .unwrap();
    let messages = consumer.join().expect("consumer thread");
    let mut next = [0i64; 2];
    for m in &messages {
        let p = m.partition() as usize;
        assert_eq!(m.offset(), next[p], "partition {p}");
        let i = next[p] as usize * 2 + p;
        assert_eq!(m.payload(), Some(format!("tail-{i}").as_bytes()));
        assert_eq!(m.timestamp(), Timestamp::CreateTime(T0 + i as i64));
        next[p] += 1;
    }
    assert_eq!(next, [COUNT as i64 / 2, COUNT as i64 / 2]);
}

/// (name, partition count) of every topic, via a raw Metadata v12 request for all topics.
fn all_topics(bootstrap: &str) -> Vec<(String, usize)> {
    use kafka_protocol::messages::MetadataRequest;
    let mut raw = common::RawClient::connect(bootstrap);
    let request = MetadataRequest::default()
        .with_topics(None)
        .with_allow_auto_topic_creation(false);
    let response = raw.call(&request, 12);
    let mut topics: Vec<(String, usize)> = response
        .topics
        .iter()
        .map(|t| {
            assert_eq!(t.error_code, 0);
            (t.name.as_ref().unwrap().0.to_string(), t.partitions.len())
        })
        .collect();
    topics.sort();
    topics
}
