//! TLS for SSL and SASL_SSL listeners, with rustls: the broker's certificate and key
//! from one PEM file (Kafka's PEM keystore), client certificates checked against a PEM
//! truststore when `ssl.client.auth` asks for them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

use crate::config::BrokerConfig;

/// Why TLS could not be set up; each names the file or setting to fix.
#[derive(Debug, Error)]
pub enum TlsError {
    /// A TLS listener is configured but no keystore.
    #[error("an SSL or SASL_SSL listener needs ssl.keystore.location (a PEM file with the certificate chain and private key)")]
    NoKeystore,
    /// `ssl.client.auth` is on but there is no truststore to check clients against.
    #[error("ssl.client.auth = {0} needs ssl.truststore.location (PEM CA certificates)")]
    NoTruststore(String),
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// rustls refused the combination (a key that does not match the certificate, say).
    #[error("TLS setup: {0}")]
    Rustls(String),
}

fn pem_error(path: &Path, what: impl ToString) -> TlsError {
    TlsError::Pem {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| pem_error(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(pem_error(path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Builds the acceptor every TLS listener shares, from the `ssl.*` settings.
pub fn acceptor(config: &BrokerConfig) -> Result<TlsAcceptor, TlsError> {
    let keystore = config
        .value("ssl.keystore.location")
        .map(|(v, _)| v)
        .filter(|v| !v.is_empty())
        .ok_or(TlsError::NoKeystore)?;
    let keystore = Path::new(&keystore);
    let chain = certificates(keystore)?;
    let key = PrivateKeyDer::from_pem_file(keystore)
        .map_err(|e| pem_error(keystore, format!("private key: {e}")))?;
    let client_auth = config
        .value("ssl.client.auth")
        .map_or_else(|| "none".to_string(), |(v, _)| v);
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = if client_auth == "none" {
        builder.with_no_client_auth()
    } else {
        let truststore = config
            .value("ssl.truststore.location")
            .map(|(v, _)| v)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| TlsError::NoTruststore(client_auth.clone()))?;
        let truststore = Path::new(&truststore);
        let mut roots = RootCertStore::empty();
        for cert in certificates(truststore)? {
            roots.add(cert).map_err(|e| pem_error(truststore, e))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
        let verifier = if client_auth == "requested" {
            verifier.allow_unauthenticated()
        } else {
            verifier
        };
        let verifier = verifier
            .build()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}
