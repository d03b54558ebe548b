//! Topics: names, ids, partition counts and per-topic settings in `sled`, and the open
//! partition logs that hold their records.
//!
//! The metadata store never holds records; it holds just enough to reopen every log on
//! start-up and to answer Metadata and DescribeConfigs without touching the disk.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use thiserror::Error;
use uuid::Uuid;

use crate::config::{self, BrokerConfig, ConfigError};
use crate::partition::Partition;
use crate::storage::{FlushError, OpenError, PartitionLog};

/// The most partitions one topic may have; a guard against typos that would open
/// millions of files.
pub const MAX_PARTITIONS: i32 = 10_000;

/// What is persisted about a topic.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TopicRecord {
    /// Its name.
    pub name: String,
    /// Its id, stable across restarts (Kafka's topic id, KIP-516).
    pub id: Uuid,
    /// How many partitions it has.
    pub partitions: i32,
    /// Settings set on the topic itself.
    pub configs: BTreeMap<String, String>,
}

/// An open topic.
#[derive(Debug)]
pub struct Topic {
    /// What is persisted about it.
    pub record: TopicRecord,
    /// Its partitions, by index (shared with the topic's next version after
    /// AlterConfigs or CreatePartitions, which replace the `Topic` but not its logs).
    pub partitions: Vec<Arc<Partition>>,
}

impl Topic {
    /// The topic's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The topic's id.
    pub fn id(&self) -> Uuid {
        self.record.id
    }

    /// A partition by index, if it exists.
    pub fn partition(&self, index: i32) -> Option<&Partition> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.partitions.get(i))
            .map(Arc::as_ref)
    }
}

/// Opening the registry failed.
#[derive(Debug, Error)]
pub enum RegistryOpenError {
    /// The metadata database would not open.
    #[error("metadata store: {0}")]
    Store(#[from] sled::Error),
    /// A stored record does not parse.
    #[error("metadata store holds a corrupt topic record: {0}")]
    Corrupt(String),
    /// A partition log would not open.
    #[error(transparent)]
    Log(#[from] OpenError),
    /// The data directory is unusable.
    #[error("data directory {path}: {source}")]
    Io {
        /// Which directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Creating a topic failed; each variant is one Kafka error code.
#[derive(Debug, Error)]
pub enum CreateTopicError {
    /// TOPIC_ALREADY_EXISTS.
    #[error("topic `{0}` already exists")]
    AlreadyExists(String),
    /// INVALID_TOPIC_EXCEPTION.
    #[error("invalid topic name `{name}`: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// INVALID_PARTITIONS.
    #[error("invalid partition count {0} (1 to {MAX_PARTITIONS})")]
    InvalidPartitions(i32),
    /// INVALID_REPLICATION_FACTOR.
    #[error("replication factor {0} is impossible on a single broker")]
    InvalidReplicationFactor(i16),
    /// INVALID_CONFIG.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// KAFKA_STORAGE_ERROR.
    #[error("storage: {0}")]
    Storage(String),
}

/// Deleting a topic failed.
#[derive(Debug, Error)]
pub enum DeleteTopicError {
    /// UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID.
    #[error("topic does not exist")]
    Unknown,
    /// KAFKA_STORAGE_ERROR.
    #[error("storage: {0}")]
    Storage(String),
}

/// Changing a topic's settings failed; each variant is one Kafka error code.
#[derive(Debug, Error)]
pub enum AlterTopicError {
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic does not exist")]
    Unknown,
    /// INVALID_CONFIG.
    #[error(transparent)]
    InvalidConfig(#[from] ConfigError),
    /// KAFKA_STORAGE_ERROR.
    #[error("storage: {0}")]
    Storage(String),
}

/// Adding partitions failed; each variant is one Kafka error code.
#[derive(Debug, Error)]
pub enum CreatePartitionsError {
    /// UNKNOWN_TOPIC_OR_PARTITION.
    #[error("topic does not exist")]
    Unknown,
    /// INVALID_PARTITIONS: partitions can only be added, up to [`MAX_PARTITIONS`].
    #[error("topic has {current} partitions; cannot change to {requested} (only increases up to {MAX_PARTITIONS})")]
    InvalidPartitions {
        /// The topic's partition count.
        current: i32,
        /// The count asked for.
        requested: i32,
    },
    /// KAFKA_STORAGE_ERROR.
    #[error("storage: {0}")]
    Storage(String),
}

/// Checks a topic name by Kafka's rules.
pub fn validate_topic_name(name: &str) -> Result<(), CreateTopicError> {
    let invalid = |why| CreateTopicError::InvalidName {
        name: name.to_string(),
        why,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("`.` and `..` are reserved"));
    }
    if name.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, `.`, `_` and `-` are allowed",
        ));
    }
    Ok(())
}

#[derive(Debug, Default)]
struct Index {
    by_name: HashMap<String, Arc<Topic>>,
    by_id: HashMap<Uuid, Arc<Topic>>,
}

/// Every topic of the broker, open and indexed by name and id.
#[derive(Debug)]
pub struct TopicRegistry {
    config: BrokerConfig,
    logs_dir: PathBuf,
    tree: sled::Tree,
    index: RwLock<Index>,
    /// Serialises create and delete so two requests for one name cannot race.
    changes: Mutex<()>,
}

impl TopicRegistry {
    /// Opens every stored topic's logs.
    pub fn open(config: BrokerConfig, db: &sled::Db) -> Result<TopicRegistry, RegistryOpenError> {
        let logs_dir = config.data_dir.join("logs");
        std::fs::create_dir_all(&logs_dir).map_err(|source| RegistryOpenError::Io {
            path: logs_dir.clone(),
            source,
        })?;
        let tree = db.open_tree("topics")?;
        let mut index = Index::default();
        for entry in tree.iter() {
            let (_, value) = entry?;
            let record: TopicRecord = serde_json::from_slice(&value)
                .map_err(|e| RegistryOpenError::Corrupt(e.to_string()))?;
            let topic = Arc::new(open_topic(&config, &logs_dir, record)?);
            index.by_id.insert(topic.id(), topic.clone());
            index.by_name.insert(topic.name().to_string(), topic);
        }
        remove_leftover_deletions(&logs_dir);
        Ok(TopicRegistry {
            config,
            logs_dir,
            tree,
            index: RwLock::new(index),
            changes: Mutex::new(()),
        })
    }

