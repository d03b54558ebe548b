//! Request bodies that are not JSON get JSON-RPC's own answer, a parse error (-32700,
//! HTTP 400), before rmcp sees them; rmcp alone would answer 415 Unsupported Media
//! Type with a plain-text message, which MCP clients do not expect.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::MAX_REQUEST_BYTES;

/// Reads a POST's body (at most [`MAX_REQUEST_BYTES`]) and passes it on only if it is
/// JSON; other methods pass untouched.
pub async fn json_rpc_parse_errors(request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_REQUEST_BYTES).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Payload Too Large: request body exceeds {MAX_REQUEST_BYTES} bytes"),
        )
            .into_response();
    };
    if let Err(error) = serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
        let body = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": { "code": -32700, "message": format!("Parse error: {error}") },
        });
        return (
            StatusCode::BAD_REQUEST,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}
