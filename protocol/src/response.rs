//! Response encoding: length prefix, the header version the API expects, then the body.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ResponseHeader, ResponseKind};
use kafka_protocol::protocol::Encodable;
use thiserror::Error;

/// Why a response could not be encoded (a broker bug, never a client's fault).
#[derive(Debug, Error)]
#[error("cannot encode {api_key:?} v{version} response: {message}")]
pub struct EncodeError {
    /// The API.
    pub api_key: ApiKey,
    /// The version asked for.
    pub version: i16,
    /// What the encoder said.
    pub message: String,
}

/// Encodes a whole response frame, 4-byte length prefix included.
///
/// The header version comes from the API and version (ApiVersions is always v0, so that
/// a client that does not yet know our versions can read it).
pub fn encode_response(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &ResponseKind,
) -> Result<Bytes, EncodeError> {
    let fail = |message: String| EncodeError {
        api_key,
        version,
        message,
    };
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i32(0);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    header
        .encode(&mut buf, api_key.response_header_version(version))
        .map_err(|e| fail(e.to_string()))?;
    body.encode(&mut buf, version)
        .map_err(|e| fail(e.to_string()))?;
    let len = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&len.to_be_bytes());
    Ok(buf.freeze())
}
