//! Every advertised API at every advertised version: a minimal valid request (encoded
//! by kafka_protocol, as any client would) gets a decodable response with the same
//! correlation id, and the connection stays open. Guards the pre-decode request guard
//! against refusing valid requests.

mod common;

use std::time::Duration;

use common::{BrokerProcess, RawClient};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiVersionsRequest, CreateTopicsRequest, DeleteTopicsRequest, DescribeClusterRequest,
    DescribeConfigsRequest, FetchRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest,
    TopicName,
};
use kafka_protocol::protocol::{Request, StrBytes};

/// Sends `request` at every version in `versions`, collecting failures.
fn check_all<R: Request>(
    bootstrap: &str,
    name: &str,
    versions: std::ops::RangeInclusive<i16>,
    make: impl Fn(i16) -> R,
    failures: &mut Vec<String>,
) {
    for version in versions {
        let mut client = RawClient::connect(bootstrap);
        client
            .stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let request = make(version);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let correlation_id = client.send(&request, version);
            client.receive::<R>(version, correlation_id)
        }));
        if let Err(panic) = result {
            let why = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name} v{version}: {why}"));
        }
    }
}

#[test]
fn every_advertised_version_is_answered() {
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap();
    let mut failures = Vec::new();
    check_all(
        &b,
        "ApiVersions",
        0..=4,
        |_| ApiVersionsRequest::default(),
        &mut failures,
    );
    // All topics: an empty list at v0, null from v1.
    check_all(
        &b,
        "Metadata(all topics)",
        0..=13,
        |v| MetadataRequest::default().with_topics(if v == 0 { Some(vec![]) } else { None }),
        &mut failures,
    );
    check_all(
        &b,
        "Metadata(one topic)",
        0..=13,
        |_| {
            MetadataRequest::default()
                .with_topics(Some(vec![MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("versions"))))]))
                // Before v4 the field does not exist and means "true".
                .with_allow_auto_topic_creation(true)
        },
        &mut failures,
    );
    check_all(
        &b,
        "Produce(no topics)",
        3..=11,
        |_| ProduceRequest::default().with_acks(1).with_timeout_ms(1000),
        &mut failures,
    );
    check_all(
        &b,
        "Fetch(no topics)",
        4..=16,
        |_| {
            FetchRequest::default()
                .with_replica_id(kafka_protocol::messages::BrokerId(-1))
                .with_max_wait_ms(0)
                .with_min_bytes(0)
                .with_max_bytes(1 << 20)
                .with_session_epoch(-1)
        },
        &mut failures,
    );
    check_all(
        &b,
        "ListOffsets(no topics)",
        1..=10,
        |_| ListOffsetsRequest::default().with_replica_id(kafka_protocol::messages::BrokerId(-1)),
        &mut failures,
    );
    check_all(
        &b,
        "CreateTopics(none)",
        2..=7,
        |_| CreateTopicsRequest::default().with_timeout_ms(1000),
        &mut failures,
    );
    check_all(
        &b,
        "DeleteTopics(none)",
        1..=6,
        |_| DeleteTopicsRequest::default().with_timeout_ms(1000),
        &mut failures,
    );
    check_all(
        &b,
        "DescribeConfigs(none)",
        1..=4,
        |_| DescribeConfigsRequest::default(),
        &mut failures,
    );
    check_all(
        &b,
        "DescribeCluster",
        0..=2,
        |_| DescribeClusterRequest::default(),
        &mut failures,
    );
    assert!(
        failures.is_empty(),
        "{} request versions refused:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// librdkafka 2.12 asks for all topics' metadata (Metadata v9+, topics null) with a body
/// three bytes longer than the fields: rd_kafka_MetadataRequest0 reserves a 4-byte array
/// count with rd_kafka_buf_write_arraycnt_pos and, for "all topics" at v9+, leaves it as
/// is ("keep 0, varint encoded null"), so 00 00 00 00 precede the real fields. Kafka
/// ignores bytes after the body; so must we, or every librdkafka 2.12 client fails
/// `fetch_metadata(None)` / "list topics".
#[test]
fn librdkafka_all_topics_metadata_is_answered() {
    use std::io::Write;
    let broker = BrokerProcess::start(&[]);
    let b = broker.bootstrap();
    let mut client = RawClient::connect(&b);
    // Captured from librdkafka 2.12.1 (rdkafka 0.39): header v2 then the body.
    let mut frame = hex("0003000d00000003000772646b61666b6100");
    frame.extend_from_slice(&[0u8; 7]);
    let mut bytes = (frame.len() as i32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&frame);
    client.stream.write_all(&bytes).unwrap();
    let response = client.receive::<MetadataRequest>(13, 3);
    assert_eq!(response.brokers.len(), 1);

    // And through librdkafka itself.
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = common::consumer_config(&b).create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("all-topics metadata through librdkafka");
    assert_eq!(metadata.brokers().len(), 1);
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// The cluster-administration APIs at every advertised version, over the wire and
/// through the guard, answered as a one-broker KRaft cluster would.
#[test]
fn cluster_admin_apis_answer_as_one_broker_at_every_version() {
    use kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
    use kafka_protocol::messages::elect_leaders_request::TopicPartitions;
    use kafka_protocol::messages::{
        AlterPartitionReassignmentsRequest, BrokerId, DescribeLogDirsRequest,
        DescribeQuorumRequest, ElectLeadersRequest, ListPartitionReassignmentsRequest,
    };

    let broker = BrokerProcess::start(&[]);
    let mut client = RawClient::connect(&broker.bootstrap());
    let name = |s: &'static str| TopicName(StrBytes::from_static_str(s));
    let created = client.call(
        &CreateTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(name("ops"))
                .with_num_partitions(2)
                .with_replication_factor(1),
        ]),
        4,
    );
    assert_eq!(created.topics[0].error_code, 0);

    for version in 0..=2 {
        let response = client.call(
            &ElectLeadersRequest::default().with_topic_partitions(Some(vec![
                TopicPartitions::default()
                    .with_topic(name("ops"))
                    .with_partitions(vec![0, 5]),
            ])),
            version,
        );
        let codes: Vec<i16> = response.replica_election_results[0]
            .partition_result
            .iter()
            .map(|p| p.error_code)
            .collect();
        assert_eq!(
            codes,
            [84, 3],
            "ELECTION_NOT_NEEDED, UNKNOWN_TOPIC v{version}"
        );
    }
    for version in 1..=4 {
        let response = client.call(
            &DescribeLogDirsRequest::default().with_topics(None),
            version,
        );
        let [dir] = &response.results[..] else {
            panic!("one log dir, v{version}")
        };
        assert!(dir.topics.iter().any(|t| t.name.0.as_str() == "ops"));
    }
    // Two replicas on one broker: the broker named twice (INVALID_REPLICA_ASSIGNMENT, 39)
    // where the factor may change (always before v1), else INVALID_REPLICATION_FACTOR.
    for (version, allow, expected) in [(0, true, 39), (1, false, 38), (1, true, 39)] {
        let request = AlterPartitionReassignmentsRequest::default()
            .with_allow_replication_factor_change(allow)
            .with_topics(vec![
                kafka_protocol::messages::alter_partition_reassignments_request::ReassignableTopic::default()
                    .with_name(name("ops"))
                    .with_partitions(vec![
                        kafka_protocol::messages::alter_partition_reassignments_request::ReassignablePartition::default()
                            .with_replicas(Some(vec![BrokerId(1), BrokerId(1)])),
                    ]),
            ]);
        let response = client.call(&request, version);
        let code = response.responses[0].partitions[0].error_code;
        assert_eq!(code, expected, "v{version} allow={allow}");
    }
    let listed = client.call(&ListPartitionReassignmentsRequest::default(), 0);
    assert!(listed.topics.is_empty());
    for version in 0..=2 {
        let response = client.call(
            &DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
                .with_topic_name(name("__cluster_metadata"))
                .with_partitions(vec![PartitionData::default()])]),
            version,
        );
        assert_eq!(response.error_code, 0);
        let partition = &response.topics[0].partitions[0];
        assert_eq!(partition.leader_id, BrokerId(1));
        assert_eq!(partition.current_voters.len(), 1);
        assert_eq!(response.nodes.len(), usize::from(version >= 2));
    }
    let wrong = client.call(
        &DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(name("ops"))
            .with_partitions(vec![PartitionData::default()])]),
        1,
    );
    assert_eq!(wrong.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

/// Client quotas over the wire: AlterClientQuotas validates and stores, DescribeClientQuotas
/// filters as Kafka does, and a produce over the client's `producer_byte_rate` is answered
/// with Kafka's throttle time, the connection then read no sooner.
#[test]
fn client_quotas_are_described_and_throttle_produce() {
    use kafka_protocol::messages::alter_client_quotas_request::{EntityData, EntryData, OpData};
    use kafka_protocol::messages::describe_client_quotas_request::ComponentData;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{AlterClientQuotasRequest, DescribeClientQuotasRequest};

    let broker = BrokerProcess::start(&[]);
    let mut client = RawClient::connect(&broker.bootstrap());
    let s = |text: &str| StrBytes::from_string(text.to_string());
    let entry = |name: Option<&str>, key: &str, value: f64| {
        EntryData::default()
            .with_entity(vec![EntityData::default()
                .with_entity_type(s("client-id"))
                .with_entity_name(name.map(s))])
            .with_ops(vec![OpData::default().with_key(s(key)).with_value(value)])
    };
    let altered = client.call(
        &AlterClientQuotasRequest::default().with_entries(vec![
            // RawClient's client id: 1000 bytes a second.
            entry(Some("agentlog-raw-test"), "producer_byte_rate", 1000.0),
            entry(None, "consumer_byte_rate", 5e6),
            entry(Some("x"), "producer_byte_rate", 1.5),
            entry(Some("x"), "no_such_quota", 1.0),
        ]),
        1,
    );
    let codes: Vec<i16> = altered.entries.iter().map(|e| e.error_code).collect();
    assert_eq!(codes, [0, 0, 42, 42], "{altered:?}");

    let describe = |match_type: i8, name: Option<&str>, strict: bool| {
        let mut client = RawClient::connect(&broker.bootstrap());
        let response = client.call(
            &DescribeClientQuotasRequest::default()
                .with_strict(strict)
                .with_components(vec![ComponentData::default()
                    .with_entity_type(s("client-id"))
                    .with_match_type(match_type)
                    .with_match(name.map(s))]),
            1,
        );
        assert_eq!(response.error_code, 0);
        response
            .entries
            .unwrap_or_default()
            .iter()
            .map(|e| e.values[0].key.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        describe(0, Some("agentlog-raw-test"), true),
        ["producer_byte_rate"]
    );
    assert_eq!(describe(1, None, false), ["consumer_byte_rate"]);
    assert_eq!(describe(2, None, false), ["producer_byte_rate"]);

    let created = client.call(
        &CreateTopicsRequest::default().with_topics(vec![
            kafka_protocol::messages::create_topics_request::CreatableTopic::default()
                .with_name(TopicName(s("quota")))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]),
        4,
    );
    assert_eq!(created.topics[0].error_code, 0);
    // About 5% over a ten-second window's worth: a throttle of about half a second.
    let value = vec![b'x'; 10_400];
    let batch = common::encode_batch(&[(None, Some(&value), 1)]);
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s("quota")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.clone()))])]);
    let first = client.call(&produce, 9);
    assert_eq!(first.responses[0].partition_responses[0].error_code, 0);
    // Over the ten-second window the batch is a rate of batch/10 B/s against 1000 B/s:
    // Kafka's throttle is (rate - 1000) / 1000 * 10000 ms.
    let expected = ((batch.len() as f64 / 10.0 - 1000.0) / 1000.0 * 10_000.0) as i32;
    let throttle = first.throttle_time_ms;
    assert!(
        (expected - 50..=expected + 50).contains(&throttle),
        "throttle {throttle} ms, expected about {expected}"
    );
    // The connection takes no request until the throttle has passed (a lower bound,
    // which a sleep guarantees: it cannot flake).
    let started = std::time::Instant::now();
    let _ = client.call(&ApiVersionsRequest::default(), 3);
    assert!(started.elapsed() >= Duration::from_millis(u64::try_from(throttle - 50).unwrap()));

    // A fetch over the client's consumer_byte_rate returns no data, only the throttle.
    let altered = client.call(
        &AlterClientQuotasRequest::default().with_entries(vec![entry(
            Some("agentlog-raw-test"),
            "consumer_byte_rate",
            1000.0,
        )]),
        1,
    );
    assert_eq!(altered.entries[0].error_code, 0);
    let fetch = |client: &mut RawClient| {
        use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
        client.call(
            &FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(TopicName(s("quota")))
                    .with_partitions(vec![
                        FetchPartition::default().with_partition_max_bytes(1 << 20)
                    ])]),
            12,
        )
    };
    let mut fresh = RawClient::connect(&broker.bootstrap());
    let throttled = fetch(&mut fresh);
    assert!(throttled.throttle_time_ms > 0, "{throttled:?}");
    assert!(throttled.responses.is_empty(), "no data while throttled");
}
