//! The tools. Arguments are checked by their types (a wrong type or an unknown field is
//! a JSON-RPC invalid-params error naming it); what only the broker can judge (a topic
//! that does not exist, a partition out of range, writing in read-only mode) comes back
//! as a tool result with `isError: true` and a sentence saying what to change.

use std::collections::BTreeMap;
use std::ops::ControlFlow;

use agentlog_agents::{Event, OutRecord, Sink, StartAt};
use bytes::Bytes;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::schemars::JsonSchema;
use rmcp::{tool, tool_router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::decisions::{self, DecisionFilter};
use super::output::{self, TimeArg};
use super::{scan, McpServer, ToolError};

/// Most records `search_decisions` looks at in one call, matching or not: a search for
/// a rare trace id in a long audit log stops here and says so instead of reading it all.
const MAX_SCANNED: usize = 100_000;

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct ListTopicsArgs {
    /// Only topics whose name starts with this.
    prefix: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct TopicArgs {
    /// The topic's name.
    topic: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct ProduceArgs {
    /// An existing topic.
    topic: String,
    /// The records, at most mcp.server.max.records.
    records: Vec<NewRecord>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct NewRecord {
    /// The key (chooses the partition); none: round robin.
    key: Option<String>,
    /// The value: a string is written as its text, anything else as JSON; null writes
    /// no value (a tombstone on compacted topics).
    value: Value,
    /// Headers, name to text value.
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct ReadArgs {
    /// The topic.
    topic: String,
    /// Only this partition (default: every partition, in order).
    partition: Option<i32>,
    /// Start at this offset in each partition read; negative: that many records before
    /// each partition's end (-10: the last 10). Default: the earliest record.
    offset: Option<i64>,
    /// Start at the first record at or after this time (milliseconds since the epoch or
    /// RFC 3339); not with `offset`.
    from_time: Option<TimeArg>,
    /// Most records to return (default and ceiling: mcp.server.max.records).
    limit: Option<usize>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct GroupLagArgs {
    /// Only this consumer group (default: every group).
    group: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
#[serde(deny_unknown_fields)]
struct SearchDecisionsArgs {
    /// The agent whose decisions to search (its topic is agent.decisions.<agent>);
    /// default: every agent's.
    agent: Option<String>,
    /// Only decisions of this trace (32 hex digits, as in `traceparent`).
    trace_id: Option<String>,
    /// Only decisions at or after this time (milliseconds since the epoch or RFC 3339).
    from_time: Option<TimeArg>,
    /// Only decisions at or before this time (milliseconds since the epoch or RFC 3339).
    to_time: Option<TimeArg>,
    /// Most decisions to return (default and ceiling: mcp.server.max.records).
    limit: Option<usize>,
}

#[tool_router(vis = "pub(super)")]
impl McpServer {
    #[tool(
        description = "List the topics with their partition counts and record counts.",
        annotations(read_only_hint = true)
    )]
    async fn list_topics(
        &self,
        Parameters(args): Parameters<ListTopicsArgs>,
    ) -> Result<String, ToolError> {
        let broker = self.backend()?.broker();
        let mut topics = broker.topics.list();
        topics.sort_by(|a, b| a.name().cmp(b.name()));
        let prefix = args.prefix.unwrap_or_default();
        let shown = topics
            .iter()
            .filter(|topic| topic.name().starts_with(&prefix))
            .map(|topic| {
                let records: i64 = topic
                    .partitions
                    .iter()
                    .map(|p| p.log.high_watermark() - p.log.log_start_offset())
                    .sum();
                json!({
                    "name": topic.name(),
                    "partitions": topic.partitions.len(),
                    "records": records,
                })
            });
        let (topics, truncated) = output::fit(shown, self.settings.max_bytes);
        Ok(json!({ "topics": topics, "truncated": truncated }).to_string())
    }

    #[tool(
        description = "Describe one topic: id, settings set on it, and each partition's log start offset and high watermark.",
        annotations(read_only_hint = true)
    )]
    async fn describe_topic(
        &self,
        Parameters(args): Parameters<TopicArgs>,
    ) -> Result<String, ToolError> {
        Ok(self.topic_description(&args.topic)?.to_string())
    }

    #[tool(
        description = "Write records to an existing topic (refused when the server is read-only). Resolves once they are durable.",
        annotations(destructive_hint = false, idempotent_hint = false)
    )]
    async fn produce(
        &self,
        Parameters(args): Parameters<ProduceArgs>,
    ) -> Result<String, ToolError> {
        if self.settings.read_only {
            return Err(ToolError::ReadOnly);
        }
        let backend = self.backend()?;
        if backend.broker().topics.get(&args.topic).is_none() {
            return Err(ToolError::UnknownTopic(args.topic));
        }
        let count = args.records.len();
        if count == 0 || count > self.settings.max_records {
            return Err(ToolError::BadArgument(format!(
                "records: give 1 to {} records (mcp.server.max.records), not {count}",
                self.settings.max_records
            )));
        }
        let records = args.records.into_iter().map(out_record).collect();
        backend
            .produce(&args.topic, records)
            .await
            .map_err(|e| ToolError::Broker(e.to_string()))?;
        Ok(json!({ "topic": args.topic, "produced": count }).to_string())
    }

    #[tool(
        description = "Read records of a topic: from the earliest, an offset (negative: the last N of each partition) or a time; bounded by limit and the server's byte budget.",
        annotations(read_only_hint = true)
    )]
    async fn read(&self, Parameters(args): Parameters<ReadArgs>) -> Result<String, ToolError> {
        let backend = self.backend()?;
        let topic = backend
            .broker()
            .topics
            .get(&args.topic)
            .ok_or_else(|| ToolError::UnknownTopic(args.topic.clone()))?;
        let partitions: Vec<i32> = match args.partition {
            Some(p) if topic.partition(p).is_none() => {
                return Err(ToolError::BadArgument(format!(
                    "partition: topic `{}` has partitions 0 to {}, not {p}",
                    args.topic,
                    topic.partitions.len().saturating_sub(1)
                )))
            }
            Some(p) => vec![p],
            None => topic.partitions.iter().map(|p| p.index).collect(),
        };
        let start = |partition: i32| -> Result<StartAt, ToolError> {
            match (&args.offset, &args.from_time) {
                (Some(_), Some(_)) => Err(ToolError::BadArgument(
                    "give offset or from_time, not both".to_string(),
                )),
                (Some(offset), None) if *offset < 0 => {
                    let end = topic
                        .partition(partition)
                        .map_or(0, |p| p.log.high_watermark());
                    Ok(StartAt::Offset(end.saturating_add(*offset).max(0)))
                }
                (Some(offset), None) => Ok(StartAt::Offset(*offset)),
                (None, Some(time)) => Ok(StartAt::Timestamp(
                    time.millis("from_time").map_err(ToolError::BadArgument)?,
                )),
                (None, None) => Ok(StartAt::Earliest),
            }
        };
        let limit = self.limit(args.limit);
        let mut events = Vec::new();
        for partition in partitions {
            let from = start(partition)?;
            scan::collect(backend, &args.topic, partition, from, limit, &mut events).await?;
        }
        Ok(self
            .records_result(&args.topic, &events, self.settings.max_bytes)
            .to_string())
    }

    #[tool(
        description = "Consumer-group lag: per group, topic and partition, the committed offset, the high watermark and their difference.",
        annotations(read_only_hint = true)
    )]
    async fn group_lag(
        &self,
        Parameters(args): Parameters<GroupLagArgs>,
    ) -> Result<String, ToolError> {
        let broker = self.backend()?.broker();
        let lag = crate::consumer_lag::consumer_lag(broker, args.group.as_deref());
        if let (Some(group), true) = (&args.group, lag.is_empty()) {
            return Err(ToolError::BadArgument(format!(
                "group: `{group}` has no committed offsets on existing partitions"
            )));
        }
        let mut groups: BTreeMap<&str, (i64, Vec<Value>)> = BTreeMap::new();
        for partition in &lag {
            let (total, partitions) = groups.entry(&partition.group).or_default();
            *total += partition.lag;
            partitions.push(json!({
                "topic": partition.topic,
                "partition": partition.partition,
                "committed": partition.committed,
                "high_watermark": partition.high_watermark,
                "lag": partition.lag,
            }));
        }
        let shown = groups.into_iter().map(|(group, (total, partitions))| {
            json!({ "group": group, "total_lag": total, "partitions": partitions })
        });
        let (groups, truncated) = output::fit(shown, self.settings.max_bytes);
        Ok(json!({ "groups": groups, "truncated": truncated }).to_string())
    }

    #[tool(
        description = "Search agents' recorded decisions (agent.decisions.<agent>) by agent, trace id and time range, oldest first.",
        annotations(read_only_hint = true)
    )]
    async fn search_decisions(
        &self,
        Parameters(args): Parameters<SearchDecisionsArgs>,
    ) -> Result<String, ToolError> {
        let backend = self.backend()?;
        let time = |argument: &str, value: &Option<TimeArg>| {
            value
                .as_ref()
                .map(|t| t.millis(argument))
                .transpose()
                .map_err(ToolError::BadArgument)
        };
        let filter = DecisionFilter {
            trace_id: args.trace_id.clone(),
            from_ms: time("from_time", &args.from_time)?,
            to_ms: time("to_time", &args.to_time)?,
        };
        let topics = match &args.agent {
            Some(agent) => {
                let topic = decisions::topic_of(agent);
                match backend.broker().topics.get(&topic) {
                    Some(found) => vec![found],
                    None => {
                        return Err(ToolError::BadArgument(format!(
                            "agent: `{agent}` has recorded no decisions (no topic `{topic}`)"
                        )))
                    }
                }
            }
            None => {
                let mut all: Vec<_> = backend
                    .broker()
                    .topics
                    .list()
                    .into_iter()
                    .filter(|t| t.name().starts_with(decisions::TOPIC_PREFIX))
                    .collect();
                all.sort_by(|a, b| a.name().cmp(b.name()));
                all
            }
        };
        let from = filter.from_ms.map_or(StartAt::Earliest, StartAt::Timestamp);
        let limit = self.limit(args.limit);
        let (mut found, mut scanned) = (Vec::new(), 0usize);
        'topics: for topic in &topics {
            for partition in &topic.partitions {
                let flow = scan::partition(backend, topic.name(), partition.index, from, |event| {
                    scanned += 1;
                    found.extend(filter.matching(&event));
                    if found.len() >= limit || scanned >= MAX_SCANNED {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                })
                .await?;
                if flow.is_break() {
                    break 'topics;
                }
            }
        }
        let (decisions, cut) = output::fit(found, self.settings.max_bytes);
        Ok(json!({
            "decisions": decisions,
            "truncated": cut,
            "scanned": scanned,
            "scan_limit_reached": scanned >= MAX_SCANNED,
        })
        .to_string())
    }
}

