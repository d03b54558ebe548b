//! Connecting to the cluster: the shared flags (`--bootstrap`, `-X`, `--timeout`), the
//! librdkafka clients built from them, and metadata look-ups that turn librdkafka's
//! timeouts into an error that says which address could not be reached and why.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::admin::AdminClient;
use rdkafka::client::ClientContext;
use rdkafka::config::{FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientConfig;

/// How to reach the cluster; flattened into every operator command.
#[derive(Debug, Args, Clone)]
pub struct ClusterArgs {
    /// Kafka bootstrap servers, comma-separated.
    #[arg(
        long,
        short = 'b',
        global = true,
        value_name = "HOST:PORT",
        default_value = "localhost:9092"
    )]
    pub bootstrap: String,
    /// A librdkafka client property, `name=value` (e.g. `security.protocol=ssl`);
    /// repeatable.
    #[arg(short = 'X', global = true, value_name = "NAME=VALUE")]
    pub properties: Vec<String>,
    /// Seconds to wait for the cluster before giving up.
    #[arg(long, global = true, value_name = "SECONDS", default_value_t = 10.0)]
    pub timeout: f64,
}

impl ClusterArgs {
    /// `--timeout` as a duration (a bad value would otherwise hang or panic later).
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .with_context(|| {
                format!(
                    "--timeout {}: expected a positive number of seconds",
                    self.timeout
                )
            })
    }

    /// The client configuration: bootstrap, quiet logging, no topic auto-creation (a
    /// typo in a topic name must be an error, not a new topic), then the `-X` properties.
    pub fn config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = ClientConfig::new();
        let timeout_ms = self.timeout()?.as_millis().to_string();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("socket.timeout.ms", &timeout_ms)
            .set_log_level(RDKafkaLogLevel::Emerg);
        for property in &self.properties {
            let (name, value) = super::name_value(property).context("-X")?;
            config.set(name, value);
        }
        Ok(config)
    }

    /// A consumer for metadata, watermarks and offset look-ups; with `group`, also for
    /// that group's committed offsets (it never joins the group).
    pub fn consumer(
        &self,
        group: Option<&str>,
    ) -> anyhow::Result<Quiet<BaseConsumer<QuietContext>>> {
        let mut config = self.config()?;
        config
            .set("group.id", group.unwrap_or("agentlog-cli"))
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false");
        create(&config, self)
    }

    /// An admin client.
    pub fn admin(&self) -> anyhow::Result<Quiet<AdminClient<QuietContext>>> {
        create(&self.config()?, self)
    }
}

/// A client together with the last error librdkafka reported in the background, which
/// explains a timeout ("Connection refused") better than the timeout itself.
pub struct Quiet<T> {
    /// The librdkafka client.
    pub client: T,
    /// Where the context records background errors.
    pub context: QuietContext,
    /// The bootstrap, for error messages.
    pub bootstrap: String,
    /// `--timeout`.
    pub timeout: Duration,
}

impl<T> std::ops::Deref for Quiet<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.client
    }
}

impl<T> Quiet<T> {
    /// An error about `what` that names the cluster and, if any, librdkafka's last
    /// background error (the usual cause of a timeout).
    pub fn explain(&self, what: &str, error: KafkaError) -> anyhow::Error {
        if !is_timeout(&error) {
            return anyhow::anyhow!("{what}: {error} (cluster {})", self.bootstrap);
        }
        let cause = self
            .context
            .last_error()
            .unwrap_or_else(|| error.to_string());
        anyhow::anyhow!(
            "{what}: cannot reach the cluster at {} within {:?} ({cause})",
            self.bootstrap,
            self.timeout
        )
    }
}

impl<C: ConsumerContext> Quiet<BaseConsumer<C>> {
    /// Metadata of one topic (which must exist) or of the whole cluster.
    pub fn metadata(&self, topic: Option<&str>) -> anyhow::Result<Metadata> {
        let metadata = self
            .client
            .fetch_metadata(topic, self.timeout)
            .map_err(|error| self.explain("reading cluster metadata", error))?;
        if let Some(name) = topic {
            let found = metadata.topics().iter().find(|t| t.name() == name);
            match found.and_then(|t| t.error()) {
                None if found.is_some_and(|t| !t.partitions().is_empty()) => {}
                Some(RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) | None => {
                    anyhow::bail!("topic {name} does not exist")
                }
                Some(error) => {
                    anyhow::bail!("topic {name}: {}", KafkaError::MetadataFetch(error.into()))
                }
            }
        }
        Ok(metadata)
    }

    /// The partition ids of a topic that must exist, in order.
    pub fn partitions(&self, topic: &str) -> anyhow::Result<Vec<i32>> {
        let metadata = self.metadata(Some(topic))?;
        let mut ids: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// Low and high watermark of one partition.
    pub fn watermarks(&self, topic: &str, partition: i32) -> anyhow::Result<(i64, i64)> {
        self.client
            .fetch_watermarks(topic, partition, self.timeout)
            .map_err(|error| {
                self.explain(
                    &format!("reading the offsets of {topic}/{partition}"),
                    error,
                )
            })
    }
}

fn is_timeout(error: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode::*;
    matches!(
        error.rdkafka_error_code(),
        Some(OperationTimedOut | RequestTimedOut | AllBrokersDown | BrokerTransportFailure)
    )
}

fn create<T>(config: &ClientConfig, args: &ClusterArgs) -> anyhow::Result<Quiet<T>>
where
    T: FromClientConfigAndContext<QuietContext>,
{
    let context = QuietContext::default();
    let client =
        T::from_config_and_context(config, context.clone()).map_err(|error| match error {
            KafkaError::ClientConfig(_, message, _, _) => {
                anyhow::anyhow!("invalid client property: {message}")
            }
            other => anyhow::anyhow!("creating the Kafka client: {other}"),
        })?;
    Ok(Quiet {
        client,
        context,
        bootstrap: args.bootstrap.clone(),
        timeout: args.timeout()?,
    })
}

/// A librdkafka context that keeps logs and background errors off stderr (errors are
/// reported once, as the command's error line) and remembers the last error.
#[derive(Clone, Default)]
pub struct QuietContext {
    last_error: Arc<Mutex<Option<String>>>,
}

impl QuietContext {
    /// The last background error, e.g. `Connect to ipv4#127.0.0.1:1 failed: Connection refused`.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

impl ClientContext for QuietContext {
    fn log(&self, _level: RDKafkaLogLevel, _facility: &str, _message: &str) {}

    fn error(&self, error: KafkaError, reason: &str) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(if reason.is_empty() {
                error.to_string()
            } else {
                reason.to_string()
            });
        }
    }
}

impl ConsumerContext for QuietContext {}
