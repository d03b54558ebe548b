//! JSON-RPC 2.0 framing of A2A requests and responses on the log, and the error codes
//! of the A2A JSON-RPC binding (`-32700`..`-32600` from JSON-RPC itself, `-32001`..
//! from A2A), so an error on the reply topic means the same as over HTTP.
//!
//! Parsing never fails outright: whatever arrives in an inbox becomes either a
//! [`Request`] or an [`RpcError`] to answer with, because a bad request must end as an
//! error response, never as a stalled or crashed agent.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

/// The `jsonrpc` member of every request and response.
pub const VERSION: &str = "2.0";

pub use crate::jsonrpc::{INVALID_PARAMS, INVALID_REQUEST, METHOD_NOT_FOUND, PARSE_ERROR};

/// A2A `TaskNotFoundError`.
pub const TASK_NOT_FOUND: i64 = -32001;
/// A2A `TaskNotCancelableError`.
pub const TASK_NOT_CANCELABLE: i64 = -32002;
/// A2A `UnsupportedOperationError`.
pub const UNSUPPORTED_OPERATION: i64 = -32004;

/// A JSON-RPC request as read from an inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The requester's id for the call, echoed in the response.
    #[serde(default)]
    pub id: Value,
    /// The A2A method, e.g. `SendMessage`.
    pub method: String,
    /// The method's parameters.
    #[serde(default)]
    pub params: Value,
}

impl Request {
    /// A request with `id`, `method` and `params`.
    pub fn new(id: &str, method: &str, params: Value) -> Request {
        Request {
            jsonrpc: VERSION.to_string(),
            id: Value::String(id.to_string()),
            method: method.to_string(),
            params,
        }
    }
}

/// A JSON-RPC response: a result or an error, never both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Always `"2.0"`.
    pub jsonrpc: String,
    /// The request's id (`null` when the request could not be read).
    pub id: Value,
    /// The method's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// Why the call failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<RpcError>,
}

impl Response {
    /// The response to the request with `id`.
    pub fn new(id: Value, outcome: Result<Value, RpcError>) -> Response {
        let (result, error) = match outcome {
            Ok(result) => (Some(result), None),
            Err(error) => (None, Some(error)),
        };
        Response {
            jsonrpc: VERSION.to_string(),
            id,
            result,
            error,
        }
    }
}

/// A JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Error, Serialize, Deserialize)]
#[error("{message} (JSON-RPC error {code})")]
pub struct RpcError {
    /// One of the codes above.
    pub code: i64,
    /// What went wrong.
    pub message: String,
    /// Details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl RpcError {
    /// An error with `code` and `message`.
    pub fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// No such task (for this agent).
    pub fn task_not_found(id: &str) -> RpcError {
        RpcError::new(TASK_NOT_FOUND, format!("task `{id}` not found"))
    }

    /// The parameters do not fit the method.
    pub fn invalid_params(why: impl std::fmt::Display) -> RpcError {
        RpcError::new(INVALID_PARAMS, format!("invalid params: {why}"))
    }
}

/// Reads an inbox record's value as a request: `Err` holds the id to answer with
/// (`null` when none could be read) and the error.
pub fn parse(value: Option<&[u8]>, max_bytes: usize) -> Result<Request, (Value, RpcError)> {
    let bytes = value.unwrap_or_default();
    if bytes.len() > max_bytes {
        let why = format!(
            "request of {} bytes exceeds this agent's limit of {max_bytes} bytes",
            bytes.len()
        );
        return Err((Value::Null, RpcError::new(INVALID_REQUEST, why)));
    }
    let json: Value = serde_json::from_slice(bytes).map_err(|e| {
        (
            Value::Null,
            RpcError::new(PARSE_ERROR, format!("parse error: {e}")),
        )
    })?;
    // The id, if there is a usable one, so even an invalid request is answered to it.
    let id = match json.get("id") {
        Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
        _ => Value::Null,
    };
    let invalid = |why: String| (id.clone(), RpcError::new(INVALID_REQUEST, why));
    let request: Request = serde_json::from_value(json.clone())
        .map_err(|e| invalid(format!("invalid request: {e}")))?;
    if request.jsonrpc != VERSION {
        return Err(invalid(format!(
            "invalid request: jsonrpc must be \"{VERSION}\""
        )));
    }
    Ok(request)
}

/// The text of a request id, as carried in the `correlation_id` header.
pub fn id_text(id: &Value) -> Option<String> {
    match id {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(value: &[u8], max: usize) -> (Value, i64) {
        let (id, error) = parse(Some(value), max).unwrap_err();
        (id, error.code)
    }

    #[test]
    fn every_bad_input_is_an_error_to_answer() {
        assert_eq!(code(b"{not json", 100), (Value::Null, PARSE_ERROR));
        assert_eq!(code(b"[1, 2]", 100), (Value::Null, INVALID_REQUEST));
        assert_eq!(
            code(br#"{"jsonrpc":"1.0","id":7,"method":"GetTask"}"#, 100),
            (Value::from(7), INVALID_REQUEST)
        );
        assert_eq!(
            code(br#"{"jsonrpc":"2.0","id":"a","method":5}"#, 100),
            (Value::from("a"), INVALID_REQUEST)
        );
        assert_eq!(code(&[b' '; 101], 100), (Value::Null, INVALID_REQUEST));
        assert_eq!(code(b"", 100), (Value::Null, PARSE_ERROR));
        let ok = parse(
            Some(br#"{"jsonrpc":"2.0","id":"x","method":"GetTask"}"#),
            100,
        )
        .unwrap();
        assert_eq!((ok.method.as_str(), ok.params), ("GetTask", Value::Null));
    }
}
