//! Pre-decode guard: proves a request body is safe to hand to `kafka-protocol`.
//!
//! `kafka-protocol` 0.18 sizes arrays with `Vec::with_capacity(n)` straight from the wire,
//! so a 12-byte request claiming 2^31 elements makes it try to allocate hundreds of
//! gigabytes and abort the process. The guard walks the body with a schema of each
//! request and rejects any array or string whose claimed length cannot fit in the bytes
//! that remain, before any allocation happens.
//!
//! Layout:
//! - `schema` holds one table per covered request, *generated* by
//!   `schema/gen_schema.py` from kafka-protocol's own `impl Decodable` code, because that
//!   code, not Kafka's JSON specs, is what reads the bytes afterwards;
//! - `walk` is the one generic walker that consumes a body according to its table.
//!
//! Rules the walker enforces, each mirroring a decoder behaviour:
//! - an array claiming `n` elements is refused unless `n * min_size(element) <= remaining`
//!   (`min_size` at least 1), so `Vec::with_capacity(n)` stays proportional to the body;
//!   every element is then walked, so the work is bounded by the body size too;
//! - strings and bytes longer than what remains, negative lengths, and nulls where the
//!   decoded type is not an `Option` are refused;
//! - known tagged fields are walked *by type*, because kafka-protocol parses them by type
//!   and ignores their size prefix, and a size that disagrees with the content is
//!   refused; unknown tags are skipped by their (bounded) size;
//! - bytes after the last field are ignored, as Kafka and the decoder ignore them;
//! - the arrays of one request may claim at most `MAX_ELEMENTS` elements in total.
//!
//! Why the last rule: a decoded element is up to ~40 times its smallest wire encoding
//! (pinned by a unit test), so without it the decoder's memory would be bounded only by
//! the frame-size cap times that factor.
//!
//! The request header is decoded before the guard runs; it only uses bounded reads (its
//! client id and tagged fields go through `try_get_bytes`), so it needs no guarding.

use kafka_protocol::messages::ApiKey;
use thiserror::Error;

use crate::versions::{ApiRange, ApiVersionTable};

mod schema;
mod walk;

#[cfg(test)]
mod samples;
#[cfg(test)]
mod tests;

/// Why a request body was refused before decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GuardError {
    /// The guard has no schema for this API and version, so it cannot vouch for it.
    #[error("no request schema for {api_key:?} v{version}")]
    UnknownSchema {
        /// The API.
        api_key: ApiKey,
        /// The version requested.
        version: i16,
    },
    /// The body ended in the middle of a field.
    #[error("request truncated at byte {at} while reading {field}")]
    Truncated {
        /// Offset into the body.
        at: usize,
        /// The field being read.
        field: &'static str,
    },
    /// A length prefix claims more elements or bytes than the body can hold.
    #[error("{field} claims length {claimed} but only {remaining} bytes remain")]
    LengthTooLarge {
        /// The field being read.
        field: &'static str,
        /// The claimed length.
        claimed: i64,
        /// Bytes left in the body.
        remaining: usize,
    },
    /// A length prefix is negative where null is not allowed, or otherwise malformed.
    #[error("{field} has invalid length {claimed}")]
    InvalidLength {
        /// The field being read.
        field: &'static str,
        /// The claimed length.
        claimed: i64,
    },
    /// The request's arrays hold more elements in total than any real request does
    /// (see `MAX_ELEMENTS`): decoding it would cost memory out of proportion to its use.
    #[error("{field} brings the request past {limit} array elements")]
    TooManyElements {
        /// The array that crossed the limit.
        field: &'static str,
        /// The limit.
        limit: u64,
    },
    /// A tag the decoder knows, but rejects at this version (it would bail anyway).
    #[error("tagged field {tag} is not valid at v{version}")]
    UnexpectedTag {
        /// The tag.
        tag: u32,
        /// The request version.
        version: i16,
    },
    /// A known tagged field whose size prefix disagrees with its content. The decoder
    /// parses known tags by type and ignores the size, so a lying size would make it read
    /// bytes the guard skipped; refusing keeps the two in step.
    #[error("tagged field {field} claims {size} bytes but its value takes {used}")]
    TaggedSizeMismatch {
        /// The field.
        field: &'static str,
        /// The size prefix.
        size: i64,
        /// Bytes its value actually took.
        used: i64,
    },
}

/// Checks that `body` (the bytes after the request header) is safe to decode as
/// `api_key` at `version`.
///
/// Accepts the bodies whose every length fits in the bytes that remain; anything the
/// guard has no schema for is refused. Bytes after the last field are ignored, as Kafka
/// ignores them (and as `kafka-protocol`'s decoder, which reads the same prefix, does):
/// librdkafka 2.12 sends three stray bytes after an all-topics Metadata v13 body.
pub fn check_request_body(api_key: ApiKey, version: i16, body: &[u8]) -> Result<(), GuardError> {
    walk(api_key, version, body).map(|_| ())
}

/// Walks `body` and returns how many bytes of it kafka-protocol's decoder will read.
///
/// Exposed so that tests and fuzzers can prove a schema right: for a body the encoder
/// produced, the count must equal the body length.
pub fn walk(api_key: ApiKey, version: i16, body: &[u8]) -> Result<usize, GuardError> {
    let message = schema::COVERED
        .iter()
        .find(|(key, m)| *key == api_key && (m.versions.0..=m.versions.1).contains(&version))
        .map(|(_, m)| *m)
        .ok_or(GuardError::UnknownSchema { api_key, version })?;
    walk::walk(message, version, body)
}

/// Every API and version the guard has a schema for, as a version table.
///
/// The broker should never advertise more than this; fuzzers and tests use it as the
/// most permissive table that still keeps every body behind the guard.
pub fn covered_versions() -> ApiVersionTable {
    ApiVersionTable::new(&COVERED_RANGES)
}

static COVERED_RANGES: [ApiRange; schema::COVERED.len()] = {
    let mut out = [ApiRange::new(ApiKey::Produce, 0, 0); schema::COVERED.len()];
    let mut i = 0;
    while i < out.len() {
        let (key, message) = schema::COVERED[i];
        out[i] = ApiRange::new(key, message.versions.0, message.versions.1);
        i += 1;
    }
    out
};
