//! The one function every fuzz driver calls, so libFuzzer and the stable runner test
//! exactly the same thing.

use agentlog_protocol::guard::covered_versions;
use agentlog_protocol::request::decode_request;
use bytes::Bytes;

/// Feeds one request frame (no length prefix) through header parsing, the guard and
/// kafka-protocol's body decoder, with every API and version the guard covers enabled.
///
/// Any outcome is fine except a panic, an abort, or an absurd allocation: those are what
/// the guard exists to prevent.
pub fn decode_one(data: &[u8]) {
    let table = covered_versions();
    let _ = decode_request(Bytes::copy_from_slice(data), &table);
}
