//! agentlog as an MCP server: `/mcp` on the HTTP listener, streamable HTTP (rmcp), so an
//! assistant can look at topics, consumer lag and agents' decisions, and, when allowed,
//! produce.
//!
//! The server is stateless (no `Mcp-Session-Id`): every POST is answered on its own, so
//! a restart or a second process behind a balancer loses nothing, and both the
//! `initialize` protocol versions and the 2026-07-28 `server/discover` one are served.
//! Off unless `mcp.server.enable`; read-only unless `mcp.server.read.only = false`; every
//! result is bounded by `mcp.server.max.records` and `mcp.server.max.bytes`.
//!
//! `tools` has the tools, `resources` one resource per topic, `decisions` the filters of
//! `search_decisions`, `output` how records are shown and results kept in bounds, `scan`
//! the bounded partition reads, `guard` the JSON-RPC parse errors.

pub(crate) mod decisions;
mod guard;
mod output;
mod resources;
mod scan;
mod tools;

use std::sync::Arc;

use agentlog_agents::EmbeddedBackend;
use agentlog_broker::{Broker, BrokerConfig};
use anyhow::Context;
use axum::Router;
use rmcp::model::{
    ContentBlock, IntoContents, ListResourcesResult, PaginatedRequestParams,
    ReadResourceRequestParams, ReadResourceResponse, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};

/// Largest JSON-RPC request body accepted (413 above it): room for a `produce` of
/// `max.records` modest records, far below what could hurt the process.
const MAX_REQUEST_BYTES: usize = 4 << 20;

/// The `mcp.server.*` settings, read once at start-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Whether `produce` is refused (`mcp.server.read.only`, the default).
    pub read_only: bool,
    /// Most records one call returns (`mcp.server.max.records`).
    pub max_records: usize,
    /// Most bytes of JSON one result carries (`mcp.server.max.bytes`).
    pub max_bytes: usize,
    /// `Host` header values answered (`mcp.server.allowed.hosts`).
    pub allowed_hosts: Vec<String>,
}

impl Settings {
    /// The settings when `mcp.server.enable` is true, `None` when the server is off.
    /// The values were validated when the configuration was read; this only converts.
    pub fn from_config(config: &BrokerConfig) -> anyhow::Result<Option<Settings>> {
        let value = |name: &str| {
            config
                .value(name)
                .map(|(value, _)| value)
                .with_context(|| format!("{name} is not a declared setting"))
        };
        let number = |name: &str| -> anyhow::Result<usize> {
            let text = value(name)?;
            text.parse()
                .with_context(|| format!("{name} = {text:?} is not a positive number"))
        };
        if value("mcp.server.enable")? != "true" {
            return Ok(None);
        }
        Ok(Some(Settings {
            read_only: value("mcp.server.read.only")? == "true",
            max_records: number("mcp.server.max.records")?,
            max_bytes: number("mcp.server.max.bytes")?,
            allowed_hosts: value("mcp.server.allowed.hosts")?
                .split(',')
                .map(str::trim)
                .filter(|host| !host.is_empty())
                .map(str::to_string)
                .collect(),
        }))
    }
}

/// The `/mcp` route. `broker` is `None` when agents run on an external Kafka cluster:
/// the server still answers, and every tool says it needs the in-process broker.
pub fn routes(settings: Settings, broker: Option<Arc<Broker>>) -> Router {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(MAX_REQUEST_BYTES)
        .with_allowed_hosts(settings.allowed_hosts.clone());
    let server = McpServer {
        settings: Arc::new(settings),
        backend: broker.map(EmbeddedBackend::new),
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn(guard::json_rpc_parse_errors))
}

/// One request's view of the broker; cloned per request (two `Arc`s).
#[derive(Debug, Clone)]
pub struct McpServer {
    settings: Arc<Settings>,
    backend: Option<EmbeddedBackend>,
}

impl McpServer {
    /// The in-process broker's backend, or the error every tool gives without one.
    fn backend(&self) -> Result<&EmbeddedBackend, ToolError> {
        self.backend.as_ref().ok_or(ToolError::NoBroker)
    }
}

/// Why a tool call or resource read failed, in words a person (or a model) can act on.
/// Tool errors reach the client as results with `isError: true`, not protocol errors.
#[derive(Debug)]
pub enum ToolError {
    /// Agents run on an external Kafka cluster: there is no broker in this process.
    NoBroker,
    /// `produce` while `mcp.server.read.only` is true.
    ReadOnly,
    /// No such topic.
    UnknownTopic(String),
    /// An argument is out of range or inconsistent with the others.
    BadArgument(String),
    /// The broker failed to read or write.
    Broker(String),
}

impl std::fmt::Display for ToolError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ToolError::NoBroker => f.write_str(
                "not available when agents run on an external Kafka cluster \
                 (backend = \"kafka\"): this process has no broker to look at",
            ),
            ToolError::ReadOnly => f.write_str(
                "this MCP server is read-only (mcp.server.read.only = true); \
                 set mcp.server.read.only = false to allow produce",
            ),
            ToolError::UnknownTopic(topic) => write!(f, "topic `{topic}` does not exist"),
            ToolError::BadArgument(why) => write!(f, "bad argument: {why}"),
            ToolError::Broker(why) => write!(f, "broker error: {why}"),
        }
    }
}

impl std::error::Error for ToolError {}

impl IntoContents for ToolError {
    fn into_contents(self) -> Vec<ContentBlock> {
        vec![ContentBlock::text(self.to_string())]
    }
}

#[rmcp::tool_handler]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        let mode = if self.settings.read_only {
            "This server is read-only."
        } else {
            "produce writes records."
        };
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_resources()
                .build(),
        )
        .with_server_info(rmcp::model::Implementation::new(
            "agentlog",
            env!("CARGO_PKG_VERSION"),
        ))
        .with_instructions(format!(
            "agentlog: a Kafka-compatible log and agent runtime. Tools list and describe \
             topics, read records, show consumer-group lag and search agents' decisions \
             (agent.decisions.<agent>). Each topic is a resource agentlog://topics/<name>. \
             Results hold at most {} records and {} bytes. {mode}",
            self.settings.max_records, self.settings.max_bytes
        ))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(self.topic_resources()))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.read_topic_resource(&request.uri).await.map(Into::into)
    }
}
