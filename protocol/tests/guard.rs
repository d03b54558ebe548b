//! End-to-end: bombs arrive as whole frames and must come back as guard refusals, with
//! the correlation id intact, never as an abort.

use agentlog_protocol::guard::{covered_versions, GuardError};
use agentlog_protocol::request::{decode_request, RequestError};
use bytes::Bytes;

/// A frame for `api` at `version` with correlation id 7 and client id "c"
/// (header v1: client id is a classic string; header v2 adds an empty tag section).
fn frame(api: i16, version: i16, flexible_header: bool, body: &[u8]) -> Bytes {
    let mut f = Vec::new();
    f.extend_from_slice(&api.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(&7i32.to_be_bytes());
    f.extend_from_slice(&[0, 1, b'c']);
    if flexible_header {
        f.push(0);
    }
    f.extend_from_slice(body);
    Bytes::from(f)
}

#[test]
fn produce_v3_topic_count_bomb_is_refused_not_allocated() {
    let body = [0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8, 0x7f, 0xff, 0xff, 0xff];
    let err = decode_request(frame(0, 3, false, &body), &covered_versions()).unwrap_err();
    assert_eq!(err.correlation_id(), Some(7));
    assert!(
        matches!(
            err,
            RequestError::Guard {
                source: GuardError::LengthTooLarge {
                    claimed: 0x7fff_ffff,
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn metadata_v12_compact_topic_bomb_is_refused_not_allocated() {
    // topics: uvarint 0xffffffff (count 2^32 - 2), then nothing.
    let body = [0xff, 0xff, 0xff, 0xff, 0x0f];
    let err = decode_request(frame(3, 12, true, &body), &covered_versions()).unwrap_err();
    assert!(
        matches!(
            err,
            RequestError::Guard {
                source: GuardError::LengthTooLarge {
                    field: "topics",
                    ..
                },
                ..
            }
        ),
        "{err:?}"
    );
}

#[test]
fn well_formed_api_versions_still_decodes() {
    // ApiVersions v3: client_software_name "a", client_software_version "1", no tags.
    let body = [2, b'a', 2, b'1', 0];
    let req = decode_request(frame(18, 3, true, &body), &covered_versions()).expect("decodes");
    assert_eq!(req.correlation_id, 7);
    assert_eq!(req.client_id.as_deref(), Some("c"));
}

#[test]
fn covered_table_advertises_the_mandatory_apis() {
    use agentlog_protocol::kafka_protocol::messages::ApiKey;
    let table = covered_versions();
    for api in [
        ApiKey::ApiVersions,
        ApiKey::Metadata,
        ApiKey::Produce,
        ApiKey::Fetch,
        ApiKey::ListOffsets,
        ApiKey::CreateTopics,
        ApiKey::DeleteTopics,
        ApiKey::DescribeConfigs,
        ApiKey::AlterConfigs,
        ApiKey::IncrementalAlterConfigs,
    ] {
        assert!(table.range(api).is_some(), "{api:?} not covered");
    }
    assert_eq!(table.iter().count(), 59);
}
