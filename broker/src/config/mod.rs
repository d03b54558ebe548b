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
use crate::storage::{CacheBudget, FlushPolicy, LogConfig, DEFAULT_CACHE_BUDGET};

mod catalog;
pub mod group;

pub use catalog::{
    ConfigDef, ConfigType, BROKER_CONFIGS, DYNAMIC_BROKER_CONFIGS, GROUP_CONFIGS, TOPIC_CONFIGS,
};

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
    /// Set on a group (IncrementalAlterConfigs of a GROUP resource).
    Group,
}

impl ConfigSource {
    /// Kafka's numeric code.
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::DynamicTopic => 1,
            ConfigSource::DynamicBroker => 2,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
            ConfigSource::Group => 8,
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
    /// A value outside the bounds other settings set (Kafka's message).
    #[error("{0}")]
    Bound(String),
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

pub(crate) fn check_value(d: &ConfigDef, value: &str) -> Result<(), ConfigError> {
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
    /// The memory every partition's tail cache shares, sized by
    /// `log.cache.budget.bytes`; shared by every clone, like `dynamic`.
    cache_budget: Arc<CacheBudget>,
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
            cache_budget: CacheBudget::new(DEFAULT_CACHE_BUDGET),
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
        if let Some(value) = self.derived(d.name) {
            return Some((value, ConfigSource::StaticBroker));
        }
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

    /// The settings held outside the name-to-value map (the node's listeners and data
    /// directory, and its fixed roles), as Kafka spells them.
    fn derived(&self, name: &str) -> Option<String> {
        let listeners = || {
            self.listeners
                .iter()
                .map(|l| format!("{}://{}", l.protocol, l.address))
                .collect::<Vec<_>>()
                .join(",")
        };
        match name {
            "listeners" => Some(listeners()),
            "advertised.listeners" if self.advertised.is_empty() => Some(listeners()),
            "advertised.listeners" => Some(
                self.advertised
                    .iter()
                    .map(|(protocol, address)| format!("{protocol}://{address}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            "log.dirs" | "log.dir" => Some(self.data_dir.display().to_string()),
            "process.roles" => Some("broker,controller".to_string()),
            _ => None,
        }
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

    /// `group.consumer.heartbeat.interval.ms` and `group.consumer.session.timeout.ms`:
    /// the KIP-848 consumer protocol's heartbeat interval and session timeout.
    pub fn group_consumer_timing(&self) -> (i32, i32) {
        (
            self.get("group.consumer.heartbeat.interval.ms", 5000),
            self.get("group.consumer.session.timeout.ms", 45000),
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

    /// The windows client quota rates are measured over (`quota.window.num` samples of
    /// `quota.window.size.seconds`).
    pub fn quota_window(&self) -> crate::quotas::rate::RateConfig {
        crate::quotas::rate::RateConfig {
            samples: self.get("quota.window.num", 11usize),
            window_ms: self
                .get("quota.window.size.seconds", 1i64)
                .saturating_mul(1000),
        }
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

    /// A numeric topic setting's effective value, or `fallback`.
    pub fn topic_number<T: std::str::FromStr>(
        &self,
        overrides: &BTreeMap<String, String>,
        name: &str,
        fallback: T,
    ) -> T {
        self.topic_value(overrides, name)
            .and_then(|(v, _)| v.trim().parse().ok())
            .unwrap_or(fallback)
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
            cache_budget: self.cache_budget(),
            preallocate: self.get("log.preallocate", true),
        }
    }

    /// The tail caches' shared budget, sized by `log.cache.budget.bytes` (read here
    /// rather than at construction, as settings are applied to a built config).
    pub fn cache_budget(&self) -> Arc<CacheBudget> {
        self.cache_budget
            .set_limit(self.get("log.cache.budget.bytes", DEFAULT_CACHE_BUDGET));
        self.cache_budget.clone()
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
mod tests;
