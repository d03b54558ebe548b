//! Kafka wire protocol for agentlog: frames in, frames out.
//!
//! This crate knows request headers, API versions, safe decoding limits and the record
//! batch header, and nothing about topics or storage. It wraps `kafka-protocol` for the
//! message bodies, and guards every body before that crate sees it (see [`guard`]).

pub mod batch;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
pub mod guard;
pub mod records;
pub mod request;
pub mod response;
pub mod versions;

pub use kafka_protocol;
