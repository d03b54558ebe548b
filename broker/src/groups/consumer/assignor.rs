//! Server-side assignors (KIP-848): `uniform` (balanced and sticky, Kafka's default)
//! and `range` (contiguous ranges per topic, co-partitioned members get the same
//! indexes). Both are pure functions of the members' subscriptions, the topics'
//! partition counts and, for stickiness, the previous target assignment.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use uuid::Uuid;

use super::Assignment;

/// One member as an assignor sees it.
#[derive(Debug, Clone)]
pub(crate) struct AssignorMember {
    pub member_id: String,
    /// Subscribed topic ids (resolved from names and regex).
    pub topics: BTreeSet<Uuid>,
    /// Its previous target assignment, kept where it still fits.
    pub previous: Assignment,
}

/// Runs the named assignor (unknown names fall back to `uniform`).
pub(crate) fn assign(
    name: &str,
    members: &[AssignorMember],
    partitions: &BTreeMap<Uuid, i32>,
) -> HashMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions),
    }
}

/// Balanced and sticky: every partition goes to one subscribed member, loads differ by
/// at most one among members with the same subscription, and a member keeps the
/// partitions it had as long as that stays balanced.
pub(crate) fn uniform(
    members: &[AssignorMember],
    partitions: &BTreeMap<Uuid, i32>,
) -> HashMap<String, Assignment> {
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    let mut load = vec![0usize; members.len()];
    let all: Vec<(Uuid, i32)> = partitions
        .iter()
        .flat_map(|(topic, count)| (0..*count).map(move |p| (*topic, p)))
        .filter(|(topic, _)| members.iter().any(|m| m.topics.contains(topic)))
        .collect();
    // Each member's fair share of what it can take; keep previous partitions up to it.
    let share = |i: usize| -> usize {
        let eligible = all
            .iter()
            .filter(|(t, _)| members.get(i).is_some_and(|m| m.topics.contains(t)))
            .count();
        let sharing = members.len().max(1);
        eligible.div_ceil(sharing).max(1)
    };
    for (i, member) in members.iter().enumerate() {
        let cap = share(i);
        for (topic, parts) in &member.previous {
            if !member.topics.contains(topic) {
                continue;
            }
            let count = partitions.get(topic).copied().unwrap_or(0);
            for p in parts {
                let fits = load.get(i).is_some_and(|l| *l < cap);
                if *p < count && fits && !owner.contains_key(&(*topic, *p)) {
                    owner.insert((*topic, *p), i);
                    if let Some(l) = load.get_mut(i) {
                        *l += 1;
                    }
                }
            }
        }
    }
    for tp in &all {
        if owner.contains_key(tp) {
            continue;
        }
        if let Some(i) = least_loaded(members, &load, tp.0, None) {
            owner.insert(*tp, i);
            if let Some(l) = load.get_mut(i) {
                *l += 1;
            }
        }
    }
    // Balance: move a partition from the most loaded holder while someone eligible has
    // at least two fewer.
    let mut moved = true;
    let mut rounds = 0usize;
    while moved && rounds < all.len().saturating_mul(2) + 1 {
        moved = false;
        rounds += 1;
        let tps: Vec<((Uuid, i32), usize)> = owner.iter().map(|(k, v)| (*k, *v)).collect();
        for (tp, from) in tps.into_iter().rev() {
            let from_load = load.get(from).copied().unwrap_or(0);
            if let Some(to) = least_loaded(members, &load, tp.0, Some(from)) {
                if load.get(to).copied().unwrap_or(0) + 1 < from_load {
                    owner.insert(tp, to);
                    if let Some(l) = load.get_mut(from) {
                        *l -= 1;
                    }
                    if let Some(l) = load.get_mut(to) {
                        *l += 1;
                    }
                    moved = true;
                }
            }
        }
    }
    collect(members, owner)
}

