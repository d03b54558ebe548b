//! Wire-path costs that every produced and fetched byte pays: CRC verification, request
//! decoding and response encoding. Run: `cargo bench --bench protocol`.

mod common;

use agentlog_broker::handlers::SUPPORTED;
use agentlog_protocol::batch;
use agentlog_protocol::request::decode_request;
use agentlog_protocol::response::encode_response;
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ProduceRequest, RequestHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_verify");
    for records in [1usize, 10, 100, 1000] {
        let bytes = common::batch(records, 100);
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_with_input(
            BenchmarkId::new("records_x100B", records),
            &bytes,
            |b, bytes| b.iter(|| batch::verify(bytes).expect("valid batch")),
        );
    }
    group.finish();
}

/// A request frame as it arrives (without the 4-byte length prefix).
fn frame(api_key: ApiKey, version: i16, body: &impl Encodable) -> Bytes {
    let mut buf = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("bench")))
        .encode(&mut buf, api_key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    buf.freeze()
}

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("bench"))
}

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode_request");
    let records = common::batch(100, 100);
    let produce = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let produce = frame(ApiKey::Produce, 9, &produce);
    group.throughput(Throughput::Bytes(produce.len() as u64));
    group.bench_function("produce_v9_100x100B", |b| {
        b.iter(|| decode_request(produce.clone(), &SUPPORTED).expect("decodes"))
    });
    let partitions = (0..8)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(1_000_000)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(partitions)]);
    let fetch = frame(ApiKey::Fetch, 12, &fetch);
    group.throughput(Throughput::Elements(1));
    group.bench_function("fetch_v12_8_partitions", |b| {
        b.iter(|| decode_request(fetch.clone(), &SUPPORTED).expect("decodes"))
    });
    group.finish();
}

fn encode(c: &mut Criterion) {
    let batch = common::batch(100, 100);
    let copies = (1 << 20) / batch.len();
    let mut records = BytesMut::with_capacity(copies * batch.len());
    for _ in 0..copies {
        records.extend_from_slice(&batch);
    }
    let records = records.freeze();
    let response = ResponseKind::Fetch(FetchResponse::default().with_responses(
        vec![FetchableTopicResponse::default()
            .with_topic(topic())
            .with_partitions(vec![PartitionData::default()
                .with_partition_index(0)
                .with_high_watermark(1_000_000)
                .with_records(Some(records.clone()))])],
    ));
    let mut group = c.benchmark_group("encode_response");
    group.throughput(Throughput::Bytes(records.len() as u64));
    group.bench_function("fetch_v12_1MiB", |b| {
        b.iter(|| encode_response(ApiKey::Fetch, 12, 7, &response).expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, verify, decode, encode);
criterion_main!(benches);
