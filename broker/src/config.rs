//! Broker and topic configuration: one table of every setting, its Kafka name, default
//! and meaning, from which parsing, validation and DescribeConfigs all read.
//!
//! Settings come, lowest precedence first, from the built-in defaults, a TOML file,
//! `AGENTLOG_*` environment variables, and command-line flags. Each setting is known by
//! its Kafka name (`num.partitions`) and may also be written the TOML/env way
//! (`num_partitions`, `AGENTLOG_NUM_PARTITIONS`), so Kafka users can bring their habits.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use thiserror::Error;

use crate::security::listener::{parse_advertised, parse_listeners, Listener, SecurityProtocol};
use crate::storage::{FlushPolicy, LogConfig};

/// The type of a setting's value, as DescribeConfigs v3+ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// true / false.
    Boolean,
    /// A 32-bit integer.
    Int,
    /// A 64-bit integer.
    Long,
    /// A floating point number.
    Double,
    /// Free text, or one of a set of words.
    String,
    /// A comma-separated list.
    List,
}

impl ConfigType {
    /// Kafka's numeric code for the type in DescribeConfigs responses.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }

    fn validate(self, value: &str) -> bool {
        match self {
            ConfigType::Boolean => matches!(value, "true" | "false"),
            ConfigType::Int => value.parse::<i32>().is_ok(),
            ConfigType::Long => value.parse::<i64>().is_ok(),
            ConfigType::Double => value.parse::<f64>().is_ok(),
            ConfigType::String | ConfigType::List => true,
        }
    }
}

/// One setting the broker understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigDef {
    /// Kafka's name for it.
    pub name: &'static str,
    /// Its type.
    pub kind: ConfigType,
    /// The built-in default, as text.
    pub default: &'static str,
    /// Whether it can only be set at start-up.
    pub read_only: bool,
    /// What it does, for DescribeConfigs' documentation field and the README.
    pub doc: &'static str,
    /// Extra check beyond the type (e.g. a range or a set of words).
    pub check: Option<fn(&str) -> bool>,
}

const fn def(
    name: &'static str,
    kind: ConfigType,
    default: &'static str,
    doc: &'static str,
) -> ConfigDef {
    ConfigDef {
        name,
        kind,
        default,
        read_only: true,
        doc,
        check: None,
    }
}

const fn checked(mut d: ConfigDef, check: fn(&str) -> bool) -> ConfigDef {
    d.check = Some(check);
    d
}

fn positive(v: &str) -> bool {
    v.parse::<i64>().map(|n| n > 0).unwrap_or(false)
}

fn non_negative(v: &str) -> bool {
    v.parse::<i64>().map(|n| n >= 0).unwrap_or(false)
}

fn at_least_minus_one(v: &str) -> bool {
    v.parse::<i64>().map(|n| n >= -1).unwrap_or(false)
}

fn empty_or_socket_address(v: &str) -> bool {
    v.is_empty() || v.parse::<std::net::SocketAddr>().is_ok()
}

fn flush_policy_word(v: &str) -> bool {
    matches!(v, "batch" | "interval" | "none")
}

fn cleanup_policy(v: &str) -> bool {
    !v.is_empty()
        && v.split(',')
            .all(|p| matches!(p.trim(), "delete" | "compact"))
}

fn timestamp_type(v: &str) -> bool {
    matches!(v, "CreateTime" | "LogAppendTime")
}

fn compression_type(v: &str) -> bool {
    matches!(
        v,
        "producer" | "uncompressed" | "gzip" | "snappy" | "lz4" | "zstd"
    )
}

fn ratio(v: &str) -> bool {
    v.parse::<f64>()
        .map(|r| (0.0..=1.0).contains(&r))
        .unwrap_or(false)
}