/// Kafka's range assignor, server side: for each topic, its subscribers sorted by member
/// id get contiguous ranges, the first `partitions % members` one partition more.
pub(crate) fn range(
    members: &[AssignorMember],
    partitions: &BTreeMap<Uuid, i32>,
) -> HashMap<String, Assignment> {
    let mut owner: BTreeMap<(Uuid, i32), usize> = BTreeMap::new();
    for (topic, count) in partitions {
        let mut subscribers: Vec<usize> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.topics.contains(topic))
            .map(|(i, _)| i)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        subscribers.sort_by(|a, b| {
            let id = |i: &usize| members.get(*i).map(|m| m.member_id.as_str());
            id(a).cmp(&id(b))
        });
        let n = subscribers.len() as i32;
        let (base, extra) = (count / n, count % n);
        let mut next = 0i32;
        for (k, i) in subscribers.iter().enumerate() {
            let k = k as i32;
            let take = base + i32::from(k < extra);
            for p in next..next + take {
                owner.insert((*topic, p), *i);
            }
            next += take;
        }
    }
    collect(members, owner)
}

fn least_loaded(
    members: &[AssignorMember],
    load: &[usize],
    topic: Uuid,
    except: Option<usize>,
) -> Option<usize> {
    members
        .iter()
        .enumerate()
        .filter(|(i, m)| Some(*i) != except && m.topics.contains(&topic))
        .min_by(|(a, ma), (b, mb)| {
            let la = load.get(*a).copied().unwrap_or(usize::MAX);
            let lb = load.get(*b).copied().unwrap_or(usize::MAX);
            la.cmp(&lb).then_with(|| ma.member_id.cmp(&mb.member_id))
        })
        .map(|(i, _)| i)
}

fn collect(
    members: &[AssignorMember],
    owner: BTreeMap<(Uuid, i32), usize>,
) -> HashMap<String, Assignment> {
    let mut out: HashMap<String, Assignment> = members
        .iter()
        .map(|m| (m.member_id.clone(), Assignment::new()))
        .collect();
    for ((topic, partition), i) in owner {
        if let Some(member) = members.get(i) {
            if let Some(a) = out.get_mut(&member.member_id) {
                a.entry(topic).or_default().insert(partition);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[Uuid], previous: Assignment) -> AssignorMember {
        AssignorMember {
            member_id: id.to_string(),
            topics: topics.iter().copied().collect(),
            previous,
        }
    }

    fn count(a: &Assignment) -> usize {
        a.values().map(BTreeSet::len).sum()
    }

    #[test]
    fn uniform_is_balanced_complete_and_sticky() {
        let t = Uuid::new_v4();
        let parts = BTreeMap::from([(t, 7)]);
        let one = uniform(&[member("a", &[t], Assignment::new())], &parts);
        assert_eq!(one.get("a").map(count), Some(7));
        let a_prev = one.get("a").cloned().unwrap_or_default();
        let two = uniform(
            &[
                member("a", &[t], a_prev.clone()),
                member("b", &[t], Assignment::new()),
            ],
            &parts,
        );
        let (a, b) = (&two["a"], &two["b"]);
        assert_eq!(count(a) + count(b), 7);
        assert!(count(a).abs_diff(count(b)) <= 1);
        // a kept only partitions it had; b got the rest, no overlap.
        assert!(a[&t].is_subset(&a_prev[&t]));
        assert!(a[&t].is_disjoint(&b[&t]));
    }

    #[test]
    fn uniform_only_gives_subscribed_topics() {
        let (t1, t2) = (Uuid::new_v4(), Uuid::new_v4());
        let parts = BTreeMap::from([(t1, 2), (t2, 4)]);
        let out = uniform(
            &[
                member("a", &[t1], Assignment::new()),
                member("b", &[t1, t2], Assignment::new()),
            ],
            &parts,
        );
        assert!(!out["a"].contains_key(&t2));
        assert_eq!(count(&out["a"]) + count(&out["b"]), 6);
    }

    #[test]
    fn range_gives_contiguous_ranges() {
        let t = Uuid::new_v4();
        let parts = BTreeMap::from([(t, 5)]);
        let out = range(
            &[
                member("b", &[t], Assignment::new()),
                member("a", &[t], Assignment::new()),
            ],
            &parts,
        );
        assert_eq!(out["a"][&t], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t], BTreeSet::from([3, 4]));
    }
}
