//! Group-level settings: Kafka 4's GROUP config resource (type 32) holds per-group
//! overrides of the KIP-848 consumer and KIP-932 share group timeouts. They are
//! validated as Kafka's `GroupConfig` does (each within the broker's min/max settings,
//! session longer than heartbeat), persisted in the metadata store, and described with
//! the broker's default as the fallback. A group need not exist to have settings.

use std::collections::BTreeMap;

use super::catalog::GROUP_CONFIGS;
use super::{check_value, BrokerConfig, ConfigDef, ConfigError, ConfigSource};

/// sled tree holding group settings, keyed by [`key`].
const TREE: &str = "group_configs";

/// Looks up a group-level setting by its Kafka name: its definition, the broker
/// setting it defaults to, and the broker settings bounding it.
pub fn find_group_def(
    name: &str,
) -> Option<&'static (ConfigDef, &'static str, (&'static str, &'static str))> {
    GROUP_CONFIGS.iter().find(|(d, _, _)| d.name == name)
}

/// The effective value of a group setting given the group's overrides.
pub fn group_value(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
    name: &str,
) -> Option<(String, ConfigSource)> {
    let (d, broker_default, _) = find_group_def(name)?;
    if let Some(v) = overrides.get(name) {
        return Some((v.clone(), ConfigSource::Group));
    }
    // Kafka reports a group's unset settings as defaults, whatever set the broker's.
    let value = config
        .value(broker_default)
        .map_or_else(|| d.default.to_string(), |(v, _)| v);
    Some((value, ConfigSource::Default))
}

/// Validates a group's whole set of overrides as Kafka does: known names, values of the
/// right type, each within the broker's bounds, and each session timeout longer than
/// its heartbeat interval.
pub fn validate_group_configs(
    config: &BrokerConfig,
    overrides: &BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    for (name, value) in overrides {
        let (d, _, (min, max)) =
            find_group_def(name).ok_or_else(|| ConfigError::Unknown(name.clone()))?;
        check_value(d, value)?;
        let number: i64 = value.parse().unwrap_or_default();
        let bound = |setting: &str| config.get_or::<i64>(setting, 0);
        if number < bound(min) {
            return Err(ConfigError::Bound(format!(
                "{name} must be greater than or equal to {min}"
            )));
        }
        if number > bound(max) {
            return Err(ConfigError::Bound(format!(
                "{name} must be less than or equal to {max}"
            )));
        }
    }
    for kind in ["consumer", "share"] {
        let effective = |what: &str| {
            group_value(config, overrides, &format!("{kind}.{what}"))
                .and_then(|(v, _)| v.parse::<i64>().ok())
                .unwrap_or_default()
        };
        if effective("session.timeout.ms") <= effective("heartbeat.interval.ms") {
            return Err(ConfigError::Bound(format!(
                "{kind}.session.timeout.ms must be greater than {kind}.heartbeat.interval.ms"
            )));
        }
    }
    Ok(())
}

/// The store key of one group's setting: the group's name length-prefixed, so that no
/// group's keys are a prefix of another's.
fn key(group: &str, name: &str) -> Vec<u8> {
    let mut key = group_prefix(group);
    key.extend_from_slice(name.as_bytes());
    key
}

fn group_prefix(group: &str) -> Vec<u8> {
    let len = u32::try_from(group.len()).unwrap_or(u32::MAX);
    let mut prefix = len.to_be_bytes().to_vec();
    prefix.extend_from_slice(group.as_bytes());
    prefix
}

/// A group's persisted overrides.
pub fn load_group_configs(
    db: &sled::Db,
    group: &str,
) -> Result<BTreeMap<String, String>, sled::Error> {
    let tree = db.open_tree(TREE)?;
    let prefix = group_prefix(group);
    let mut configs = BTreeMap::new();
    for entry in tree.scan_prefix(&prefix) {
        let (k, v) = entry?;
        let name = String::from_utf8_lossy(k.get(prefix.len()..).unwrap_or_default());
        configs.insert(name.into_owned(), String::from_utf8_lossy(&v).into_owned());
    }
    Ok(configs)
}

/// Replaces a group's persisted overrides with `configs` (already validated).
pub fn store_group_configs(
    db: &sled::Db,
    group: &str,
    configs: &BTreeMap<String, String>,
) -> Result<(), sled::Error> {
    let tree = db.open_tree(TREE)?;
    for entry in tree.scan_prefix(group_prefix(group)) {
        let (k, _) = entry?;
        tree.remove(k)?;
    }
    for (name, value) in configs {
        tree.insert(key(group, name), value.as_bytes())?;
    }
    tree.flush()?;
    tracing::info!(%group, ?configs, "altered group configs");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn group_settings_are_bounded_by_the_broker_as_in_kafka() {
        let config = BrokerConfig::default();
        let ok = overrides(&[("consumer.session.timeout.ms", "50000")]);
        assert!(validate_group_configs(&config, &ok).is_ok());
        for bad in [
            ("consumer.session.timeout.ms", "1000"),
            ("consumer.heartbeat.interval.ms", "20000"),
            ("share.record.lock.duration.ms", "100"),
            ("consumer.session.timeout.ms", "x"),
            ("no.such.setting", "1"),
        ] {
            assert!(
                validate_group_configs(&config, &overrides(&[bad])).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(
            group_value(&config, &ok, "consumer.session.timeout.ms"),
            Some(("50000".into(), ConfigSource::Group))
        );
        assert_eq!(
            group_value(&config, &ok, "share.heartbeat.interval.ms"),
            Some(("5000".into(), ConfigSource::Default))
        );
    }

    #[test]
    fn group_settings_persist_per_group() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let a = overrides(&[("consumer.session.timeout.ms", "50000")]);
        store_group_configs(&db, "a", &a).unwrap();
        store_group_configs(
            &db,
            "ab",
            &overrides(&[("share.heartbeat.interval.ms", "6000")]),
        )
        .unwrap();
        assert_eq!(load_group_configs(&db, "a").unwrap(), a);
        store_group_configs(&db, "a", &BTreeMap::new()).unwrap();
        assert!(load_group_configs(&db, "a").unwrap().is_empty());
        assert_eq!(load_group_configs(&db, "ab").unwrap().len(), 1);
    }
}
