//! The broker as a value: its settings, metadata store and topics, shared by every
//! connection (and, later, by in-process agents), plus starting and stopping it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::BrokerConfig;
use crate::groups::{GroupCoordinator, GroupSettings};
use crate::security::credentials::CredentialStore;
use crate::security::listener::{Listener, SecurityProtocol};
use crate::security::login_guard::LoginGuard;
use crate::security::principal_mapping::{PrincipalMapper, RulesError};
use crate::security::tls::{TlsContext, TlsError};
use crate::server::{self, ListenerContext};
use crate::share::{ShareCoordinator, ShareSettings};
use crate::topics::{RegistryOpenError, TopicRegistry};
use crate::transactions::{TransactionCoordinator, TxnSettings};

/// Shared state every request handler reads.
#[derive(Debug)]
pub struct Broker {
    /// The settings it was started with.
    pub config: BrokerConfig,
    /// Every topic.
    pub topics: TopicRegistry,
    /// This cluster's id, generated once and kept in the metadata store.
    pub cluster_id: String,
    /// This broker's node id.
    pub node_id: i32,
    /// Consumer groups and committed offsets, shared by wire clients and in-process
    /// members.
    pub groups: GroupCoordinator,
    /// Retention, compaction and disk-guard state (see [`crate::lifecycle`]).
    pub lifecycle: crate::lifecycle::Lifecycle,
    /// Transactional ids and their transactions.
    pub transactions: TransactionCoordinator,
    /// Share groups (KIP-932), shared by wire clients and in-process queue agents.
    pub shares: ShareCoordinator,
    /// SCRAM users, for SASL logins and the user-management APIs.
    pub credentials: CredentialStore,
    /// Client quotas and the rates measured against them.
    pub quotas: crate::quotas::QuotaManager,
    /// ACLs and whether they are enforced.
    pub authorizer: crate::authz::Authorizer,
    /// Failed SASL logins per source address, and the addresses refused for now.
    pub logins: LoginGuard,
    advertised: OnceLock<(String, u16)>,
    /// The TLS listeners' configuration, once they are bound.
    tls: OnceLock<Arc<TlsContext>>,
    db: sled::Db,
    shutdown: watch::Sender<bool>,
}

