//! Just enough of the consumer protocol's subscription metadata (the bytes a consumer
//! sends in JoinGroup) to know which topics a member subscribes to: OffsetDelete must
//! refuse to delete offsets of a topic an active member consumes.
//!
//! `ConsumerProtocolSubscription`, every version: `version: i16`, `topics: [string]`
//! (i32 count, then i16 length + UTF-8 each), followed by fields we do not need.
//! The bytes come from clients, so nothing here panics: bad bytes give `None`.

/// The topics a `consumer` protocol member subscribes to, or `None` if the metadata is
/// not a parseable subscription.
pub fn subscribed_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut rest = metadata;
    let version = take_i16(&mut rest)?;
    if version < 0 {
        return None;
    }
    let count = take_i32(&mut rest)?;
    if count < 0 {
        return Some(Vec::new());
    }
    // Each topic takes at least two bytes: a count beyond that is a lie.
    let count = usize::try_from(count).ok()?;
    if count > rest.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let len = usize::try_from(take_i16(&mut rest)?).ok()?;
        if rest.len() < len {
            return None;
        }
        let (name, tail) = rest.split_at(len);
        topics.push(std::str::from_utf8(name).ok()?.to_string());
        rest = tail;
    }
    Some(topics)
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
}
