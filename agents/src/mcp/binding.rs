//! The MCP-over-Kafka binding (docs/mcp-over-kafka.md): topic names, headers, and the
//! framing of one JSON-RPC message per record.
//!
//! Both sides of the binding use these names, so the bridge (server side) and the
//! topic client (requester side) cannot drift apart, and the document has one place
//! in the code to be checked against.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::event::{Event, OutRecord};

/// Protocol revisions a requester may name in `_meta` or `initialize`; the first is
/// what this side speaks.
pub const PROTOCOL_VERSIONS: [&str; 4] = ["2026-07-28", "2025-11-25", "2025-06-18", "2025-03-26"];

/// The revision the topic client speaks: stateless, version in `_meta`.
pub const PROTOCOL_VERSION: &str = PROTOCOL_VERSIONS[0];

/// `_meta` key carrying the protocol revision of a stateless request.
pub const PROTOCOL_VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// Header naming the topic the response (and the request's progress) goes to.
pub const REPLY_TO: &str = crate::llm::tools::replies::REPLY_TO;
/// Header pairing a request with its response and progress; copied unchanged.
pub const CORRELATION_ID: &str = crate::llm::tools::replies::CORRELATION_ID;
/// Header with the request's absolute deadline (Unix ms): a bridge that picks the
/// request up later answers with [`REQUEST_EXPIRED`] instead of running it.
pub const DEADLINE_MS: &str = "mcp.deadline_ms";
/// Header with a key that makes the request idempotent: a bridge that already
/// answered a request with this key answers again from its record, without calling
/// the server.
pub const IDEMPOTENCY_KEY: &str = "mcp.idempotency_key";
/// Header on every record a bridge writes to a reply topic: `response` for the one
/// answer to a request, `notification` for progress before it.
pub const MESSAGE_KIND: &str = crate::llm::tools::replies::PROGRESS_MARKER.0;

/// Reply topic of requesters that name none.
pub const DEFAULT_REPLY_TOPIC: &str = "mcp.responses";

/// Default request topic of server `name`.
pub fn requests_topic(name: &str) -> String {
    format!("mcp.{name}.requests")
}

/// Topic where server `name`'s own notifications (`notifications/tools/list_changed`
/// and other list changes, log messages) are broadcast to every client.
pub fn notifications_topic(name: &str) -> String {
    format!("mcp.{name}.notifications")
}

pub use crate::jsonrpc::{
    INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR,
};

/// Ours (implementation-defined range): the request's deadline passed before a bridge
/// could serve it, so it was not run.
pub const REQUEST_EXPIRED: i64 = -32001;
/// Ours: the request or its response is larger than the bridge's `max_message_bytes`.
pub const MESSAGE_TOO_LARGE: i64 = -32002;

/// One record from a request topic, read as a JSON-RPC message.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A request: it gets exactly one response.
    Request {
        /// Its JSON-RPC id (string or number), echoed in the response.
        id: Value,
        /// The method.
        method: String,
        /// The parameters (`null` when absent).
        params: Value,
    },
    /// A notification: no response (`notifications/cancelled` is acted upon).
    Notification {
        /// The method.
        method: String,
        /// The parameters (`null` when absent).
        params: Value,
    },
    /// Not a usable message: the error response to send (with a `null` id when the id
    /// could not be read), or nothing when it was an invalid notification.
    Invalid(Option<Value>),
}

