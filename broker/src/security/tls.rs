//! TLS for SSL and SASL_SSL listeners, with rustls: the broker's certificate and key
//! from one PEM file (Kafka's PEM keystore), client certificates checked against a PEM
//! truststore when `ssl.client.auth` asks for them.
//!
//! The configuration is reloadable: [`TlsContext::reload`] rebuilds it from the files
//! (on SIGHUP, and when their modification stamps change, see [`watch`]). Each
//! connection takes the configuration current at its accept, so new connections get
//! the new certificate and open ones keep theirs; files that do not build a
//! configuration leave the previous one in force.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::principal_mapping::{MappingError, PrincipalMapper};
use super::x509::{subject_dn, DnError};
use crate::authz::acl::ANONYMOUS;
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

/// Why a TLS client has no principal: the connection is closed, as Kafka fails it.
#[derive(Debug, Error)]
pub enum PrincipalError {
    /// The certificate's subject does not parse.
    #[error(transparent)]
    Subject(#[from] DnError),
    /// No `ssl.principal.mapping.rules` rule applies, or its replacement is invalid.
    #[error(transparent)]
    Mapping(#[from] MappingError),
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

/// The `ssl.*` settings a configuration is built from; fixed at start-up.
#[derive(Debug, Clone)]
struct TlsFiles {
    keystore: PathBuf,
    /// With `ssl.client.auth` other than `none`.
    truststore: Option<PathBuf>,
    client_auth: String,
}

impl TlsFiles {
    fn from_config(config: &BrokerConfig) -> Result<Self, TlsError> {
        let setting = |name: &str| config.value(name).map(|(v, _)| v).filter(|v| !v.is_empty());
        let keystore = setting("ssl.keystore.location").ok_or(TlsError::NoKeystore)?;
        let client_auth = setting("ssl.client.auth").unwrap_or_else(|| "none".to_string());
        let truststore = if client_auth == "none" {
            None
        } else {
            let path = setting("ssl.truststore.location")
                .ok_or_else(|| TlsError::NoTruststore(client_auth.clone()))?;
            Some(PathBuf::from(path))
        };
        Ok(TlsFiles {
            keystore: PathBuf::from(keystore),
            truststore,
            client_auth,
        })
    }

    /// The files, for change detection.
    fn paths(&self) -> Vec<&Path> {
        std::iter::once(self.keystore.as_path())
            .chain(self.truststore.as_deref())
            .collect()
    }

    /// A server configuration from the files as they are now.
    fn build(&self) -> Result<TlsAcceptor, TlsError> {
        let chain = certificates(&self.keystore)?;
        let key = PrivateKeyDer::from_pem_file(&self.keystore)
            .map_err(|e| pem_error(&self.keystore, format!("private key: {e}")))?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let builder = match &self.truststore {
            None => builder.with_no_client_auth(),
            Some(truststore) => {
                let mut roots = RootCertStore::empty();
                for cert in certificates(truststore)? {
                    roots.add(cert).map_err(|e| pem_error(truststore, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
                let verifier = if self.client_auth == "requested" {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                let verifier = verifier
                    .build()
                    .map_err(|e| TlsError::Rustls(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let server = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        Ok(TlsAcceptor::from(Arc::new(server)))
    }
}

/// What identifies a file's version: replaced (new inode), rewritten (mtime) or
/// resized, it differs.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    length: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: meta.modified().ok(),
        length: meta.len(),
        inode: meta.ino(),
    })
}

/// Every TLS listener's configuration, replaceable at runtime, and how a client
/// certificate becomes a principal.
pub struct TlsContext {
    files: TlsFiles,
    mapper: PrincipalMapper,
    current: RwLock<TlsAcceptor>,
    /// The files' stamps when the configuration was last (re)built or tried.
    stamps: Mutex<Vec<Option<FileStamp>>>,
}

impl std::fmt::Debug for TlsContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsContext")
            .field("files", &self.files)
            .field("mapper", &self.mapper)
            .finish_non_exhaustive()
    }
}

impl TlsContext {
    /// Builds the configuration from the `ssl.*` settings.
    pub fn new(config: &BrokerConfig, mapper: PrincipalMapper) -> Result<Self, TlsError> {
        let files = TlsFiles::from_config(config)?;
        let stamps = files.paths().into_iter().map(stamp).collect();
        let acceptor = files.build()?;
        Ok(TlsContext {
            files,
            mapper,
            current: RwLock::new(acceptor),
            stamps: Mutex::new(stamps),
        })
    }

    /// The configuration for a connection accepted now.
    pub fn acceptor(&self) -> TlsAcceptor {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds the configuration from the files; on error the current one stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let stamps: Vec<_> = self.files.paths().into_iter().map(stamp).collect();
        self.remember(stamps);
        let acceptor = self.files.build()?;
        match self.current.write() {
            Ok(mut current) => *current = acceptor,
            Err(poisoned) => *poisoned.into_inner() = acceptor,
        }
        Ok(())
    }

    /// Reloads if a file changed since the last attempt; `None` when none did.
    pub fn reload_if_changed(&self) -> Option<Result<(), TlsError>> {
        let now: Vec<_> = self.files.paths().into_iter().map(stamp).collect();
        let changed = match self.stamps.lock() {
            Ok(seen) => *seen != now,
            Err(poisoned) => *poisoned.into_inner() != now,
        };
        changed.then(|| self.reload())
    }

    fn remember(&self, stamps: Vec<Option<FileStamp>>) {
        match self.stamps.lock() {
            Ok(mut seen) => *seen = stamps,
            Err(poisoned) => *poisoned.into_inner() = stamps,
        }
    }

    /// The principal of an SSL client: `User:` and its certificate's subject mapped by
    /// `ssl.principal.mapping.rules`, or `User:ANONYMOUS` without a certificate.
    pub fn principal(
        &self,
        peer_certificates: Option<&[CertificateDer<'_>]>,
    ) -> Result<String, PrincipalError> {
        let Some(leaf) = peer_certificates.and_then(<[_]>::first) else {
            return Ok(ANONYMOUS.to_string());
        };
        let subject = subject_dn(leaf)?;
        Ok(format!("User:{}", self.mapper.name(&subject)?))
    }
}

/// Logs the outcome of a reload.
pub fn log_reload(outcome: &Result<(), TlsError>, cause: &str) {
    match outcome {
        Ok(()) => tracing::info!(cause, "TLS certificates reloaded; new connections use them"),
        Err(error) => {
            tracing::error!(cause, %error, "TLS reload failed; keeping the previous certificates")
        }
    }
}

/// Polls the keystore and truststore every `interval` and reloads when one changed,
/// until shutdown.
pub async fn watch(
    context: Arc<TlsContext>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let check = context.clone();
        let outcome = tokio::task::spawn_blocking(move || check.reload_if_changed()).await;
        if let Ok(Some(outcome)) = outcome {
            log_reload(&outcome, "file change");
        }
    }
}
