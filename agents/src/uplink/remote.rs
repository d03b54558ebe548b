//! The remote side of an uplink, through the Kafka protocol only (librdkafka), so the
//! same code runs against agentlog, Apache Kafka and Redpanda: the producer and the
//! topics it writes.

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use thiserror::Error;

use super::settings::{Mode, UplinkDef, DEFAULT_LINGER};

/// How the uplink's librdkafka clients report: while a link is down librdkafka repeats
/// the same error every few seconds (all brokers down, request timed out), which over
/// a days-long outage would bury the uplink's own one line per state change. Errors are
/// logged once until a different one comes; debug chatter stays at debug.
#[derive(Debug)]
pub struct LinkContext {
    uplink: String,
    last_error: Mutex<String>,
}

impl LinkContext {
    /// A context for uplink `uplink`'s clients.
    pub fn new(uplink: &str) -> LinkContext {
        LinkContext {
            uplink: uplink.to_string(),
            last_error: Mutex::new(String::new()),
        }
    }

    fn report(&self, text: String) {
        let mut last = self.last_error.lock().unwrap_or_else(|p| p.into_inner());
        if *last != text {
            tracing::warn!(uplink = %self.uplink, "remote client: {text}");
            *last = text;
        }
    }
}

impl ClientContext for LinkContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        if (level as i32) <= (RDKafkaLogLevel::Error as i32) {
            self.report(format!("{fac}: {message}"));
        } else {
            tracing::debug!(uplink = %self.uplink, "librdkafka {fac}: {message}");
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.report(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for LinkContext {}

/// The uplink's producer type.
pub type LinkProducer = FutureProducer<LinkContext>;

/// A remote client could not be made or used.
#[derive(Debug, Error)]
pub enum RemoteError {
    /// librdkafka refused the configuration or the call failed.
    #[error("{what}: {source}")]
    Kafka {
        /// What was being done.
        what: &'static str,
        /// The client's error.
        source: KafkaError,
    },
    /// A blocking call's task died (the runtime is shutting down).
    #[error("{0}: the blocking task failed")]
    Task(&'static str),
}

impl RemoteError {
    /// Wraps a client error with what was being done.
    pub fn kafka(what: &'static str) -> impl FnOnce(KafkaError) -> RemoteError {
        move |source| RemoteError::Kafka { what, source }
    }

    /// Whether the remote refuses the uplink as configured, rather than being away.
    pub fn is_refusal(&self) -> bool {
        match self {
            RemoteError::Kafka { source, .. } => {
                source.rdkafka_error_code().is_some_and(is_refusal)
            }
            RemoteError::Task(_) => false,
        }
    }
}

/// Error codes saying the remote will not take these records as configured (not that
/// it is away): the topic is set aside, its local data kept, the others go on.
pub fn is_refusal(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::TransactionalIdAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidPartitions
            | RDKafkaErrorCode::InvalidReplicationFactor
    )
}

/// The librdkafka properties of the uplink's remote clients, defaults first.
pub fn client_properties(def: &UplinkDef) -> Vec<(String, String)> {
    let mut out = vec![("broker.address.family".to_string(), "v4".to_string())];
    out.extend(def.client_properties());
    out
}

fn client_config(def: &UplinkDef, defaults: &[(&str, String)]) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in defaults {
        config.set(*key, value);
    }
    // The user's properties last: they override the defaults (TLS, SASL, timeouts).
    for (key, value) in client_properties(def) {
        config.set(key, value);
    }
    config
}

/// The uplink's producer: idempotent, acks from every replica, and transactional with
/// a stable id in exactly-once mode.
pub fn producer(def: &UplinkDef) -> Result<LinkProducer, RemoteError> {
    let linger = def
        .linger_ms
        .unwrap_or(DEFAULT_LINGER.as_millis() as u64)
        .to_string();
    let mut defaults = vec![
        ("acks", "all".to_string()),
        ("enable.idempotence", "true".to_string()),
        ("linger.ms", linger),
        ("message.timeout.ms", "30000".to_string()),
        (
            "compression.type",
            def.compression
                .clone()
                .unwrap_or_else(|| "none".to_string()),
        ),
        ("reconnect.backoff.ms", "100".to_string()),
        ("reconnect.backoff.max.ms", "5000".to_string()),
    ];
    if def.mode == Mode::ExactlyOnce {
        defaults.push(("transactional.id", def.transactional_id()));
        defaults.push(("transaction.timeout.ms", "60000".to_string()));
    }
    client_config(def, &defaults)
        .create_with_context(LinkContext::new(&def.name))
        .map_err(RemoteError::kafka("creating the remote producer"))
}

/// The consumer of a `direction = "down"` uplink: `read_committed` (records of remote
/// transactions that abort never come down), partitions assigned by hand, nothing
/// committed on the remote (the progress is local, see `mirror`). The group id is
/// only librdkafka's requirement for assigning.
pub fn consumer(def: &UplinkDef) -> Result<StreamConsumer<LinkContext>, RemoteError> {
    let defaults = [
        (
            "group.id",
            format!("agentlog-downlink-{}-{}", def.site, def.name),
        ),
        ("enable.auto.commit", "false".to_string()),
        ("enable.auto.offset.store", "false".to_string()),
        ("isolation.level", "read_committed".to_string()),
        ("auto.offset.reset", "earliest".to_string()),
        ("reconnect.backoff.ms", "100".to_string()),
        ("reconnect.backoff.max.ms", "5000".to_string()),
    ];
    client_config(def, &defaults)
        .create_with_context(LinkContext::new(&def.name))
        .map_err(RemoteError::kafka("creating the remote consumer"))
}

/// Runs a blocking librdkafka call off the async workers.
pub async fn blocking<T: Send + 'static>(
    what: &'static str,
    call: impl FnOnce() -> Result<T, KafkaError> + Send + 'static,
) -> Result<T, RemoteError> {
    tokio::task::spawn_blocking(call)
        .await
        .map_err(|_| RemoteError::Task(what))?
        .map_err(RemoteError::kafka(what))
}

