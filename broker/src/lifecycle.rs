//! Log lifecycle in the background: retention, compaction, and the free-disk guard, so
//! that an edge box never fills its disk. Also where runtime (dynamic) broker settings
//! are persisted.
//!
//! Three tasks are started with the broker ([`spawn`]), each ending when the broker
//! begins to stop:
//!
//! * **retention**, every `log.retention.check.interval.ms`: for every partition, applies
//!   the topic's current roll thresholds (so AlterConfigs of `segment.bytes` reaches
//!   every log), then deletes whole sealed segments per `retention.ms` /
//!   `retention.bytes` (topics whose `cleanup.policy` includes `delete`) and those left
//!   below the log start by DeleteRecords (every topic). Segments an edge uplink holds
//!   stay, unless free disk is below the floor (see `disk_floor`).
//! * **compaction**, every `log.cleaner.backoff.ms`: one pass per partition of topics
//!   whose `cleanup.policy` includes `compact` (see `storage::compact`).
//! * **disk guard**, twice a second: statvfs of the data directory; below
//!   `log.disk.free.min.bytes` free, produce is refused with KAFKA_STORAGE_ERROR
//!   (retriable, so clients back off and retry) until space is back. Each transition
//!   is logged once.
//!
//! Passes run on blocking threads, one partition at a time, and only take a log's
//! locks briefly (see `storage`), so produce and fetch are not stalled.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::task::JoinHandle;

use crate::broker::Broker;
use crate::config::{BrokerConfig, DynamicConfigError};
use crate::disk_floor;
use crate::storage::{Compaction, Retention};

/// sled tree holding dynamic broker settings.
const DYNAMIC_TREE: &str = "broker_configs";
/// How often free disk space is checked.
const DISK_CHECK: Duration = Duration::from_millis(500);

/// Counters and the disk state, readable by a metrics endpoint later.
#[derive(Debug, Default)]
pub struct Lifecycle {
    disk_low: AtomicBool,
    /// Free bytes at the last check (`u64::MAX` before the first).
    free_bytes: AtomicU64,
    segments_deleted: AtomicU64,
    bytes_deleted: AtomicU64,
    compactions: AtomicU64,
    records_compacted_away: AtomicU64,
    /// Records and bytes the free-disk floor deleted although an uplink held them.
    floor_records_deleted: AtomicU64,
    floor_bytes_deleted: AtomicU64,
    /// Per partition, the first offset each holder (an edge uplink) still needs.
    retention_holds: Mutex<HashMap<(String, i32), BTreeMap<String, Hold>>>,
}

/// One holder's hold on a partition.
#[derive(Debug, Clone, Copy)]
struct Hold {
    offset: i64,
    /// Progress, not a backlog: the free-disk floor never releases it.
    pinned: bool,
}

impl Lifecycle {
    /// Fresh state: disk assumed fine until the first check.
    pub fn new() -> Lifecycle {
        Lifecycle {
            free_bytes: AtomicU64::new(u64::MAX),
            ..Lifecycle::default()
        }
    }

    /// Whether produce is being refused for lack of disk space (a gauge).
    pub fn disk_low(&self) -> bool {
        self.disk_low.load(Ordering::Acquire)
    }

    /// Free bytes on the data directory's filesystem at the last check.
    pub fn free_bytes(&self) -> Option<u64> {
        let free = self.free_bytes.load(Ordering::Relaxed);
        (free != u64::MAX).then_some(free)
    }

    /// Segments deleted by retention and DeleteRecords since start.
    pub fn segments_deleted(&self) -> u64 {
        self.segments_deleted.load(Ordering::Relaxed)
    }

    /// Bytes of log deleted since start.
    pub fn bytes_deleted(&self) -> u64 {
        self.bytes_deleted.load(Ordering::Relaxed)
    }

    /// Compaction passes that rewrote segments since start.
    pub fn compactions(&self) -> u64 {
        self.compactions.load(Ordering::Relaxed)
    }

    /// Records removed by compaction since start.
    pub fn records_compacted_away(&self) -> u64 {
        self.records_compacted_away.load(Ordering::Relaxed)
    }

    /// Records the free-disk floor deleted although an uplink had not forwarded them.
    pub fn floor_records_deleted(&self) -> u64 {
        self.floor_records_deleted.load(Ordering::Relaxed)
    }

