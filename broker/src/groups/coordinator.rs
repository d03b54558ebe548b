//! The coordinator itself: its state (classic and consumer groups, the offset store),
//! opening and restoring it, shutdown, the locks and timer plumbing the protocol modules
//! share. The protocols live in `classic/` and `consumer/`, offsets in `commit`, group
//! administration in `admin`.
//!
//! Classic groups live behind one mutex, consumer groups behind another (taken second
//! when both are needed); no await happens while either is held. Waiting (JoinGroup
//! until the rebalance completes, SyncGroup until the leader's assignment) is a oneshot
//! channel per member, answered by whichever call or timer completes the step.
//!
//! Timers are tokio tasks holding a weak reference to the coordinator:
//! - one per member, expiring it when its session passes without a heartbeat
//!   (classic members waiting in JoinGroup or SyncGroup are kept alive, as in Kafka);
//! - one per pending member (JoinGroup v4+ MEMBER_ID_REQUIRED), dropping it if it does
//!   not rejoin within its session timeout;
//! - one per classic rebalance, completing the join phase at the rebalance timeout
//!   (kicking out members that did not rejoin) or after
//!   `group.initial.rebalance.delay.ms` for a group that was empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::classic::Group;
use super::consumer::ConsumerGroup;
use super::offsets::{now_ms, OffsetStore, OffsetStoreError};
use super::*;

/// The group coordinator: every consumer group of this broker and their offsets.
#[derive(Debug, Clone)]
pub struct GroupCoordinator {
    pub(super) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) settings: GroupSettings,
    pub(super) store: OffsetStore,
    groups: Mutex<HashMap<String, Group>>,
    /// KIP-848 consumer groups. Lock order: `groups` first when both are held.
    pub(super) consumer: Mutex<HashMap<String, ConsumerGroup>>,
    /// Set at broker shutdown: nothing waits on the coordinator any more.
    pub(super) closing: std::sync::atomic::AtomicBool,
}

pub(in crate::groups) fn lock(inner: &Inner) -> MutexGuard<'_, HashMap<String, Group>> {
    // A panic while holding the lock would be a bug; keep serving rather than poison
    // every later request.
    inner.groups.lock().unwrap_or_else(|p| p.into_inner())
}

/// The consumer groups' lock (after `lock` when both are needed).
pub(super) fn lock_consumer(inner: &Inner) -> MutexGuard<'_, HashMap<String, ConsumerGroup>> {
    inner.consumer.lock().unwrap_or_else(|p| p.into_inner())
}

impl GroupCoordinator {
    /// Opens the coordinator on the broker's metadata store, restoring every group that
    /// has offsets (as Empty, with its last generation).
    pub fn open(db: &sled::Db, settings: GroupSettings) -> Result<Self, OffsetStoreError> {
        let store = OffsetStore::open(db)?;
        let mut groups = HashMap::new();
        let mut consumer = HashMap::new();
        for (id, record) in store.load_groups()? {
            if record.group_type.as_deref() == Some("consumer") {
                consumer.insert(id.clone(), ConsumerGroup::restored(&id, &record));
                continue;
            }
            let mut group = Group::new(&id);
            group.generation = record.generation;
            group.protocol_type = record.protocol_type;
            group.empty_since_ms = record.empty_since_ms.or(Some(now_ms()));
            groups.insert(id, group);
        }
        Ok(GroupCoordinator {
            inner: Arc::new(Inner {
                settings,
                store,
                groups: Mutex::new(groups),
                consumer: Mutex::new(consumer),
                closing: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    pub(in crate::groups) fn is_closing(&self) -> bool {
        self.inner.closing.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Broker shutdown: answers every waiting JoinGroup and SyncGroup with
    /// COORDINATOR_NOT_AVAILABLE (clients look for the coordinator again and rejoin) so
    /// no connection waits out a rebalance timeout, and refuses new waits.
    pub fn shutdown(&self) {
        self.inner
            .closing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let mut groups = lock(&self.inner);
        for group in groups.values_mut() {
            for member in group.members.values_mut() {
                if let Some(tx) = member.awaiting_join.take() {
                    let _ = tx.send(Err(JoinError::CoordinatorNotAvailable));
                }
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(Err(SyncError::CoordinatorNotAvailable));
                }
            }
        }
    }

    /// The settings in force.
    pub fn settings(&self) -> &GroupSettings {
        &self.inner.settings
    }

    /// Starts the periodic offset expiry (every minute, at most the retention).
    pub fn start_background(&self) {
        let weak = Arc::downgrade(&self.inner);
        let period = self
            .inner
            .settings
            .offsets_retention
            .min(Duration::from_secs(60))
            .max(Duration::from_millis(100));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(inner) = weak.upgrade() else { return };
                GroupCoordinator { inner }.expire_offsets();
            }
        });
    }
}

/// Group ids are non-empty and fit the offset store's u16 length prefix (Kafka sets no
/// upper limit; 64 KiB of group id is not a real name).
pub(super) fn valid_group_id(group_id: &str) -> bool {
    !group_id.is_empty() && group_id.len() <= usize::from(u16::MAX)
}

/// Starts a timer task. The coordinator must be driven from inside a tokio runtime (the
/// broker's, or an in-process caller's); outside one, timers cannot run: say so loudly
/// rather than panic.
pub(super) fn spawn_timer<F>(future: F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => {
            handle.spawn(future);
        }
        Err(_) => {
            tracing::error!("group coordinator used outside a tokio runtime: timers disabled")
        }
    }
}