/// Every broker-level setting.
pub static BROKER_CONFIGS: &[ConfigDef] = &[
    def("node.id", ConfigType::Int, "1", "This broker's id in Metadata responses."),
    def("broker.id", ConfigType::Int, "1", "Synonym of node.id, as older Kafka names it."),
    checked(def("num.partitions", ConfigType::Int, "1", "Partitions of an auto-created topic, and of CreateTopics with num_partitions -1."), positive),
    def("auto.create.topics.enable", ConfigType::Boolean, "true", "Whether Metadata requests that allow it create missing topics."),
    checked(def("default.replication.factor", ConfigType::Int, "1", "Replication factor reported for topics (a single node holds one replica)."), positive),
    checked(def("log.segment.bytes", ConfigType::Int, "1073741824", "Roll the active segment when it would grow past this size."), positive),
    checked(def("log.roll.ms", ConfigType::Long, "604800000", "Roll the active segment when its first batch is older than this."), positive),
    checked(def("log.index.interval.bytes", ConfigType::Int, "4096", "Bytes of log between two sparse index entries."), positive),
    checked(def("message.max.bytes", ConfigType::Int, "1048588", "Largest record batch a producer may send (MESSAGE_TOO_LARGE above it)."), positive),
    checked(def("socket.request.max.bytes", ConfigType::Int, "104857600", "Largest request frame accepted; larger frames close the connection."), positive),
    checked(def("log.retention.ms", ConfigType::Long, "604800000", "Default retention.ms: sealed segments whose newest record is older are deleted (-1: forever)."), at_least_minus_one),
    checked(def("log.retention.bytes", ConfigType::Long, "-1", "Default size a partition is trimmed to (-1: unlimited)."), at_least_minus_one),
    checked(def("log.flush.policy", ConfigType::String, "batch", "agentlog: when appended data is fsynced: batch (before acks=all and before consumers see it; group commit), interval, or none."), flush_policy_word),
    checked(def("log.flush.interval.ms", ConfigType::Long, "1000", "With log.flush.policy=interval, how often to fsync."), positive),
    def("log.preallocate", ConfigType::Boolean, "true", "agentlog: reserve disk space (fallocate) ahead of the active segment's appends under 2 KiB, in steps of 64 KiB to 8 MiB, so that a group commit's fdatasync does not also write a new file size. Kafka's default is false (it would preallocate whole segments)."),
    checked(def("log.tail.cache.bytes", ConfigType::Long, "4194304", "agentlog: bytes of recently appended batches kept in memory per partition for tailing readers."), non_negative),
    checked(def("log.retention.check.interval.ms", ConfigType::Long, "5000", "agentlog: how often retention (retention.ms, retention.bytes, DeleteRecords leftovers) is enforced. Kafka's default is 300000; an edge box checks more often."), positive),
    checked(def("log.cleaner.backoff.ms", ConfigType::Long, "2000", "How long the compactor sleeps between passes over compacted topics."), positive),
    checked(def("log.disk.free.min.bytes", ConfigType::Long, "104857600", "agentlog: produce is refused with KAFKA_STORAGE_ERROR (retriable) while the data directory's filesystem has less free space than this (0: never)."), non_negative),
    def("log.cleanup.policy", ConfigType::List, "delete", "Default cleanup.policy of new topics."),
    checked(def("group.initial.rebalance.delay.ms", ConfigType::Int, "3000", "How long the first rebalance of an empty group waits for more members before completing (Kafka's default; tests set it low)."), non_negative),
    checked(def("group.min.session.timeout.ms", ConfigType::Int, "6000", "Smallest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT below it)."), positive),
    checked(def("group.max.session.timeout.ms", ConfigType::Int, "1800000", "Largest session.timeout.ms a group member may ask for (INVALID_SESSION_TIMEOUT above it)."), positive),
    checked(def("group.share.record.lock.duration.ms", ConfigType::Int, "30000", "How long a share-group member holds an acquired record before it can be delivered to another (KIP-932)."), positive),
    checked(def("group.share.delivery.count.limit", ConfigType::Int, "5", "Deliveries of a record to a share group before it is archived (and, for queue agents, dead-lettered)."), positive),
    checked(def("group.share.session.timeout.ms", ConfigType::Int, "45000", "A share-group member silent this long is removed and its acquired records released."), positive),
    checked(def("group.share.heartbeat.interval.ms", ConfigType::Int, "5000", "The heartbeat interval share-group members are told to use."), positive),
    checked(def("group.share.partition.max.record.locks", ConfigType::Int, "2000", "Most records of one partition a share group has in flight at once."), positive),
    checked(def("offsets.retention.minutes", ConfigType::Int, "10080", "Committed offsets of a group with no members are dropped this long after the group emptied (or, for standalone commits, after the commit)."), positive),
    checked(def("transaction.max.timeout.ms", ConfigType::Int, "900000", "Largest transaction.timeout.ms a transactional producer may ask for (INVALID_TRANSACTION_TIMEOUT above it)."), positive),
    checked(def("http.listen", ConfigType::String, "", "agentlog: address (host:port) for GET /health and GET /metrics (Prometheus); empty: no HTTP listener. The --http flag overrides it."), empty_or_socket_address),
    def("console.actions", ConfigType::Boolean, "false", "agentlog: the web console at /ui may change things (reset a group's offsets, replay a dead-letter topic); off, it is read-only and refuses them."),
    def("mcp.server.enable", ConfigType::Boolean, "false", "agentlog: serve MCP (streamable HTTP) at /mcp on the HTTP listener (http.listen or --http)."),
    def("mcp.server.read.only", ConfigType::Boolean, "true", "agentlog: the MCP server refuses to write (its produce tool answers with an error) unless this is false."),
    checked(def("mcp.server.max.records", ConfigType::Int, "100", "agentlog: most records one MCP read, search or resource returns."), positive),
    checked(def("mcp.server.max.bytes", ConfigType::Int, "65536", "agentlog: most bytes of JSON one MCP tool or resource result carries; longer results are cut and say so."), positive),
    def("mcp.server.allowed.hosts", ConfigType::List, "localhost,127.0.0.1,::1", "agentlog: Host header values (host or host:port) the MCP server answers; others get 403 (DNS-rebinding protection). Add the names clients use when http.listen is not a loopback address."),
    def("ssl.keystore.location", ConfigType::String, "", "PEM file with the broker's certificate chain and its private key (Kafka's PEM keystore), used by every SSL and SASL_SSL listener."),
    def("ssl.truststore.location", ConfigType::String, "", "PEM file with the CA certificates that client certificates must chain to (needed when ssl.client.auth is not none)."),
    checked(def("ssl.client.auth", ConfigType::String, "none", "none: TLS clients present no certificate; requested: they may, and it must be valid if they do; required: they must."), |v| matches!(v, "none" | "requested" | "required")),
    checked(def("connection.failed.authentication.delay.ms", ConfigType::Int, "100", "How long a failed SASL login waits before its answer and the close, slowing password guessing (Kafka's setting)."), non_negative),
    checked(def("sasl.enabled.mechanisms", ConfigType::List, "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512", "SASL mechanisms the SASL_PLAINTEXT and SASL_SSL listeners offer (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512); PLAIN checks passwords against the stored SCRAM credentials."), crate::security::sasl::valid_mechanism_list),
    checked(def("transaction.abort.timed.out.transaction.cleanup.interval.ms", ConfigType::Int, "10000", "How often transactions open longer than their timeout are looked for and aborted."), positive),
];

