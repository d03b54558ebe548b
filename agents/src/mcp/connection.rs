//! The bridge's side of one MCP server: an rmcp client session over stdio (a child
//! process) or streamable HTTP, opened on first use and again after it broke, and
//! the server's notifications relayed onto topics.
//!
//! One session per server per process, shared by every bridge member: rmcp
//! multiplexes concurrent requests over it, and a stdio server is one process however
//! many members the swarm has here. When the session breaks (the child died, the URL
//! stopped answering), the request in hand fails as *unavailable*: the runtime retries
//! it with backoff and keeps its place on the log, and the next attempt reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{NotificationContext, Peer, RoleClient, RunningService};
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{json, Value};
use thiserror::Error;

use super::binding::{self, ReplyRoute};
use super::settings::Endpoint;
use crate::backend::Backend;

/// The server could not be reached.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The stdio server's process could not be started.
    #[error("starting MCP server `{server}` ({program}): {source}")]
    Spawn {
        /// The server.
        server: String,
        /// Its program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The session could not be initialized.
    #[error("MCP server `{server}` did not complete initialization: {reason}")]
    Initialize {
        /// The server.
        server: String,
        /// Why.
        reason: String,
    },
}

/// Where the progress of one relayed request goes: the requester's reply route and
/// the token the requester chose (rmcp gives the server a token of its own).
#[derive(Debug, Clone)]
pub(crate) struct ProgressRoute {
    pub route: ReplyRoute,
    pub token: Value,
}

/// Progress routes by the token rmcp gave the server.
pub(crate) type ProgressRoutes = Arc<Mutex<HashMap<ProgressToken, ProgressRoute>>>;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Relays what the server sends on its own: progress to the requester's reply topic,
/// list changes and log messages to the server's notifications topic.
pub(crate) struct NotificationRelay<B: Backend> {
    server: String,
    backend: B,
    progress: ProgressRoutes,
}

impl<B: Backend> NotificationRelay<B> {
    async fn broadcast(&self, method: &str, params: Option<Value>) {
        let mut message = json!({"jsonrpc": "2.0", "method": method});
        if let Some(params) = params {
            message["params"] = params;
        }
        let record = crate::event::OutRecord {
            value: Some(bytes::Bytes::from(message.to_string())),
            headers: vec![(
                binding::MESSAGE_KIND.to_string(),
                bytes::Bytes::from_static(b"notification"),
            )],
            ..crate::event::OutRecord::default()
        };
        let topic = binding::notifications_topic(&self.server);
        if let Err(error) = self.backend.produce(&topic, vec![record]).await {
            tracing::warn!(server = %self.server, %error, method, "relaying a notification failed");
        }
    }
}

impl<B: Backend> ClientHandler for NotificationRelay<B> {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let Some(target) = lock(&self.progress).get(&params.progress_token).cloned() else {
            return;
        };
        let mut relayed = json!({"progressToken": target.token, "progress": params.progress});
        if let Some(total) = params.total {
            relayed["total"] = json!(total);
        }
        if let Some(message) = params.message {
            relayed["message"] = json!(message);
        }
        let message =
            json!({"jsonrpc": "2.0", "method": "notifications/progress", "params": relayed});
        let record = target.route.record(&message, "notification");
        if let Err(error) = self
            .backend
            .produce(&target.route.topic, vec![record])
            .await
        {
            tracing::warn!(server = %self.server, %error, "relaying progress failed");
        }
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.broadcast("notifications/tools/list_changed", None)
            .await;
    }

    async fn on_resource_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.broadcast("notifications/resources/list_changed", None)
            .await;
    }

    async fn on_prompt_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.broadcast("notifications/prompts/list_changed", None)
            .await;
    }
}

type Session<B> = RunningService<RoleClient, NotificationRelay<B>>;

/// A live session: the peer to send requests on and what the server said of itself.
#[derive(Clone)]
pub(crate) struct Live {
    pub peer: Peer<RoleClient>,
    /// The server's negotiated info (capabilities, serverInfo, instructions), as JSON.
    pub info: Value,
}

/// One server's session, opened lazily and reopened after it broke.
pub(crate) struct ServerConnection<B: Backend> {
    server: String,
    endpoint: Endpoint,
    backend: B,
    pub(crate) progress: ProgressRoutes,
    session: tokio::sync::Mutex<Option<Session<B>>>,
}

impl<B: Backend> ServerConnection<B> {
    pub fn new(server: &str, endpoint: Endpoint, backend: B) -> ServerConnection<B> {
        ServerConnection {
            server: server.to_string(),
            endpoint,
            backend,
            progress: ProgressRoutes::default(),
            session: tokio::sync::Mutex::new(None),
        }
    }

    /// The live session, opening one when there is none or the last one closed.
    pub async fn live(&self) -> Result<Live, ConnectError> {
        let mut session = self.session.lock().await;
        if session.as_ref().is_none_or(|s| s.is_closed()) {
            if let Some(old) = session.take() {
                // Reaps the dead child or closes the HTTP session before reopening.
                let _ = old.cancel().await;
            }
            *session = Some(self.open().await?);
            tracing::info!(server = %self.server, "MCP server session opened");
        }
        let Some(open) = session.as_ref() else {
            return Err(ConnectError::Initialize {
                server: self.server.clone(),
                reason: "no session".to_string(),
            });
        };
        let info = open
            .peer()
            .peer_info()
            .and_then(|info| serde_json::to_value(&*info).ok())
            .unwrap_or(Value::Null);
        Ok(Live {
            peer: open.peer().clone(),
            info,
        })
    }

    /// Drops the session after a transport failure, so the next request reconnects.
    pub async fn broken(&self) {
        if let Some(old) = self.session.lock().await.take() {
            let _ = old.cancel().await;
        }
    }

    async fn open(&self) -> Result<Session<B>, ConnectError> {
        let relay = NotificationRelay {
            server: self.server.clone(),
            backend: self.backend.clone(),
            progress: self.progress.clone(),
        };
        let initialize = |e: rmcp::service::ClientInitializeError| ConnectError::Initialize {
            server: self.server.clone(),
            reason: e.to_string(),
        };
        match &self.endpoint {
            Endpoint::Stdio {
                program,
                args,
                env,
                cwd,
            } => {
                let mut command = tokio::process::Command::new(program);
                command.args(args).envs(env);
                if let Some(cwd) = cwd {
                    command.current_dir(cwd);
                }
                let transport =
                    TokioChildProcess::new(command).map_err(|source| ConnectError::Spawn {
                        server: self.server.clone(),
                        program: program.clone(),
                        source,
                    })?;
                relay.serve(transport).await.map_err(initialize)
            }
            Endpoint::Http { url } => {
                let transport = StreamableHttpClientTransport::from_uri(url.as_str());
                relay.serve(transport).await.map_err(initialize)
            }
        }
    }
}
