//! Guard tests: round trips through kafka-protocol's encoder prove each schema, bombs and
//! truncations prove the refusals, and seeded mutations prove the guard never panics and
//! never lets through a body that makes the decoder misbehave.

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestKind};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::samples::encode_sample;
use super::{check_request_body, schema, walk, GuardError};

/// A non-empty string of whatever string newtype the field has.
pub(super) fn s<T: From<StrBytes>>() -> T {
    StrBytes::from_static_str("ab").into()
}

/// Non-empty bytes.
pub(super) fn b() -> Bytes {
    Bytes::from_static(b"xyz")
}

/// Encodes a request body at `v`.
pub(super) fn encode<T: Encodable>(m: &T, v: i16) -> Vec<u8> {
    let mut buf = BytesMut::new();
    m.encode(&mut buf, v).expect("sample encodes");
    buf.to_vec()
}

fn all_versions() -> impl Iterator<Item = (ApiKey, i16)> {
    schema::COVERED
        .iter()
        .flat_map(|(k, m)| (m.versions.0..=m.versions.1).map(move |v| (*k, v)))
}

fn default_body(api: ApiKey, v: i16) -> Vec<u8> {
    let kind = super::samples::default_kind(api);
    let mut buf = BytesMut::new();
    kind.encode(&mut buf, v).expect("default encodes");
    buf.to_vec()
}

#[test]
fn samples_round_trip_exactly() {
    let mut n = 0;
    for (api, v) in all_versions() {
        let body = encode_sample(api, v);
        assert_eq!(walk(api, v, &body), Ok(body.len()), "{api:?} v{v}");
        assert_eq!(check_request_body(api, v, &body), Ok(()), "{api:?} v{v}");
        let decoded = RequestKind::decode(api, &mut Bytes::from(body.clone()), v);
        assert!(decoded.is_ok(), "{api:?} v{v} decodes");
        n += 1;
    }
    assert!(n >= 200, "only {n} api versions covered");
}

#[test]
fn defaults_round_trip_exactly() {
    for (api, v) in all_versions() {
        let body = default_body(api, v);
        assert_eq!(walk(api, v, &body), Ok(body.len()), "{api:?} v{v}");
    }
}

#[test]
fn every_strict_prefix_is_refused() {
    for (api, v) in all_versions() {
        let body = encode_sample(api, v);
        for cut in 0..body.len() {
            assert!(
                check_request_body(api, v, &body[..cut]).is_err(),
                "{api:?} v{v} prefix {cut}/{}",
                body.len()
            );
        }
    }
}

#[test]
fn trailing_bytes_are_ignored_as_kafka_ignores_them() {
    let mut body = encode_sample(ApiKey::Produce, 9);
    body.push(0);
    // Kafka ignores bytes after the body; so do we (librdkafka sends some).
    assert_eq!(check_request_body(ApiKey::Produce, 9, &body), Ok(()));
}

#[test]
fn produce_v3_array_bomb_is_refused() {
    // transactional_id = null, acks = 1, timeout = 1000, topic count = 0x7fffffff
    let body = [0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8, 0x7f, 0xff, 0xff, 0xff];
    assert!(matches!(
        check_request_body(ApiKey::Produce, 3, &body),
        Err(GuardError::LengthTooLarge {
            field: "topic_data",
            claimed: 0x7fff_ffff,
            remaining: 0
        })
    ));
}

#[test]
fn compact_array_bombs_are_refused() {
    // Produce v9: transactional_id null (0), acks, timeout, topics uvarint 0xffffffff.
    let body = [0, 0, 1, 0, 0, 0x03, 0xe8, 0xff, 0xff, 0xff, 0xff, 0x0f, 0];
    assert!(matches!(
        check_request_body(ApiKey::Produce, 9, &body),
        Err(GuardError::LengthTooLarge {
            field: "topic_data",
            ..
        })
    ));
    // Metadata v12: topics count 2^28, then a handful of bytes.
    let body = [0x81, 0x80, 0x80, 0x80, 0x01, 0, 0, 0, 0];
    assert!(matches!(
        check_request_body(ApiKey::Metadata, 12, &body),
        Err(GuardError::LengthTooLarge {
            field: "topics",
            ..
        })
    ));
    // DeleteGroups v0: 4 group names claimed in 6 bytes; each takes at least 2, so the
    // count is refused before any element is walked.
    let body = [0, 0, 0, 4, 0, 1, b'a', 0, 1, b'b'];
    assert!(matches!(
        check_request_body(ApiKey::DeleteGroups, 0, &body),
        Err(GuardError::LengthTooLarge {
            claimed: 4,
            remaining: 6,
            ..
        })
    ));
}

