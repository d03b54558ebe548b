//! Which API versions a broker advertises, and how requests are checked against them.
//!
//! The table itself belongs to whoever implements the handlers (the broker); this module
//! only gives it a type so that decoding can refuse what the broker does not implement
//! before any body is parsed.

use kafka_protocol::messages::ApiKey;

/// One API and the inclusive range of versions that are implemented for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    /// The API.
    pub api_key: ApiKey,
    /// Lowest implemented version.
    pub min: i16,
    /// Highest implemented version.
    pub max: i16,
}

impl ApiRange {
    /// Builds a range; `const` so that tables can be statics.
    pub const fn new(api_key: ApiKey, min: i16, max: i16) -> Self {
        ApiRange { api_key, min, max }
    }

    /// Whether `version` lies inside the range.
    pub fn contains(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// The set of APIs a broker answers, as advertised in ApiVersions.
#[derive(Debug, Clone, Copy)]
pub struct ApiVersionTable {
    ranges: &'static [ApiRange],
}

impl ApiVersionTable {
    /// Wraps a static table.
    pub const fn new(ranges: &'static [ApiRange]) -> Self {
        ApiVersionTable { ranges }
    }

    /// The implemented range for `api_key`, if the API is implemented at all.
    pub fn range(&self, api_key: ApiKey) -> Option<ApiRange> {
        self.ranges.iter().copied().find(|r| r.api_key == api_key)
    }

    /// Every advertised API, in table order.
    pub fn iter(&self) -> impl Iterator<Item = ApiRange> + '_ {
        self.ranges.iter().copied()
    }
}
