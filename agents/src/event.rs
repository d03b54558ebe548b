//! What an agent receives ([`Event`]) and what it writes ([`OutRecord`]): the raw record,
//! whether or not it carries an envelope.

use std::sync::Arc;

use bytes::Bytes;

use crate::envelope::Envelope;

/// One record header as stored: both name and value are slices of the record's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name (UTF-8 by convention, not checked).
    pub name: Bytes,
    /// Header value; `None` for a null header.
    pub value: Option<Bytes>,
}

/// One record handed to an agent. On the embedded backend `key`, `value` and header
/// bytes share the stored batch's memory (no copy); on the Kafka backend they are the
/// bytes librdkafka returned.
#[derive(Debug, Clone)]
pub struct Event {
    /// Topic it was read from (shared by every event of a partition read).
    pub topic: Arc<str>,
    /// Partition it was read from.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Record timestamp, milliseconds since the epoch.
    pub timestamp: i64,
    /// Record key.
    pub key: Option<Bytes>,
    /// Record value.
    pub value: Option<Bytes>,
    /// Record headers, in order.
    pub headers: Vec<Header>,
    /// Set when this is not a record but a whole batch the reader could not decode (bad
    /// compression, broken record framing): `offset` is the batch's first offset at or
    /// after the read position, `value` its raw bytes, and this says why. Delivery sends
    /// it to the dead-letter topic without calling the handler, so one bad batch
    /// neither stalls its partition nor disappears.
    pub undecodable: Option<String>,
}

impl Event {
    /// The value of the first header called `name`, if present and not null.
    pub fn header(&self, name: &str) -> Option<&Bytes> {
        self.headers
            .iter()
            .find(|h| h.name.as_ref() == name.as_bytes())
            .and_then(|h| h.value.as_ref())
    }

    /// The first header called `name` as UTF-8 text.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.header(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The event's envelope, when the record is enveloped (a `ce_specversion` header and
    /// a JSON envelope value); `None` for plain records, which agents handle raw.
    pub fn envelope(&self) -> Option<Envelope> {
        self.header("ce_specversion")?;
        serde_json::from_slice(self.value.as_deref()?).ok()
    }

    /// What the event carries, for kinds that take any record: the envelope's data,
    /// else the value as JSON, else the value as text (`null` without a value).
    pub fn payload(&self) -> serde_json::Value {
        if let Some(envelope) = self.envelope() {
            return envelope.data;
        }
        match self.value.as_deref() {
            None => serde_json::Value::Null,
            Some(bytes) => serde_json::from_slice(bytes).unwrap_or_else(|_| {
                serde_json::Value::String(String::from_utf8_lossy(bytes).into_owned())
            }),
        }
    }

    /// The trace this event belongs to: the envelope's trace id, else `ce_traceid`, else
    /// the trace id of a W3C `traceparent` header.
    pub fn trace_id(&self) -> Option<String> {
        if let Some(id) = self.header_str("ce_traceid") {
            return Some(id.to_string());
        }
        if let Some(parent) = self.header_str("traceparent") {
            if let Some(id) = parent.split('-').nth(1) {
                return Some(id.to_string());
            }
        }
        self.envelope().map(|e| e.trace_id)
    }
}

/// One record to write, on either backend.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OutRecord {
    /// Record key (also chooses the partition).
    pub key: Option<Bytes>,
    /// Record value; `None` is a tombstone on compacted topics.
    pub value: Option<Bytes>,
    /// Headers, in order.
    pub headers: Vec<(String, Bytes)>,
    /// Timestamp, milliseconds since the epoch; 0 means now (the time of the produce
    /// call), on both backends.
    pub timestamp: i64,
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
