//! agentlog's agent runtime: agents on the log, in-process and zero-copy, or on any
//! Kafka cluster.
//!
//! An [`Agent`] handles one [`Event`] at a time through a [`Context`] (emit, keyed state,
//! decisions, metrics). A [`Runtime`] hosts agents as swarms of group members on a
//! [`Backend`]: [`EmbeddedBackend`] calls the broker's logs and group coordinator in the
//! same process; [`KafkaBackend`] uses librdkafka against any cluster. Agent code never
//! knows which one it runs on.
//!
//! Module map: `agent` (the trait and context), `event`/`envelope` (records and the
//! CloudEvents-style envelope), `records` (zero-copy decoding and batch encoding),
//! `backend` (the seam and both implementations, plus the in-process group member and
//! assignors), `delivery` (retries, dead letters, output writes), `state`, `runtime`,
//! `builtins` (router, DLQ replayer), `config` (`[[agents]]`), `metrics`.

#![warn(missing_docs)]

pub mod agent;
pub mod backend;
pub mod builtins;
pub mod config;
pub mod delivery;
pub mod envelope;
pub mod event;
pub mod metrics;
pub mod records;
pub mod runtime;
pub mod state;

pub use agent::{Agent, Context, HandlerError};
pub use backend::{Backend, EmbeddedBackend, KafkaBackend, KafkaConfig, Sink, Source, StartAt};
pub use delivery::RetryPolicy;
pub use envelope::Envelope;
pub use event::{Event, Header, OutRecord};
pub use runtime::{AgentHandle, AgentSpec, ReplayReport, Runtime};