/// Broker settings that AlterConfigs / IncrementalAlterConfigs may change at runtime
/// (persisted in the metadata store, applied without a restart); every other broker
/// setting is read-only, as DescribeConfigs reports.
pub static DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "log.retention.ms",
    "log.retention.bytes",
    "log.cleanup.policy",
    "log.segment.bytes",
    "log.roll.ms",
    "message.max.bytes",
    "log.retention.check.interval.ms",
    "log.cleaner.backoff.ms",
    "log.disk.free.min.bytes",
];

/// Every topic-level setting, and the broker setting it defaults to.
pub static TOPIC_CONFIGS: &[(ConfigDef, Option<&str>)] = &[
    (
        checked(
            def(
                "cleanup.policy",
                ConfigType::List,
                "delete",
                "delete, compact, or both.",
            ),
            cleanup_policy,
        ),
        Some("log.cleanup.policy"),
    ),
    (
        checked(
            def(
                "retention.ms",
                ConfigType::Long,
                "604800000",
                "How long to keep a segment (-1: forever).",
            ),
            at_least_minus_one,
        ),
        Some("log.retention.ms"),
    ),
    (
        checked(
            def(
                "retention.bytes",
                ConfigType::Long,
                "-1",
                "Size a partition is trimmed to (-1: unlimited).",
            ),
            at_least_minus_one,
        ),
        Some("log.retention.bytes"),
    ),
    (
        checked(
            def(
                "segment.bytes",
                ConfigType::Int,
                "1073741824",
                "Segment size.",
            ),
            positive,
        ),
        Some("log.segment.bytes"),
    ),
    (
        checked(
            def(
                "segment.ms",
                ConfigType::Long,
                "604800000",
                "Segment age before rolling.",
            ),
            positive,
        ),
        Some("log.roll.ms"),
    ),
    (
        checked(
            def(
                "max.message.bytes",
                ConfigType::Int,
                "1048588",
                "Largest record batch accepted for this topic.",
            ),
            positive,
        ),
        Some("message.max.bytes"),
    ),
    (
        checked(
            def(
                "index.interval.bytes",
                ConfigType::Int,
                "4096",
                "Bytes between sparse index entries.",
            ),
            positive,
        ),
        Some("log.index.interval.bytes"),
    ),
    (
        checked(
            def(
                "message.timestamp.type",
                ConfigType::String,
                "CreateTime",
                "CreateTime or LogAppendTime.",
            ),
            timestamp_type,
        ),
        None,
    ),
    (
        checked(
            def(
                "compression.type",
                ConfigType::String,
                "producer",
                "Batches are stored as the producer compressed them.",
            ),
            compression_type,
        ),
        None,
    ),
    (
        checked(
            def(
                "min.insync.replicas",
                ConfigType::Int,
                "1",
                "Replicas that must acknowledge acks=all (one on a single node).",
            ),
            positive,
        ),
        None,
    ),
    (
        checked(
            def(
                "delete.retention.ms",
                ConfigType::Long,
                "86400000",
                "How long tombstones survive compaction.",
            ),
            non_negative,
        ),
        None,
    ),
    (
        checked(
            def(
                "min.compaction.lag.ms",
                ConfigType::Long,
                "0",
                "Minimum age before a record may be compacted.",
            ),
            non_negative,
        ),
        None,
    ),
    (
        checked(
            def(
                "min.cleanable.dirty.ratio",
                ConfigType::Double,
                "0.5",
                "Dirty fraction that triggers compaction.",
            ),
            ratio,
        ),
        None,
    ),
];

