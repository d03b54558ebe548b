//! The consumer protocol as in-process members speak it: subscriptions and assignments
//! encoded with kafka-protocol's `ConsumerProtocolSubscription`/`ConsumerProtocolAssignment`
//! (so librdkafka, kafka-python and Java members understand them), and the range and
//! round-robin assignors an in-process leader runs for the whole group.
//!
//! Bytes from other members are checked before kafka-protocol decodes them (its decoder
//! trusts array lengths), so a hostile member cannot make us allocate or panic.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// Assignors an in-process member offers, most preferred first.
pub const PROTOCOLS: [&str; 2] = ["range", "roundrobin"];

const SUBSCRIPTION_VERSION: i16 = 1;
const ASSIGNMENT_VERSION: i16 = 1;

/// Encodes a subscription to `topics` (version-prefixed, as clients send it).
pub fn encode_subscription(topics: &[String]) -> Bytes {
    let subscription = ConsumerProtocolSubscription::default().with_topics(
        topics
            .iter()
            .map(|t| StrBytes::from_string(t.clone()))
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&SUBSCRIPTION_VERSION.to_be_bytes());
    // Encoding a message we built at a version it supports cannot fail.
    if subscription.encode(&mut buf, SUBSCRIPTION_VERSION).is_err() {
        buf.truncate(2);
    }
    buf.freeze()
}

/// The topics a member subscribes to, from its JoinGroup metadata; `None` when the bytes
/// are not a subscription (the broker's bounds-checked parser reads them).
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    agentlog_broker::groups::subscription::subscribed_topics(metadata)
}

/// Encodes one member's assignment.
pub fn encode_assignment(partitions: &[(String, i32)]) -> Bytes {
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&ASSIGNMENT_VERSION.to_be_bytes());
    if assignment.encode(&mut buf, ASSIGNMENT_VERSION).is_err() {
        buf.truncate(2);
    }
    buf.freeze()
}

/// Decodes the assignment the leader (in-process or a wire client) gave this member.
/// Empty bytes mean no partitions; malformed bytes give `None`.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let (version, body) = bytes.split_first_chunk::<2>()?;
    let version = i16::from_be_bytes(*version);
    if version < 0 || !plausible_assignment(body) {
        return None;
    }
    let mut buf = Bytes::copy_from_slice(body);
    let decoded = ConsumerProtocolAssignment::decode(&mut buf, version.min(3)).ok()?;
    Some(
        decoded
            .assigned_partitions
            .into_iter()
            .flat_map(|tp| {
                let topic = tp.topic.0.to_string();
                tp.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect(),
    )
}

/// Walks the version 0/1 assignment layout checking every count against the bytes left,
/// so the decoder never allocates for a lie.
fn plausible_assignment(body: &[u8]) -> bool {
    fn take<const N: usize>(rest: &mut &[u8]) -> Option<[u8; N]> {
        let (head, tail) = rest.split_first_chunk::<N>()?;
        *rest = tail;
        Some(*head)
    }
    let mut rest = body;
    let Some(count) = take::<4>(&mut rest).map(i32::from_be_bytes) else {
        return false;
    };
    if count < 0 || count as usize > rest.len() / 6 {
        return false;
    }
    for _ in 0..count {
        let Some(len) = take::<2>(&mut rest).map(i16::from_be_bytes) else {
            return false;
        };
        let Ok(len) = usize::try_from(len) else {
            return false;
        };
        if rest.len() < len {
            return false;
        }
        rest = &rest[len..];
        let Some(parts) = take::<4>(&mut rest).map(i32::from_be_bytes) else {
            return false;
        };
        if parts < 0 || parts as usize > rest.len() / 4 {
            return false;
        }
        rest = &rest[parts as usize * 4..];
    }
    true
}

/// Assigns partitions to members. `members` are `(member id, subscribed topics)`,
/// `partitions` the partition count of each topic. Unknown topics get nothing. Kafka's
/// `range` assignor per topic, or `roundrobin` over all topic-partitions, both over
/// members sorted by id, so every leader computes the same answer.
pub fn assign(
    protocol: &str,
    members: &[(String, Vec<String>)],
    partitions: &BTreeMap<String, i32>,
) -> BTreeMap<String, Vec<(String, i32)>> {
    let mut out: BTreeMap<String, Vec<(String, i32)>> = members
        .iter()
        .map(|(id, _)| (id.clone(), Vec::new()))
        .collect();
    let subscribers = |topic: &str| -> Vec<&String> {
        let set: BTreeSet<&String> = members
            .iter()
            .filter(|(_, topics)| topics.iter().any(|t| t == topic))
            .map(|(id, _)| id)
            .collect();
        set.into_iter().collect()
    };
    if protocol == "roundrobin" {
        let mut turn = 0usize;
        for (topic, count) in partitions {
            let subs = subscribers(topic);
            if subs.is_empty() {
                continue;
            }
            for partition in 0..*count {
                // Next member in the global rotation that subscribes to this topic.
                let all: Vec<&String> = out.keys().collect();
                for _ in 0..all.len() {
                    let candidate = all[turn % all.len()].clone();
                    turn += 1;
                    if subs.contains(&&candidate) {
                        out.entry(candidate)
                            .or_default()
                            .push((topic.clone(), partition));
                        break;
                    }
                }
            }
        }
        return out;
    }
    for (topic, count) in partitions {
        let subs = subscribers(topic);
        if subs.is_empty() {
            continue;
        }
        let count = (*count).max(0) as usize;
        let per = count / subs.len();
        let extra = count % subs.len();
        let mut next = 0usize;
        for (i, member) in subs.iter().enumerate() {
            let take = per + usize::from(i < extra);
            let entry = out.entry((*member).clone()).or_default();
            for partition in next..next + take {
                entry.push((topic.clone(), partition as i32));
            }
            next += take;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscription_round_trips_through_the_broker_parser() {
        let bytes = encode_subscription(&["a".to_string(), "bb".to_string()]);
        assert_eq!(
            subscribed_topics(&bytes),
            Some(vec!["a".to_string(), "bb".to_string()])
        );
    }

    #[test]
    fn assignment_round_trips_and_garbage_is_refused() {
        let parts = vec![
            ("t".to_string(), 0),
            ("t".to_string(), 2),
            ("u".to_string(), 1),
        ];
        let bytes = encode_assignment(&parts);
        assert_eq!(decode_assignment(&bytes), Some(parts));
        for cut in 2..bytes.len() {
            let _ = decode_assignment(&bytes[..cut]);
        }
        assert_eq!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]), None);
    }

    #[test]
    fn range_and_roundrobin_cover_every_partition_once() {
        let members = vec![
            ("m2".to_string(), vec!["t".to_string()]),
            ("m1".to_string(), vec!["t".to_string(), "u".to_string()]),
        ];
        let partitions = BTreeMap::from([("t".to_string(), 5), ("u".to_string(), 2)]);
        for protocol in PROTOCOLS {
            let out = assign(protocol, &members, &partitions);
            let mut all: Vec<_> = out.values().flatten().cloned().collect();
            all.sort();
            assert_eq!(all.len(), 7, "{protocol}");
            all.dedup();
            assert_eq!(all.len(), 7, "{protocol}");
            assert!(out["m2"].iter().all(|(t, _)| t == "t"));
        }
        let range = assign("range", &members, &partitions);
        assert_eq!(range["m1"].iter().filter(|(t, _)| t == "t").count(), 3);
    }
}