/// Reads one record's value as a JSON-RPC message (refusing batches, which MCP no
/// longer allows, and values over `max_bytes`).
pub fn parse(value: Option<&[u8]>, max_bytes: usize) -> Incoming {
    let bytes = value.unwrap_or_default();
    if bytes.len() > max_bytes {
        return Incoming::Invalid(Some(error(
            Value::Null,
            MESSAGE_TOO_LARGE,
            &format!(
                "the request is {} bytes; this bridge takes at most {max_bytes}",
                bytes.len()
            ),
        )));
    }
    let message: Value = match serde_json::from_slice(bytes) {
        Ok(message) => message,
        Err(e) => {
            return Incoming::Invalid(Some(error(
                Value::Null,
                PARSE_ERROR,
                &format!("not JSON: {e}"),
            )))
        }
    };
    let Value::Object(mut fields) = message else {
        return Incoming::Invalid(Some(error(
            Value::Null,
            INVALID_REQUEST,
            "a message is one JSON-RPC object (batches are not part of MCP)",
        )));
    };
    let id = fields.remove("id");
    let id_ok = matches!(&id, None | Some(Value::String(_)) | Some(Value::Number(_)));
    let reply_id = id.clone().filter(|_| id_ok).unwrap_or(Value::Null);
    if fields.get("jsonrpc") != Some(&json!("2.0")) || !id_ok {
        return Incoming::Invalid(Some(error(
            reply_id,
            INVALID_REQUEST,
            "not a JSON-RPC 2.0 request (`jsonrpc` must be \"2.0\", `id` a string or number)",
        )));
    }
    let method = match fields.remove("method") {
        Some(Value::String(method)) => method,
        _ if id.is_none() => return Incoming::Invalid(None),
        _ => {
            return Incoming::Invalid(Some(error(
                reply_id,
                INVALID_REQUEST,
                "a request needs a string `method`",
            )))
        }
    };
    let params = fields.remove("params").unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Object(_)) {
        return match id {
            Some(id) => Incoming::Invalid(Some(error(
                id,
                INVALID_PARAMS,
                "`params` must be an object",
            ))),
            None => Incoming::Invalid(None),
        };
    }
    match id {
        Some(id) => Incoming::Request { id, method, params },
        None => Incoming::Notification { method, params },
    }
}

/// A JSON-RPC error response.
pub fn error(id: Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// A JSON-RPC success response.
pub fn result(id: Value, result: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": result})
}

/// Where the answer to a request record goes: its `reply_to` topic (else
/// [`DEFAULT_REPLY_TOPIC`]) with its `correlation_id`, or the JSON-RPC id as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyRoute {
    /// The requester's reply topic.
    pub topic: String,
    /// The correlation id every record of this exchange carries.
    pub correlation_id: String,
}

impl ReplyRoute {
    /// The route of `event` (a request record) whose JSON-RPC id is `id`.
    pub fn of(event: &Event, id: &Value) -> ReplyRoute {
        let correlation_id = match event.header_str(CORRELATION_ID) {
            Some(c) => c.to_string(),
            None => match id {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        };
        ReplyRoute {
            topic: event
                .header_str(REPLY_TO)
                .unwrap_or(DEFAULT_REPLY_TOPIC)
                .to_string(),
            correlation_id,
        }
    }

    /// A record for the reply topic: the message, keyed and tagged with the
    /// correlation id, marked as a `response` or a `notification`.
    pub fn record(&self, message: &Value, kind: &str) -> OutRecord {
        self.record_of_text(message.to_string(), kind)
    }

    /// [`ReplyRoute::record`] for a message already serialized (the bridge measures
    /// its answers before writing them).
    pub fn record_of_text(&self, message: String, kind: &str) -> OutRecord {
        let correlation = Bytes::copy_from_slice(self.correlation_id.as_bytes());
        OutRecord {
            key: Some(correlation.clone()),
            value: Some(Bytes::from(message)),
            headers: vec![
                (CORRELATION_ID.to_string(), correlation),
                (
                    MESSAGE_KIND.to_string(),
                    Bytes::copy_from_slice(kind.as_bytes()),
                ),
                (
                    "content-type".to_string(),
                    Bytes::from_static(b"application/json"),
                ),
            ],
            ..OutRecord::default()
        }
    }
}

/// The protocol revision a request names (`_meta`, or `initialize`'s
/// `protocolVersion`), when it is one this side knows.
pub fn requested_version(method: &str, params: &Value) -> Option<&'static str> {
    let named = if method == "initialize" {
        params.get("protocolVersion")
    } else {
        params
            .get("_meta")
            .and_then(|m| m.get(PROTOCOL_VERSION_META))
    }?;
    PROTOCOL_VERSIONS
        .iter()
        .copied()
        .find(|v| named.as_str() == Some(*v))
}

