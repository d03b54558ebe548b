//! Clients pipeline: librdkafka keeps many produce requests in flight on one connection,
//! and a consumer's long-poll fetch may be followed by other requests. Every request
//! gets its answer, in request order, also when more are sent than the broker takes in
//! flight at once (it then stops reading until replies drain) and when an answer waits
//! for a long-poll fetch before it.

mod common;

use common::{fetch_request, BrokerProcess, RawClient};
use kafka_protocol::messages::{ApiVersionsRequest, FetchRequest};

/// Far more than the 64 replies a connection may have in flight.
const PIPELINED: usize = 500;

#[test]
fn hundreds_of_pipelined_requests_are_all_answered_in_order() {
    let broker = BrokerProcess::start(&[]);
    let mut client = RawClient::connect(&broker.bootstrap());
    // One write of all requests, so that the broker holds many whole frames at once.
    let mut wire = Vec::new();
    let ids: Vec<i32> = (0..PIPELINED)
        .map(|_| {
            let mut sink = RawClient {
                stream: std::io::Cursor::new(Vec::new()),
                next_correlation: client.next_correlation,
            };
            let id = sink.send(&ApiVersionsRequest::default(), 0);
            client.next_correlation = sink.next_correlation;
            wire.extend_from_slice(sink.stream.get_ref());
            id
        })
        .collect();
    std::io::Write::write_all(&mut client.stream, &wire).expect("write pipelined requests");
    for id in ids {
        let response = client.receive::<ApiVersionsRequest>(0, id);
        assert_eq!(response.error_code, 0);
    }
}

#[test]
fn answers_behind_a_long_poll_fetch_wait_for_it_and_keep_their_order() {
    let broker = BrokerProcess::start(&[]);
    let bootstrap = broker.bootstrap();
    common::runtime().block_on(common::create_topic(&bootstrap, "parked", 1, &[]));
    let mut client = RawClient::connect(&bootstrap);
    let fetch = client.send(&fetch_request("parked", 0, 0, 700, 1), 12);
    let behind: Vec<i32> = (0..PIPELINED)
        .map(|_| client.send(&ApiVersionsRequest::default(), 0))
        .collect();
    let fetched = client.receive::<FetchRequest>(12, fetch);
    assert_eq!(fetched.error_code, 0);
    for id in behind {
        assert_eq!(client.receive::<ApiVersionsRequest>(0, id).error_code, 0);
    }
}
