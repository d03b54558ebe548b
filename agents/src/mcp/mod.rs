//! MCP over Kafka topics (docs/mcp-over-kafka.md): existing MCP servers served on
//! topics by a bridge, and a client that reaches them through topics.
//!
//! MCP assumes a point-to-point connection; over the log a request gains durability
//! (it waits on the topic while the server is down), fan-out to a swarm of bridges
//! sharing the request topic through a consumer group, replay and audit. `binding`
//! holds the names both sides agree on, `settings` the `[[mcp_servers]]` tables,
//! `connection` the bridge's rmcp session with a server (stdio or streamable HTTP),
//! `bridge` the agent that relays requests, `client` the requester side the
//! `tool_agent` uses.

pub mod binding;
mod bridge;
pub mod client;
mod connection;
pub mod settings;
pub mod tools;

pub use bridge::McpBridge;
pub use client::{McpCallError, McpTopicClient};
pub use connection::ConnectError;
pub use settings::{Endpoint, McpServerDef};

use crate::backend::Backend;
use crate::config::StartAgentsError;
use crate::runtime::{AgentHandle, Runtime, StartError};

/// Starts one bridge per `[[mcp_servers]]` table: its request topics and
/// notifications topic exist first, then its swarm joins group `mcp.<name>`. The
/// server itself is reached on the first request, so a server that is down at start
/// delays requests, not the process.
pub async fn start_bridges<B: Backend>(
    runtime: &Runtime<B>,
    servers: &[McpServerDef],
) -> Result<Vec<AgentHandle>, StartAgentsError> {
    let mut handles = Vec::with_capacity(servers.len());
    for server in servers {
        let endpoint = server.endpoint()?;
        let backend = runtime.backend().clone();
        let topics_error = |source| {
            StartAgentsError::Start(StartError::Topics {
                agent: server.agent_name(),
                source,
            })
        };
        for topic in server.request_topics() {
            backend
                .ensure_topic(&topic, -1, false)
                .await
                .map_err(topics_error)?;
        }
        // One partition: every client reads all of it.
        backend
            .ensure_topic(&binding::notifications_topic(&server.name), 1, false)
            .await
            .map_err(topics_error)?;
        let connection = connection::ServerConnection::new(&server.name, endpoint, backend);
        let bridge = McpBridge::new(
            &server.name,
            connection,
            server.request_timeout(),
            server.max_message_bytes(),
        );
        handles.push(runtime.start(server.spec(), bridge).await?);
        tracing::info!(server = %server.name, topics = ?server.request_topics(), "MCP bridge started");
    }
    Ok(handles)
}
