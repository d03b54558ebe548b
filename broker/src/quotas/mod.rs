//! Client quotas (KIP-13, KIP-124, KIP-546): byte-rate and request-time limits per user,
//! client id, or both, with Kafka's defaults and precedence, set by AlterClientQuotas,
//! read by DescribeClientQuotas, kept in the metadata store, and enforced on Produce and
//! Fetch as Kafka's `ClientQuotaManager` enforces them: each request's bytes (or handler
//! time) are recorded in the matched quota's [`rate::Rate`], and a rate above the quota
//! answers with `throttle_time_ms` (and, for a fetch, no data) and mutes the connection
//! for that long.

pub mod rate;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

use rate::{Rate, RateConfig};

/// sled tree of quotas, keyed by the entity as JSON.
const TREE: &str = "client_quotas";

/// The entity type of a principal's quotas.
pub const USER: &str = "user";
/// The entity type of a client id's quotas.
pub const CLIENT_ID: &str = "client-id";
/// The entity type of an IP address's connection-rate quota.
pub const IP: &str = "ip";

/// The principal Kafka quotas unauthenticated connections under.
pub const ANONYMOUS: &str = "ANONYMOUS";

/// A quota entity: each entity type it names, with a name or `None` for that type's
/// default (`<default>` in Kafka's tools).
pub type Entity = BTreeMap<String, Option<String>>;

/// Quota keys, the entity types they apply to, and whether they must be whole numbers.
const KEYS: &[(&str, &[&str], bool)] = &[
    ("producer_byte_rate", &[USER, CLIENT_ID], true),
    ("consumer_byte_rate", &[USER, CLIENT_ID], true),
    ("request_percentage", &[USER, CLIENT_ID], false),
    ("controller_mutation_rate", &[USER, CLIENT_ID], false),
    ("connection_creation_rate", &[IP], true),
];

/// What a quota limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuotaKind {
    /// Bytes produced per second (`producer_byte_rate`).
    Produce,
    /// Bytes fetched per second (`consumer_byte_rate`).
    Fetch,
    /// Percent of one request-handler thread's time (`request_percentage`).
    Request,
}

impl QuotaKind {
    /// The quota key.
    pub fn key(self) -> &'static str {
        match self {
            QuotaKind::Produce => "producer_byte_rate",
            QuotaKind::Fetch => "consumer_byte_rate",
            QuotaKind::Request => "request_percentage",
        }
    }
}