/// Starting the broker failed.
#[derive(Debug, Error)]
pub enum StartError {
    /// The data directory cannot be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metadata store would not open (another agentlog may be using the directory).
    #[error("cannot open metadata store in {path}: {source}")]
    Metadata {
        /// The store's directory.
        path: PathBuf,
        /// Why.
        source: sled::Error,
    },
    /// Topics could not be reopened.
    #[error(transparent)]
    Topics(#[from] RegistryOpenError),
    /// A listener could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Committed offsets could not be loaded.
    #[error("cannot load consumer groups: {0}")]
    Groups(String),
    /// Transaction state could not be loaded.
    #[error("cannot load transactions: {0}")]
    Transactions(String),
    /// Share-group state could not be loaded.
    #[error("cannot load share groups: {0}")]
    Shares(String),
    /// `--advertise` is not `host:port`.
    #[error("advertised address `{0}` is not host:port")]
    Advertise(String),
    /// A TLS listener's certificate, key or truststore is missing or unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// `ssl.principal.mapping.rules` does not parse.
    #[error(transparent)]
    PrincipalRules(#[from] RulesError),
}

impl Broker {
    /// Opens the data directory: metadata store, then every topic's logs.
    pub fn open(config: BrokerConfig) -> Result<Broker, StartError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StartError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let meta_dir = config.data_dir.join("meta");
        let db = open_metadata(&meta_dir).map_err(|source| StartError::Metadata {
            path: meta_dir.clone(),
            source,
        })?;
        let cluster_id = cluster_id(&db).map_err(|source| StartError::Metadata {
            path: meta_dir,
            source,
        })?;
        crate::lifecycle::load_dynamic_configs(&db, &config).map_err(|source| {
            StartError::Metadata {
                path: config.data_dir.join("meta"),
                source,
            }
        })?;
        let topics = TopicRegistry::open(config.clone(), &db)?;
        let (min_session, max_session) = config.group_session_timeout_range();
        let (consumer_heartbeat, consumer_session) = config.group_consumer_timing();
        let settings = GroupSettings {
            initial_rebalance_delay: config.group_initial_rebalance_delay(),
            min_session_timeout_ms: min_session,
            max_session_timeout_ms: max_session,
            offsets_retention: config.offsets_retention(),
            consumer_heartbeat_interval_ms: consumer_heartbeat,
            consumer_session_timeout_ms: consumer_session,
        };
        let groups = GroupCoordinator::open(&db, settings)
            .map_err(|error| StartError::Groups(error.to_string()))?;
        let (max_timeout_ms, check_interval) = config.transaction_settings();
        let transactions = TransactionCoordinator::open(
            &db,
            TxnSettings {
                max_timeout_ms,
                check_interval,
            },
        )
        .map_err(|error| StartError::Transactions(error.to_string()))?;
        let shares = ShareCoordinator::open(&db, ShareSettings::from_config(&config))
            .map_err(|error| StartError::Shares(error.to_string()))?;
        let credentials = CredentialStore::open(&db).map_err(|error| StartError::Metadata {
            path: config.data_dir.join("meta"),
            source: match error {
                crate::security::credentials::CredentialError::Store(e) => e,
                other => sled::Error::Unsupported(other.to_string()),
            },
        })?;
        let quotas =
            crate::quotas::QuotaManager::open(&db, config.quota_window()).map_err(|source| {
                StartError::Metadata {
                    path: config.data_dir.join("meta"),
                    source,
                }
            })?;
        let authorizer =
            crate::authz::Authorizer::open(&db, &config).map_err(|error| StartError::Metadata {
                path: config.data_dir.join("meta"),
                source: match error {
                    crate::authz::AclStoreError::Store(e) => e,
                    other => sled::Error::Unsupported(other.to_string()),
                },
            })?;
        Ok(Broker {
            logins: LoginGuard::from_config(&config),
            quotas,
            credentials,
            authorizer,
            groups,
            transactions,
            shares,
            node_id: config.node_id(),
            config,
            topics,
            cluster_id,
            lifecycle: crate::lifecycle::Lifecycle::new(),
            advertised: OnceLock::new(),
            tls: OnceLock::new(),
            db,
            shutdown: watch::channel(false).0,
        })
    }

    /// The host and port clients are told to connect to.
    pub fn advertised(&self) -> (&str, u16) {
        match self.advertised.get() {
            Some((host, port)) => (host.as_str(), *port),
            None => ("localhost", 9092),
        }
    }

    /// Rebuilds the TLS configuration from the keystore and truststore files (SIGHUP):
    /// new connections use it, open ones keep theirs; on error the previous one stays
    /// and the error is logged. `None` without TLS listeners.
    pub fn reload_tls(&self) -> Option<Result<(), TlsError>> {
        let outcome = self.tls.get()?.reload();
        crate::security::tls::log_reload(&outcome, "reload request");
        Some(outcome)
    }

    /// Turns true when the broker begins to stop: accept loops and connections stop
    /// reading, and parked fetches answer at once with what they have.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Begins a graceful stop.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
        // Waiting joins and syncs are answered now rather than at their timeouts.
        self.groups.shutdown();
    }

    /// A producer id never handed out before, on this broker or in a previous run.
    pub fn next_producer_id(&self) -> Result<i64, sled::Error> {
        const KEY: &[u8] = b"next_producer_id";
        let previous = self.db.fetch_and_update(KEY, |current| {
            let next = current
                .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
                .map_or(0, i64::from_be_bytes)
                + 1;
            Some(next.to_be_bytes().to_vec())
        })?;
        // Durable before anyone uses it: an id handed out twice would merge two
        // producers' sequences.
        self.db.flush()?;
        Ok(previous
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_ref()).ok())
            .map_or(0, i64::from_be_bytes))
    }

    /// The metadata store (dynamic broker settings live there too).
    pub(crate) fn metadata_db(&self) -> &sled::Db {
        &self.db
    }

    /// Forces every log and the metadata store to disk.
    pub fn flush(&self) {
        if let Err(error) = self.topics.flush_all() {
            tracing::error!(%error, "flushing logs on shutdown failed");
        }
        if let Err(error) = self.db.flush() {
            tracing::error!(%error, "flushing metadata on shutdown failed");
        }
    }
}

