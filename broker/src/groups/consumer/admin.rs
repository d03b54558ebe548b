//! Where consumer groups meet the APIs both group types share: offset commits and
//! fetches (member epochs instead of generations), ListGroups, DeleteGroups,
//! OffsetDelete and offset expiry.

use super::*;
use crate::groups::coordinator::{lock_consumer, Inner};
use crate::groups::offsets::GroupRecord;
use crate::groups::{
    CommitError, DeleteGroupError, DeleteOffsetsError, FetchOffsetsError, GroupCoordinator,
    GroupListing, TxnMemberError,
};

/// OffsetCommit against a consumer group (Kafka's `ConsumerGroup.validateOffsetCommit`):
/// `None` when the group is not a consumer group. A commit with a negative epoch into a
/// group without members is a standalone (admin) commit.
pub(crate) fn check_commit(
    inner: &Inner,
    group_id: &str,
    member_id: &str,
    member_epoch: i32,
) -> Option<Result<GroupRecord, CommitError>> {
    let mut groups = lock_consumer(inner);
    let group = groups.get_mut(group_id)?;
    if member_epoch < 0 && group.members.is_empty() {
        group.empty_since_ms = Some(now_ms());
        return Some(Ok(group.record()));
    }
    let Some(member) = group.members.get(member_id) else {
        return Some(Err(CommitError::UnknownMemberId));
    };
    if member.member_epoch != member_epoch {
        tracing::info!(group = %group_id, member = %member_id, sent = member_epoch, current = member.member_epoch, "offset commit with a stale member epoch");
        // Kafka's `validateMemberEpoch`: a classic member's epoch is its generation.
        return Some(Err(if member.classic.is_some() {
            CommitError::IllegalGeneration
        } else {
            CommitError::StaleMemberEpoch
        }));
    }
    Some(Ok(group.record()))
}

/// A consumer group's persisted record (for transactional offsets); `None` if the id
/// is not a consumer group.
pub(crate) fn record_of(inner: &Inner, group_id: &str) -> Option<GroupRecord> {
    lock_consumer(inner)
        .get(group_id)
        .map(ConsumerGroup::record)
}

/// TxnOffsetCommit's member check for a consumer group; `None` if it is not one.
pub(crate) fn check_txn_member(
    inner: &Inner,
    group_id: &str,
    member_epoch: i32,
    member_id: &str,
) -> Option<Result<(), TxnMemberError>> {
    let groups = lock_consumer(inner);
    let group = groups.get(group_id)?;
    if member_id.is_empty() {
        return Some(Ok(()));
    }
    let Some(member) = group.members.get(member_id) else {
        return Some(Err(TxnMemberError::UnknownMemberId));
    };
    if member_epoch >= 0 && member.member_epoch != member_epoch {
        return Some(Err(TxnMemberError::IllegalGeneration));
    }
    Some(Ok(()))
}

impl GroupCoordinator {
    /// OffsetFetch v9+ (Kafka's `validateOffsetFetch`): for a consumer group, a request
    /// naming a member must come from a current member at its current epoch; admin
    /// fetches name none. Classic groups ignore the fields, as Kafka's do.
    pub fn check_offset_fetch_member(
        &self,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), FetchOffsetsError> {
        check_fetch(&self.inner, group_id, member_id, member_epoch)
    }
}

fn check_fetch(
    inner: &Inner,
    group_id: &str,
    member_id: Option<&str>,
    member_epoch: i32,
) -> Result<(), FetchOffsetsError> {
    if member_id.is_none_or(str::is_empty) && member_epoch < 0 {
        return Ok(());
    }
    let groups = lock_consumer(inner);
    let Some(group) = groups.get(group_id) else {
        return Ok(());
    };
    let Some(member) = member_id.and_then(|id| group.members.get(id)) else {
        return Err(FetchOffsetsError::UnknownMemberId);
    };
    if member.member_epoch != member_epoch {
        return Err(if member.classic.is_some() {
            FetchOffsetsError::IllegalGeneration
        } else {
            FetchOffsetsError::StaleMemberEpoch
        });
    }
    Ok(())
}

/// The consumer groups ListGroups reports, filtered as [`crate::groups::GroupCoordinator::list`].
pub(crate) fn listings(inner: &Inner, states: &[String], types: &[String]) -> Vec<GroupListing> {
    if !types.is_empty() && !types.iter().any(|t| t.eq_ignore_ascii_case("consumer")) {
        return Vec::new();
    }
    lock_consumer(inner)
        .values()
        .map(|g| (g, g.state().name()))
        .filter(|(_, s)| states.is_empty() || states.iter().any(|x| x.eq_ignore_ascii_case(s)))
        .map(|(g, state)| GroupListing {
            group_id: g.id.clone(),
            protocol_type: "consumer".to_string(),
            state,
            group_type: "consumer",
        })
        .collect()
}

/// DeleteGroups for a consumer group; `None` if it is not one. The caller removes the
/// stored offsets.
pub(crate) fn delete(inner: &Inner, group_id: &str) -> Option<Result<(), DeleteGroupError>> {
    let mut groups = lock_consumer(inner);
    let group = groups.get(group_id)?;
    if !group.members.is_empty() {
        return Some(Err(DeleteGroupError::NonEmptyGroup));
    }
    groups.remove(group_id);
    Some(Ok(()))
}

/// Topics OffsetDelete must leave alone: those an active member subscribes to. `None`
/// if the group is not a consumer group.
pub(crate) fn subscribed(
    inner: &Inner,
    group_id: &str,
) -> Option<Result<Vec<String>, DeleteOffsetsError>> {
    let groups = lock_consumer(inner);
    let group = groups.get(group_id)?;
    Some(Ok(group.subscribed_topic_names().into_iter().collect()))
}

/// Removes consumer groups that have been empty past the retention (or hold no offsets);
/// returns their ids so the caller drops their offsets.
pub(crate) fn expire(
    inner: &Inner,
    retention_ms: i64,
    now: i64,
    has_offsets: &dyn Fn(&str) -> bool,
) -> Vec<String> {
    let mut groups = lock_consumer(inner);
    let expired: Vec<String> = groups
        .values()
        .filter(|g| g.members.is_empty())
        .filter(|g| {
            g.empty_since_ms
                .is_some_and(|t| now.saturating_sub(t) >= retention_ms)
                || !has_offsets(&g.id)
        })
        .map(|g| g.id.clone())
        .collect();
    for id in &expired {
        groups.remove(id);
    }
    expired
}