/// DeleteGroups v0 naming `count` groups with empty names (2 bytes each).
fn delete_groups_v0(count: u32) -> Vec<u8> {
    let mut body = count.to_be_bytes().to_vec();
    body.resize(4 + 2 * count as usize, 0);
    body
}

#[test]
fn requests_past_the_element_limit_are_refused_whatever_their_size() {
    let limit = super::walk::MAX_ELEMENTS as u32;
    assert_eq!(
        check_request_body(ApiKey::DeleteGroups, 0, &delete_groups_v0(limit)),
        Ok(())
    );
    // Each element fits in the body (2 bytes), so only the total gives it away.
    assert_eq!(
        check_request_body(ApiKey::DeleteGroups, 0, &delete_groups_v0(limit + 1)),
        Err(GuardError::TooManyElements {
            field: "groups_names",
            limit: u64::from(limit),
        })
    );
}

#[test]
fn string_past_the_end_is_refused() {
    // FindCoordinator v0: key string of length 100 with 3 bytes behind it.
    let body = [0, 100, b'a', b'b', b'c'];
    assert!(matches!(
        check_request_body(ApiKey::FindCoordinator, 0, &body),
        Err(GuardError::LengthTooLarge {
            claimed: 100,
            remaining: 3,
            ..
        })
    ));
    // Null where not nullable.
    let body = [0xff, 0xff];
    assert!(matches!(
        check_request_body(ApiKey::FindCoordinator, 0, &body),
        Err(GuardError::InvalidLength { claimed: -1, .. })
    ));
}

#[test]
fn known_tagged_field_with_lying_size_is_refused() {
    // Fetch v15: cluster_id (tag 0) as a compact string, but the size says 0.
    let mut body = encode_sample(ApiKey::Fetch, 15);
    // The top-level tagged section is the last thing in the body: replace it.
    let plain = {
        let mut m = super::samples::fetch_request_fetch_request(15);
        m.cluster_id = None;
        m.replica_state = Default::default();
        m.unknown_tagged_fields.clear();
        encode(&m, 15)
    };
    assert_eq!(plain.last(), Some(&0));
    body.clear();
    body.extend_from_slice(&plain[..plain.len() - 1]);
    body.extend_from_slice(&[1, 0, 0, 3, b'a', b'b']);
    assert!(matches!(
        check_request_body(ApiKey::Fetch, 15, &body),
        Err(GuardError::TaggedSizeMismatch {
            size: 0,
            used: 3,
            ..
        })
    ));
}

#[test]
fn uncovered_apis_are_refused() {
    assert_eq!(
        check_request_body(ApiKey::CreateDelegationToken, 1, &[]),
        Err(GuardError::UnknownSchema {
            api_key: ApiKey::CreateDelegationToken,
            version: 1
        })
    );
    assert!(check_request_body(ApiKey::Produce, 2, &[]).is_err());
}

/// Tiny deterministic PRNG so the property test needs no new dependency.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Overwrites a few bytes with values that tend to hit length prefixes hard.
fn mutate(rng: &mut XorShift, body: &mut Vec<u8>) {
    const SPICY: [u8; 6] = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe];
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            _ if body.is_empty() => body.push(rng.next() as u8),
            0 => {
                let i = rng.below(body.len());
                body[i] = SPICY[rng.below(SPICY.len())];
            }
            1 => {
                let i = rng.below(body.len());
                body[i] = rng.next() as u8;
            }
            2 => {
                let i = rng.below(body.len());
                body.truncate(i);
            }
            _ => {
                let i = rng.below(body.len() + 1);
                body.insert(i, SPICY[rng.below(SPICY.len())]);
            }
        }
    }
}

#[test]
fn mutated_bodies_never_panic_and_accepted_ones_decode_sanely() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut total) = (0, 0);
    for (api, v) in all_versions() {
        let seed = encode_sample(api, v);
        for _ in 0..200 {
            let mut body = seed.clone();
            mutate(&mut rng, &mut body);
            total += 1;
            if check_request_body(api, v, &body).is_ok() {
                accepted += 1;
                // Decoding may still fail (bad UTF-8, say) but must not blow up.
                let _ = RequestKind::decode(api, &mut Bytes::from(body), v);
            }
        }
    }
    assert!(
        accepted > total / 50,
        "only {accepted}/{total} mutants accepted"
    );
}