/// A quota change refused (INVALID_REQUEST, with Kafka's reason) or not stored.
#[derive(Debug, thiserror::Error)]
pub enum QuotaError {
    /// The entity or the operation is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The metadata store failed.
    #[error("metadata store: {0}")]
    Storage(#[from] sled::Error),
}

/// Checks an entity's shape: known types, and `ip` on its own.
pub fn validate_entity(entity: &Entity) -> Result<(), QuotaError> {
    if entity.is_empty() {
        return Err(QuotaError::Invalid(
            "Invalid empty client quota entity".into(),
        ));
    }
    for kind in entity.keys() {
        if ![USER, CLIENT_ID, IP].contains(&kind.as_str()) {
            return Err(QuotaError::Invalid(format!(
                "Unhandled client quota entity type: {kind}"
            )));
        }
    }
    if entity.contains_key(IP) && entity.len() > 1 {
        return Err(QuotaError::Invalid(
            "Invalid quota entity combination, IP entity should not be combined with User or ClientId entities".into(),
        ));
    }
    Ok(())
}

fn validate_op(entity: &Entity, key: &str, value: Option<f64>) -> Result<(), QuotaError> {
    let (_, types, whole) = KEYS
        .iter()
        .find(|(k, _, _)| *k == key)
        .ok_or_else(|| QuotaError::Invalid(format!("Unknown quota key: {key}")))?;
    if !entity.keys().all(|t| types.contains(&t.as_str())) {
        return Err(QuotaError::Invalid(format!(
            "Quota key {key} does not apply to entity types {:?}",
            entity.keys().collect::<Vec<_>>()
        )));
    }
    if let Some(value) = value {
        if value.is_nan() || value <= 0.0 || value.is_infinite() {
            return Err(QuotaError::Invalid(format!(
                "Quota {key} must be greater than 0, not {value}"
            )));
        }
        if *whole && value.fract() != 0.0 {
            return Err(QuotaError::Invalid(format!(
                "Quota {key} must be a whole number, not {value}"
            )));
        }
    }
    Ok(())
}

/// Every quota, and the rates measured against them.
#[derive(Debug)]
pub struct QuotaManager {
    tree: sled::Tree,
    quotas: RwLock<BTreeMap<Entity, BTreeMap<String, f64>>>,
    /// Per quota kind and matched (user, client id) metric tags, as Kafka's sensors.
    sensors: Mutex<HashMap<(QuotaKind, String, String), Rate>>,
    rate_config: RateConfig,
}

impl QuotaManager {
    /// Loads the stored quotas; rates use `rate_config` windows.
    pub fn open(db: &sled::Db, rate_config: RateConfig) -> Result<QuotaManager, sled::Error> {
        let tree = db.open_tree(TREE)?;
        let mut quotas = BTreeMap::new();
        for entry in tree.iter() {
            let (key, value) = entry?;
            match (
                serde_json::from_slice::<Entity>(&key),
                serde_json::from_slice::<BTreeMap<String, f64>>(&value),
            ) {
                (Ok(entity), Ok(values)) => {
                    quotas.insert(entity, values);
                }
                _ => tracing::warn!("ignoring an unreadable stored client quota"),
            }
        }
        Ok(QuotaManager {
            tree,
            quotas: RwLock::new(quotas),
            sensors: Mutex::default(),
            rate_config,
        })
    }

    /// Every entity with quotas that `keep` accepts.
    pub fn describe(&self, keep: impl Fn(&Entity) -> bool) -> Vec<(Entity, BTreeMap<String, f64>)> {
        self.quotas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(entity, _)| keep(entity))
            .map(|(e, v)| (e.clone(), v.clone()))
            .collect()
    }

    /// Sets (`Some`) or removes (`None`) quota keys of an entity, all or none.
    pub fn alter(
        &self,
        entity: &Entity,
        ops: &[(String, Option<f64>)],
        validate_only: bool,
    ) -> Result<(), QuotaError> {
        validate_entity(entity)?;
        for (key, value) in ops {
            validate_op(entity, key, *value)?;
        }
        if validate_only {
            return Ok(());
        }
        let mut quotas = self.quotas.write().unwrap_or_else(|p| p.into_inner());
        let mut values = quotas.get(entity).cloned().unwrap_or_default();
        for (key, value) in ops {
            match value {
                Some(v) => values.insert(key.clone(), *v),
                None => values.remove(key),
            };
        }
        let key = serde_json::to_vec(entity).map_err(|e| QuotaError::Invalid(e.to_string()))?;
        if values.is_empty() {
            self.tree.remove(key)?;
            quotas.remove(entity);
        } else {
            let stored =
                serde_json::to_vec(&values).map_err(|e| QuotaError::Invalid(e.to_string()))?;
            self.tree.insert(key, stored)?;
            quotas.insert(entity.clone(), values);
        }
        self.tree.flush()?;
        tracing::info!(?entity, ?ops, "altered client quotas");
        Ok(())
    }

