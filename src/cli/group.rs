//! `agentlog group list|describe|delete|reset-offsets`: consumer groups, their lag per
//! partition, and moving their committed offsets (as Kafka's
//! `kafka-consumer-groups.sh --reset-offsets` does: only while the group has no members).

use clap::{ArgGroup, Args, Subcommand};
use rdkafka::admin::AdminOptions;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use super::client::{ClusterArgs, Quiet, QuietContext};
use super::table::{print_done, Rows};
use super::{parse_time, Output, OutputArgs};

/// `agentlog group` arguments.
#[derive(Debug, Args)]
pub struct GroupArgs {
    #[command(subcommand)]
    command: GroupCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum GroupCommand {
    /// Every consumer group with its state and member count.
    List,
    /// A group's state and members, and its committed offset and lag per partition.
    Describe {
        /// The group.
        group: String,
    },
    /// Delete groups (they must have no members).
    Delete {
        /// The groups.
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// Move a group's committed offsets (the group must have no members).
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("to").required(true).args(["to_earliest", "to_latest", "to_offset", "to_datetime", "shift_by"])))]
struct ResetArgs {
    /// The group.
    group: String,
    /// A topic to reset; repeatable (default: every topic the group has committed on).
    #[arg(long = "topic", short = 't')]
    topics: Vec<String>,
    /// To the first offset of each partition.
    #[arg(long)]
    to_earliest: bool,
    /// To the end of each partition (skip everything so far).
    #[arg(long)]
    to_latest: bool,
    /// To this offset (clamped to each partition's range).
    #[arg(long, value_name = "N")]
    to_offset: Option<i64>,
    /// To the first record at or after this time (RFC 3339 or ms since the epoch).
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// By N records from the committed offset (negative: back; clamped).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Print the new offsets without committing them.
    #[arg(long)]
    dry_run: bool,
}

/// Runs a `group` subcommand.
pub fn run(args: GroupArgs) -> anyhow::Result<()> {
    let output = args.output.output;
    let cluster = &args.cluster;
    match args.command {
        GroupCommand::List => list(cluster)?.print(output),
        GroupCommand::Describe { group } => describe(cluster, &group)?.print(output),
        GroupCommand::Delete { groups } => {
            let admin = cluster.admin()?;
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            let options = AdminOptions::new().request_timeout(Some(admin.timeout));
            let results = super::runtime()?
                .block_on(admin.delete_groups(&names, &options))
                .map_err(|e| admin.explain("deleting groups", e))?;
            for result in results {
                if let Err((group, code)) = result {
                    anyhow::bail!("deleting group {group}: {code}");
                }
            }
            print_done(output, &format!("deleted {}", groups.join(", ")));
        }
        GroupCommand::ResetOffsets(args) => {
            let to = args.target()?;
            let plan = reset_offsets(cluster, &args.group, &args.topics, to, args.dry_run)?;
            print_reset(&args.group, &plan, args.dry_run, output);
        }
    }
    Ok(())
}

/// Every consumer group with its state, protocol type and member count.
pub fn list(cluster: &ClusterArgs) -> anyhow::Result<Rows> {
    let consumer = cluster.consumer(None)?;
    let list = consumer
        .fetch_group_list(None, consumer.timeout)
        .map_err(|e| consumer.explain("listing groups", e))?;
    let mut groups: Vec<_> = list.groups().iter().collect();
    groups.sort_by_key(|g| g.name());
    let mut rows = Rows::new(&["group", "state", "protocol_type", "members"]);
    for group in groups {
        rows.push(vec![
            json!(group.name()),
            json!(group.state()),
            json!(group.protocol_type()),
            json!(group.members().len()),
        ]);
    }
    Ok(rows)
}

/// The state of one group as DescribeGroups reports it.
struct GroupState {
    state: String,
    members: Vec<(String, String, String)>,
}

