//! Consumer lag as the in-process broker sees it: for every group the coordinator knows
//! (wire clients' and embedded agents' alike), each partition it has committed on, the
//! high watermark minus the committed offset. One computation for `/metrics` and the
//! MCP server's `group_lag`, so the two can never disagree.

use std::collections::BTreeMap;

use agentlog_broker::Broker;

/// How far one group is behind on one partition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionLag {
    /// The consumer group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The next offset the group will consume.
    pub committed: i64,
    /// One past the last offset consumers may read.
    pub high_watermark: i64,
    /// Records the group has yet to consume (never negative).
    pub lag: i64,
}

/// The lag of every group (or only `group`) on every partition it has committed on that
/// still exists, ordered by group, topic and partition.
pub fn consumer_lag(broker: &Broker, group: Option<&str>) -> Vec<PartitionLag> {
    let mut high_watermark = BTreeMap::new();
    for topic in broker.topics.list() {
        for partition in &topic.partitions {
            high_watermark.insert(
                (topic.name().to_string(), partition.index),
                partition.log.high_watermark(),
            );
        }
    }
    let mut lag = Vec::new();
    for listing in broker.groups.list(&[], &[]) {
        if group.is_some_and(|wanted| wanted != listing.group_id) {
            continue;
        }
        for committed in broker.groups.committed(&listing.group_id) {
            let Some(hw) = high_watermark.get(&(committed.topic.clone(), committed.partition))
            else {
                continue; // topic or partition deleted since the commit
            };
            if committed.offset < 0 {
                continue; // "no position" sentinel, not an offset
            }
            lag.push(PartitionLag {
                group: listing.group_id.clone(),
                topic: committed.topic,
                partition: committed.partition,
                committed: committed.offset,
                high_watermark: *hw,
                lag: (hw - committed.offset).max(0),
            });
        }
    }
    lag.sort_by(|a, b| (&a.group, &a.topic, a.partition).cmp(&(&b.group, &b.topic, b.partition)));
    lag
}