/// Where a setting's value came from, with Kafka's DescribeConfigs source codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic (CreateTopics or AlterConfigs).
    DynamicTopic,
    /// Set on the broker at runtime (AlterConfigs on broker resources).
    DynamicBroker,
    /// Set in the broker's file, environment or flags.
    StaticBroker,
    /// The built-in default.
    Default,
}

impl ConfigSource {
    /// Kafka's numeric code.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// A bad setting, named so that the operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// No setting has this name.
    #[error("unknown setting `{0}`")]
    Unknown(String),
    /// The value does not fit the setting.
    #[error("invalid value `{value}` for `{name}`")]
    Invalid {
        /// The setting.
        name: String,
        /// The value given.
        value: String,
    },
    /// The TOML file does not parse or holds a non-scalar setting.
    #[error("config file: {0}")]
    File(String),
    /// A listen or advertise address does not parse.
    #[error("invalid address `{0}`")]
    Address(String),
}

/// A runtime change of a broker setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DynamicConfigError {
    /// No broker setting has this name.
    #[error("unknown broker setting `{0}`")]
    Unknown(String),
    /// The setting can only be set at start-up.
    #[error("`{0}` cannot be changed at runtime (read-only)")]
    ReadOnly(String),
    /// The value does not fit the setting.
    #[error(transparent)]
    Invalid(ConfigError),
}

/// Normalises a setting name so that `num.partitions`, `num_partitions`,
/// `NUM-PARTITIONS` all compare equal.
fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace(['_', '-'], ".")
}

fn find_broker_def(name: &str) -> Option<&'static ConfigDef> {
    let wanted = normalise(name);
    BROKER_CONFIGS.iter().find(|d| d.name == wanted)
}

/// Looks up a topic-level setting by its Kafka name.
pub fn find_topic_def(name: &str) -> Option<&'static (ConfigDef, Option<&'static str>)> {
    TOPIC_CONFIGS.iter().find(|(d, _)| d.name == name)
}

fn check_value(d: &ConfigDef, value: &str) -> Result<(), ConfigError> {
    let ok = d.kind.validate(value) && d.check.is_none_or(|check| check(value));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid {
            name: d.name.to_string(),
            value: value.to_string(),
        })
    }
}

/// Validates one topic-level setting (CreateTopics, AlterConfigs).
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let (d, _) = find_topic_def(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
    check_value(d, value)
}