/// Creates remote topics (and checks existing ones have enough partitions).
pub struct RemoteTopics {
    admin: Arc<AdminClient<LinkContext>>,
    timeout: Duration,
}

impl RemoteTopics {
    /// An admin client for the uplink's remote.
    pub fn new(def: &UplinkDef) -> Result<RemoteTopics, RemoteError> {
        let admin = client_config(def, &[])
            .create_with_context(LinkContext::new(&def.name))
            .map_err(RemoteError::kafka("creating the remote admin client"))?;
        Ok(RemoteTopics {
            admin: Arc::new(admin),
            timeout: def.remote_timeout(),
        })
    }

    /// Creates `topic` with `partitions` unless it exists, and grows an existing one
    /// with fewer; `compacted` for progress. Returns `Err` with the remote's reason
    /// when it will not.
    pub async fn ensure(
        &self,
        topic: &str,
        partitions: i32,
        compacted: bool,
    ) -> Result<(), String> {
        let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Fixed(-1));
        if compacted {
            new_topic = new_topic.set("cleanup.policy", "compact");
        }
        let options = AdminOptions::new().operation_timeout(Some(self.timeout));
        let results = self
            .admin
            .create_topics([&new_topic], &options)
            .await
            .map_err(|e| e.to_string())?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((_, code)) => {
                    return Err(format!("cannot create remote topic `{topic}`: {code}"))
                }
            }
        }
        let admin = self.admin.clone();
        let name = topic.to_string();
        let timeout = self.timeout;
        let metadata = blocking("reading remote topic metadata", move || {
            admin.inner().fetch_metadata(Some(&name), timeout)
        })
        .await
        .map_err(|e| e.to_string())?;
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len() as i32);
        if found < partitions {
            // Partitions added locally (CreatePartitions) after the remote topic was
            // made: add them there too, or say why not.
            let grow = NewPartitions::new(topic, partitions as usize);
            let refused = |reason: String| {
                format!(
                    "remote topic `{topic}` has {found} partitions, the local one \
                     {partitions}, and cannot grow: {reason}"
                )
            };
            let results = self
                .admin
                .create_partitions([&grow], &options)
                .await
                .map_err(|e| refused(e.to_string()))?;
            for result in results {
                if let Err((_, code)) = result {
                    return Err(refused(code.to_string()));
                }
            }
        }
        Ok(())
    }
}

/// Flushes and drops a producer off the async workers (dropping one waits for its
/// queue): the next session's producer, with the same transactional id, fences it.
pub async fn retire(producer: LinkProducer) {
    let _ = tokio::task::spawn_blocking(move || {
        let _ = producer.flush(Duration::from_secs(1));
        drop(producer);
    })
    .await;
}
