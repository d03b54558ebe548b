//! Security: listeners with Kafka's security protocols, TLS (rustls), SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) and the SCRAM credential store behind both.
//!
//! Authorization (ACLs) is [`crate::authz`]: the principal a connection authenticates
//! as here (`User:<name>`, or `User:ANONYMOUS`) is what it checks.

pub mod credentials;
pub mod listener;
pub mod sasl;
pub mod scram;
pub mod tls;