fn group_state(
    consumer: &Quiet<BaseConsumer<QuietContext>>,
    group: &str,
) -> anyhow::Result<GroupState> {
    let list = consumer
        .fetch_group_list(Some(group), consumer.timeout)
        .map_err(|e| consumer.explain(&format!("describing group {group}"), e))?;
    let info = list.groups().iter().find(|g| g.name() == group);
    Ok(GroupState {
        state: info.map_or("Dead", |g| g.state()).to_string(),
        members: info
            .map(|g| {
                g.members()
                    .iter()
                    .map(|m| {
                        (
                            m.id().to_string(),
                            m.client_id().to_string(),
                            m.client_host().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// The group's committed offsets, over every partition of `topics` (default: every
/// topic in the cluster, as OffsetFetch for "all topics" is not in rdkafka's API).
fn committed(
    consumer: &Quiet<BaseConsumer<QuietContext>>,
    group: &str,
    topics: &[String],
) -> anyhow::Result<Vec<(String, i32, Option<i64>)>> {
    let metadata = consumer.metadata(None)?;
    for topic in topics {
        consumer.metadata(Some(topic))?;
    }
    let mut wanted = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topics.is_empty() || topics.iter().any(|t| t == topic.name()) {
            for partition in topic.partitions() {
                wanted.add_partition(topic.name(), partition.id());
            }
        }
    }
    let found = consumer
        .committed_offsets(wanted, consumer.timeout)
        .map_err(|e| consumer.explain(&format!("reading the offsets of group {group}"), e))?;
    let mut offsets: Vec<_> = found
        .elements()
        .iter()
        .map(|e| {
            let offset = match e.offset() {
                Offset::Offset(n) => Some(n),
                _ => None,
            };
            (e.topic().to_string(), e.partition(), offset)
        })
        .collect();
    offsets.sort();
    Ok(offsets)
}

/// One group as `group describe` shows it: state, members, and lag per partition.
#[derive(Debug)]
pub struct Description {
    /// The group id.
    pub group: String,
    /// `Stable`, `Empty`, `Dead`, ...
    pub state: String,
    /// Member id, client id and host of each member.
    pub members: Rows,
    /// Committed offset, high watermark and lag per partition.
    pub offsets: Rows,
}

impl Description {
    /// The `--output json` document (also the console's).
    pub fn to_json(&self) -> serde_json::Value {
        json!({"group": self.group, "state": self.state, "members": self.members.to_json(), "offsets": self.offsets.to_json()})
    }

    fn print(&self, output: Output) {
        match output {
            Output::Json => println!("{}", self.to_json()),
            Output::Table => {
                println!(
                    "group {}: {} ({} members)\n",
                    self.group,
                    self.state,
                    self.members.len()
                );
                if !self.members.is_empty() {
                    println!("{}", self.members.to_table());
                }
                print!("{}", self.offsets.to_table());
            }
        }
    }
}

/// A group's state, members and lag; an error when the group has neither members nor
/// committed offsets (Kafka answers "Dead" for a group it never heard of).
pub fn describe(cluster: &ClusterArgs, group: &str) -> anyhow::Result<Description> {
    let consumer = cluster.consumer(Some(group))?;
    let state = group_state(&consumer, group)?;
    let mut lag = Rows::new(&["topic", "partition", "committed", "high_watermark", "lag"]);
    for (topic, partition, offset) in committed(&consumer, group, &[])? {
        let Some(offset) = offset else { continue };
        let (_, high) = consumer.watermarks(&topic, partition)?;
        lag.push(vec![
            json!(topic),
            json!(partition),
            json!(offset),
            json!(high),
            json!((high - offset).max(0)),
        ]);
    }
    anyhow::ensure!(
        state.state != "Dead" || !lag.is_empty(),
        "group {group} does not exist (no members and no committed offsets)"
    );
    let mut members = Rows::new(&["member", "client_id", "host"]);
    for (id, client, host) in &state.members {
        members.push(vec![json!(id), json!(client), json!(host)]);
    }
    Ok(Description {
        group: group.to_string(),
        state: state.state,
        members,
        offsets: lag,
    })
}

/// Where `reset-offsets` moves a group's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first offset of each partition.
    Earliest,
    /// The end of each partition.
    Latest,
    /// This offset (clamped to each partition's range).
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// By this many records from the committed offset.
    Shift(i64),
}

impl ResetArgs {
    fn target(&self) -> anyhow::Result<ResetTo> {
        Ok(if self.to_earliest {
            ResetTo::Earliest
        } else if self.to_latest {
            ResetTo::Latest
        } else if let Some(offset) = self.to_offset {
            ResetTo::Offset(offset)
        } else if let Some(shift) = self.shift_by {
            ResetTo::Shift(shift)
        } else if let Some(time) = &self.to_datetime {
            ResetTo::Time(parse_time(time)?)
        } else {
            anyhow::bail!(
                "give one of --to-earliest, --to-latest, --to-offset, --to-datetime, --shift-by"
            )
        })
    }
}

fn print_reset(group: &str, plan: &Rows, dry_run: bool, output: Output) {
    match output {
        Output::Json => println!(
            "{}",
            json!({"group": group, "dry_run": dry_run, "offsets": plan.to_json()})
        ),
        Output::Table => {
            print!("{}", plan.to_table());
            if dry_run {
                println!("(dry run: nothing committed)");
            }
        }
    }
}

/// Moves `group`'s committed offsets on `topics` (default: those it committed on) to
/// `to`, or with `dry_run` only computes where; the old and new offsets per partition.
pub fn reset_offsets(
    cluster: &ClusterArgs,
    group: &str,
    topics: &[String],
    to: ResetTo,
    dry_run: bool,
) -> anyhow::Result<Rows> {
    let consumer = cluster.consumer(Some(group))?;
    let state = group_state(&consumer, group)?;
    if !dry_run && !matches!(state.state.as_str(), "Empty" | "Dead") {
        anyhow::bail!(
            "group {group} is {} with {} members: stop its consumers first (or use --dry-run)",
            state.state,
            state.members.len()
        );
    }
    let current = committed(&consumer, group, topics)?;
    let targets: Vec<_> = current
        .into_iter()
        .filter(|(_, _, offset)| offset.is_some() || !topics.is_empty())
        .collect();
    anyhow::ensure!(
        !targets.is_empty(),
        "group {group} has no committed offsets: name the topics with --topic"
    );
    let mut plan = Rows::new(&["topic", "partition", "old", "new"]);
    let mut commit = TopicPartitionList::new();
    for (topic, partition, old) in targets {
        let (low, high) = consumer.watermarks(&topic, partition)?;
        let new = match to {
            ResetTo::Earliest => low,
            ResetTo::Latest => high,
            ResetTo::Offset(offset) => offset,
            ResetTo::Shift(shift) => old.unwrap_or(low).saturating_add(shift),
            ResetTo::Time(time) => offset_at(&consumer, &topic, partition, time)?.unwrap_or(high),
        }
        .clamp(low, high);
        plan.push(vec![json!(topic), json!(partition), json!(old), json!(new)]);
        commit
            .add_partition_offset(&topic, partition, Offset::Offset(new))
            .map_err(|e| anyhow::anyhow!("{topic}/{partition}: {e}"))?;
    }
    if !dry_run {
        consumer.commit(&commit, CommitMode::Sync).map_err(|e| {
            consumer.explain(&format!("committing the offsets of group {group}"), e)
        })?;
    }
    Ok(plan)
}

/// The offset of the first record at or after `time` in one partition (None: none yet).
pub fn offset_at(
    consumer: &Quiet<BaseConsumer<QuietContext>>,
    topic: &str,
    partition: i32,
    time: i64,
) -> anyhow::Result<Option<i64>> {
    let mut query = TopicPartitionList::new();
    query
        .add_partition_offset(topic, partition, Offset::Offset(time))
        .map_err(|e| anyhow::anyhow!("{topic}/{partition}: {e}"))?;
    let found = consumer
        .offsets_for_times(query, consumer.timeout)
        .map_err(|e| consumer.explain(&format!("looking up {topic}/{partition} by time"), e))?;
    Ok(found.elements().first().and_then(|e| match e.offset() {
        Offset::Offset(n) => Some(n),
        _ => None,
    }))
}