    /// A topic by name.
    pub fn get(&self, name: &str) -> Option<Arc<Topic>> {
        self.read_index().by_name.get(name).cloned()
    }

    /// A topic by id.
    pub fn get_by_id(&self, id: Uuid) -> Option<Arc<Topic>> {
        self.read_index().by_id.get(&id).cloned()
    }

    /// Every topic, sorted by name.
    pub fn list(&self) -> Vec<Arc<Topic>> {
        let mut topics: Vec<_> = self.read_index().by_name.values().cloned().collect();
        topics.sort_by(|a, b| a.name().cmp(b.name()));
        topics
    }

    /// Checks a creation without performing it (CreateTopics' validate_only, and the
    /// first step of [`TopicRegistry::create`]).
    pub fn validate_new(
        &self,
        name: &str,
        partitions: i32,
        configs: &BTreeMap<String, String>,
    ) -> Result<(), CreateTopicError> {
        validate_topic_name(name)?;
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            return Err(CreateTopicError::InvalidPartitions(partitions));
        }
        for (key, value) in configs {
            config::validate_topic_config(key, value)?;
        }
        if self.get(name).is_some() {
            return Err(CreateTopicError::AlreadyExists(name.to_string()));
        }
        Ok(())
    }

    /// Creates a topic, persists it, and opens its logs.
    pub fn create(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<Topic>, CreateTopicError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        self.validate_new(name, partitions, &configs)?;
        let record = TopicRecord {
            name: name.to_string(),
            id: Uuid::new_v4(),
            partitions,
            configs,
        };
        let topic = Arc::new(
            open_topic(&self.config, &self.logs_dir, record.clone())
                .map_err(|e| CreateTopicError::Storage(e.to_string()))?,
        );
        let encoded =
            serde_json::to_vec(&record).map_err(|e| CreateTopicError::Storage(e.to_string()))?;
        self.tree
            .insert(name.as_bytes(), encoded)
            .and_then(|_| self.tree.flush())
            .map_err(|e| CreateTopicError::Storage(e.to_string()))?;
        let mut index = self.write_index();
        index.by_id.insert(topic.id(), topic.clone());
        index.by_name.insert(name.to_string(), topic.clone());
        tracing::info!(topic = name, partitions, id = %topic.id(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic: forgets it at once, then removes its files.
    pub fn delete(&self, topic: &Topic) -> Result<(), DeleteTopicError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        {
            let mut index = self.write_index();
            match index.by_id.get(&topic.id()) {
                Some(current) if current.id() == topic.id() => {}
                _ => return Err(DeleteTopicError::Unknown),
            }
            index.by_id.remove(&topic.id());
            index.by_name.remove(topic.name());
        }
        self.tree
            .remove(topic.name().as_bytes())
            .and_then(|_| self.tree.flush())
            .map_err(|e| DeleteTopicError::Storage(e.to_string()))?;
        // Rename first so that a topic re-created under the same name at once gets
        // fresh directories, then remove in the background.
        let mut doomed = Vec::new();
        for partition in &topic.partitions {
            let dir = partition_dir(&self.logs_dir, topic.name(), partition.index);
            let renamed = self.logs_dir.join(format!(
                "{}-{}.{}-delete",
                topic.name(),
                partition.index,
                topic.id().simple()
            ));
            if std::fs::rename(&dir, &renamed).is_ok() {
                doomed.push(renamed);
            }
        }
        std::thread::spawn(move || {
            for dir in doomed {
                if let Err(error) = std::fs::remove_dir_all(&dir) {
                    tracing::warn!(dir = %dir.display(), %error, "could not remove deleted partition");
                }
            }
        });
        tracing::info!(topic = topic.name(), "deleted topic");
        crate::memory::release_freed_memory_soon();
        Ok(())
    }

    /// Replaces a topic's whole set of settings (AlterConfigs; IncrementalAlterConfigs
    /// computes the new set first). Validates every entry; with `validate_only` stops
    /// there. Otherwise persists the record, swaps in the new topic version (same
    /// partitions) and applies the roll thresholds to the open logs at once; retention
    /// and compaction settings are read by the cleaner on its next pass.
    pub fn alter_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Arc<Topic>, AlterTopicError> {
        for (key, value) in &configs {
            config::validate_topic_config(key, value)?;
        }
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.get(name).ok_or(AlterTopicError::Unknown)?;
        if validate_only {
            return Ok(current);
        }
        let record = TopicRecord {
            configs,
            ..current.record.clone()
        };
        self.persist(&record)
            .map_err(|e| AlterTopicError::Storage(e.to_string()))?;
        let log_config = self.config.log_config(&record.configs);
        for partition in &current.partitions {
            partition
                .log
                .set_roll_config(log_config.segment_bytes, log_config.segment_ms);
        }
        let topic = Arc::new(Topic {
            record,
            partitions: current.partitions.clone(),
        });
        self.install(topic.clone());
        tracing::info!(topic = name, configs = ?topic.record.configs, "altered topic configs");
        Ok(topic)
    }

    /// Grows a topic to `count` partitions (CreatePartitions): opens the new logs,
    /// persists the record, and swaps in the new topic version; clients see the new
    /// partitions in their next Metadata.
    pub fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<Arc<Topic>, CreatePartitionsError> {
        let _guard = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.get(name).ok_or(CreatePartitionsError::Unknown)?;
        let existing = current.record.partitions;
        if count <= existing || count > MAX_PARTITIONS {
            return Err(CreatePartitionsError::InvalidPartitions {
                current: existing,
                requested: count,
            });
        }
        if validate_only {
            return Ok(current);
        }
        let record = TopicRecord {
            partitions: count,
            ..current.record.clone()
        };
        let log_config = self.config.log_config(&record.configs);
        let mut partitions = current.partitions.clone();
        for index in existing..count {
            let partition = open_partition(&self.logs_dir, &record.name, index, &log_config)
                .map_err(|e| CreatePartitionsError::Storage(e.to_string()))?;
            partitions.push(partition);
        }
        self.persist(&record)
            .map_err(|e| CreatePartitionsError::Storage(e.to_string()))?;
        let topic = Arc::new(Topic { record, partitions });
        self.install(topic.clone());
        tracing::info!(
            topic = name,
            from = existing,
            to = count,
            "added partitions"
        );
        Ok(topic)
    }

    fn persist(&self, record: &TopicRecord) -> Result<(), String> {
        let encoded = serde_json::to_vec(record).map_err(|e| e.to_string())?;
        self.tree
            .insert(record.name.as_bytes(), encoded)
            .and_then(|_| self.tree.flush())
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    fn install(&self, topic: Arc<Topic>) {
        let mut index = self.write_index();
        index.by_id.insert(topic.id(), topic.clone());
        index.by_name.insert(topic.name().to_string(), topic);
    }

    /// Forces every log to disk (shutdown).
    pub fn flush_all(&self) -> Result<(), FlushError> {
        for topic in self.list() {
            for partition in &topic.partitions {
                partition.log.flush()?;
                if let Err(error) = partition.save_producer_state() {
                    tracing::warn!(topic = topic.name(), partition = partition.index, %error, "could not save producer state; it will be rebuilt from the log");
                }
            }
        }
        Ok(())
    }

    fn read_index(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_index(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn partition_dir(logs_dir: &Path, topic: &str, partition: i32) -> PathBuf {
    logs_dir.join(format!("{topic}-{partition}"))
}

fn open_topic(
    config: &BrokerConfig,
    logs_dir: &Path,
    record: TopicRecord,
) -> Result<Topic, OpenError> {
    let log_config = config.log_config(&record.configs);
    let partitions = (0..record.partitions)
        .map(|index| open_partition(logs_dir, &record.name, index, &log_config))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Topic { record, partitions })
}

fn open_partition(
    logs_dir: &Path,
    topic: &str,
    index: i32,
    log_config: &crate::storage::LogConfig,
) -> Result<Arc<Partition>, OpenError> {
    let dir = partition_dir(logs_dir, topic, index);
    let log = PartitionLog::open(&dir, log_config.clone())?;
    let partition = Partition::open(index, dir, log)?;
    // Interval flushing runs on the runtime; other policies need no task.
    let _ = partition.log.start_background();
    Ok(Arc::new(partition))
}

/// Finishes deletions that a crash interrupted.
fn remove_leftover_deletions(logs_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(logs_dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().ends_with("-delete") {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        for bad in ["", ".", "..", "has space", "slash/", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn topics_survive_reopening_and_deletion_forgets_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = BrokerConfig::with_data_dir(dir.path());
        let id = {
            let db = crate::broker::open_metadata(&dir.path().join("meta")).unwrap();
            let registry = TopicRegistry::open(config.clone(), &db).unwrap();
            let mut configs = BTreeMap::new();
            configs.insert("retention.ms".to_string(), "1000".to_string());
            let topic = registry.create("a", 3, configs).unwrap();
            registry.create("b", 1, BTreeMap::new()).unwrap();
            assert!(matches!(
                registry.create("a", 1, BTreeMap::new()),
                Err(CreateTopicError::AlreadyExists(_))
            ));
            let b = registry.get("b").unwrap();
            registry.delete(&b).unwrap();
            topic.id()
        };
        let db = crate::broker::open_metadata(&dir.path().join("meta")).unwrap();
        let registry = TopicRegistry::open(config, &db).unwrap();
        let topic = registry.get("a").unwrap();
        assert_eq!(topic.id(), id);
        assert_eq!(topic.partitions.len(), 3);
        assert_eq!(
            topic.record.configs.get("retention.ms").map(String::as_str),
            Some("1000")
        );
        assert!(registry.get("b").is_none());
        assert!(registry.get_by_id(id).is_some());
    }
}
