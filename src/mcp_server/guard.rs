//! Request bodies that are not JSON get JSON-RPC's own answer, a parse error (-32700,
//! HTTP 400), before rmcp sees them; rmcp alone would answer 415 Unsupported Media
//! Type with a plain-text message, which MCP clients do not expect.

use std::future::poll_fn;
use std::pin::Pin;
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
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
    let Some(bytes) = read_body(body, MAX_REQUEST_BYTES).await else {
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

/// How much of a too-large body is still read (and dropped) before the 413 is sent,
/// and for how long at most.
const DRAIN_BYTES: usize = 8 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The body if it is at most `limit` bytes (`None` when larger or broken). Past the
/// limit it goes on reading and dropping up to [`DRAIN_BYTES`] more: an answer sent
/// while the client still has bytes in flight is lost to the TCP reset that closing the
/// connection then causes, and the client would see a dropped connection instead of
/// the 413. Bounded, so a client streaming gigabytes costs at most that much reading.
async fn read_body(mut body: Body, limit: usize) -> Option<Bytes> {
    let mut buffer = Vec::new();
    loop {
        let frame = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await;
        match frame {
            None => return Some(Bytes::from(buffer)),
            Some(Err(_)) => return None,
            Some(Ok(frame)) => {
                let Some(data) = frame.data_ref() else {
                    continue;
                };
                if buffer.len() + data.len() > limit {
                    break;
                }
                buffer.extend_from_slice(data);
            }
        }
    }
    drop(buffer);
    let mut drained = 0usize;
    let drain = async {
        while drained < DRAIN_BYTES {
            match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
                Some(Ok(frame)) => drained += frame.data_ref().map_or(0, Bytes::len),
                _ => break,
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, drain).await;
    None
}
