//! Request decoding: header, version check, guard, then body.
//!
//! Each step that fails says how far it got, because the broker's answer depends on it:
//! an unknown API key closes the connection (as Kafka does), an unsupported ApiVersions
//! version still gets a v0 answer, and anything else needs at least the correlation id.

use bytes::{Buf, Bytes};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;
use thiserror::Error;

use crate::guard::{self, GuardError};
use crate::versions::ApiVersionTable;

/// Bytes every request header starts with: api key, api version, correlation id.
const FIXED_HEADER_LEN: usize = 8;

/// A decoded request and the header fields the broker needs to answer it.
#[derive(Debug)]
pub struct Request {
    /// Which API.
    pub api_key: ApiKey,
    /// The version the client used; the response is encoded at the same version.
    pub version: i16,
    /// Echoed in the response header.
    pub correlation_id: i32,
    /// The client's self-chosen name, for logs and metrics.
    pub client_id: Option<String>,
    /// The decoded body.
    pub body: RequestKind,
}

/// Why a frame could not become a [`Request`].
#[derive(Debug, Error)]
pub enum RequestError {
    /// The frame cannot even hold api key, version and correlation id.
    #[error("frame of {0} bytes is too short for a request header")]
    TooShort(usize),
    /// The API key is not one Kafka defines, or not one this broker implements.
    #[error("unknown or unimplemented api key {api_key}")]
    UnknownApiKey {
        /// The raw key.
        api_key: i16,
        /// From the header, to answer with if desired.
        correlation_id: i32,
    },
    /// A known API at a version outside the advertised range.
    #[error("{api_key:?} v{version} is not supported")]
    UnsupportedVersion {
        /// The API.
        api_key: ApiKey,
        /// The version asked for.
        version: i16,
        /// From the header.
        correlation_id: i32,
    },
    /// The header after the fixed fields does not parse.
    #[error("malformed request header: {message}")]
    Header {
        /// From the header.
        correlation_id: i32,
        /// What the decoder said.
        message: String,
    },
    /// The body failed the pre-decode guard.
    #[error("refused {api_key:?} v{version} body: {source}")]
    Guard {
        /// The API.
        api_key: ApiKey,
        /// Its version.
        version: i16,
        /// From the header.
        correlation_id: i32,
        /// What the guard found.
        source: GuardError,
    },
    /// The body passed the guard but did not decode.
    #[error("malformed {api_key:?} v{version} body: {message}")]
    Body {
        /// The API.
        api_key: ApiKey,
        /// Its version.
        version: i16,
        /// From the header.
        correlation_id: i32,
        /// What the decoder said.
        message: String,
    },
}

impl RequestError {
    /// The correlation id, when the frame was long enough to carry one.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            RequestError::TooShort(_) => None,
            RequestError::UnknownApiKey { correlation_id, .. }
            | RequestError::UnsupportedVersion { correlation_id, .. }
            | RequestError::Header { correlation_id, .. }
            | RequestError::Guard { correlation_id, .. }
            | RequestError::Body { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

/// Decodes one request frame (without its 4-byte length prefix).
///
/// Body fields that `kafka-protocol` keeps as `Bytes` (produce records among them) stay
/// slices of `frame`: nothing is copied.
pub fn decode_request(frame: Bytes, supported: &ApiVersionTable) -> Result<Request, RequestError> {
    if frame.len() < FIXED_HEADER_LEN {
        return Err(RequestError::TooShort(frame.len()));
    }
    let mut fixed = &frame[..FIXED_HEADER_LEN];
    let raw_key = fixed.get_i16();
    let version = fixed.get_i16();
    let correlation_id = fixed.get_i32();

    let api_key = ApiKey::try_from(raw_key).map_err(|()| RequestError::UnknownApiKey {
        api_key: raw_key,
        correlation_id,
    })?;
    let range = supported
        .range(api_key)
        .ok_or(RequestError::UnknownApiKey {
            api_key: raw_key,
            correlation_id,
        })?;
    if !range.contains(version) {
        return Err(RequestError::UnsupportedVersion {
            api_key,
            version,
            correlation_id,
        });
    }

    let mut buf = frame;
    let header_version = api_key.request_header_version(version);
    let header =
        RequestHeader::decode(&mut buf, header_version).map_err(|e| RequestError::Header {
            correlation_id,
            message: e.to_string(),
        })?;

    guard::check_request_body(api_key, version, &buf).map_err(|source| RequestError::Guard {
        api_key,
        version,
        correlation_id,
        source,
    })?;

    let body = RequestKind::decode(api_key, &mut buf, version).map_err(|e| RequestError::Body {
        api_key,
        version,
        correlation_id,
        message: e.to_string(),
    })?;

    Ok(Request {
        api_key,
        version,
        correlation_id,
        client_id: header.client_id.map(|s| s.to_string()),
        body,
    })
}
