//! `search_decisions`: agents record each decision as an envelope in
//! `agent.decisions.<agent>` (`Context::decide`); this finds them by agent, trace id and
//! time, so an assistant can answer "what did the fraud agent decide for trace X, and
//! why?" from the audit log itself.

use agentlog_agents::envelope::rfc3339;
use agentlog_agents::Event;
use serde_json::{json, Value};

/// The prefix of every agent's decision topic.
pub const TOPIC_PREFIX: &str = "agent.decisions.";

/// Which decisions to return; every condition given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecisionFilter {
    /// The trace the decision belongs to (W3C trace id, compared case-insensitively).
    pub trace_id: Option<String>,
    /// Earliest decision time, milliseconds since the epoch, inclusive.
    pub from_ms: Option<i64>,
    /// Latest decision time, milliseconds since the epoch, inclusive.
    pub to_ms: Option<i64>,
}

impl DecisionFilter {
    /// The decision `event` records, as shown to the client, when it is one and it
    /// matches; records that are not decision envelopes never match.
    pub fn matching(&self, event: &Event) -> Option<Value> {
        let envelope = event.envelope()?;
        if envelope.event_type != "decision" {
            return None;
        }
        if self
            .trace_id
            .as_deref()
            .is_some_and(|wanted| !wanted.eq_ignore_ascii_case(&envelope.trace_id))
        {
            return None;
        }
        if self.from_ms.is_some_and(|from| envelope.timestamp < from)
            || self.to_ms.is_some_and(|to| envelope.timestamp > to)
        {
            return None;
        }
        let field = |name: &str| envelope.data.get(name).cloned().unwrap_or(Value::Null);
        Some(json!({
            "agent": envelope.agent_id,
            "decision": field("decision"),
            "details": field("details"),
            "trace_id": envelope.trace_id,
            "timestamp": envelope.timestamp,
            "time": rfc3339(envelope.timestamp),
            "topic": event.topic.as_ref(),
            "partition": event.partition,
            "offset": event.offset,
        }))
    }
}

/// The decision topic of `agent`.
pub fn topic_of(agent: &str) -> String {
    format!("{TOPIC_PREFIX}{agent}")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use agentlog_agents::Envelope;

    use super::*;

    fn decision(trace_id: &str, timestamp: i64) -> Event {
        let mut envelope = Envelope::new(
            "decision",
            "fraud",
            Some(trace_id.to_string()),
            json!({"decision": "block", "details": {"score": 0.97}}),
        );
        envelope.timestamp = timestamp;
        let record = envelope.to_record(None);
        Event {
            topic: Arc::from(topic_of("fraud")),
            partition: 0,
            offset: 7,
            timestamp,
            key: None,
            value: record.value,
            headers: record
                .headers
                .into_iter()
                .map(|(name, value)| agentlog_agents::Header {
                    name: name.into(),
                    value: Some(value),
                })
                .collect(),
            undecodable: None,
        }
    }

    #[test]
    fn every_condition_given_must_hold() {
        let event = decision("abc123", 1_000);
        let any = DecisionFilter::default();
        let shown = any.matching(&event).expect("no condition: a match");
        assert_eq!(shown["decision"], "block");
        assert_eq!(shown["details"]["score"], 0.97);
        assert_eq!(shown["agent"], "fraud");
        assert_eq!(shown["time"], "1970-01-01T00:00:01.000Z");

        let by_trace = |trace: &str| DecisionFilter {
            trace_id: Some(trace.to_string()),
            ..DecisionFilter::default()
        };
        assert!(by_trace("ABC123").matching(&event).is_some());
        assert!(by_trace("other").matching(&event).is_none());

        let window = |from, to| DecisionFilter {
            from_ms: from,
            to_ms: to,
            ..DecisionFilter::default()
        };
        assert!(window(Some(1_000), Some(1_000)).matching(&event).is_some());
        assert!(window(Some(1_001), None).matching(&event).is_none());
        assert!(window(None, Some(999)).matching(&event).is_none());
    }

    #[test]
    fn plain_records_are_not_decisions() {
        let mut event = decision("abc", 1);
        event.headers.clear();
        assert!(DecisionFilter::default().matching(&event).is_none());
    }
}
