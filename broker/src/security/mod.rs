//! Security: listeners with Kafka's security protocols, TLS (rustls), SASL (PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512) and the SCRAM credential store behind both.
//!
//! Authorization (ACLs) is not implemented yet: an authenticated client may do
//! anything, as on a Kafka broker without an authorizer.

pub mod credentials;
pub mod listener;
pub mod sasl;
pub mod scram;
pub mod tls;
