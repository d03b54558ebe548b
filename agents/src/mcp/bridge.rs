//! The bridge: an agent (`mcp.<server>`) that serves an existing MCP server on its
//! request topics, one JSON-RPC message per record, answers on each requester's reply
//! topic.
//!
//! The bridge is stateless towards requesters, as the 2026-07-28 revision is: it
//! keeps its own session with the server and answers `initialize` (2025-11-25
//! requesters) and `server/discover` (2026-07-28 requesters) from what the server
//! said when that session opened; every other request is relayed. The answer is an
//! output of the handler, so it is durable before the request's offset is committed
//! (at-least-once); a request whose server is down fails as *unavailable*, is retried
//! with backoff and stays on the log until the server is back, and is then served if
//! its deadline has not passed. A request with an idempotency key is answered once:
//! the answer is kept in the bridge's keyed state and a duplicate gets it back
//! without reaching the server.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmcp::model::{ClientNotification, ClientRequest, RequestId};
use rmcp::service::{PeerRequestOptions, ServiceError};
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::binding::{self, Incoming, ReplyRoute};
use super::connection::{lock, ProgressRoute, ServerConnection};
use crate::agent::{Agent, Context, HandlerError};
use crate::backend::Backend;
use crate::event::Event;

/// Cancellations remembered for requests not seen yet (they may sit on another
/// partition, behind other requests).
const REMEMBERED_CANCELLATIONS: usize = 4096;

/// Requests being relayed and cancellations that arrived first, by (reply topic,
/// JSON-RPC id): the pair a requester's `notifications/cancelled` names.
#[derive(Debug, Default)]
struct Cancellations {
    running: HashMap<(String, String), Arc<Notify>>,
    early: HashSet<(String, String)>,
    early_order: VecDeque<(String, String)>,
}

impl Cancellations {
    fn remember_early(&mut self, request: (String, String)) {
        if self.early.insert(request.clone()) {
            self.early_order.push_back(request);
            if self.early_order.len() > REMEMBERED_CANCELLATIONS {
                if let Some(oldest) = self.early_order.pop_front() {
                    self.early.remove(&oldest);
                }
            }
        }
    }
}

/// The bridge agent of one server.
pub struct McpBridge<B: Backend> {
    server: String,
    connection: ServerConnection<B>,
    request_timeout: Duration,
    max_message_bytes: usize,
    cancellations: Mutex<Cancellations>,
}

impl<B: Backend> std::fmt::Debug for McpBridge<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpBridge")
            .field("server", &self.server)
            .finish_non_exhaustive()
    }
}

