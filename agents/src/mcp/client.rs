//! The requester side of the binding: MCP requests written to a server's request topic,
//! answers read from the requester's reply topic by correlation id.
//!
//! Used by the `tool_agent` (its `mcp_server` tools) and by embedders. Requests are
//! stateless (2026-07-28: the revision in `_meta`, no `initialize`), carry a deadline
//! and, for tool calls, an idempotency key (the correlation id, stable across re-runs
//! of the same call), so a redelivered request never runs a tool twice. The tool list
//! is cached and dropped when the server's notifications topic says it changed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use thiserror::Error;

use super::binding;
use crate::backend::follow::follow;
use crate::backend::{Backend, ProduceError};
use crate::event::{Event, OutRecord};
use crate::llm::tools::replies::Replies;

/// Most `tools/list` pages followed, so a server that keeps returning a cursor cannot
/// keep a caller looping.
const MAX_LIST_PAGES: usize = 32;

/// A request over topics failed.
#[derive(Debug, Error)]
pub enum McpCallError {
    /// The request could not be written.
    #[error("sending `{method}` to MCP server `{server}`: {source}")]
    Send {
        /// The server.
        server: String,
        /// The method.
        method: String,
        /// Why.
        source: ProduceError,
    },
    /// No answer within the timeout (the request stays on the log; a bridge serves it
    /// while its deadline lasts).
    #[error("MCP server `{server}` did not answer `{method}` within {ms} ms")]
    Timeout {
        /// The server.
        server: String,
        /// The method.
        method: String,
        /// The timeout.
        ms: u128,
    },
    /// The server (or the bridge) answered with a JSON-RPC error.
    #[error("MCP server `{server}` refused `{method}`: {message} (code {code})")]
    Rpc {
        /// The server.
        server: String,
        /// The method.
        method: String,
        /// JSON-RPC error code.
        code: i64,
        /// Its message.
        message: String,
    },
    /// The answer is not a JSON-RPC response.
    #[error(
        "MCP server `{server}` answered `{method}` with something that is not a JSON-RPC response"
    )]
    Malformed {
        /// The server.
        server: String,
        /// The method.
        method: String,
    },
}

impl McpCallError {
    /// Whether the server may simply be unreachable right now (nothing is wrong with
    /// the request): callers wait rather than give up.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            McpCallError::Send { .. } | McpCallError::Timeout { .. }
        )
    }
}

/// One MCP server reached over topics.
pub struct McpTopicClient<B: Backend> {
    backend: B,
    server: String,
    request_topic: String,
    reply_topic: String,
    replies: Replies,
    timeout: Duration,
    tools: Mutex<Option<Arc<Vec<Value>>>>,
    stale: Arc<AtomicBool>,
}