/// Writes every sample as a full request frame (header + body) into the directory named by
/// `AGENTLOG_WRITE_CORPUS`, as the fuzzers' seed corpus; without it, checks that the
/// frames decode through `decode_request` with the covered-versions table.
#[test]
fn sample_frames_decode_and_seed_the_fuzz_corpus() {
    use kafka_protocol::messages::RequestHeader;

    let table = super::covered_versions();
    let out = std::env::var_os("AGENTLOG_WRITE_CORPUS").map(std::path::PathBuf::from);
    for (api, v) in all_versions() {
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(v)
            .with_correlation_id(42)
            .with_client_id(Some(StrBytes::from_static_str("fuzz")));
        let mut frame = encode(&header, api.request_header_version(v));
        frame.extend(encode_sample(api, v));
        let decoded = crate::request::decode_request(Bytes::from(frame.clone()), &table);
        assert!(decoded.is_ok(), "{api:?} v{v}: {decoded:?}");
        if let Some(dir) = &out {
            std::fs::create_dir_all(dir).expect("corpus dir");
            std::fs::write(dir.join(format!("{api:?}-v{v}")), &frame).expect("write seed");
        }
    }
}

/// How much memory the decoder may reserve per body byte before reading an element:
/// `size_of::<Elem>() / min_wire_size(Elem)`, worst case over every array reachable at
/// every version. The guard keeps each array's reservation within `remaining` times
/// this, so the broker's frame-size cap times this factor bounds what one request can
/// make the decoder reserve per nesting level. Printed, and pinned so that a
/// kafka-protocol upgrade that worsens it is noticed.
#[test]
fn reservation_amplification_is_bounded() {
    use super::walk::{min_size, StructSchema, Ty};
    use std::collections::HashMap;

    let sizes: HashMap<(ApiKey, &str), usize> = super::samples::rust_sizes()
        .into_iter()
        .map(|(api, name, size)| ((api, name), size))
        .collect();
    fn arrays(s: &StructSchema, v: i16, out: &mut Vec<&'static Ty>) {
        let fields = s.fields.iter().chain(s.tagged.iter().map(|t| &t.field));
        for f in fields.filter(|f| (f.min..=f.max).contains(&v)) {
            let mut ty = &f.ty;
            if let Ty::Array(elem) | Ty::NullableArray(elem) = ty {
                out.push(elem);
                ty = elem;
            }
            if let Ty::Struct(inner) | Ty::OptionStruct(inner) = ty {
                arrays(inner, v, out);
            }
        }
    }
    let mut worst = (0, "", ApiKey::Produce, 0);
    let mut per_api: Vec<(ApiKey, usize)> = Vec::new();
    for (api, v) in all_versions() {
        let message = schema::COVERED
            .iter()
            .find(|(k, _)| *k == api)
            .expect("covered")
            .1;
        let flexible = v >= message.flexible;
        let mut elems = Vec::new();
        arrays(message.root, v, &mut elems);
        for elem in elems {
            let (name, rust) = match elem {
                Ty::Struct(s) => (s.name, sizes[&(api, s.name)]),
                Ty::String | Ty::NullableString => ("StrBytes", std::mem::size_of::<StrBytes>()),
                Ty::Int8 => ("i8", 1),
                Ty::Int32 => ("i32", 4),
                Ty::Int64 => ("i64", 8),
                Ty::Uuid => ("Uuid", 16),
                other => panic!("array of {other:?} not expected"),
            };
            let ratio = rust / min_size(elem, v, flexible).max(1);
            if ratio > worst.0 {
                worst = (ratio, name, api, v);
            }
            match per_api.iter_mut().find(|(k, _)| *k == api) {
                Some((_, r)) => *r = (*r).max(ratio),
                None => per_api.push((api, ratio)),
            }
        }
    }
    println!("per API: {per_api:?}");
    println!(
        "worst reservation amplification: {}x ({:?} v{} {})",
        worst.0, worst.2, worst.3, worst.1
    );
    assert!(worst.0 <= 64, "amplification {worst:?}");
}