/// The broker's settings: explicit values by Kafka name, over the defaults of
/// [`BROKER_CONFIGS`], plus the network and disk locations that have no Kafka name.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Addresses to accept Kafka clients on, each with its security protocol.
    pub listeners: Vec<Listener>,
    /// host:port given in Metadata to the clients of each listener's protocol; a
    /// listener without one advertises the address it is bound to.
    pub advertised: Vec<(SecurityProtocol, String)>,
    /// Where logs and metadata live.
    pub data_dir: PathBuf,
    explicit: BTreeMap<&'static str, String>,
    /// Runtime overrides of [`DYNAMIC_BROKER_CONFIGS`], shared by every clone of this
    /// config (the broker and its topic registry see the same values).
    dynamic: Arc<RwLock<BTreeMap<&'static str, String>>>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listeners: default_listeners(9092)
                .into_iter()
                .map(Listener::plaintext)
                .collect(),
            advertised: Vec::new(),
            data_dir: PathBuf::from("./agentlog-data"),
            explicit: BTreeMap::new(),
            dynamic: Arc::default(),
        }
    }
}

/// Port 9092 (or another) on IPv4 and IPv6 loopback, so `localhost` works whichever
/// address family a client resolves it to.
pub fn default_listeners(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([127, 0, 0, 1], port)),
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
    ]
}

impl BrokerConfig {
    /// Default settings over the given data directory.
    pub fn with_data_dir(dir: impl Into<PathBuf>) -> Self {
        BrokerConfig {
            data_dir: dir.into(),
            ..BrokerConfig::default()
        }
    }

    /// Replaces the PLAINTEXT listeners (what `--listen` means) and keeps the secured
    /// ones, so a config file's SASL_SSL listener survives a `--listen` override.
    pub fn set_plaintext_listeners(&mut self, addresses: &[SocketAddr]) {
        self.listeners
            .retain(|l| l.protocol != SecurityProtocol::Plaintext);
        let secured = std::mem::take(&mut self.listeners);
        self.listeners = addresses.iter().copied().map(Listener::plaintext).collect();
        self.listeners.extend(secured);
    }

    /// Sets a setting by any accepted spelling of its name, validating the value.
    /// `listeners`/`listen`, `advertise`/`advertised.listeners` and `data.dir`/`log.dirs`
    /// are accepted too.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let value = value.trim();
        match normalise(name).as_str() {
            "listen" | "listeners" => {
                self.listeners = parse_listeners(value)?;
                return Ok(());
            }
            "advertise" | "advertised.listeners" | "advertised.listener" => {
                self.advertised = parse_advertised(value)?;
                return Ok(());
            }
            "data.dir" | "log.dirs" | "log.dir" => {
                self.data_dir = PathBuf::from(value);
                return Ok(());
            }
            _ => {}
        }
        let d = find_broker_def(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
        check_value(d, value)?;
        let canonical = if d.name == "broker.id" {
            "node.id"
        } else {
            d.name
        };
        self.explicit.insert(canonical, value.to_string());
        Ok(())
    }

