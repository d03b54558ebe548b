//! Built-in agent kinds that configurations can declare without Rust code.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::agent::{Agent, Context, HandlerError};
use crate::delivery::{DLQ_ATTEMPTS, DLQ_TOPIC};
use crate::event::{Event, OutRecord};

/// Routes each event, unchanged, to a topic chosen by a JSON field of its payload (the
/// envelope's `data` for enveloped events, the value itself for plain JSON records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentRouter {
    /// Dotted path of the field, e.g. `type` or `order.region`.
    pub field: String,
    /// Field value (as text) to destination topic.
    pub routes: BTreeMap<String, String>,
    /// Where events with no matching route go; without one they fail (and are
    /// eventually dead-lettered).
    pub default: Option<String>,
}

impl ContentRouter {
    fn route(&self, event: &Event) -> Option<&str> {
        let payload = match event.envelope() {
            Some(envelope) => envelope.data,
            None => serde_json::from_slice(event.value.as_deref()?).ok()?,
        };
        let mut node = &payload;
        for part in self.field.split('.') {
            node = node.get(part)?;
        }
        let key = match node {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        self.routes.get(&key).map(String::as_str)
    }
}

/// The record as it was read, to be written elsewhere unchanged.
pub fn forward(event: &Event, skip_header: impl Fn(&[u8]) -> bool) -> OutRecord {
    OutRecord {
        key: event.key.clone(),
        value: event.value.clone(),
        headers: event
            .headers
            .iter()
            .filter(|h| !skip_header(&h.name))
            .map(|h| {
                (
                    String::from_utf8_lossy(&h.name).into_owned(),
                    h.value.clone().unwrap_or_default(),
                )
            })
            .collect(),
        timestamp: event.timestamp,
    }
}

impl Agent for ContentRouter {
    fn kind(&self) -> &str {
        "router"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let target = self
            .route(event)
            .or(self.default.as_deref())
            .ok_or_else(|| HandlerError::new(format!("no route for field `{}`", self.field)))?;
        ctx.emit_raw(target, forward(event, |_| false));
        Ok(())
    }
}

/// Replays a dead-letter topic: each record goes back, without its `dlq.*` headers, to
/// the topic named in its `dlq.original.topic` header (or to a fixed target), with a
/// `dlq.replayed` header counting earlier attempts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DlqReplayer {
    /// Send everything here instead of to each record's original topic.
    pub target: Option<String>,
}

impl Agent for DlqReplayer {
    fn kind(&self) -> &str {
        "dlq_replayer"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let target = match &self.target {
            Some(target) => target.clone(),
            None => event
                .header_str(DLQ_TOPIC)
                .ok_or_else(|| HandlerError::new("record has no dlq.original.topic header"))?
                .to_string(),
        };
        let mut record = forward(event, |name| name.starts_with(b"dlq."));
        let attempts = event.header(DLQ_ATTEMPTS).cloned().unwrap_or_default();
        record.headers.push(("dlq.replayed".to_string(), attempts));
        ctx.emit_raw(&target, record);
        ctx.metric("replayed", 1);
        Ok(())
    }
}

/// Helper for agents that forward raw bytes: a header value from text.
pub fn header(name: &str, value: &str) -> (String, Bytes) {
    (name.to_string(), Bytes::copy_from_slice(value.as_bytes()))
}