/// How long opening waits for a previous handle in this process to let go of the store.
/// sled lets go from its own background threads; on a loaded 2-core machine (a CI run
/// of the whole suite) that took longer than 2 s, so a reopen in the same process
/// failed now and then.
const METADATA_LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Opens the metadata store. sled releases its file lock shortly after the last handle
/// of a store is dropped (its flusher thread finishes first), so a broker reopened in
/// the same process (tests, embedded restarts) waits a moment for it; another process
/// holding the lock still fails after [`METADATA_LOCK_WAIT`].
pub fn open_metadata(dir: &std::path::Path) -> Result<sled::Db, sled::Error> {
    let deadline = std::time::Instant::now() + METADATA_LOCK_WAIT;
    loop {
        match sled::Config::new().path(dir).cache_capacity(1 << 20).open() {
            Err(sled::Error::Io(error))
                if error.kind() == std::io::ErrorKind::WouldBlock
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

fn cluster_id(db: &sled::Db) -> Result<String, sled::Error> {
    const KEY: &[u8] = b"cluster_id";
    if let Some(existing) = db.get(KEY)? {
        return Ok(String::from_utf8_lossy(&existing).into_owned());
    }
    let id = uuid::Uuid::new_v4().simple().to_string();
    db.insert(KEY, id.as_bytes())?;
    db.flush()?;
    Ok(id)
}

/// A running broker: its bound addresses and the means to stop it.
#[derive(Debug)]
pub struct RunningBroker {
    /// Shared state, for in-process callers.
    pub broker: Arc<Broker>,
    /// The listeners actually bound (port 0 resolved), in configuration order.
    pub local_listeners: Vec<Listener>,
    task: Option<JoinHandle<()>>,
}

impl RunningBroker {
    /// Opens the data directory, binds every listener and starts accepting.
    pub async fn start(config: BrokerConfig) -> Result<RunningBroker, StartError> {
        let mut bound = Vec::new();
        for listener in &config.listeners {
            let address = listener.address;
            match TcpListener::bind(address).await {
                Ok(socket) => bound.push((socket, listener.protocol)),
                // The default listens on IPv6 loopback too; a host without IPv6 should
                // still start on IPv4 alone.
                Err(source) if address.is_ipv6() && config.listeners.len() > 1 => {
                    tracing::warn!(%address, error = %source, "IPv6 listener unavailable; continuing without it");
                }
                Err(source) => return Err(StartError::Bind { address, source }),
            }
        }
        let rules = config.get_or(
            "ssl.principal.mapping.rules",
            crate::security::principal_mapping::DEFAULT_RULES.to_string(),
        );
        let mapper = PrincipalMapper::parse(&rules)?;
        let tls = if bound.iter().any(|(_, protocol)| protocol.uses_tls()) {
            Some(Arc::new(TlsContext::new(&config, mapper)?))
        } else {
            None
        };
        let mechanisms: Vec<String> = config
            .value("sasl.enabled.mechanisms")
            .map(|(v, _)| v)
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_string())
            .filter(|m| !m.is_empty())
            .collect();
        let mut local_listeners = Vec::new();
        let mut contexts = Vec::new();
        for (socket, protocol) in bound {
            let Ok(local) = socket.local_addr() else {
                continue;
            };
            let advertised = advertised_for(&config, protocol, local)?;
            local_listeners.push(Listener {
                protocol,
                address: local,
            });
            contexts.push((
                socket,
                ListenerContext {
                    protocol,
                    advertised,
                    tls: tls.clone().filter(|_| protocol.uses_tls()),
                    mechanisms: mechanisms.clone(),
                },
            ));
        }
        let advertised = match contexts.first() {
            Some((_, context)) => context.advertised.clone(),
            None => ("127.0.0.1".to_string(), 9092),
        };
        let broker = Broker::open(config)?;
        let _ = broker.advertised.set(advertised);
        if let Some(tls) = &tls {
            let _ = broker.tls.set(tls.clone());
        }
        let broker = Arc::new(broker);
        broker.groups.start_background();
        // Transactions a crash interrupted are finished before any client is served.
        broker.transactions.recover(&broker);
        TransactionCoordinator::start_background(&broker);
        let reload_every = broker.config.get_or("ssl.reload.interval.ms", 5000u64);
        if let Some(tls) = tls.filter(|_| reload_every > 0) {
            tokio::spawn(crate::security::tls::watch(
                tls,
                std::time::Duration::from_millis(reload_every),
                broker.shutdown_signal(),
            ));
        }
        let task = tokio::spawn(server::serve(contexts, broker.clone()));
        let _lifecycle_tasks = crate::lifecycle::spawn(&broker);
        Ok(RunningBroker {
            broker,
            local_listeners,
            task: Some(task),
        })
    }

    /// `host:port` of the first listener, for clients' `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        let (host, port) = self.broker.advertised();
        format!("{host}:{port}")
    }

    /// Stops accepting, lets in-flight requests finish, then flushes everything to disk.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        self.broker.begin_shutdown();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.broker.flush();
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        if self.task.is_some() {
            self.broker.begin_shutdown();
            self.broker.flush();
        }
    }
}

/// What a listener tells its clients in Metadata: the configured
/// `advertised.listeners` entry of its protocol, else the address it is bound to.
fn advertised_for(
    config: &BrokerConfig,
    protocol: SecurityProtocol,
    local: SocketAddr,
) -> Result<(String, u16), StartError> {
    match config.advertised.iter().find(|(p, _)| *p == protocol) {
        Some((_, text)) => parse_host_port(text).ok_or_else(|| StartError::Advertise(text.clone())),
        None => Ok((local.ip().to_string(), local.port())),
    }
}

fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}
