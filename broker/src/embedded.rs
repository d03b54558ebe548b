//! A broker inside the calling process for tests, like franz-go's kfake or Spring's
//! EmbeddedKafka: an ephemeral port, a temporary data directory, gone on drop.

use crate::broker::{RunningBroker, StartError};
use crate::config::BrokerConfig;

/// A broker on `127.0.0.1:<ephemeral>` with a data directory that is deleted on drop.
#[derive(Debug)]
pub struct EmbeddedBroker {
    // Field order matters: the broker must stop before its directory is removed.
    running: RunningBroker,
    _data_dir: tempfile::TempDir,
}

impl EmbeddedBroker {
    /// Starts a broker with default settings. Must be called inside a tokio runtime.
    pub async fn start() -> Result<EmbeddedBroker, StartError> {
        Self::start_with(|_| {}).await
    }

    /// Starts a broker after letting the caller adjust its settings (the listener and
    /// data directory are chosen here and override the caller's).
    pub async fn start_with(
        adjust: impl FnOnce(&mut BrokerConfig),
    ) -> Result<EmbeddedBroker, StartError> {
        let data_dir = tempfile::Builder::new()
            .prefix("agentlog-embedded-")
            .tempdir()
            .map_err(|source| StartError::DataDir {
                path: std::env::temp_dir(),
                source,
            })?;
        let mut config = BrokerConfig::default();
        adjust(&mut config);
        config.set_plaintext_listeners(&[std::net::SocketAddr::from(([127, 0, 0, 1], 0))]);
        config.data_dir = data_dir.path().to_path_buf();
        let running = RunningBroker::start(config).await?;
        Ok(EmbeddedBroker {
            running,
            _data_dir: data_dir,
        })
    }

    /// `host:port` to give clients as `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.running.bootstrap()
    }

    /// The running broker, for in-process access to topics and logs.
    pub fn running(&self) -> &RunningBroker {
        &self.running
    }
}
