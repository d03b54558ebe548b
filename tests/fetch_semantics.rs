//! Fetch and produce semantics over raw kafka_protocol requests: long polls, wake-ups,
//! whole-batch reads, out-of-range offsets, acks=0 and response ordering.

mod common;

use std::time::{Duration, Instant};

use common::{BrokerProcess, RawClient};
use kafka_protocol::messages::{ApiVersionsRequest, FetchRequest, ProduceRequest};

const TOPIC: &str = "fetchy";

fn five(first: usize) -> bytes::Bytes {
    let values: Vec<Vec<u8>> = (first..first + 5)
        .map(|i| format!("v{i}").into_bytes())
        .collect();
    let records: Vec<common::RawRecord<'_>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            (
                Some(&b"key"[..]),
                Some(&v[..]),
                1_700_000_000_000 + (first + i) as i64,
            )
        })
        .collect();
    common::encode_batch(&records)
}

/// A broker with TOPIC holding two batches: offsets 0-4 and 5-9.
async fn broker_with_two_batches() -> BrokerProcess {
    let broker = BrokerProcess::start(&[]);
    common::create_topic(&broker.bootstrap(), TOPIC, 1, &[]).await;
    let mut client = RawClient::connect(&broker.bootstrap());
    let first = common::raw_produce(&mut client, TOPIC, 0, five(0));
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let second = common::raw_produce(&mut client, TOPIC, 0, five(5));
    assert_eq!((second.error_code, second.base_offset), (0, 5));
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_waits_max_wait_and_returns_empty_records() {
    let broker = broker_with_two_batches().await;
    let mut client = RawClient::connect(&broker.bootstrap());
    let started = Instant::now();
    let data = common::raw_fetch(&mut client, TOPIC, 0, 10, 500, 1);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(400),
        "returned after {took:?}, before max_wait_ms"
    );
    assert!(took < Duration::from_secs(5), "returned after {took:?}");
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 10);
    assert_eq!(data.last_stable_offset, 10);
    assert_eq!(data.log_start_offset, 0);
    assert_eq!(
        data.records,
        Some(bytes::Bytes::new()),
        "records must be present and empty"
    );

    // min_bytes=0 does not wait at all.
    let started = Instant::now();
    let data = common::raw_fetch(&mut client, TOPIC, 0, 10, 20_000, 0);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "min_bytes=0 waited {:?}",
        started.elapsed()
    );
    assert_eq!(data.records, Some(bytes::Bytes::new()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parked_fetch_wakes_when_data_arrives() {
    let broker = broker_with_two_batches().await;
    let bootstrap = broker.bootstrap();
    // Send the fetch first (it is on the wire before the append is), let it park, then
    // append from another connection.
    let mut fetcher = RawClient::connect(&bootstrap);
    let started = Instant::now();
    let fetch_id = fetcher.send(
        &common::fetch_request(TOPIC, 0, 10, 10_000, 1),
        common::FETCH_VERSION,
    );
    assert!(
        common::silent_for(&mut fetcher.stream, Duration::from_millis(200)),
        "the fetch at the high watermark must park, not answer"
    );
    let mut producer = RawClient::connect(&bootstrap);
    let appended = common::raw_produce(&mut producer, TOPIC, 0, five(10));
    assert_eq!((appended.error_code, appended.base_offset), (0, 10));
    let response = fetcher.receive::<FetchRequest>(common::FETCH_VERSION, fetch_id);
    let took = started.elapsed();
    let data = common::only_partition(&response);
    assert!(
        took < Duration::from_secs(5),
        "parked fetch returned after {took:?} (max_wait 10 s)"
    );
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 15);
    let records = common::decode_records(data.records.as_ref().unwrap());
    let offsets: Vec<i64> = records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, vec![10, 11, 12, 13, 14]);
    assert_eq!(records[0].value.as_deref(), Some(&b"v10"[..]));
    assert_eq!(records[4].timestamp, 1_700_000_000_014);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_from_mid_batch_returns_the_whole_batch() {
    let broker = broker_with_two_batches().await;
    let mut client = RawClient::connect(&broker.bootstrap());
    let data = common::raw_fetch(&mut client, TOPIC, 0, 7, 0, 1);
    assert_eq!(data.error_code, 0);
    let records = data.records.expect("records");
    let info = common::batch_info(&records);
    assert_eq!(
        info.len(),
        1,
        "only the batch holding offset 7 and what follows"
    );
    assert_eq!((info[0].min_offset, info[0].record_count), (5, 5));
    assert!(info[0].min_offset <= 7);
    let values: Vec<_> = common::decode_records(&records)
        .into_iter()
        .map(|r| (r.offset, r.value.unwrap()))
        .collect();
    assert_eq!(values[0], (5, bytes::Bytes::from_static(b"v5")));
    assert_eq!(values[4], (9, bytes::Bytes::from_static(b"v9")));

    let data = common::raw_fetch(&mut client, TOPIC, 0, 0, 0, 1);
    let info = common::batch_info(data.records.as_ref().unwrap());
    let bases: Vec<(i64, i32)> = info
        .iter()
        .map(|i| (i.min_offset, i.record_count))
        .collect();
    assert_eq!(bases, vec![(0, 5), (5, 5)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_offsets_are_refused() {
    let broker = broker_with_two_batches().await;
    let mut client = RawClient::connect(&broker.bootstrap());
    for offset in [11i64, 1_000, -1] {
        let started = Instant::now();
        let data = common::raw_fetch(&mut client, TOPIC, 0, offset, 20_000, 1);
        assert_eq!(
            data.error_code, 1,
            "OFFSET_OUT_OF_RANGE for offset {offset}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "an error must not long-poll"
        );
        assert_eq!(data.high_watermark, 10, "offset {offset}");
        assert_eq!(data.log_start_offset, 0, "offset {offset}");
    }
    // Unknown partition and topic.
    let data = common::raw_fetch(&mut client, TOPIC, 3, 0, 0, 1);
    assert_eq!(data.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let data = common::raw_fetch(&mut client, "no-such-topic", 0, 0, 0, 1);
    assert_eq!(data.error_code, 3, "UNKNOWN_TOPIC_OR_PARTITION");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_zero_gets_no_response_and_order_is_preserved() {
    let broker = broker_with_two_batches().await;
    let mut client = RawClient::connect(&broker.bootstrap());
    let produce = common::produce_request(TOPIC, 0, five(10), 0);
    let _no_answer = client.send::<ProduceRequest>(&produce, common::PRODUCE_VERSION);
    let versions = client.send(&ApiVersionsRequest::default(), 3);
    let response = client.receive::<ApiVersionsRequest>(3, versions);
    assert_eq!(response.error_code, 0);

    // acks=0 data was appended (it becomes visible once the group commit's fsync ran).
    common::poll_until(
        Duration::from_secs(10),
        "acks=0 records to become visible",
        || (common::raw_list_offsets(&mut client, TOPIC, 0, -1).offset == 15).then_some(()),
    );
    let data = common::raw_fetch(&mut client, TOPIC, 0, 10, 0, 1);
    let offsets: Vec<i64> = common::decode_records(data.records.as_ref().unwrap())
        .iter()
        .map(|r| r.offset)
        .collect();
    assert_eq!(offsets, vec![10, 11, 12, 13, 14]);

    // A slow long-poll, then a quick request: responses come back in request order.
    let fetch: FetchRequest = common::fetch_request(TOPIC, 0, 15, 300, 1);
    let started = Instant::now();
    let fetch_id = client.send(&fetch, common::FETCH_VERSION);
    let versions_id = client.send(&ApiVersionsRequest::default(), 3);
    let fetched = client.receive::<FetchRequest>(common::FETCH_VERSION, fetch_id);
    assert!(started.elapsed() >= Duration::from_millis(250));
    let partition = common::only_partition(&fetched);
    assert_eq!(partition.records, Some(bytes::Bytes::new()));
    let versions = client.receive::<ApiVersionsRequest>(3, versions_id);
    assert_eq!(versions.error_code, 0);

    // An acks=0 produce the broker refuses still sends nothing, and the connection stays
    // in step.
    let bad = common::produce_request("no-such-topic-and-bad-partition", 9, five(0), 0);
    client.send(&bad, common::PRODUCE_VERSION);
    let versions = client.send(&ApiVersionsRequest::default(), 3);
    assert_eq!(
        client.receive::<ApiVersionsRequest>(3, versions).error_code,
        0
    );
}

#[test]
fn batches_above_message_max_bytes_are_refused() {
    let runtime = common::runtime();
    let broker = BrokerProcess::start(&["message.max.bytes=2000"]);
    runtime.block_on(common::create_topic(&broker.bootstrap(), TOPIC, 1, &[]));
    let mut client = RawClient::connect(&broker.bootstrap());
    let big = vec![b'x'; 3000];
    let response = common::raw_produce(
        &mut client,
        TOPIC,
        0,
        common::encode_batch(&[(None, Some(&big[..]), 1)]),
    );
    assert_eq!(response.error_code, 10, "MESSAGE_TOO_LARGE");
    let small = vec![b'y'; 1000];
    let response = common::raw_produce(
        &mut client,
        TOPIC,
        0,
        common::encode_batch(&[(None, Some(&small[..]), 2)]),
    );
    assert_eq!((response.error_code, response.base_offset), (0, 0));
    // A record batch that is not whole (cut short) is refused as corrupt.
    let batch = common::encode_batch(&[(None, Some(&b"z"[..]), 3)]);
    let response = common::raw_produce(&mut client, TOPIC, 0, batch.slice(..batch.len() - 3));
    assert_ne!(response.error_code, 0, "a truncated batch must be refused");
    assert_eq!(
        common::raw_list_offsets(&mut client, TOPIC, 0, -1).offset,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_max_bytes_still_returns_one_whole_batch() {
    let broker = broker_with_two_batches().await;
    let mut client = RawClient::connect(&broker.bootstrap());
    let mut request = common::fetch_request(TOPIC, 0, 0, 0, 1);
    request.topics[0].partitions[0].partition_max_bytes = 1;
    let data = common::only_partition(&client.call(&request, common::FETCH_VERSION));
    assert_eq!(data.error_code, 0);
    let info = common::batch_info(data.records.as_ref().unwrap());
    let bases: Vec<(i64, i32)> = info
        .iter()
        .map(|i| (i.min_offset, i.record_count))
        .collect();
    assert_eq!(
        bases,
        vec![(0, 5)],
        "KIP-74: the first batch even when larger than the limit"
    );

    let mut request = common::fetch_request(TOPIC, 0, 0, 0, 1);
    request.max_bytes = 1;
    let data = common::only_partition(&client.call(&request, common::FETCH_VERSION));
    let info = common::batch_info(data.records.as_ref().unwrap());
    assert_eq!(
        info.len(),
        1,
        "response max_bytes=1 still yields the first batch"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_batches_are_refused_and_not_appended() {
    let broker = broker_with_two_batches().await;
    let mut client = RawClient::connect(&broker.bootstrap());
    let batch = five(10);
    let mut bad = batch.to_vec();
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // inside the CRC-covered records
    let response = common::raw_produce(&mut client, TOPIC, 0, bytes::Bytes::from(bad));
    assert_eq!(response.error_code, 2, "CORRUPT_MESSAGE");
    assert_eq!(
        common::raw_list_offsets(&mut client, TOPIC, 0, -1).offset,
        10
    );
    // The next good batch gets the next offset.
    let response = common::raw_produce(&mut client, TOPIC, 0, batch);
    assert_eq!((response.error_code, response.base_offset), (0, 10));
}
