//! How records look to an MCP client, and how results stay within `mcp.server.max.bytes`.
//!
//! Lists are cut, never the JSON: a result holds the items that fit whole and says
//! `"truncated": true` when some were left out, so a client can always parse it and knows
//! to ask for less (a later offset, a narrower filter).

use agentlog_agents::Event;
use serde_json::{json, Value};

/// Bytes kept free for the fields around a result's list (names, counts, flags).
const ENVELOPE_BYTES: usize = 512;

/// A record as JSON: its value parsed as JSON when it is JSON, else as text (lossy
/// UTF-8); headers as text. A value too large for the byte budget on its own is left
/// out and its size given instead, so one huge record cannot hide the others.
pub fn record(event: &Event, max_bytes: usize) -> Value {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let headers: serde_json::Map<String, Value> = event
        .headers
        .iter()
        .map(|header| {
            let value = header
                .value
                .as_deref()
                .map_or(Value::Null, |v| text(v).into());
            (text(&header.name), value)
        })
        .collect();
    let mut shown = json!({
        "partition": event.partition,
        "offset": event.offset,
        "timestamp": event.timestamp,
        "key": event.key.as_deref().map(text),
        "headers": headers,
    });
    let value_len = event.value.as_ref().map_or(0, |v| v.len());
    if value_len > max_bytes.saturating_sub(ENVELOPE_BYTES) {
        shown["value"] = Value::Null;
        shown["value_omitted_bytes"] = value_len.into();
    } else {
        shown["value"] = event.value.as_deref().map_or(Value::Null, |bytes| {
            serde_json::from_slice(bytes).unwrap_or_else(|_| text(bytes).into())
        });
    }
    shown
}

/// The items, in order, that fit in `max_bytes` of JSON (less room for the result around
/// them), and whether any were left out.
pub fn fit(items: impl IntoIterator<Item = Value>, max_bytes: usize) -> (Vec<Value>, bool) {
    let budget = max_bytes.saturating_sub(ENVELOPE_BYTES);
    let mut used = 0;
    let mut kept = Vec::new();
    for item in items {
        let size = item.to_string().len() + 1; // and its comma
        if used + size > budget {
            return (kept, true);
        }
        used += size;
        kept.push(item);
    }
    (kept, false)
}

/// A `from_time` / `to_time` argument: milliseconds since the epoch, or an RFC 3339
/// time (`2024-05-01T12:00:00Z`, any offset).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, rmcp::schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(untagged)]
pub enum TimeArg {
    /// Milliseconds since the epoch.
    Millis(i64),
    /// RFC 3339, or milliseconds written as text.
    Text(String),
}

impl TimeArg {
    /// Milliseconds since the epoch; `argument` names the argument in the error.
    pub fn millis(&self, argument: &str) -> Result<i64, String> {
        match self {
            TimeArg::Millis(ms) => Ok(*ms),
            TimeArg::Text(text) => match text.parse::<i64>() {
                Ok(ms) => Ok(ms),
                Err(_) => crate::agents_cmd::rfc3339_ms(text).ok_or_else(|| {
                    format!(
                        "{argument}: {text:?} is neither milliseconds since the epoch nor an \
                         RFC 3339 time (2024-05-01T12:00:00Z)"
                    )
                }),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_whole_items_and_says_when_it_cut() {
        let items = (0..100).map(|i| json!({ "i": i, "pad": "x".repeat(90) }));
        let (kept, truncated) = fit(items, 2048);
        assert!(truncated);
        assert!(!kept.is_empty());
        assert!(Value::Array(kept.clone()).to_string().len() <= 2048 - ENVELOPE_BYTES);
        assert_eq!(kept[0]["i"], 0, "in order, from the first");

        let (all, truncated) = fit((0..3).map(|i| json!(i)), 2048);
        assert_eq!((all.len(), truncated), (3, false));
    }

    #[test]
    fn times_are_milliseconds_or_rfc3339() {
        let at = |v: Value| {
            serde_json::from_value::<TimeArg>(v)
                .map_err(|e| e.to_string())
                .and_then(|t| t.millis("from_time"))
        };
        assert_eq!(at(json!(1_714_564_800_123_i64)), Ok(1_714_564_800_123));
        assert_eq!(at(json!("1714564800123")), Ok(1_714_564_800_123));
        assert_eq!(at(json!("2024-05-01T12:00:00.123Z")), Ok(1_714_564_800_123));
        assert_eq!(
            at(json!("2024-05-01T14:00:00+02:00")),
            Ok(1_714_564_800_000)
        );
        assert!(at(json!("yesterday")).unwrap_err().contains("from_time"));
        assert!(at(json!(1.5)).is_err());
        assert!(at(json!(true)).is_err());
    }
}