    /// Bytes of log the free-disk floor deleted although an uplink held them.
    pub fn floor_bytes_deleted(&self) -> u64 {
        self.floor_bytes_deleted.load(Ordering::Relaxed)
    }

    /// Holds `topic`-`partition` from `offset` on for `holder`: time and size retention
    /// keep every segment from the one holding it (see `Retention::keep_from`), so a
    /// reader that must see every record (an edge uplink with its link down) loses none
    /// unless free disk falls below `log.disk.free.min.bytes` (see `disk_floor`).
    /// Called again as the holder moves on.
    pub fn hold_from(&self, holder: &str, topic: &str, partition: i32, offset: i64) {
        self.set_hold(holder, topic, partition, offset, false);
    }

    /// Like [`Lifecycle::hold_from`], but the free-disk floor never releases it: for a
    /// record that is progress (a down uplink's last mirrored one, which says where to
    /// resume), whose loss would re-fetch everything rather than free space.
    pub fn pin_from(&self, holder: &str, topic: &str, partition: i32, offset: i64) {
        self.set_hold(holder, topic, partition, offset, true);
    }

    fn set_hold(&self, holder: &str, topic: &str, partition: i32, offset: i64, pinned: bool) {
        self.retention_holds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((topic.to_string(), partition))
            .or_default()
            .insert(holder.to_string(), Hold { offset, pinned });
    }

    /// Drops every hold of `holder`.
    pub fn release_holds(&self, holder: &str) {
        let mut holds = self
            .retention_holds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for by_holder in holds.values_mut() {
            by_holder.remove(holder);
        }
        holds.retain(|_, by_holder| !by_holder.is_empty());
    }

    /// The lowest held offset of a partition, if any holder holds it.
    pub fn held_from(&self, topic: &str, partition: i32) -> Option<i64> {
        self.holds(topic, partition).0
    }

    /// The lowest held offset of a partition, and the lowest pinned one (which the
    /// free-disk floor does not release).
    pub fn holds(&self, topic: &str, partition: i32) -> (Option<i64>, Option<i64>) {
        let holds = self
            .retention_holds
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let Some(by_holder) = holds.get(&(topic.to_string(), partition)) else {
            return (None, None);
        };
        let held = by_holder.values().map(|h| h.offset).min();
        let pinned = by_holder
            .values()
            .filter(|h| h.pinned)
            .map(|h| h.offset)
            .min();
        (held, pinned)
    }

    /// Updates the disk gauge from a free-space reading; logs once per transition.
    pub fn record_free_space(&self, free: u64, min_free: u64) {
        self.free_bytes.store(free, Ordering::Relaxed);
        let low = min_free > 0 && free < min_free;
        let was = self.disk_low.swap(low, Ordering::AcqRel);
        if low && !was {
            tracing::error!(
                free_bytes = free,
                min_free_bytes = min_free,
                "free disk space below log.disk.free.min.bytes: refusing produce"
            );
        } else if !low && was {
            tracing::warn!(
                free_bytes = free,
                "free disk space recovered: accepting produce"
            );
        }
    }
}

/// Free bytes available to unprivileged writers on the filesystem holding `dir`.
pub fn free_disk_bytes(dir: &Path) -> std::io::Result<u64> {
    disk_bytes(dir).map(|(_, usable)| usable)
}

/// The size of the filesystem holding `dir` and the bytes unprivileged writers may
/// still use on it (DescribeLogDirs' `total_bytes` and `usable_bytes`).
pub fn disk_bytes(dir: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok((
        stat.f_blocks.saturating_mul(stat.f_frsize),
        stat.f_bavail.saturating_mul(stat.f_frsize),
    ))
}

/// Loads persisted dynamic broker settings into `config` (at open). A stored value
/// that no longer validates is skipped with a warning rather than failing the start.
pub fn load_dynamic_configs(db: &sled::Db, config: &BrokerConfig) -> Result<(), sled::Error> {
    let tree = db.open_tree(DYNAMIC_TREE)?;
    for entry in tree.iter() {
        let (key, value) = entry?;
        let name = String::from_utf8_lossy(&key).into_owned();
        let value = String::from_utf8_lossy(&value).into_owned();
        if let Err(error) = config.set_dynamic(&name, Some(&value)) {
            tracing::warn!(%name, %value, %error, "ignoring a stored dynamic broker setting");
        }
    }
    Ok(())
}