impl<B: Backend> std::fmt::Debug for McpTopicClient<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpTopicClient")
            .field("server", &self.server)
            .field("request_topic", &self.request_topic)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl<B: Backend> McpTopicClient<B> {
    /// A client of `server` whose requests go to `request_topic` and whose answers
    /// arrive on `reply_topic` (read by `replies`); it also follows the server's
    /// notifications topic to drop its tool list when the list changes.
    pub fn new(
        backend: B,
        server: &str,
        request_topic: &str,
        reply_topic: &str,
        replies: Replies,
        timeout: Duration,
    ) -> McpTopicClient<B> {
        let stale = Arc::new(AtomicBool::new(false));
        follow(
            backend.clone(),
            &format!("mcp.{server}.listeners"),
            vec![binding::notifications_topic(server)],
            Arc::downgrade(&stale),
            |stale: &AtomicBool, events: &[Event]| {
                let changed = events.iter().any(|e| {
                    e.payload()["method"].as_str() == Some("notifications/tools/list_changed")
                });
                if changed {
                    stale.store(true, Ordering::SeqCst);
                }
            },
        );
        McpTopicClient {
            backend,
            server: server.to_string(),
            request_topic: request_topic.to_string(),
            reply_topic: reply_topic.to_string(),
            replies,
            timeout,
            tools: Mutex::new(None),
            stale,
        }
    }

    /// The server's name.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// Sends one request and waits for its answer's `result`. `correlation_id` must be
    /// unique per request, and the same for a re-run of the same request (then a reply
    /// already on the reply topic answers at once); with `idempotent`, it is also the
    /// request's idempotency key.
    pub async fn request(
        &self,
        method: &str,
        mut params: Value,
        correlation_id: &str,
        idempotent: bool,
    ) -> Result<Value, McpCallError> {
        if !params.is_object() {
            params = json!({});
        }
        params["_meta"][binding::PROTOCOL_VERSION_META] = json!(binding::PROTOCOL_VERSION);
        let message =
            json!({"jsonrpc": "2.0", "id": correlation_id, "method": method, "params": params});
        let waiter = self.replies.register(correlation_id);
        if !waiter.is_answered() {
            let deadline = now_ms() + self.timeout.as_millis() as i64;
            let correlation = Bytes::copy_from_slice(correlation_id.as_bytes());
            let mut headers = vec![
                (
                    binding::REPLY_TO.to_string(),
                    Bytes::from(self.reply_topic.clone()),
                ),
                (binding::CORRELATION_ID.to_string(), correlation.clone()),
                (
                    binding::DEADLINE_MS.to_string(),
                    Bytes::from(deadline.to_string()),
                ),
            ];
            if idempotent {
                headers.push((binding::IDEMPOTENCY_KEY.to_string(), correlation.clone()));
            }
            let record = OutRecord {
                key: Some(correlation),
                value: Some(Bytes::from(message.to_string())),
                headers,
                ..OutRecord::default()
            };
            self.backend
                .produce(&self.request_topic, vec![record])
                .await
                .map_err(|source| McpCallError::Send {
                    server: self.server.clone(),
                    method: method.to_string(),
                    source,
                })?;
        }
        let reply = waiter
            .wait(self.timeout)
            .await
            .ok_or_else(|| McpCallError::Timeout {
                server: self.server.clone(),
                method: method.to_string(),
                ms: self.timeout.as_millis(),
            })?;
        let response = reply.value;
        if let Some(error) = response.get("error") {
            return Err(McpCallError::Rpc {
                server: self.server.clone(),
                method: method.to_string(),
                code: error["code"].as_i64().unwrap_or(binding::INTERNAL_ERROR),
                message: error["message"].as_str().unwrap_or_default().to_string(),
            });
        }
        response
            .get("result")
            .cloned()
            .ok_or_else(|| McpCallError::Malformed {
                server: self.server.clone(),
                method: method.to_string(),
            })
    }

    /// The server's tools (`tools/list`, every page), cached until the server says the
    /// list changed.
    pub async fn tools(&self) -> Result<Arc<Vec<Value>>, McpCallError> {
        let stale = self.stale.swap(false, Ordering::SeqCst);
        if !stale {
            if let Some(tools) = self.tools.lock().unwrap_or_else(|p| p.into_inner()).clone() {
                return Ok(tools);
            }
        }
        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let params = match &cursor {
                Some(cursor) => json!({"cursor": cursor}),
                None => json!({}),
            };
            let id = format!(
                "{}/tools/list/{}",
                self.server,
                uuid::Uuid::new_v4().simple()
            );
            let page = self.request("tools/list", params, &id, false).await?;
            tools.extend(page["tools"].as_array().cloned().unwrap_or_default());
            cursor = page["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        let tools = Arc::new(tools);
        *self.tools.lock().unwrap_or_else(|p| p.into_inner()) = Some(tools.clone());
        Ok(tools)
    }

    /// Calls tool `name`; `Ok(Err(text))` is the tool's own failure (`isError`), which
    /// a model gets to see.
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: &Value,
        correlation_id: &str,
    ) -> Result<Result<Value, String>, McpCallError> {
        let params = json!({"name": name, "arguments": arguments});
        let result = self
            .request("tools/call", params, correlation_id, true)
            .await?;
        Ok(tool_output(&result))
    }
}

/// What a `tools/call` result says: its structured content, else its text (as JSON
/// when it is JSON), or the error text when `isError`.
pub fn tool_output(result: &Value) -> Result<Value, String> {
    let texts: Vec<&str> = result["content"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["text"].as_str())
        .collect();
    if result["isError"].as_bool() == Some(true) {
        return Err(if texts.is_empty() {
            "the tool failed".to_string()
        } else {
            texts.join("\n")
        });
    }
    if let Some(structured) = result.get("structuredContent").filter(|s| !s.is_null()) {
        return Ok(structured.clone());
    }
    Ok(match texts.as_slice() {
        [one] => serde_json::from_str(one).unwrap_or_else(|_| json!(one)),
        many => json!(many.join("\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_output_prefers_structured_content_then_json_text() {
        let structured =
            json!({"content": [{"type": "text", "text": "x"}], "structuredContent": {"t": 3}});
        assert_eq!(tool_output(&structured), Ok(json!({"t": 3})));
        let text = json!({"content": [{"type": "text", "text": "{\"t\": 4}"}]});
        assert_eq!(tool_output(&text), Ok(json!({"t": 4})));
        let plain = json!({"content": [{"type": "text", "text": "sunny"}]});
        assert_eq!(tool_output(&plain), Ok(json!("sunny")));
        let failed =
            json!({"content": [{"type": "text", "text": "no such city"}], "isError": true});
        assert_eq!(tool_output(&failed), Err("no such city".to_string()));
    }
}
