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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::envelope::Envelope;
    use crate::event::Header;
    use crate::metrics::AgentMetrics;
    use crate::state::StateStore;

    fn ctx() -> Context {
        Context::new(
            Arc::from("r"),
            None,
            1,
            Arc::new(StateStore::default()),
            Arc::new(AgentMetrics::new("router")),
        )
    }

    fn event(value: &[u8], headers: Vec<Header>) -> Event {
        Event {
            topic: Arc::from("in"),
            partition: 0,
            offset: 7,
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value)),
            headers,
            undecodable: None,
        }
    }

    #[tokio::test]
    async fn routes_plain_and_enveloped_json_by_field() {
        let router = ContentRouter {
            field: "order.kind".to_string(),
            routes: BTreeMap::from([("big".to_string(), "big-orders".to_string())]),
            default: None,
        };
        let mut c = ctx();
        router
            .handle(&event(br#"{"order":{"kind":"big"}}"#, vec![]), &mut c)
            .await
            .unwrap();
        assert_eq!(c.emits[0].0, "big-orders");
        assert_eq!(c.emits[0].1.key.as_deref(), Some(&b"k"[..]));

        let envelope = Envelope::new(
            "t",
            "a",
            None,
            serde_json::json!({"order": {"kind": "big"}}),
        );
        let record = envelope.to_record(None);
        let headers = record
            .headers
            .iter()
            .map(|(k, v)| Header {
                name: Bytes::from(k.clone()),
                value: Some(v.clone()),
            })
            .collect();
        let mut c = ctx();
        router
            .handle(&event(record.value.as_deref().unwrap(), headers), &mut c)
            .await
            .unwrap();
        assert_eq!(c.emits[0].0, "big-orders");
        assert!(c.emits[0].1.headers.iter().any(|(k, _)| k == "ce_traceid"));

        let mut c = ctx();
        let unroutable = router.handle(&event(b"not json", vec![]), &mut c).await;
        assert!(
            unroutable.is_err(),
            "no route and no default fails (then DLQ)"
        );
    }

    #[tokio::test]
    async fn dlq_replayer_strips_dlq_headers_and_returns_to_origin() {
        let header = |k: &str, v: &str| Header {
            name: Bytes::copy_from_slice(k.as_bytes()),
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
        };
        let dead = event(
            b"{}",
            vec![
                header("app", "1"),
                header(crate::delivery::DLQ_TOPIC, "orders"),
                header(crate::delivery::DLQ_ATTEMPTS, "3"),
            ],
        );
        let mut c = ctx();
        DlqReplayer::default().handle(&dead, &mut c).await.unwrap();
        let (topic, record) = &c.emits[0];
        assert_eq!(topic, "orders");
        let names: Vec<&str> = record.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["app", "dlq.replayed"]);
    }
}