    /// Applies every scalar key of a TOML document (nested tables are flattened with
    /// dots, so `[log] segment.bytes = 1` works as `log.segment.bytes`). The agent
    /// runtime's keys (`[[agents]]`, `[agents_backend]`, `backend`, `bootstrap`) are left
    /// for it.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File(e.to_string()))?;
        let mut flat = Vec::new();
        flatten("", &table, &mut flat)?;
        for (name, value) in flat {
            self.set(&name, &value)?;
        }
        Ok(())
    }

    /// Applies `AGENTLOG_*` variables (e.g. `AGENTLOG_NUM_PARTITIONS=3`).
    ///
    /// The prefix is shared with scripts' own variables (`AGENTLOG_BIN` in our test
    /// harnesses, say), so a variable that names no setting is returned for the caller
    /// to warn about rather than refused; a bad value for a real setting is an error.
    pub fn apply_env<I: IntoIterator<Item = (String, String)>>(
        &mut self,
        vars: I,
    ) -> Result<Vec<String>, ConfigError> {
        let mut ignored = Vec::new();
        for (key, value) in vars {
            if let Some(name) = key.strip_prefix("AGENTLOG_") {
                if matches!(name, "LOG" | "CONFIG" | "HTTP") {
                    continue; // the binary's own switches, not settings
                }
                match self.set(name, &value) {
                    Ok(()) => {}
                    Err(ConfigError::Unknown(_)) => ignored.push(key),
                    Err(error) => return Err(error),
                }
            }
        }
        Ok(ignored)
    }

    /// The current value of a broker setting and where it came from.
    pub fn value(&self, name: &str) -> Option<(String, ConfigSource)> {
        let d = find_broker_def(name)?;
        let canonical = if d.name == "broker.id" {
            "node.id"
        } else {
            d.name
        };
        let dynamic = self
            .dynamic
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(canonical)
            .cloned();
        if let Some(v) = dynamic {
            return Some((v, ConfigSource::DynamicBroker));
        }
        Some(match self.explicit.get(canonical) {
            Some(v) => (v.clone(), ConfigSource::StaticBroker),
            None => (d.default.to_string(), ConfigSource::Default),
        })
    }

    /// The value from the file, environment or flags (ignoring dynamic overrides).
    pub fn static_value(&self, name: &str) -> Option<String> {
        let d = find_broker_def(name)?;
        self.explicit.get(d.name).cloned()
    }

    /// Whether a broker setting may be changed at runtime.
    pub fn is_dynamic(name: &str) -> bool {
        DYNAMIC_BROKER_CONFIGS.contains(&normalise(name).as_str())
    }

    /// Validates a runtime change of a broker setting without applying it.
    pub fn validate_dynamic(name: &str, value: Option<&str>) -> Result<(), DynamicConfigError> {
        let d =
            find_broker_def(name).ok_or_else(|| DynamicConfigError::Unknown(name.to_string()))?;
        if !DYNAMIC_BROKER_CONFIGS.contains(&d.name) {
            return Err(DynamicConfigError::ReadOnly(d.name.to_string()));
        }
        if let Some(value) = value {
            check_value(d, value.trim()).map_err(DynamicConfigError::Invalid)?;
        }
        Ok(())
    }

    /// Sets (`Some`) or removes (`None`) a runtime override of a dynamic broker setting.
    pub fn set_dynamic(&self, name: &str, value: Option<&str>) -> Result<(), DynamicConfigError> {
        Self::validate_dynamic(name, value)?;
        let d =
            find_broker_def(name).ok_or_else(|| DynamicConfigError::Unknown(name.to_string()))?;
        let mut dynamic = self.dynamic.write().unwrap_or_else(|p| p.into_inner());
        match value {
            Some(v) => dynamic.insert(d.name, v.trim().to_string()),
            None => dynamic.remove(d.name),
        };
        Ok(())
    }

    /// Every runtime override, by name (what the metadata store persists).
    pub fn dynamic_values(&self) -> BTreeMap<String, String> {
        self.dynamic
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    /// A broker setting's effective value parsed, or `fallback`.
    pub fn get_or<T: std::str::FromStr>(&self, name: &str, fallback: T) -> T {
        self.get(name, fallback)
    }

    fn get<T: std::str::FromStr>(&self, name: &str, fallback: T) -> T {
        self.value(name)
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(fallback)
    }

    /// This broker's node id.
    pub fn node_id(&self) -> i32 {
        self.get("node.id", 1)
    }

    /// Partitions of auto-created topics.
    pub fn num_partitions(&self) -> i32 {
        self.get("num.partitions", 1)
    }

    /// Whether Metadata may create topics.
    pub fn auto_create_topics(&self) -> bool {
        self.get("auto.create.topics.enable", true)
    }

    /// `group.initial.rebalance.delay.ms`: the wait an empty group's first rebalance
    /// gives later joiners, so a starting fleet forms one generation instead of many.
    pub fn group_initial_rebalance_delay(&self) -> Duration {
        Duration::from_millis(self.get("group.initial.rebalance.delay.ms", 3000u64))
    }

    /// `group.min.session.timeout.ms` and `group.max.session.timeout.ms`: the session
    /// timeouts members may ask for, so a member can neither flap nor linger forever.
    pub fn group_session_timeout_range(&self) -> (i32, i32) {
        (
            self.get("group.min.session.timeout.ms", 6000),
            self.get("group.max.session.timeout.ms", 1_800_000),
        )
    }

    /// `offsets.retention.minutes`: how long an abandoned group's offsets are kept.
    pub fn offsets_retention(&self) -> Duration {
        Duration::from_secs(
            self.get("offsets.retention.minutes", 10080u64)
                .saturating_mul(60),
        )
    }

    /// `transaction.max.timeout.ms` and the hung-transaction check interval.
    pub fn transaction_settings(&self) -> (i32, Duration) {
        (
            self.get("transaction.max.timeout.ms", 900_000),
            Duration::from_millis(self.get(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                10_000u64,
            )),
        )
    }

    /// Largest request frame.
    pub fn max_frame_bytes(&self) -> usize {
        self.get("socket.request.max.bytes", 104_857_600usize)
    }

    /// The flush policy for every partition log.
    pub fn flush_policy(&self) -> FlushPolicy {
        match self.value("log.flush.policy").map(|(v, _)| v).as_deref() {
            Some("none") => FlushPolicy::Never,
            Some("interval") => FlushPolicy::Interval(Duration::from_millis(
                self.get("log.flush.interval.ms", 1000),
            )),
            _ => FlushPolicy::EveryBatch,
        }
    }

    /// The effective value of a topic setting, given the topic's own overrides.
    pub fn topic_value(
        &self,
        overrides: &BTreeMap<String, String>,
        name: &str,
    ) -> Option<(String, ConfigSource)> {
        let (d, broker_synonym) = find_topic_def(name)?;
        if let Some(v) = overrides.get(name) {
            return Some((v.clone(), ConfigSource::DynamicTopic));
        }
        if let Some((v, source)) = broker_synonym.and_then(|s| self.value(s)) {
            return Some((v, source));
        }
        Some((d.default.to_string(), ConfigSource::Default))
    }

    /// The storage settings of a topic's partition logs.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        let topic = |name: &str, fallback: u64| -> u64 {
            self.topic_value(overrides, name)
                .and_then(|(v, _)| v.parse().ok())
                .unwrap_or(fallback)
        };
        LogConfig {
            segment_bytes: topic("segment.bytes", 1 << 30),
            segment_ms: topic("segment.ms", 604_800_000),
            index_interval_bytes: topic("index.interval.bytes", 4096) as u32,
            flush: self.flush_policy(),
            tail_cache_bytes: self.get("log.tail.cache.bytes", 4 << 20),
            preallocate: self.get("log.preallocate", true),
        }
    }

    /// Largest batch accepted for a topic.
    pub fn max_message_bytes(&self, overrides: &BTreeMap<String, String>) -> usize {
        self.topic_value(overrides, "max.message.bytes")
            .and_then(|(v, _)| v.parse().ok())
            .unwrap_or(1_048_588)
    }
}

