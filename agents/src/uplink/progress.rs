//! The uplink's progress, kept on the remote: a compacted topic whose record per local
//! partition (key `topic/partition`) holds the next local offset to forward. Written in
//! the same transaction as the forwarded records, so the remote's committed records and
//! its committed progress can never disagree.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::local::SourcePartition;
use super::remote::LinkContext;

/// The value of a progress record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressValue {
    /// The next local offset to forward: every record before it is on the remote.
    pub next_offset: i64,
}

/// The key of a local partition's progress record.
pub fn key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// The local partition a progress key names (Kafka topic names never hold `/`).
pub fn parse_key(key: &[u8]) -> Option<SourcePartition> {
    let text = std::str::from_utf8(key).ok()?;
    let (topic, partition) = text.rsplit_once('/')?;
    Some((topic.to_string(), partition.parse().ok()?))
}

/// The value of a progress record.
pub fn value(next_offset: i64) -> Vec<u8> {
    serde_json::to_vec(&ProgressValue { next_offset }).unwrap_or_default()
}

/// Reading the progress topic failed; the session retries from the start.
#[derive(Debug, Error)]
pub enum LoadProgressError {
    /// The client failed (unreachable, not authorized, ...).
    #[error("reading progress topic `{topic}`: {source}")]
    Kafka {
        /// The progress topic.
        topic: String,
        /// The client's error.
        source: KafkaError,
    },
    /// The topic was not read to its end in time.
    #[error("reading progress topic `{0}` timed out")]
    Timeout(String),
}

/// Reads the whole progress topic with `isolation.level=read_committed`: only progress
/// of committed transactions counts. Blocking (librdkafka calls): run it off the async
/// workers. Call it after `init_transactions`, which settles any transaction a previous
/// incarnation left open, so the stable end is the end.
pub fn load(
    uplink: &str,
    properties: &[(String, String)],
    topic: &str,
    timeout: Duration,
) -> Result<HashMap<SourcePartition, i64>, LoadProgressError> {
    let kafka = |source| LoadProgressError::Kafka {
        topic: topic.to_string(),
        source,
    };
    let mut config = ClientConfig::new();
    config
        .set("group.id", format!("{topic}.loader"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    for (key, value) in properties {
        config.set(key, value);
    }
    let consumer: BaseConsumer<LinkContext> = config
        .create_with_context(LinkContext::new(uplink))
        .map_err(kafka)?;
    let deadline = Instant::now() + timeout;
    let metadata = consumer
        .fetch_metadata(Some(topic), timeout)
        .map_err(kafka)?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut assignment = TopicPartitionList::new();
    let mut ends = HashMap::new();
    for partition in &partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, *partition, timeout)
            .map_err(kafka)?;
        ends.insert(*partition, high);
        assignment
            .add_partition_offset(topic, *partition, Offset::Beginning)
            .map_err(kafka)?;
    }
    consumer.assign(&assignment).map_err(kafka)?;
    let mut progress = HashMap::new();
    loop {
        let done = consumer
            .position()
            .map_err(kafka)?
            .elements()
            .iter()
            .all(|e| match e.offset() {
                Offset::Offset(at) => at >= ends.get(&e.partition()).copied().unwrap_or(0),
                _ => ends.get(&e.partition()).copied().unwrap_or(0) <= 0,
            });
        if done {
            return Ok(progress);
        }
        if Instant::now() >= deadline {
            return Err(LoadProgressError::Timeout(topic.to_string()));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Err(error)) => return Err(kafka(error)),
            Some(Ok(message)) => {
                let Some(source) = message.key().and_then(parse_key) else {
                    continue;
                };
                match message
                    .payload()
                    .and_then(|v| serde_json::from_slice::<ProgressValue>(v).ok())
                {
                    Some(stored) => {
                        progress.insert(source, stored.next_offset);
                    }
                    None => {
                        progress.remove(&source);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_round_trip() {
        assert_eq!(key("a.b-c", 3), "a.b-c/3");
        assert_eq!(parse_key(b"a.b-c/3"), Some(("a.b-c".to_string(), 3)));
        assert_eq!(parse_key(b"nope"), None);
        assert_eq!(parse_key(b"t/x"), None);
        let stored: ProgressValue = serde_json::from_slice(&value(42)).unwrap();
        assert_eq!(stored.next_offset, 42);
    }
}
