//! The event envelope: `(event_type, agent_id, timestamp, trace_id, data, metadata)` as
//! JSON, with CloudEvents-style `ce_*` Kafka headers (binary-mode attributes) and a W3C
//! `traceparent`, so any consumer (and any tracing tool) can follow a trace across
//! agents without parsing the value.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::event::{now_ms, OutRecord};

/// The JSON body of an enveloped event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// What happened (CloudEvents `type`).
    pub event_type: String,
    /// The agent that produced it (CloudEvents `source`).
    pub agent_id: String,
    /// When, milliseconds since the epoch.
    pub timestamp: i64,
    /// The trace it belongs to: 32 lowercase hex digits, W3C trace-id compatible.
    pub trace_id: String,
    /// The payload.
    #[serde(default)]
    pub data: serde_json::Value,
    /// Free-form annotations.
    #[serde(default)]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// A fresh W3C-compatible trace id.
pub fn new_trace_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

impl Envelope {
    /// A new envelope, continuing `trace_id` or starting a new trace.
    pub fn new(
        event_type: &str,
        agent_id: &str,
        trace_id: Option<String>,
        data: serde_json::Value,
    ) -> Envelope {
        Envelope {
            event_type: event_type.to_string(),
            agent_id: agent_id.to_string(),
            timestamp: now_ms(),
            trace_id: trace_id.unwrap_or_else(new_trace_id),
            data,
            metadata: serde_json::Map::new(),
        }
    }

    /// The envelope as a record: JSON value and `ce_*` / `traceparent` headers.
    pub fn to_record(&self, key: Option<Bytes>) -> OutRecord {
        let id = uuid::Uuid::new_v4().to_string();
        let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
        let header = |name: &str, value: String| (name.to_string(), Bytes::from(value));
        let headers = vec![
            header("ce_specversion", "1.0".to_string()),
            header("ce_id", id),
            header("ce_type", self.event_type.clone()),
            header("ce_source", self.agent_id.clone()),
            header("ce_time", rfc3339(self.timestamp)),
            header("ce_traceid", self.trace_id.clone()),
            header("traceparent", format!("00-{}-{span}-01", self.trace_id)),
            header("content-type", "application/json".to_string()),
        ];
        // Serialising a struct of strings and JSON values cannot fail.
        let value = serde_json::to_vec(self).unwrap_or_default();
        OutRecord {
            key,
            value: Some(Bytes::from(value)),
            headers,
            timestamp: self.timestamp,
        }
    }
}

/// `2024-05-01T12:00:00.123Z` from milliseconds since the epoch (UTC, proleptic
/// Gregorian; Howard Hinnant's civil-from-days).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_714_564_800_123), "2024-05-01T12:00:00.123Z");
    }

    #[test]
    fn envelope_headers_carry_the_trace() {
        let envelope = Envelope::new("order.created", "a1", None, serde_json::json!({"x": 1}));
        let record = envelope.to_record(None);
        let find = |n: &str| {
            record
                .headers
                .iter()
                .find(|(k, _)| k == n)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
        };
        assert_eq!(find("ce_traceid"), Some(envelope.trace_id.clone()));
        assert_eq!(find("ce_type").as_deref(), Some("order.created"));
        let parent = find("traceparent").unwrap();
        assert_eq!(parent.split('-').nth(1), Some(envelope.trace_id.as_str()));
        let back: Envelope = serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
        assert_eq!(back, envelope);
    }
}
