//! Security: listeners with Kafka's security protocols, TLS (rustls), SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) and the SCRAM credential store behind both.
//!
//! Authorization (ACLs) is [`crate::authz`]: the principal a connection authenticates
//! as here (`User:<name>` from SASL, `User:<mapped subject>` from an SSL client
//! certificate, or `User:ANONYMOUS`) is what it checks.

pub mod credentials;
pub mod listener;
pub mod login_guard;
pub mod principal_mapping;
pub mod sasl;
pub mod scram;
pub mod tls;
pub mod x509;
