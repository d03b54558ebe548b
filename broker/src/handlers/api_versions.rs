//! ApiVersions: what we implement, and the special answer to versions we do not know.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};

use super::{Reply, ReplyBody, SUPPORTED};

/// The list of every implemented API and its version range.
pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        SUPPORTED
            .iter()
            .map(|range| {
                ApiVersion::default()
                    .with_api_key(range.api_key as i16)
                    .with_min_version(range.min)
                    .with_max_version(range.max)
            })
            .collect(),
    )
}

/// A client asked for an ApiVersions version newer than ours: answer in v0 with
/// UNSUPPORTED_VERSION and our key list, so it can retry with a version we know.
pub fn unsupported_version(correlation_id: i32) -> Reply {
    Reply {
        api_key: ApiKey::ApiVersions,
        version: 0,
        correlation_id,
        body: ReplyBody::ready(ResponseKind::ApiVersions(
            handle().with_error_code(ResponseError::UnsupportedVersion.code()),
        )),
    }
}