/// Top-level keys of the configuration file that belong to the agent runtime.
const AGENT_KEYS: [&str; 9] = [
    "agents",
    "mcp_servers",
    "uplinks",
    "agents_backend",
    "backend",
    "bootstrap",
    "llm",
    "inference",
    "rag",
];

fn flatten(
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, String)>,
) -> Result<(), ConfigError> {
    for (key, value) in table {
        let name = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        // The agent runtime's settings (`[[agents]]`, `[agents_backend]`, and the
        // top-level `backend`/`bootstrap`) share the file; they are read elsewhere.
        if prefix.is_empty() && AGENT_KEYS.contains(&name.as_str()) {
            continue;
        }
        match value {
            toml::Value::Table(inner) => {
                flatten(&name, inner, out)?;
            }
            toml::Value::String(s) => out.push((name, s.clone())),
            toml::Value::Integer(i) => out.push((name, i.to_string())),
            toml::Value::Float(f) => out.push((name, f.to_string())),
            toml::Value::Boolean(b) => out.push((name, b.to_string())),
            // Lists (`listeners`, `advertised.listeners`, `sasl.enabled.mechanisms`):
            // Kafka's comma-separated form.
            toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|v| {
                        v.as_str()
                            .map(str::to_string)
                            .unwrap_or_else(|| v.to_string())
                    })
                    .collect();
                out.push((name, parts.join(",")));
            }
            other => {
                return Err(ConfigError::File(format!(
                    "`{name}` must be a string, number or boolean, not {}",
                    other.type_str()
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_toml_names_and_env_names_are_the_same_setting() {
        let mut config = BrokerConfig::default();
        config.set("num.partitions", "3").unwrap();
        assert_eq!(config.num_partitions(), 3);
        config
            .apply_toml("num_partitions = 4\n[log]\nsegment.bytes = 1024\n")
            .unwrap();
        assert_eq!(config.num_partitions(), 4);
        assert_eq!(config.log_config(&BTreeMap::new()).segment_bytes, 1024);
        let ignored = config
            .apply_env([
                ("AGENTLOG_NUM_PARTITIONS".to_string(), "5".to_string()),
                ("AGENTLOG_BIN".to_string(), "/usr/bin/agentlog".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ])
            .unwrap();
        assert_eq!(config.num_partitions(), 5);
        assert_eq!(ignored, vec!["AGENTLOG_BIN".to_string()]);
        assert!(config
            .apply_env([("AGENTLOG_NUM_PARTITIONS".to_string(), "x".to_string())])
            .is_err());
        assert_eq!(
            config.value("num.partitions").unwrap().1,
            ConfigSource::StaticBroker
        );
        assert_eq!(
            config.value("message.max.bytes").unwrap().1,
            ConfigSource::Default
        );
    }

    #[test]
    fn bad_values_and_names_are_refused_with_their_names() {
        let mut config = BrokerConfig::default();
        assert_eq!(
            config.set("num.partitions", "zero"),
            Err(ConfigError::Invalid {
                name: "num.partitions".into(),
                value: "zero".into()
            })
        );
        assert!(config.set("num.partitions", "0").is_err());
        assert!(matches!(
            config.set("no.such.thing", "1"),
            Err(ConfigError::Unknown(_))
        ));
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
        assert!(validate_topic_config("cleanup.policy", "shred").is_err());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
    }

    #[test]
    fn topic_values_fall_back_to_broker_synonyms_then_defaults() {
        let mut config = BrokerConfig::default();
        config.set("log.segment.bytes", "2048").unwrap();
        let mut overrides = BTreeMap::new();
        assert_eq!(
            config.topic_value(&overrides, "segment.bytes"),
            Some(("2048".into(), ConfigSource::StaticBroker))
        );
        overrides.insert("segment.bytes".to_string(), "4096".to_string());
        assert_eq!(
            config.topic_value(&overrides, "segment.bytes"),
            Some(("4096".into(), ConfigSource::DynamicTopic))
        );
        assert_eq!(
            config.topic_value(&overrides, "cleanup.policy"),
            Some(("delete".into(), ConfigSource::Default))
        );
    }

    #[test]
    fn listeners_parse_with_or_without_scheme() {
        let mut config = BrokerConfig::default();
        config
            .set("listen", "PLAINTEXT://127.0.0.1:0,[::1]:9093")
            .unwrap();
        assert_eq!(config.listeners.len(), 2);
        assert!(config.set("listen", "nonsense").is_err());
        config.set("advertise", "example.com:9092").unwrap();
        assert_eq!(
            config.advertised,
            vec![(SecurityProtocol::Plaintext, "example.com:9092".to_string())]
        );
    }

    #[test]
    fn the_readme_documents_every_setting() {
        let readme = include_str!("../../README.md");
        let names = BROKER_CONFIGS
            .iter()
            .map(|d| d.name)
            .chain(TOPIC_CONFIGS.iter().map(|(d, _)| d.name));
        for name in names {
            assert!(
                readme.contains(&format!("`{name}`")),
                "README does not document `{name}`"
            );
        }
    }

    #[test]
    fn the_readme_toml_example_is_accepted_verbatim() {
        let readme = include_str!("../../README.md");
        let example = readme
            .split("```toml\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("README has a toml example");
        let mut config = BrokerConfig::default();
        config.apply_toml(example).unwrap();
        assert_eq!(config.num_partitions(), 3);
        assert_eq!(config.data_dir, PathBuf::from("/var/lib/agentlog"));
        assert_eq!(
            config.log_config(&BTreeMap::new()).segment_bytes,
            268_435_456
        );
    }

    #[test]
    fn agent_runtime_keys_are_left_alone() {
        let mut config = BrokerConfig::default();
        config
            .apply_toml(
                "backend = \"kafka\"\nbootstrap = \"k:9092\"\nnum.partitions = 2\n\
                 [agents_backend.properties]\n\"a.b\" = 1\n\
                 [[agents]]\nname = \"r\"\ntopics = [\"t\"]\n\
                 [[uplinks]]\nname = \"c\"\nbootstrap = \"central:9092\"\n\
                 [uplinks.properties]\n\"security.protocol\" = \"ssl\"\n",
            )
            .unwrap();
        assert_eq!(config.num_partitions(), 2);
    }
}
