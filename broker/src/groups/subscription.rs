//! The consumer protocol embedded in classic groups' opaque bytes: the subscription a
//! consumer sends in JoinGroup and the assignment it gets in SyncGroup. OffsetDelete
//! needs the subscribed topics; classic members of a consumer group (KIP-848 online
//! migration) need the whole subscription and an assignment the broker writes itself.
//!
//! `ConsumerProtocolSubscription`: `version: i16`, `topics: [string]`, `user_data:
//! bytes?`, v1+ `owned_partitions: [topic: string, partitions: [i32]]`, v2+
//! `generation_id: i32`, v3+ `rack_id: string?`. `ConsumerProtocolAssignment`:
//! `version: i16`, `assigned_partitions: [topic, [i32]]`, `user_data: bytes?` (the
//! same layout in every version). Arrays are an i32 count, strings an i16 length.
//! The bytes come from clients, so nothing here panics: bad bytes give `None`.

/// The topics a `consumer` protocol member subscribes to, or `None` if the metadata is
/// not a parseable subscription.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut rest = metadata;
    if take_i16(&mut rest)? < 0 {
        return None;
    }
    take_strings(&mut rest)
}

/// Partitions by topic name, as the consumer protocol carries them.
pub type TopicPartitions = Vec<(String, Vec<i32>)>;

/// A whole `ConsumerProtocolSubscription`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    /// Its version (later versions are read as the highest known, as Kafka does).
    pub version: i16,
    /// Subscribed topic names.
    pub topics: Vec<String>,
    /// v1+: what the member owns now (cooperative rebalancing).
    pub owned: TopicPartitions,
    /// v3+: `client.rack`.
    pub rack_id: Option<String>,
}

/// Parses a whole subscription, or `None` if the bytes are not one.
pub fn parse_subscription(metadata: &[u8]) -> Option<Subscription> {
    let mut rest = metadata;
    let version = take_i16(&mut rest)?;
    if version < 0 {
        return None;
    }
    let topics = take_strings(&mut rest)?;
    take_nullable_bytes(&mut rest)?;
    let owned = if version >= 1 {
        take_topic_partitions(&mut rest)?
    } else {
        Vec::new()
    };
    if version >= 2 {
        take_i32(&mut rest)?;
    }
    let rack_id = if version >= 3 {
        take_nullable_string(&mut rest)?
    } else {
        None
    };
    Some(Subscription {
        version,
        topics,
        owned,
        rack_id,
    })
}

/// Parses an assignment; empty bytes (a member never assigned) are an empty one.
pub fn parse_assignment(bytes: &[u8]) -> Option<TopicPartitions> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut rest = bytes;
    if take_i16(&mut rest)? < 0 {
        return None;
    }
    take_topic_partitions(&mut rest)
}

/// Encodes an assignment in `version` (clamped to 0..=3, whose layouts are the same),
/// without user data: what SyncGroup hands a classic member of a consumer group.
pub fn encode_assignment(version: i16, partitions: &[(String, Vec<i32>)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.clamp(0, 3).to_be_bytes());
    out.extend_from_slice(&len_i32(partitions.len()).to_be_bytes());
    for (topic, parts) in partitions {
        put_string(&mut out, topic);
        out.extend_from_slice(&len_i32(parts.len()).to_be_bytes());
        for p in parts {
            out.extend_from_slice(&p.to_be_bytes());
        }
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
    out
}

fn len_i32(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).unwrap_or(i16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes().get(..len as usize).unwrap_or_default());
}

/// An array count no larger than what `min_size`-byte elements could fill.
fn take_count(rest: &mut &[u8], min_size: usize) -> Option<usize> {
    let count = take_i32(rest)?;
    if count < 0 {
        return Some(0);
    }
    let count = usize::try_from(count).ok()?;
    (count <= rest.len() / min_size).then_some(count)
}

fn take_string(rest: &mut &[u8]) -> Option<String> {
    let len = usize::try_from(take_i16(rest)?).ok()?;
    if rest.len() < len {
        return None;
    }
    let (bytes, tail) = rest.split_at(len);
    *rest = tail;
    Some(std::str::from_utf8(bytes).ok()?.to_string())
}

fn take_nullable_string(rest: &mut &[u8]) -> Option<Option<String>> {
    let mut peek = *rest;
    if take_i16(&mut peek)? < 0 {
        *rest = peek;
        return Some(None);
    }
    take_string(rest).map(Some)
}