    /// The quota that applies to a user and client id, and the metric tags it is
    /// measured under, by Kafka's precedence: user and client id, user and default
    /// client, user alone, default user and client id, default user and default
    /// client, default user, client id alone, default client.
    fn resolve(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
    ) -> Option<(f64, (String, String))> {
        let quotas = self.quotas.read().unwrap_or_else(|p| p.into_inner());
        if quotas.is_empty() {
            return None;
        }
        let u = || Some(user.to_string());
        let c = || Some(client_id.to_string());
        let candidates: [&[(&str, Option<String>)]; 8] = [
            &[(USER, u()), (CLIENT_ID, c())],
            &[(USER, u()), (CLIENT_ID, None)],
            &[(USER, u())],
            &[(USER, None), (CLIENT_ID, c())],
            &[(USER, None), (CLIENT_ID, None)],
            &[(USER, None)],
            &[(CLIENT_ID, c())],
            &[(CLIENT_ID, None)],
        ];
        candidates.iter().find_map(|parts| {
            let entity: Entity = parts
                .iter()
                .map(|(t, n)| (t.to_string(), n.clone()))
                .collect();
            let bound = *quotas.get(&entity)?.get(kind.key())?;
            let tags = (
                if entity.contains_key(USER) {
                    user.to_string()
                } else {
                    String::new()
                },
                if entity.contains_key(CLIENT_ID) {
                    client_id.to_string()
                } else {
                    String::new()
                },
            );
            Some((bound, tags))
        })
    }

    /// Records `value` (bytes, or percent-seconds of handler time) for a client and
    /// returns the throttle time in ms its quota calls for (0 without a quota).
    pub fn record(
        &self,
        kind: QuotaKind,
        user: &str,
        client_id: &str,
        value: f64,
        now_ms: i64,
    ) -> i32 {
        let Some((bound, (user_tag, client_tag))) = self.resolve(kind, user, client_id) else {
            return 0;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        let rate = sensors
            .entry((kind, user_tag, client_tag))
            .or_insert_with(|| Rate::new(self.rate_config));
        let throttle = rate.record_and_throttle(value, bound, now_ms);
        i32::try_from(throttle).unwrap_or(i32::MAX)
    }

    /// Takes back a recorded value (a throttled fetch returns no data, so its bytes do
    /// not count), as Kafka's `unrecordQuotaSensor`.
    pub fn unrecord(&self, kind: QuotaKind, user: &str, client_id: &str, value: f64, now_ms: i64) {
        let Some((_, (user_tag, client_tag))) = self.resolve(kind, user, client_id) else {
            return;
        };
        let mut sensors = self.sensors.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rate) = sensors.get_mut(&(kind, user_tag, client_tag)) {
            rate.record(-value, now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(parts: &[(&str, Option<&str>)]) -> Entity {
        parts
            .iter()
            .map(|(t, n)| (t.to_string(), n.map(str::to_string)))
            .collect()
    }

    #[test]
    fn the_most_specific_quota_wins_and_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let quotas = QuotaManager::open(&db, RateConfig::default()).unwrap();
        let set = |e: &Entity, v| quotas.alter(e, &[("producer_byte_rate".into(), Some(v))], false);
        set(&entity(&[(CLIENT_ID, None)]), 1000.0).unwrap();
        set(
            &entity(&[(USER, Some("alice")), (CLIENT_ID, Some("app"))]),
            10.0,
        )
        .unwrap();
        let bound = |u, c| quotas.resolve(QuotaKind::Produce, u, c).map(|(b, _)| b);
        assert_eq!(bound("alice", "app"), Some(10.0));
        assert_eq!(bound("alice", "other"), Some(1000.0));
        assert_eq!(bound("bob", "app"), Some(1000.0));
        assert_eq!(quotas.resolve(QuotaKind::Fetch, "bob", "app"), None);
        // Refused as Kafka refuses them.
        assert!(set(&entity(&[(IP, None), (USER, None)]), 1.0).is_err());
        assert!(set(&entity(&[(USER, None)]), 1.5).is_err());
        assert!(quotas
            .alter(
                &entity(&[(USER, None)]),
                &[("nope".into(), Some(1.0))],
                false
            )
            .is_err());
        drop(quotas);
        let reopened = QuotaManager::open(&db, RateConfig::default()).unwrap();
        assert_eq!(reopened.describe(|_| true).len(), 2);
        assert_eq!(
            reopened.record(QuotaKind::Produce, "alice", "app", 1000.0, 0),
            90_000
        );
    }
}
