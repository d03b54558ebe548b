//! Kafka-style listeners: `PROTOCOL://host:port`, each with the security protocol its
//! clients must speak, and the address advertised to the clients of each.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::config::ConfigError;

/// Kafka's `security.protocol` values, which name what a listener expects on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SecurityProtocol {
    /// Kafka requests straight on TCP, no authentication.
    Plaintext,
    /// TLS, then Kafka requests; the client is whoever its certificate says (if any).
    Ssl,
    /// SASL authentication on TCP, then Kafka requests.
    SaslPlaintext,
    /// TLS, then SASL authentication, then Kafka requests.
    SaslSsl,
}

impl SecurityProtocol {
    /// Whether connections start with a TLS handshake.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether a client must authenticate with SASL before anything but ApiVersions.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }

    /// Kafka's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecurityProtocol {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        match text.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(SecurityProtocol::Plaintext),
            "SSL" => Ok(SecurityProtocol::Ssl),
            "SASL_PLAINTEXT" => Ok(SecurityProtocol::SaslPlaintext),
            "SASL_SSL" => Ok(SecurityProtocol::SaslSsl),
            _ => Err(()),
        }
    }
}

/// One address to accept clients on, and what they must speak there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The security protocol of every connection accepted here.
    pub protocol: SecurityProtocol,
    /// Where to bind.
    pub address: SocketAddr,
}

impl Listener {
    /// A PLAINTEXT listener, what `--listen` and a bare `host:port` mean.
    pub fn plaintext(address: SocketAddr) -> Self {
        Listener {
            protocol: SecurityProtocol::Plaintext,
            address,
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.protocol, self.address)
    }
}

/// Splits `PROTOCOL://rest` (PLAINTEXT when there is no scheme).
fn split_scheme(part: &str) -> Result<(SecurityProtocol, &str), ConfigError> {
    match part.split_once("://") {
        None => Ok((SecurityProtocol::Plaintext, part)),
        Some((scheme, rest)) => scheme
            .parse()
            .map(|protocol| (protocol, rest))
            .map_err(|()| ConfigError::Address(part.to_string())),
    }
}

/// Parses `listeners`: comma-separated `[PROTOCOL://]ip:port`.
pub fn parse_listeners(value: &str) -> Result<Vec<Listener>, ConfigError> {
    value
        .split(',')
        .map(|part| {
            let part = part.trim();
            let (protocol, address) = split_scheme(part)?;
            let address = address
                .parse::<SocketAddr>()
                .map_err(|_| ConfigError::Address(part.to_string()))?;
            Ok(Listener { protocol, address })
        })
        .collect()
}

/// Parses `advertised.listeners`: comma-separated `[PROTOCOL://]host:port`, at most one
/// per protocol (a bare `host:port` is the PLAINTEXT listener's, as `--advertise` was).
pub fn parse_advertised(value: &str) -> Result<Vec<(SecurityProtocol, String)>, ConfigError> {
    let mut out: Vec<(SecurityProtocol, String)> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let (protocol, address) = split_scheme(part)?;
        let valid = address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid || out.iter().any(|(p, _)| *p == protocol) {
            return Err(ConfigError::Address(part.to_string()));
        }
        out.push((protocol, address.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_and_advertised_listeners_parse_kafka_style() {
        let listeners =
            parse_listeners("PLAINTEXT://127.0.0.1:0, sasl_ssl://[::1]:9093,127.0.0.1:1").unwrap();
        assert_eq!(listeners[0].protocol, SecurityProtocol::Plaintext);
        assert_eq!(listeners[1].protocol, SecurityProtocol::SaslSsl);
        assert_eq!(listeners[1].address.port(), 9093);
        assert_eq!(listeners[2].protocol, SecurityProtocol::Plaintext);
        assert!(parse_listeners("TLS://127.0.0.1:1").is_err());
        assert!(parse_listeners("SSL://example.com:1").is_err());

        let advertised = parse_advertised("broker:9092,SASL_SSL://broker:9093").unwrap();
        assert_eq!(
            advertised,
            vec![
                (SecurityProtocol::Plaintext, "broker:9092".to_string()),
                (SecurityProtocol::SaslSsl, "broker:9093".to_string())
            ]
        );
        assert!(parse_advertised("SSL://a:1,SSL://b:2").is_err());
        assert!(parse_advertised("SSL://a").is_err());
    }
}
