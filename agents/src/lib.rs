//! agentlog's agent runtime: agents on the log, in-process and zero-copy, or on any
//! Kafka cluster.
//!
//! An [`Agent`] handles one [`Event`] at a time through a [`Context`] (emit, keyed state,
//! decisions, metrics). A [`Runtime`] hosts agents as swarms of group members on a
//! [`Backend`]: [`EmbeddedBackend`] calls the broker's logs and group coordinator in the
//! same process; [`KafkaBackend`] uses librdkafka against any cluster. Agent code never
//! knows which one it runs on.
//!
//! ```no_run
//! use agentlog_agents::{Agent, AgentSpec, Context, Event, HandlerError, Runtime};
//! use agentlog_agents::{KafkaBackend, KafkaConfig};
//!
//! struct Greeter;
//!
//! impl Agent for Greeter {
//!     async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
//!         let name = String::from_utf8_lossy(event.value.as_deref().unwrap_or_default());
//!         let seen = ctx.state_get(&name).and_then(|v| v.as_i64()).unwrap_or(0);
//!         ctx.state_put(&name, serde_json::json!(seen + 1));
//!         ctx.emit("greetings", event.key.clone(), "greeted", serde_json::json!({ "hello": name }));
//!         ctx.decide("greeted", serde_json::json!({ "times": seen + 1 }));
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! // Or `EmbeddedBackend::new(running_broker.broker.clone())`: same agent, in-process.
//! let backend = KafkaBackend::new(KafkaConfig {
//!     bootstrap: "localhost:9092".to_string(),
//!     properties: Default::default(),
//! })?;
//! let runtime = Runtime::new(backend);
//! let mut greeter = runtime.start(AgentSpec::new("greeter", &["names"]).instances(2), Greeter).await?;
//! greeter.scale(4).await; // the group rebalances
//! greeter.stop().await;
//! # Ok(())
//! # }
//! ```
//!
//! Module map: `agent` (the trait and context), `event`/`envelope` (records and the
//! CloudEvents-style envelope), `records` (zero-copy decoding and batch encoding),
//! `backend` (the seam and both implementations, plus the in-process group member and
//! assignors), `delivery` (retries, dead letters, output writes), `state`, `runtime`,
//! `builtins` (router, DLQ replayer), `config` (`[[agents]]`), `metrics`, `llm` (model
//! endpoints, durable calls, the `llm`, `llm_router` and `tool_agent` kinds, replay),
//! `queue` (`delivery = "queue"`: instances as a KIP-932 share group),
//! `workflow` (`aggregate`, the fan-in), `dispatch` (key-ordered concurrency), `rag`
//! (the vector index and its snapshots), `a2a` (A2A over topics: agent cards,
//! inboxes, the client), `uplink` (edge store-and-forward to a central cluster),
//! `exactly_once` (`processing = "exactly_once"`: each batch's outputs, state,
//! decisions and input offsets in one transaction).

#![warn(missing_docs)]

pub mod a2a;
pub mod agent;
pub mod backend;
mod batch;
pub mod builtins;
pub mod config;
pub mod delivery;
mod dispatch;
pub mod envelope;
pub mod event;
pub mod exactly_once;
pub mod inference;
pub mod jsonrpc;
pub mod llm;
pub mod mcp;
pub mod metrics;
pub mod queue;
pub mod rag;
pub mod records;
mod rejoin;
pub mod runtime;
pub mod state;
mod stream;
#[cfg(test)]
mod test_transactions;
pub mod uplink;
pub mod workflow;

pub use agent::{Agent, BatchError, Context, HandlerError};
pub use backend::{
    Backend, EmbeddedBackend, EventStream, KafkaBackend, KafkaConfig, Sink, Source, StartAt,
};
pub use delivery::RetryPolicy;
pub use envelope::Envelope;
pub use event::{Event, Header, OutRecord};
pub use exactly_once::Processing;
pub use runtime::{AgentHandle, AgentSpec, ReplayReport, Runtime};