/// `params` as relayed on the bridge's own session with the server: without the
/// stateless revision's envelope (`_meta` keys under `io.modelcontextprotocol/`),
/// which a server whose session began with `initialize` refuses. The rest of
/// `_meta` (`progressToken`, the requester's own keys) is kept.
pub fn for_session(params: &Value) -> Value {
    let mut params = params.clone();
    if let Some(meta) = params.get_mut("_meta").and_then(Value::as_object_mut) {
        meta.retain(|key, _| !key.starts_with("io.modelcontextprotocol/"));
        if meta.is_empty() {
            if let Some(fields) = params.as_object_mut() {
                fields.remove("_meta");
            }
        }
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Incoming {
        parse(Some(text.as_bytes()), 1024)
    }

    fn error_code(incoming: &Incoming) -> Option<i64> {
        match incoming {
            Incoming::Invalid(Some(response)) => response["error"]["code"].as_i64(),
            _ => None,
        }
    }

    #[test]
    fn requests_and_notifications_are_told_apart() {
        assert_eq!(
            parsed(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#),
            Incoming::Request {
                id: json!(7),
                method: "tools/list".to_string(),
                params: Value::Null
            }
        );
        assert_eq!(
            parsed(
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":7}}"#
            ),
            Incoming::Notification {
                method: "notifications/cancelled".to_string(),
                params: json!({"requestId": 7})
            }
        );
    }

    #[test]
    fn bad_messages_get_the_json_rpc_error_that_names_the_fault() {
        assert_eq!(error_code(&parsed("{not json")), Some(PARSE_ERROR));
        assert_eq!(error_code(&parsed("[]")), Some(INVALID_REQUEST));
        assert_eq!(
            error_code(&parsed(r#"{"id":1,"method":"ping"}"#)),
            Some(INVALID_REQUEST)
        );
        assert_eq!(
            error_code(&parsed(r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#)),
            Some(INVALID_REQUEST)
        );
        assert_eq!(
            error_code(&parsed(r#"{"jsonrpc":"2.0","id":1}"#)),
            Some(INVALID_REQUEST)
        );
        assert_eq!(
            error_code(&parsed(
                r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#
            )),
            Some(INVALID_PARAMS)
        );
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{}"}}"#,
            "x".repeat(2000)
        );
        assert_eq!(error_code(&parsed(&big)), Some(MESSAGE_TOO_LARGE));
        // An invalid notification gets no answer: there is no id to answer.
        assert_eq!(parsed(r#"{"jsonrpc":"2.0"}"#), Incoming::Invalid(None));
        assert_eq!(
            parse(None, 10),
            Incoming::Invalid(Some(error(
                Value::Null,
                PARSE_ERROR,
                "not JSON: EOF while parsing a value at line 1 column 0"
            )))
        );
    }

    #[test]
    fn the_stateless_envelope_is_left_out_of_relayed_params() {
        let params = json!({"name": "f", "_meta": {PROTOCOL_VERSION_META: "2026-07-28", "progressToken": 3}});
        assert_eq!(
            for_session(&params),
            json!({"name": "f", "_meta": {"progressToken": 3}})
        );
        let params = json!({"name": "f", "_meta": {PROTOCOL_VERSION_META: "2026-07-28"}});
        assert_eq!(for_session(&params), json!({"name": "f"}));
    }

    #[test]
    fn versions_come_from_meta_or_initialize() {
        let meta = json!({"_meta": {PROTOCOL_VERSION_META: "2026-07-28"}});
        assert_eq!(requested_version("tools/list", &meta), Some("2026-07-28"));
        let init = json!({"protocolVersion": "2025-11-25"});
        assert_eq!(requested_version("initialize", &init), Some("2025-11-25"));
        assert_eq!(
            requested_version("initialize", &json!({"protocolVersion": "1999"})),
            None
        );
    }
}
