//! ApiVersions: what we implement, the cluster's feature levels (v3+, KIP-584, what
//! Kafka 4's `describeFeatures` reads), and the special answer to versions we do not
//! know.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::api_versions_response::{
    ApiVersion, FinalizedFeatureKey, SupportedFeatureKey,
};
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ResponseKind};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, ReplyBody, SUPPORTED};

/// Every feature this node supports, with its supported range and finalized level
/// (a level of 0 is not finalized and, as in Kafka, not listed). `metadata.version`
/// 7 to 25 is Kafka 3.3-IV3 to 4.0-IV3, the range a Kafka 4.0 node supports; the
/// KRaft, group, transaction and ELR features stay at 0 because what their higher
/// levels change (dynamic quorum, KIP-848 by default, KIP-890 transactions v2, ELR)
/// is not served here; clients read them to pick a protocol, so they must not lie.
pub const FEATURES: &[(&str, i16, i16, i16)] = &[
    ("metadata.version", 7, 25, 25),
    ("kraft.version", 0, 0, 0),
    ("group.version", 0, 0, 0),
    ("transaction.version", 0, 0, 0),
    ("eligible.leader.replicas.version", 0, 0, 0),
];

/// The epoch of the finalized feature levels: they were set once, at first start.
const FINALIZED_FEATURES_EPOCH: i64 = 1;

/// The list of every implemented API and its version range, and the features.
pub fn handle() -> ApiVersionsResponse {
    let supported = FEATURES
        .iter()
        .map(|&(name, min, max, _)| {
            SupportedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect();
    let finalized = FEATURES
        .iter()
        .filter(|&&(_, _, _, level)| level > 0)
        .map(|&(name, _, _, level)| {
            FinalizedFeatureKey::default()
                .with_name(StrBytes::from_static_str(name))
                .with_min_version_level(level)
                .with_max_version_level(level)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_supported_features(supported)
        .with_finalized_features_epoch(FINALIZED_FEATURES_EPOCH)
        .with_finalized_features(finalized)
        .with_api_keys(
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