fn id_text(id: &Value) -> String {
    match id {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl<B: Backend> McpBridge<B> {
    pub(crate) fn new(
        server: &str,
        connection: ServerConnection<B>,
        request_timeout: Duration,
        max_message_bytes: usize,
    ) -> McpBridge<B> {
        McpBridge {
            server: server.to_string(),
            connection,
            request_timeout,
            max_message_bytes,
            cancellations: Mutex::new(Cancellations::default()),
        }
    }

    /// Answers on the requester's reply topic (written with the handler's outputs).
    fn answer(&self, ctx: &mut Context, route: &ReplyRoute, message: Value) {
        let mut text = message.to_string();
        if text.len() > self.max_message_bytes {
            let too_large = binding::error(
                message["id"].clone(),
                binding::MESSAGE_TOO_LARGE,
                &format!(
                    "the server's answer is {} bytes; this bridge relays at most {}",
                    text.len(),
                    self.max_message_bytes
                ),
            );
            text = too_large.to_string();
        }
        ctx.emit_raw(&route.topic, route.record_of_text(text, "response"));
    }

    fn cancel(&self, event: &Event, params: &Value) {
        let Some(id) = params.get("requestId") else {
            return;
        };
        let request = (ReplyRoute::of(event, id).topic, id_text(id));
        let mut cancellations = lock(&self.cancellations);
        match cancellations.running.get(&request) {
            Some(running) => running.notify_one(),
            None => cancellations.remember_early(request),
        }
    }

    /// What this bridge answers itself: the handshake of either revision and `ping`.
    async fn local_answer(
        &self,
        method: &str,
        params: &Value,
    ) -> Result<Option<Value>, HandlerError> {
        match method {
            "ping" => Ok(Some(json!({}))),
            "initialize" | "server/discover" => {
                let live = self.live().await?;
                let info = live.info;
                Ok(Some(if method == "initialize" {
                    let version = binding::requested_version(method, params)
                        .filter(|v| *v != binding::PROTOCOL_VERSION)
                        .unwrap_or(binding::PROTOCOL_VERSIONS[1]);
                    json!({
                        "protocolVersion": version,
                        "capabilities": info["capabilities"],
                        "serverInfo": info["serverInfo"],
                        "instructions": info["instructions"],
                    })
                } else {
                    json!({
                        "resultType": "complete",
                        "supportedVersions": binding::PROTOCOL_VERSIONS,
                        "capabilities": info["capabilities"],
                        "instructions": info["instructions"],
                        "ttlMs": 0,
                        "cacheScope": "public",
                        "_meta": {"io.modelcontextprotocol/serverInfo": info["serverInfo"]},
                    })
                }))
            }
            _ => Ok(None),
        }
    }

    async fn live(&self) -> Result<super::connection::Live, HandlerError> {
        self.connection.live().await.map_err(|e| {
            HandlerError::unavailable(format!("MCP server `{}` is unavailable: {e}", self.server))
        })
    }

    /// Relays one request to the server; `None` when it was cancelled (no answer then,
    /// as MCP asks).
    async fn relay(
        &self,
        route: &ReplyRoute,
        id: &Value,
        method: &str,
        params: &Value,
        wait: Duration,
    ) -> Result<Option<Value>, HandlerError> {
        let mut call = json!({"method": method});
        if !params.is_null() {
            call["params"] = binding::for_session(params);
        }
        let request: ClientRequest = match serde_json::from_value(call) {
            Ok(request) => request,
            Err(e) => {
                return Ok(Some(binding::error(
                    id.clone(),
                    binding::INVALID_PARAMS,
                    &format!("invalid params for `{method}`: {e}"),
                )))
            }
        };
        let live = self.live().await?;
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(wait);
        let handle = match live.peer.send_cancellable_request(request, options).await {
            Ok(handle) => handle,
            Err(error) => return self.failed(id, error).await,
        };
        let server_id: RequestId = handle.id.clone();
        if let Some(token) = params.get("_meta").and_then(|m| m.get("progressToken")) {
            lock(&self.connection.progress).insert(
                handle.progress_token.clone(),
                ProgressRoute {
                    route: route.clone(),
                    token: token.clone(),
                },
            );
        }
        let key = (route.topic.clone(), id_text(id));
        let cancelled = Arc::new(Notify::new());
        lock(&self.cancellations)
            .running
            .insert(key.clone(), cancelled.clone());
        let progress_token = handle.progress_token.clone();
        let outcome = tokio::select! {
            response = handle.await_response() => Some(response),
            () = cancelled.notified() => None,
        };
        lock(&self.cancellations).running.remove(&key);
        lock(&self.connection.progress).remove(&progress_token);
        match outcome {
            Some(Ok(result)) => match serde_json::to_value(&result) {
                Ok(result) => Ok(Some(binding::result(id.clone(), result))),
                Err(e) => Ok(Some(binding::error(
                    id.clone(),
                    binding::INTERNAL_ERROR,
                    &format!("the server's answer cannot be encoded: {e}"),
                ))),
            },
            Some(Err(error)) => self.failed(id, error).await,
            None => {
                // Built from JSON: rmcp's notification structs are non-exhaustive.
                let cancel = json!({
                    "method": "notifications/cancelled",
                    "params": {"requestId": server_id, "reason": "cancelled by the requester"},
                });
                if let Ok(notification) = serde_json::from_value::<ClientNotification>(cancel) {
                    let _ = live.peer.send_notification(notification).await;
                }
                Ok(None)
            }
        }
    }

    /// A relayed request failed: the server's own error goes back to the requester; a
    /// broken session makes the request wait for the server (unavailable).
    async fn failed(&self, id: &Value, error: ServiceError) -> Result<Option<Value>, HandlerError> {
        match error {
            ServiceError::McpError(e) => {
                let mut response = binding::error(id.clone(), i64::from(e.code.0), &e.message);
                if let Some(data) = e.data {
                    response["error"]["data"] = data;
                }
                Ok(Some(response))
            }
            ServiceError::Timeout { timeout } => Ok(Some(binding::error(
                id.clone(),
                binding::INTERNAL_ERROR,
                &format!(
                    "MCP server `{}` did not answer within {} ms",
                    self.server,
                    timeout.as_millis()
                ),
            ))),
            ServiceError::Cancelled { .. } => Ok(None),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                self.connection.broken().await;
                Err(HandlerError::unavailable(format!(
                    "MCP server `{}` went away: {error}",
                    self.server
                )))
            }
            other => Ok(Some(binding::error(
                id.clone(),
                binding::INTERNAL_ERROR,
                &format!("relaying to MCP server `{}` failed: {other}", self.server),
            ))),
        }
    }

    async fn request(
        &self,
        event: &Event,
        ctx: &mut Context,
        id: Value,
        method: String,
        params: Value,
    ) -> Result<(), HandlerError> {
        let route = ReplyRoute::of(event, &id);
        let early = (route.topic.clone(), id_text(&id));
        if lock(&self.cancellations).early.remove(&early) {
            ctx.metric("mcp_cancelled", 1);
            return Ok(());
        }
        let remembered = event
            .header_str(binding::IDEMPOTENCY_KEY)
            .map(|key| format!("answered/{key}"));
        if let Some(answer) = remembered.as_deref().and_then(|k| ctx.state_get(k)) {
            // A duplicate delivery: the same answer, the server not asked again.
            ctx.metric("mcp_duplicates", 1);
            self.answer(ctx, &route, answer);
            return Ok(());
        }
        let mut wait = self.request_timeout;
        if let Some(deadline) = event
            .header_str(binding::DEADLINE_MS)
            .and_then(|d| d.parse::<i64>().ok())
        {
            let left = deadline - now_ms();
            if left <= 0 {
                ctx.metric("mcp_expired", 1);
                let message = format!(
                    "the request's deadline passed {} ms before a bridge could serve it",
                    -left
                );
                let expired = binding::error(id, binding::REQUEST_EXPIRED, &message);
                self.answer(ctx, &route, expired);
                return Ok(());
            }
            wait = wait.min(Duration::from_millis(left as u64));
        }
        let answer = match self.local_answer(&method, &params).await? {
            Some(result) => Some(binding::result(id.clone(), result)),
            None => self.relay(&route, &id, &method, &params, wait).await?,
        };
        let Some(answer) = answer else {
            ctx.metric("mcp_cancelled", 1);
            return Ok(());
        };
        if answer.get("error").is_some() {
            ctx.metric("mcp_errors", 1);
        }
        if let Some(key) = remembered {
            ctx.state_put(&key, answer.clone());
        }
        self.answer(ctx, &route, answer);
        Ok(())
    }
}

impl<B: Backend> Agent for McpBridge<B> {
    fn kind(&self) -> &str {
        "mcp_bridge"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        match binding::parse(event.value.as_deref(), self.max_message_bytes) {
            Incoming::Request { id, method, params } => {
                self.request(event, ctx, id, method, params).await
            }
            Incoming::Notification { method, params } => {
                if method == "notifications/cancelled" {
                    self.cancel(event, &params);
                }
                // Anything else (`notifications/initialized`, ...) concerns a session,
                // and the bridge keeps none with requesters.
                Ok(())
            }
            Incoming::Invalid(Some(response)) => {
                ctx.metric("mcp_errors", 1);
                let route = ReplyRoute::of(event, &response["id"]);
                self.answer(ctx, &route, response);
                Ok(())
            }
            Incoming::Invalid(None) => {
                ctx.metric("mcp_errors", 1);
                Ok(())
            }
        }
    }
}