fn take_strings(rest: &mut &[u8]) -> Option<Vec<String>> {
    let count = take_count(rest, 2)?;
    (0..count).map(|_| take_string(rest)).collect()
}

fn take_nullable_bytes(rest: &mut &[u8]) -> Option<()> {
    let len = take_i32(rest)?;
    if len < 0 {
        return Some(());
    }
    let len = usize::try_from(len).ok()?;
    *rest = rest.get(len..)?;
    Some(())
}

fn take_topic_partitions(rest: &mut &[u8]) -> Option<TopicPartitions> {
    let count = take_count(rest, 6)?;
    (0..count)
        .map(|_| {
            let topic = take_string(rest)?;
            let n = take_count(rest, 4)?;
            let parts = (0..n)
                .map(|_| take_i32(rest))
                .collect::<Option<Vec<i32>>>()?;
            Some((topic, parts))
        })
        .collect()
}

fn take_i16(rest: &mut &[u8]) -> Option<i16> {
    let (head, tail) = rest.split_first_chunk::<2>()?;
    *rest = tail;
    Some(i16::from_be_bytes(*head))
}

fn take_i32(rest: &mut &[u8]) -> Option<i32> {
    let (head, tail) = rest.split_first_chunk::<4>()?;
    *rest = tail;
    Some(i32::from_be_bytes(*head))
}

/// Encodes a version-0 subscription, for tests and in-process members.
pub fn encode_subscription(topics: &[&str]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0i16.to_be_bytes());
    out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
    for topic in topics {
        out.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        out.extend_from_slice(topic.as_bytes());
    }
    out.extend_from_slice(&(-1i32).to_be_bytes()); // no user data
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_topics_and_refuses_garbage_without_panicking() {
        let bytes = encode_subscription(&["a", "bb"]);
        assert_eq!(
            subscribed_topics(&bytes),
            Some(vec!["a".to_string(), "bb".to_string()])
        );
        for cut in 0..bytes.len() - 4 {
            let _ = subscribed_topics(&bytes[..cut]);
        }
        assert_eq!(subscribed_topics(&[0, 0, 0x7f, 0xff, 0xff, 0xff]), None);
        assert_eq!(subscribed_topics(&[]), None);
        assert_eq!(subscribed_topics(&[0, 1, 0, 0, 0, 1, 0xff, 0xff]), None);
    }

    /// A v3 subscription as a cooperative consumer sends it.
    fn subscription_v3(topics: &[&str], owned: &[(&str, &[i32])], rack: Option<&str>) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&3i16.to_be_bytes());
        out.extend_from_slice(&(topics.len() as i32).to_be_bytes());
        for t in topics {
            put_string(&mut out, t);
        }
        out.extend_from_slice(&(-1i32).to_be_bytes());
        let as_owned: TopicPartitions = owned
            .iter()
            .map(|(t, p)| (t.to_string(), p.to_vec()))
            .collect();
        // The owned partitions share the assignment's array layout.
        let encoded = encode_assignment(0, &as_owned);
        out.extend_from_slice(&encoded[2..encoded.len() - 4]);
        out.extend_from_slice(&7i32.to_be_bytes());
        match rack {
            Some(r) => put_string(&mut out, r),
            None => out.extend_from_slice(&(-1i16).to_be_bytes()),
        }
        out
    }

    #[test]
    fn parses_whole_subscriptions_and_assignments() {
        let bytes = subscription_v3(&["a", "b"], &[("a", &[0, 2])], Some("r1"));
        let sub = parse_subscription(&bytes).unwrap_or_default();
        assert_eq!(sub.version, 3);
        assert_eq!(sub.topics, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(sub.owned, vec![("a".to_string(), vec![0, 2])]);
        assert_eq!(sub.rack_id.as_deref(), Some("r1"));
        for cut in 0..bytes.len() {
            assert_eq!(parse_subscription(&bytes[..cut]), None, "cut at {cut}");
        }
        let v0 = encode_subscription(&["x"]);
        assert_eq!(
            parse_subscription(&v0).map(|s| s.topics),
            Some(vec!["x".to_string()])
        );

        let assignment = vec![("a".to_string(), vec![1, 3]), ("b".to_string(), vec![])];
        let encoded = encode_assignment(1, &assignment);
        assert_eq!(parse_assignment(&encoded), Some(assignment));
        assert_eq!(parse_assignment(&[]), Some(Vec::new()));
        assert_eq!(parse_assignment(&[0, 0, 0x7f, 0, 0, 0]), None);
    }
}