/// Applying dynamic broker settings failed.
#[derive(Debug, thiserror::Error)]
pub enum AlterBrokerError {
    /// INVALID_CONFIG (unknown, read-only, or bad value).
    #[error(transparent)]
    Invalid(#[from] DynamicConfigError),
    /// KAFKA_STORAGE_ERROR.
    #[error("metadata store: {0}")]
    Storage(#[from] sled::Error),
}

/// Replaces the dynamic broker settings with `wanted` (names to values): validates all
/// first, then (unless `validate_only`) persists and applies them. Settings absent from
/// `wanted` return to their static value.
pub fn set_dynamic_configs(
    broker: &Broker,
    wanted: &BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), AlterBrokerError> {
    for (name, value) in wanted {
        BrokerConfig::validate_dynamic(name, Some(value))?;
    }
    if validate_only {
        return Ok(());
    }
    let tree = broker.metadata_db().open_tree(DYNAMIC_TREE)?;
    let current = broker.config.dynamic_values();
    for name in current.keys() {
        if !wanted.contains_key(name) {
            tree.remove(name.as_bytes())?;
            broker.config.set_dynamic(name, None)?;
        }
    }
    for (name, value) in wanted {
        tree.insert(name.as_bytes(), value.as_bytes())?;
        broker.config.set_dynamic(name, Some(value))?;
    }
    tree.flush()?;
    tracing::info!(?wanted, "altered dynamic broker configs");
    Ok(())
}

/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Whether the topic's `cleanup.policy` (override or broker default) names `word`.
pub(crate) fn has_policy(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    word: &str,
) -> bool {
    config
        .topic_value(overrides, "cleanup.policy")
        .is_some_and(|(v, _)| v.split(',').any(|p| p.trim() == word))
}

/// A topic's retention settings at `now` (nothing held yet).
fn topic_retention(
    config: &BrokerConfig,
    configs: &BTreeMap<String, String>,
    now: i64,
) -> Retention {
    let delete = has_policy(config, configs, "delete");
    let setting = |name| {
        if delete {
            config.topic_number(configs, name, -1)
        } else {
            -1
        }
    };
    Retention {
        retention_ms: setting("retention.ms"),
        retention_bytes: setting("retention.bytes"),
        now_ms: now,
        keep_from: None,
    }
}

/// One retention pass over every partition; below the free-disk floor, it also deletes
/// what `disk_floor` releases from the uplinks' holds.
pub fn retention_pass(broker: &Broker) {
    let now = now_ms();
    let releases = disk_floor::plan_releases(broker, |configs| {
        topic_retention(&broker.config, configs, now)
    });
    for topic in broker.topics.list() {
        let configs = &topic.record.configs;
        let log_config = broker.config.log_config(configs);
        let retention = topic_retention(&broker.config, configs, now);
        for partition in &topic.partitions {
            let key = (topic.name().to_string(), partition.index);
            let released = releases.get(&key);
            let held = broker.lifecycle.held_from(topic.name(), partition.index);
            let retention = Retention {
                keep_from: disk_floor::keep_from(held, released),
                ..retention
            };
            partition
                .log
                .set_roll_config(log_config.segment_bytes, log_config.segment_ms);
            match partition.log.apply_retention(retention) {
                Ok(outcome) => {
                    let lifecycle = &broker.lifecycle;
                    lifecycle
                        .segments_deleted
                        .fetch_add(outcome.segments_deleted, Ordering::Relaxed);
                    lifecycle
                        .bytes_deleted
                        .fetch_add(outcome.bytes_deleted, Ordering::Relaxed);
                    if let Some(released) = released {
                        let start = partition.log.log_start_offset();
                        let (records, bytes) = disk_floor::report_released(
                            &key,
                            released,
                            start,
                            lifecycle.free_bytes(),
                        );
                        lifecycle
                            .floor_records_deleted
                            .fetch_add(records, Ordering::Relaxed);
                        lifecycle
                            .floor_bytes_deleted
                            .fetch_add(bytes, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    tracing::error!(topic = topic.name(), partition = partition.index, %error, "retention failed")
                }
            }
        }
    }
}

/// One compaction pass over every partition of compacted topics.
pub fn compaction_pass(broker: &Broker) {
    let now = now_ms();
    for topic in broker.topics.list() {
        let configs = &topic.record.configs;
        if !has_policy(&broker.config, configs, "compact") {
            continue;
        }
        let policy = Compaction {
            now_ms: now,
            delete_retention_ms: broker.config.topic_number(
                configs,
                "delete.retention.ms",
                86_400_000,
            ),
            min_compaction_lag_ms: broker
                .config
                .topic_number(configs, "min.compaction.lag.ms", 0),
            min_cleanable_dirty_ratio: broker.config.topic_number(
                configs,
                "min.cleanable.dirty.ratio",
                0.5,
            ),
        };
        for partition in &topic.partitions {
            match partition.log.compact(policy) {
                Ok(Some(outcome)) => {
                    let lifecycle = &broker.lifecycle;
                    lifecycle.compactions.fetch_add(1, Ordering::Relaxed);
                    lifecycle
                        .records_compacted_away
                        .fetch_add(outcome.records_removed, Ordering::Relaxed);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(topic = topic.name(), partition = partition.index, %error, "compaction failed")
                }
            }
        }
    }
}

/// Checks free disk space once and updates the gauge.
pub fn disk_check(broker: &Broker) {
    let min_free: u64 = broker.config.get_or("log.disk.free.min.bytes", 100 << 20);
    match free_disk_bytes(&broker.config.data_dir) {
        Ok(free) => broker.lifecycle.record_free_space(free, min_free),
        Err(error) => tracing::warn!(%error, "cannot read free disk space"),
    }
}

/// How often active segments are checked for growth since their recovery point.
const RECOVERY_POINT_CHECK: Duration = Duration::from_secs(1);

/// Growth of an active segment that earns it a new recovery point: what a crash can
/// make the next open validate, at ~0.5-2 GB/s, beyond what arrives within one check.
pub const RECOVERY_POINT_BYTES: u64 = 64 << 20;

/// Writes recovery points (and producer-state snapshots) for active segments that grew
/// by [`RECOVERY_POINT_BYTES`], so that a start-up after a crash reads megabytes, not
/// whole segments or the whole log.
pub fn recovery_point_pass(broker: &Broker) {
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            if let Err(error) = partition.record_recovery_point_if_grown(RECOVERY_POINT_BYTES) {
                tracing::error!(topic = topic.name(), partition = partition.index, %error, "recording a recovery point failed");
            }
        }
    }
}

/// Starts the retention, compaction, recovery-point and disk-guard tasks on the current
/// runtime.
pub fn spawn(broker: &Arc<Broker>) -> Vec<JoinHandle<()>> {
    disk_check(broker);
    let every = |setting: &'static str, fallback: u64| {
        move |broker: &Broker| Duration::from_millis(broker.config.get_or(setting, fallback).max(1))
    };
    vec![
        spawn_loop(
            broker.clone(),
            every("log.retention.check.interval.ms", 5000),
            retention_pass,
        ),
        spawn_loop(
            broker.clone(),
            every("log.cleaner.backoff.ms", 2000),
            compaction_pass,
        ),
        spawn_loop(
            broker.clone(),
            |_| RECOVERY_POINT_CHECK,
            recovery_point_pass,
        ),
        spawn_loop(broker.clone(), |_| DISK_CHECK, disk_check),
    ]
}

fn spawn_loop(
    broker: Arc<Broker>,
    period: impl Fn(&Broker) -> Duration + Send + 'static,
    pass: fn(&Broker),
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut shutdown = broker.shutdown_signal();
        loop {
            let wait = period(&broker);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
            let pass_broker = broker.clone();
            if let Err(error) = tokio::task::spawn_blocking(move || pass(&pass_broker)).await {
                tracing::error!(%error, "lifecycle pass failed");
            }
        }
    })
}

#[cfg(test)]
mod policy_tests {
    use std::collections::BTreeMap;

    use super::has_policy;
    use crate::config::BrokerConfig;

    /// Kafka 4.2: an empty `cleanup.policy` is neither delete nor compact, so neither
    /// retention nor compaction touches the topic; unset, the broker's default applies.
    #[test]
    fn an_empty_cleanup_policy_neither_deletes_nor_compacts() {
        let config = BrokerConfig::default();
        let empty = BTreeMap::from([("cleanup.policy".to_string(), String::new())]);
        assert!(!has_policy(&config, &empty, "delete"));
        assert!(!has_policy(&config, &empty, "compact"));
        assert!(has_policy(&config, &BTreeMap::new(), "delete"));
    }
}
