//! What the consumer-group integration tests share: broker settings for fast group
//! protocols, creating a topic and producing numbered records with librdkafka, and a
//! group's type and state from ListGroups.

#![allow(dead_code)]

use std::time::Duration;

use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::common::{self, RawClient};

/// Fast heartbeats and short delays so assignments propagate in a fraction of a second.
pub const SETTINGS: &[&str] = &[
    "group.consumer.heartbeat.interval.ms=500",
    "group.consumer.session.timeout.ms=6000",
    "group.initial.rebalance.delay.ms=300",
    "group.min.session.timeout.ms=1000",
];

/// Creates `name` with `partitions` partitions, replication 1.
pub fn create_topic(addr: &str, name: &str, partitions: i32) {
    let admin = common::admin(addr);
    let results = futures::executor::block_on(admin.create_topics(
        &[rdkafka::admin::NewTopic::new(
            name,
            partitions,
            rdkafka::admin::TopicReplication::Fixed(1),
        )],
        &rdkafka::admin::AdminOptions::new(),
    ))
    .expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// Produces records keyed and valued `from`..`from + count`, spread by key.
pub fn produce(addr: &str, topic: &str, from: usize, count: usize) {
    let producer: BaseProducer = common::producer_config(addr).create().expect("producer");
    for seq in from..from + count {
        let key = format!("{seq}");
        while producer
            .send(BaseRecord::to(topic).key(&key).payload(&key))
            .is_err()
        {
            producer.poll(Duration::from_millis(10));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A group's type, protocol type and state as ListGroups v5 reports them.
pub fn group_type_and_state(addr: &str, group: &str) -> Option<(String, String, String)> {
    let response =
        RawClient::connect(addr).call(&kafka_protocol::messages::ListGroupsRequest::default(), 5);
    response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .map(|g| {
            (
                g.group_type.to_string(),
                g.protocol_type.to_string(),
                g.group_state.to_string(),
            )
        })
}
