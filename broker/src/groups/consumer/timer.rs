//! The timer behind every consumer group member: it expires a member whose session
//! passed, who did not revoke in time, or (a classic member) who did not rejoin or sync
//! in time, and downgrades the group when that member was the last one on the consumer
//! protocol among classic members.

use std::sync::Weak;
use std::time::Duration;

use tokio::time::Instant;

use crate::groups::coordinator::{lock, lock_consumer, spawn_timer, Inner};
use crate::groups::GroupCoordinator;

impl GroupCoordinator {
    /// Starts the timer that expires a consumer group member (see [`member_timer`]).
    pub(in crate::groups) fn spawn_consumer_member_timer(
        &self,
        group_id: &str,
        member_id: &str,
        session: Duration,
    ) {
        spawn_timer(member_timer(
            std::sync::Arc::downgrade(&self.inner),
            group_id.to_string(),
            member_id.to_string(),
            session,
        ));
    }
}

/// Expires a member whose session passed without a heartbeat, who kept partitions past
/// its rebalance timeout after being asked to revoke them, or (a classic member) who did
/// not rejoin or sync in time. The last consumer-protocol member going downgrades a
/// group of classic members.
async fn member_timer(weak: Weak<Inner>, group_id: String, member_id: String, session: Duration) {
    let mut wake = Instant::now() + session;
    loop {
        tokio::time::sleep_until(wake).await;
        let Some(inner) = weak.upgrade() else { return };
        let coordinator = GroupCoordinator { inner };
        let mut classic = lock(&coordinator.inner);
        let mut groups = lock_consumer(&coordinator.inner);
        let Some(group) = groups.get_mut(&group_id) else {
            return;
        };
        let Some(member) = group.members.get(&member_id) else {
            return;
        };
        let now = Instant::now();
        let deadlines = [member.revocation_deadline, member.classic_deadline];
        let reason = if now >= member.session_deadline {
            "session timed out"
        } else if member.revocation_deadline.is_some_and(|d| now >= d) {
            "did not revoke its partitions within its rebalance timeout"
        } else if member.classic_deadline.is_some_and(|d| now >= d) {
            "classic member did not rejoin or sync within its rebalance timeout"
        } else {
            wake = deadlines
                .into_iter()
                .flatten()
                .fold(member.session_deadline, Instant::min);
            continue;
        };
        tracing::info!(group = %group_id, member = %member_id, reason, "removing consumer group member");
        if coordinator.maybe_downgrade(&mut classic, &mut groups, &group_id, &member_id) {
            return;
        }
        let Some(group) = groups.get_mut(&group_id) else {
            return;
        };
        group.remove_member(&member_id);
        group.bump_epoch();
        if let Err(error) = coordinator
            .inner
            .store
            .put_group(&group.id, &group.record())
        {
            tracing::warn!(group = %group_id, %error, "cannot record consumer group epoch");
        }
        return;
    }
}
