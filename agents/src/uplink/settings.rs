//! `[[uplinks]]`: links from this edge process to a central Kafka-protocol cluster.
//!
//! ```toml
//! [[uplinks]]
//! name = "central"
//! direction = "up"                  # local -> remote, or "down": remote -> local
//! bootstrap = "central-kafka:9092"  # the remote cluster
//! site = "rig7"                     # this edge's origin id (headers, ids, progress topic)
//! topics = ["telemetry", "alarms"]  # and/or
//! topics_regex = "^sensors\\..*"
//! priority = ["alarms", "sensors\\.critical\\..*"]  # forwarded first, in this order
//! rename_prefix = "rig7."           # remote topic = prefix + local name
//! mode = "exactly_once"             # or "at_least_once" (remote without transactions)
//! batch_bytes = 1048576             # most bytes read into one transaction
//! linger_ms = 5                     # librdkafka linger.ms of the remote producer
//! compression = "zstd"              # librdkafka compression.type towards the remote
//! remote_timeout_ms = 30000         # longest remote call before the link counts as down
//! retain_until_forwarded = true     # local retention keeps what is not forwarded yet
//! max_bytes_per_second = 1000000    # bandwidth cap (stored batch bytes, before compression)
//! [uplinks.properties]              # librdkafka pass-through (TLS, SASL, timeouts)
//! "security.protocol" = "sasl_ssl"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

/// Default most bytes of local records read into one remote transaction.
pub const DEFAULT_BATCH_BYTES: usize = 1 << 20;
/// Default librdkafka `linger.ms`: small, because a transaction waits for its sends
/// anyway, and the uplink gathers a batch from the local log before sending.
pub const DEFAULT_LINGER: Duration = Duration::from_millis(5);

/// Default longest wait for one remote call before the link counts as down.
pub const DEFAULT_REMOTE_TIMEOUT: Duration = Duration::from_secs(30);

/// Which way records flow.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Local topics forwarded to the remote cluster.
    #[default]
    Up,
    /// Remote topics mirrored into local ones (commands, model updates), progress kept
    /// locally in the mirrored records (see `mirror`).
    Down,
}

/// The delivery guarantee towards the remote cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Records and progress in one remote transaction: read_committed consumers see
    /// every record once, whatever crashes or cuts happen.
    #[default]
    ExactlyOnce,
    /// Idempotent producer, progress written after delivery: for remote clusters
    /// without transactions; a crash may forward a record twice, never lose one.
    AtLeastOnce,
}

/// One `[[uplinks]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UplinkDef {
    /// The uplink's name: with `site`, it names the transactional id and progress topic.
    pub name: String,
    /// `up` (default) or `down`.
    #[serde(default)]
    pub direction: Direction,
    /// The remote cluster's `bootstrap.servers`.
    pub bootstrap: String,
    /// Extra librdkafka properties for every remote client, applied last so they can
    /// override the uplink's defaults (TLS and SASL settings go here).
    #[serde(default)]
    pub properties: BTreeMap<String, toml::Value>,
    /// Topics forwarded, by name: local ones going up, remote ones coming down.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topics forwarded, by pattern (matched anywhere unless anchored): local ones
    /// going up, remote ones coming down.
    pub topics_regex: Option<String>,
    /// Topics forwarded before the others, highest first (`direction = "up"` only):
    /// each entry is a pattern matched against the whole local topic name (a plain
    /// name matches itself). Every batch is filled from the first entry's topics, then
    /// the next's, then the unlisted ones, so after a long outage alarms are on the
    /// remote before the telemetry backlog; a listed topic that never runs dry holds
    /// the others back, as strict priority must.
    #[serde(default)]
    pub priority: Vec<String>,
    /// Prepended to a topic's name to name its copy: the remote topic going up, the
    /// local one coming down.
    #[serde(default)]
    pub rename_prefix: String,
    /// This edge's origin id: the `origin.site` header, and part of the remote ids, so
    /// two edges never share a transactional id or a progress topic.
    pub site: String,
    /// `exactly_once` (default) or `at_least_once`.
    #[serde(default)]
    pub mode: Mode,
    /// Most bytes of local records read into one transaction (default 1 MiB).
    pub batch_bytes: Option<usize>,
    /// librdkafka `linger.ms` of the remote producer (default 5).
    pub linger_ms: Option<u64>,
    /// librdkafka `compression.type` towards the remote (default none).
    pub compression: Option<String>,
    /// Longest wait for one remote call (initialising or committing a transaction,
    /// metadata, reading progress) before the link counts as down (default 30000).
    pub remote_timeout_ms: Option<u64>,
    /// Keep local retention from deleting records not forwarded yet (default true):
    /// while the link is down, the edge's disk holds the backlog. The broker's free-disk
    /// guard still refuses produce when space runs out, so the disk never fills.
    pub retain_until_forwarded: Option<bool>,
    /// Bandwidth cap: most bytes of local record batches (before the uplink's
    /// compression) forwarded per second, averaged over batches (default: none).
    pub max_bytes_per_second: Option<u64>,
}

