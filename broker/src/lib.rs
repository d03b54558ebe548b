//! agentlog's broker: storage, topics, request handlers and the tokio server.
//!
//! Start one with [`RunningBroker::start`], or, in tests, [`EmbeddedBroker::start`].

pub mod authz;
pub mod broker;
pub mod config;
pub mod disk_floor;
pub mod embedded;
pub mod groups;
pub mod handlers;
pub mod lifecycle;
pub mod memory;
pub mod partition;
pub mod producers;
pub mod quotas;
pub mod security;
pub mod server;
pub mod share;
pub mod storage;
pub mod topics;
pub mod transactions;

pub use broker::{Broker, RunningBroker, StartError};
pub use config::BrokerConfig;
pub use embedded::EmbeddedBroker;