impl McpServer {
    /// The effective record limit: the one asked for, within `mcp.server.max.records`.
    fn limit(&self, asked: Option<usize>) -> usize {
        asked
            .unwrap_or(self.settings.max_records)
            .clamp(1, self.settings.max_records)
    }

    /// `records` of `topic` as a result: the ones that fit in `max_bytes`, and where each partition's
    /// next unreturned record is, to read on from.
    pub(super) fn records_result(&self, topic: &str, records: &[Event], max_bytes: usize) -> Value {
        let shown = records.iter().map(|event| output::record(event, max_bytes));
        let (shown, truncated) = output::fit(shown, max_bytes);
        let mut next_offsets = BTreeMap::new();
        for event in records.iter().take(shown.len()) {
            next_offsets.insert(event.partition.to_string(), event.offset + 1);
        }
        json!({
            "topic": topic,
            "records": shown,
            "truncated": truncated,
            "next_offsets": next_offsets,
        })
    }

    /// What `describe_topic` and a topic resource say about `name`.
    pub(super) fn topic_description(&self, name: &str) -> Result<Value, ToolError> {
        let topic = self
            .backend()?
            .broker()
            .topics
            .get(name)
            .ok_or_else(|| ToolError::UnknownTopic(name.to_string()))?;
        let partitions = topic.partitions.iter().map(|p| {
            json!({
                "partition": p.index,
                "log_start_offset": p.log.log_start_offset(),
                "high_watermark": p.log.high_watermark(),
            })
        });
        let (partitions, truncated) = output::fit(partitions, self.settings.max_bytes / 2);
        Ok(json!({
            "name": topic.name(),
            "id": topic.id().to_string(),
            "partition_count": topic.partitions.len(),
            "configs": topic.record.configs,
            "partitions": partitions,
            "truncated": truncated,
        }))
    }
}

/// A record to write, as the embedded backend takes it.
fn out_record(record: NewRecord) -> OutRecord {
    let value = match record.value {
        Value::Null => None,
        Value::String(text) => Some(Bytes::from(text)),
        other => Some(Bytes::from(other.to_string())),
    };
    OutRecord {
        key: record.key.map(Bytes::from),
        value,
        headers: record
            .headers
            .into_iter()
            .map(|(name, value)| (name, Bytes::from(value)))
            .collect(),
        timestamp: 0,
    }
}
