//! The free-disk floor against the retention guard. An edge uplink holds back from
//! retention every segment it has not forwarded (`Lifecycle::hold_from`), so a long
//! outage costs disk. When free space falls below `log.disk.free.min.bytes` the floor
//! wins: retention releases held segments it would otherwise have deleted (expired, or
//! over `retention.bytes`), oldest first across partitions, only as many as cover the
//! shortfall, never an active segment. Each released range is logged here, counted in
//! `Lifecycle`, and the uplink counts the records as lost when it finds the log start
//! moved past them: a loss that is never silent.
//!
//! Segments within retention are not touched (the floor lifts the hold, not the
//! topic's retention): if the disk is full of those, produce is refused as before.
//! Holds that are progress rather than a backlog (`Lifecycle::pin_from`: a down uplink's
//! last mirrored record) are never released.

use std::collections::{BTreeMap, HashMap};

use crate::broker::Broker;
use crate::lifecycle::free_disk_bytes;
use crate::storage::{HeldSegment, Retention};

/// A partition: topic name and index.
pub type PartitionKey = (String, i32);

/// The held segments the floor releases in one retention pass, per partition (each a
/// prefix of that partition's held segments, oldest first).
pub type Releases = HashMap<PartitionKey, Vec<HeldSegment>>;

/// What the floor releases this pass: nothing unless free space is below the floor.
/// `retention_of` gives a topic's retention settings (from its config overrides) as
/// this pass applies them.
pub fn plan_releases(
    broker: &Broker,
    retention_of: impl Fn(&BTreeMap<String, String>) -> Retention,
) -> Releases {
    let floor: u64 = broker.config.get_or("log.disk.free.min.bytes", 100 << 20);
    if floor == 0 {
        return Releases::new();
    }
    let free = match free_disk_bytes(&broker.config.data_dir) {
        Ok(free) => free,
        Err(error) => {
            tracing::warn!(%error, "cannot read free disk space");
            return Releases::new();
        }
    };
    let Some(shortfall) = floor.checked_sub(free).filter(|s| *s > 0) else {
        return Releases::new();
    };
    let mut candidates = Vec::new();
    for topic in broker.topics.list() {
        let retention = retention_of(&topic.record.configs);
        for partition in &topic.partitions {
            let (held, pinned) = broker.lifecycle.holds(topic.name(), partition.index);
            if held.is_none() {
                continue;
            }
            let held_back = partition.log.segments_held_back(Retention {
                keep_from: held,
                ..retention
            });
            let releasable = held_back
                .into_iter()
                .take_while(|segment| pinned.is_none_or(|pin| segment.end <= pin));
            let key = (topic.name().to_string(), partition.index);
            candidates.push((key, releasable.collect::<Vec<_>>()));
        }
    }
    choose_oldest(candidates, shortfall)
}

/// Picks held segments, oldest first across partitions, until their bytes cover
/// `shortfall`. Each partition's list is in log order and only a prefix of it can go,
/// so a segment's age is the newest timestamp up to and including it.
pub fn choose_oldest(
    candidates: Vec<(PartitionKey, Vec<HeldSegment>)>,
    shortfall: u64,
) -> Releases {
    let mut ordered = Vec::new();
    for (key, segments) in candidates {
        let mut newest = i64::MIN;
        for segment in segments {
            newest = newest.max(segment.max_timestamp);
            ordered.push((newest, key.clone(), segment));
        }
    }
    ordered.sort_by(|a, b| (a.0, &a.1, a.2.base).cmp(&(b.0, &b.1, b.2.base)));
    let mut releases = Releases::new();
    let mut covered = 0u64;
    for (_, key, segment) in ordered {
        if covered >= shortfall {
            break;
        }
        covered = covered.saturating_add(segment.bytes);
        releases.entry(key).or_default().push(segment);
    }
    releases
}

/// The hold retention applies to a partition this pass: the uplinks' hold, moved past
/// the segments the floor releases.
pub fn keep_from(held: Option<i64>, released: Option<&Vec<HeldSegment>>) -> Option<i64> {
    match (held, released.and_then(|r| r.last())) {
        (Some(held), Some(last)) => Some(held.max(last.end)),
        (held, _) => held,
    }
}

/// Logs the range of released segments retention did delete (those ending at or
/// below the new log start: a prefix, so one contiguous range) and returns how many
/// records and bytes went.
pub fn report_released(
    key: &PartitionKey,
    released: &[HeldSegment],
    log_start: i64,
    free_bytes: Option<u64>,
) -> (u64, u64) {
    let deleted: Vec<&HeldSegment> = released.iter().filter(|s| s.end <= log_start).collect();
    let (Some(first), Some(last)) = (deleted.first(), deleted.last()) else {
        return (0, 0);
    };
    let records = u64::try_from(last.end - first.base).unwrap_or(0);
    let bytes: u64 = deleted.iter().map(|s| s.bytes).sum();
    tracing::error!(
        topic = %key.0,
        partition = key.1,
        first_offset = first.base,
        last_offset = last.end - 1,
        segments = deleted.len(),
        bytes,
        free_bytes,
        "free disk below log.disk.free.min.bytes: deleted records an uplink had not forwarded"
    );
    (records, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(base: i64, end: i64, bytes: u64, max_timestamp: i64) -> HeldSegment {
        HeldSegment {
            base,
            end,
            bytes,
            max_timestamp,
        }
    }

    fn key(topic: &str) -> PartitionKey {
        (topic.to_string(), 0)
    }

    #[test]
    fn the_oldest_segments_go_first_and_only_enough_to_cover_the_shortfall() {
        let a = vec![segment(0, 10, 100, 1000), segment(10, 20, 100, 3000)];
        let b = vec![segment(0, 5, 100, 2000), segment(5, 9, 100, 4000)];
        let chosen = choose_oldest(vec![(key("a"), a.clone()), (key("b"), b.clone())], 150);
        assert_eq!(chosen.get(&key("a")), Some(&vec![a[0]]));
        assert_eq!(chosen.get(&key("b")), Some(&vec![b[0]]));
        assert_eq!(chosen.len(), 2);
        let one = choose_oldest(vec![(key("a"), a.clone()), (key("b"), b)], 100);
        assert_eq!(one.get(&key("a")), Some(&vec![a[0]]));
        assert_eq!(one.len(), 1);
        assert!(choose_oldest(vec![(key("a"), a)], 0).is_empty());
    }

    #[test]
    fn a_partition_releases_a_prefix_even_when_its_timestamps_go_backwards() {
        // The second segment is older than the first, but cannot go before it.
        let a = vec![segment(0, 10, 100, 5000), segment(10, 20, 100, 1000)];
        let b = vec![segment(0, 5, 100, 3000)];
        let chosen = choose_oldest(vec![(key("a"), a.clone()), (key("b"), b.clone())], 100);
        assert_eq!(chosen.get(&key("b")), Some(&b));
        assert_eq!(chosen.len(), 1);
        let all = choose_oldest(vec![(key("a"), a.clone()), (key("b"), b)], 1000);
        assert_eq!(all.get(&key("a")), Some(&a));
    }

    #[test]
    fn the_hold_moves_past_the_last_released_segment() {
        let released = vec![segment(0, 10, 1, 1), segment(10, 20, 1, 1)];
        assert_eq!(keep_from(Some(3), Some(&released)), Some(20));
        assert_eq!(keep_from(Some(3), None), Some(3));
        assert_eq!(keep_from(None, None), None);
        let (records, bytes) = report_released(&key("a"), &released, 10, None);
        assert_eq!((records, bytes), (10, 1), "only what retention deleted");
    }
}