/// An `[[uplinks]]` table is unusable.
#[derive(Debug, Error)]
pub enum UplinkConfigError {
    /// A required text is empty.
    #[error("uplink `{uplink}`: `{field}` must not be empty")]
    Empty {
        /// The uplink.
        uplink: String,
        /// The field.
        field: &'static str,
    },
    /// Neither `topics` nor `topics_regex`.
    #[error("uplink `{0}`: give `topics` and/or `topics_regex`")]
    NoTopics(String),
    /// `topics_regex` or a `priority` entry does not compile.
    #[error("uplink `{uplink}`: {field}: {reason}")]
    Regex {
        /// The uplink.
        uplink: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// `priority` on a `direction = "down"` uplink, whose order is the remote's.
    #[error("uplink `{0}`: `priority` applies to direction = \"up\" only")]
    PriorityDown(String),
    /// A name that becomes part of a topic name has characters Kafka refuses.
    #[error("uplink `{uplink}`: `{field}` may hold only letters, digits, '.', '_' and '-'")]
    BadName {
        /// The uplink.
        uplink: String,
        /// The field.
        field: &'static str,
    },
    /// Two uplinks with one name would share a transactional id and fence each other.
    #[error("uplink `{0}` is declared twice")]
    Duplicate(String),
}

fn is_topic_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl UplinkDef {
    /// Checks the table, so a bad uplink is refused at start-up with its name.
    pub fn validate(&self) -> Result<(), UplinkConfigError> {
        let uplink = || self.name.clone();
        for (field, value) in [
            ("name", &self.name),
            ("site", &self.site),
            ("bootstrap", &self.bootstrap),
        ] {
            if value.trim().is_empty() {
                return Err(UplinkConfigError::Empty {
                    uplink: uplink(),
                    field,
                });
            }
        }
        for (field, value) in [
            ("name", &self.name),
            ("site", &self.site),
            ("rename_prefix", &self.rename_prefix),
        ] {
            if !is_topic_safe(value) {
                return Err(UplinkConfigError::BadName {
                    uplink: uplink(),
                    field,
                });
            }
        }
        if self.topics.is_empty() && self.topics_regex.is_none() {
            return Err(UplinkConfigError::NoTopics(uplink()));
        }
        self.pattern()?;
        self.priorities()?;
        if self.direction == Direction::Down && !self.priority.is_empty() {
            return Err(UplinkConfigError::PriorityDown(uplink()));
        }
        Ok(())
    }

    /// The compiled `topics_regex`, if any.
    pub fn pattern(&self) -> Result<Option<Regex>, UplinkConfigError> {
        self.topics_regex
            .as_deref()
            .map(Regex::new)
            .transpose()
            .map_err(|e| UplinkConfigError::Regex {
                uplink: self.name.clone(),
                field: "topics_regex",
                reason: e.to_string(),
            })
    }

    /// The compiled `priority` entries, highest first, each anchored to the whole name.
    pub fn priorities(&self) -> Result<Vec<Regex>, UplinkConfigError> {
        self.priority
            .iter()
            .map(|entry| {
                Regex::new(&format!("^(?:{entry})$")).map_err(|e| UplinkConfigError::Regex {
                    uplink: self.name.clone(),
                    field: "priority",
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The transactional id: stable across restarts, so a restarted edge fences its
    /// zombie and the coordinator aborts the transaction it left open.
    pub fn transactional_id(&self) -> String {
        format!("agentlog-uplink-{}-{}", self.site, self.name)
    }

    /// The compacted remote topic holding this uplink's progress.
    pub fn progress_topic(&self) -> String {
        format!("_agentlog.uplink.{}.{}", self.site, self.name)
    }

    /// The remote topic a local topic is forwarded to.
    pub fn remote_topic(&self, local: &str) -> String {
        format!("{}{}", self.rename_prefix, local)
    }

    /// Whether local retention waits for this uplink.
    pub fn retain_until_forwarded(&self) -> bool {
        self.retain_until_forwarded.unwrap_or(true)
    }

    /// Longest wait for one remote call.
    pub fn remote_timeout(&self) -> Duration {
        self.remote_timeout_ms
            .map_or(DEFAULT_REMOTE_TIMEOUT, Duration::from_millis)
    }

    /// Most bytes read into one transaction.
    pub fn batch_bytes(&self) -> usize {
        self.batch_bytes.unwrap_or(DEFAULT_BATCH_BYTES).max(1)
    }

    /// The librdkafka properties of every remote client: bootstrap, then `properties`.
    pub fn client_properties(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        out.insert("bootstrap.servers".to_string(), self.bootstrap.clone());
        for (key, value) in &self.properties {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            out.insert(key.clone(), text);
        }
        out
    }
}

/// Checks every uplink and that no two share a name.
pub fn validate_all(uplinks: &[UplinkDef]) -> Result<(), UplinkConfigError> {
    for (i, uplink) in uplinks.iter().enumerate() {
        uplink.validate()?;
        if uplinks[..i].iter().any(|u| u.name == uplink.name) {
            return Err(UplinkConfigError::Duplicate(uplink.name.clone()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> UplinkDef {
        toml::from_str(text).unwrap()
    }

    const MINIMAL: &str = "name='c'\nbootstrap='h:9092'\nsite='rig7'\ntopics=['t']\n";

    #[test]
    fn defaults_and_derived_names() {
        let def = parse(MINIMAL);
        def.validate().unwrap();
        assert_eq!(def.direction, Direction::Up);
        assert_eq!(def.mode, Mode::ExactlyOnce);
        assert_eq!(def.transactional_id(), "agentlog-uplink-rig7-c");
        assert_eq!(def.progress_topic(), "_agentlog.uplink.rig7.c");
        assert_eq!(def.remote_topic("t"), "t");
        assert_eq!(def.batch_bytes(), DEFAULT_BATCH_BYTES);
    }

    #[test]
    fn priority_entries_match_whole_names() {
        let def = parse(&format!(
            "{MINIMAL}priority=['alarms', 'sensors\\.critical\\..*']\n"
        ));
        def.validate().unwrap();
        let priorities = def.priorities().unwrap();
        assert!(priorities[0].is_match("alarms"));
        assert!(!priorities[0].is_match("alarms-old"));
        assert!(!priorities[0].is_match("old-alarms"));
        assert!(priorities[1].is_match("sensors.critical.pump"));
        assert!(!priorities[1].is_match("sensors.criticalpump"));
    }

    #[test]
    fn refuses_bad_tables() {
        let no_topics = parse("name='c'\nbootstrap='h'\nsite='s'\n");
        assert!(matches!(
            no_topics.validate(),
            Err(UplinkConfigError::NoTopics(_))
        ));
        let bad_regex = parse("name='c'\nbootstrap='h'\nsite='s'\ntopics_regex='('\n");
        assert!(matches!(
            bad_regex.validate(),
            Err(UplinkConfigError::Regex { .. })
        ));
        let bad_site = parse("name='c'\nbootstrap='h'\nsite='a/b'\ntopics=['t']\n");
        assert!(matches!(
            bad_site.validate(),
            Err(UplinkConfigError::BadName { field: "site", .. })
        ));
        let bad_priority = parse(&format!("{MINIMAL}priority=['a(']\n"));
        assert!(matches!(
            bad_priority.validate(),
            Err(UplinkConfigError::Regex {
                field: "priority",
                ..
            })
        ));
        let down_priority = parse(&format!("{MINIMAL}direction='down'\npriority=['t']\n"));
        assert!(matches!(
            down_priority.validate(),
            Err(UplinkConfigError::PriorityDown(_))
        ));
        let down = parse(&format!("{MINIMAL}direction='down'\n"));
        down.validate().unwrap();
        assert_eq!(down.direction, Direction::Down);
        assert!(toml::from_str::<UplinkDef>(&format!("{MINIMAL}nope=1\n")).is_err());
        let twice = [parse(MINIMAL), parse(MINIMAL)];
        assert!(matches!(
            validate_all(&twice),
            Err(UplinkConfigError::Duplicate(_))
        ));
    }
}
