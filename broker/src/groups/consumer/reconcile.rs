//! Moves one member towards its target assignment, after Kafka's
//! `CurrentAssignmentBuilder`: revoke first (staying at the current epoch), then take
//! the new epoch with every target partition no other member still owns.

use super::{Assignment, ConsumerMember, MemberState};

/// Whether `owned` (what the member reported) still holds any of `revoking`. A member
/// that did not report what it owns is assumed to hold everything.
fn still_owns(owned: Option<&Assignment>, revoking: &Assignment) -> bool {
    let Some(owned) = owned else { return true };
    owned.iter().any(|(topic, parts)| {
        revoking
            .get(topic)
            .is_some_and(|r| parts.iter().any(|p| r.contains(p)))
    })
}

/// The member's next state. `owned_by_other(topic, partition)` says whether another
/// member still owns (or has yet to revoke) a partition.
pub(crate) fn reconcile(
    member: &ConsumerMember,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    owned_by_other: &dyn Fn(uuid::Uuid, i32) -> bool,
) -> ConsumerMember {
    match member.state {
        MemberState::Stable if member.member_epoch == target_epoch => member.clone(),
        MemberState::Stable | MemberState::UnreleasedPartitions => next(
            member,
            member.member_epoch,
            target_epoch,
            target,
            owned,
            owned_by_other,
        ),
        MemberState::UnrevokedPartitions => {
            if still_owns(owned, &member.pending_revocation) {
                return member.clone();
            }
            next(
                member,
                member.member_epoch.saturating_add(1).min(target_epoch),
                target_epoch,
                target,
                owned,
                owned_by_other,
            )
        }
    }
}

fn next(
    member: &ConsumerMember,
    epoch: i32,
    target_epoch: i32,
    target: &Assignment,
    owned: Option<&Assignment>,
    owned_by_other: &dyn Fn(uuid::Uuid, i32) -> bool,
) -> ConsumerMember {
    let mut assigned = Assignment::new();
    let mut revoking = Assignment::new();
    let mut pending = Assignment::new();
    let mut unreleased = false;
    let topics: std::collections::BTreeSet<uuid::Uuid> = target
        .keys()
        .chain(member.assigned.keys())
        .copied()
        .collect();
    for topic in topics {
        let empty = Default::default();
        let want = target.get(&topic).unwrap_or(&empty);
        let have = member.assigned.get(&topic).unwrap_or(&empty);
        let keep: std::collections::BTreeSet<i32> = have.intersection(want).copied().collect();
        let revoke: std::collections::BTreeSet<i32> = have.difference(want).copied().collect();
        let mut add: std::collections::BTreeSet<i32> = want.difference(&keep).copied().collect();
        let before = add.len();
        add.retain(|p| !owned_by_other(topic, *p));
        unreleased |= add.len() != before;
        if !keep.is_empty() {
            assigned.insert(topic, keep);
        }
        if !revoke.is_empty() {
            revoking.insert(topic, revoke);
        }
        if !add.is_empty() {
            pending.insert(topic, add);
        }
    }
    let mut out = member.clone();
    if !revoking.is_empty() && still_owns(owned, &revoking) {
        out.state = MemberState::UnrevokedPartitions;
        set_epoch(&mut out, epoch);
        out.assigned = assigned;
        out.pending_revocation = revoking;
        return out;
    }
    for (topic, parts) in pending {
        assigned.entry(topic).or_default().extend(parts);
    }
    out.state = if unreleased {
        MemberState::UnreleasedPartitions
    } else {
        MemberState::Stable
    };
    set_epoch(&mut out, target_epoch);
    out.assigned = assigned;
    out.pending_revocation = Assignment::new();
    out
}

fn set_epoch(member: &mut ConsumerMember, epoch: i32) {
    if member.member_epoch != epoch {
        member.previous_epoch = member.member_epoch;
        member.member_epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::time::Duration;

    use uuid::Uuid;

    use super::*;

    fn parts(topic: Uuid, p: &[i32]) -> Assignment {
        Assignment::from([(topic, p.iter().copied().collect::<BTreeSet<i32>>())])
    }

    #[test]
    fn revokes_before_taking_the_new_epoch() {
        let t = Uuid::new_v4();
        let mut m = ConsumerMember::new("a", Duration::from_secs(45));
        m.member_epoch = 1;
        m.assigned = parts(t, &[0, 1, 2, 3]);
        let target = parts(t, &[0, 1]);
        let owned = parts(t, &[0, 1, 2, 3]);
        let step = reconcile(&m, 2, &target, Some(&owned), &|_, _| false);
        assert_eq!(step.state, MemberState::UnrevokedPartitions);
        assert_eq!(step.member_epoch, 1);
        assert_eq!(step.assigned, parts(t, &[0, 1]));
        assert_eq!(step.pending_revocation, parts(t, &[2, 3]));
        // Still owning a revoked partition: no progress.
        let again = reconcile(&step, 2, &target, Some(&owned), &|_, _| false);
        assert_eq!(again.member_epoch, 1);
        // Revoked: the member moves to the target epoch.
        let done = reconcile(&step, 2, &target, Some(&parts(t, &[0, 1])), &|_, _| false);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 2);
        assert_eq!(done.previous_epoch, 1);
        assert_eq!(done.assigned, parts(t, &[0, 1]));
    }

    #[test]
    fn waits_for_partitions_others_still_own() {
        let t = Uuid::new_v4();
        let m = ConsumerMember::new("b", Duration::from_secs(45));
        let target = parts(t, &[2, 3]);
        let step = reconcile(&m, 2, &target, Some(&Assignment::new()), &|_, p| p == 3);
        assert_eq!(step.state, MemberState::UnreleasedPartitions);
        assert_eq!(step.member_epoch, 2);
        assert_eq!(step.assigned, parts(t, &[2]));
        let later = reconcile(&step, 2, &target, Some(&parts(t, &[2])), &|_, _| false);
        assert_eq!(later.state, MemberState::Stable);
        assert_eq!(later.assigned, parts(t, &[2, 3]));
    }
}
