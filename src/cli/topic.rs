//! `agentlog topic list|describe|create|delete|alter-config|add-partitions`.

use anyhow::Context;
use clap::{Args, Subcommand};
use rdkafka::admin::{
    AdminOptions, AlterConfig, ConfigSource, NewPartitions, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use serde_json::json;

use super::client::{ClusterArgs, Quiet, QuietContext};
use super::table::{print_done, Rows};
use super::{name_value, OutputArgs};

/// `agentlog topic` arguments.
#[derive(Debug, Args)]
pub struct TopicArgs {
    #[command(subcommand)]
    command: TopicCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum TopicCommand {
    /// Every topic with its partition count.
    List,
    /// A topic's partitions (leader, replicas, offsets) and its configuration.
    Describe {
        /// The topic.
        topic: String,
    },
    /// Create a topic.
    Create {
        /// The topic.
        topic: String,
        /// Number of partitions (default: the cluster's `num.partitions`).
        #[arg(long, short = 'p')]
        partitions: Option<i32>,
        /// Replication factor (default: the cluster's).
        #[arg(long, short = 'r')]
        replication_factor: Option<i32>,
        /// A topic config, `name=value` (e.g. `retention.ms=60000`); repeatable.
        #[arg(long = "config", short = 'c', value_name = "NAME=VALUE")]
        configs: Vec<String>,
    },
    /// Delete topics.
    Delete {
        /// The topics.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Set or remove topic configs; the others keep their values.
    AlterConfig {
        /// The topic.
        topic: String,
        /// A config to set, `name=value`; repeatable.
        #[arg(long = "set", value_name = "NAME=VALUE")]
        set: Vec<String>,
        /// A config to return to its default; repeatable.
        #[arg(long = "delete", value_name = "NAME")]
        delete: Vec<String>,
    },
    /// Add partitions to a topic.
    AddPartitions {
        /// The topic.
        topic: String,
        /// How many partitions to add.
        #[arg(long, short = 'n')]
        num: usize,
    },
}

/// Runs a `topic` subcommand.
pub fn run(args: TopicArgs) -> anyhow::Result<()> {
    let output = args.output.output;
    let cluster = &args.cluster;
    match args.command {
        TopicCommand::List => list(cluster)?.print(output),
        TopicCommand::Describe { topic } => {
            let (partitions, configs) = describe(cluster, &topic)?;
            match output {
                super::Output::Json => println!(
                    "{}",
                    json!({"topic": topic, "partitions": partitions.to_json(), "configs": configs.to_json()})
                ),
                super::Output::Table => {
                    print!("{}", partitions.to_table());
                    println!();
                    print!("{}", configs.to_table());
                }
            }
        }
        TopicCommand::Create {
            topic,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = configs
                .iter()
                .map(|c| name_value(c))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let admin = cluster.admin()?;
            let replication = TopicReplication::Fixed(replication_factor.unwrap_or(-1));
            let mut new_topic = NewTopic::new(&topic, partitions.unwrap_or(-1), replication);
            for (name, value) in &configs {
                new_topic = new_topic.set(name, value);
            }
            let results = super::runtime()?
                .block_on(admin.create_topics([&new_topic], &options(&admin)))
                .map_err(|e| admin.explain(&format!("creating topic {topic}"), e))?;
            check(results, "creating topic")?;
            print_done(output, &format!("created topic {topic}"));
        }
        TopicCommand::Delete { topics } => {
            let admin = cluster.admin()?;
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let results = super::runtime()?
                .block_on(admin.delete_topics(&names, &options(&admin)))
                .map_err(|e| admin.explain("deleting topics", e))?;
            check(results, "deleting topic")?;
            print_done(output, &format!("deleted {}", topics.join(", ")));
        }
        TopicCommand::AlterConfig { topic, set, delete } => {
            anyhow::ensure!(
                !set.is_empty() || !delete.is_empty(),
                "nothing to change: give --set NAME=VALUE or --delete NAME"
            );
            alter_config(cluster, &topic, &set, &delete)?;
            print_done(output, &format!("altered the configs of {topic}"));
        }
        TopicCommand::AddPartitions { topic, num } => {
            anyhow::ensure!(num > 0, "--num must be at least 1");
            let current = cluster.consumer(None)?.partitions(&topic)?.len();
            let admin = cluster.admin()?;
            let total = current + num;
            let request = NewPartitions::new(&topic, total);
            let results = super::runtime()?
                .block_on(admin.create_partitions([&request], &options(&admin)))
                .map_err(|e| admin.explain(&format!("adding partitions to {topic}"), e))?;
            check(results, "adding partitions to")?;
            print_done(output, &format!("{topic} now has {total} partitions"));
        }
    }
    Ok(())
}

fn options(admin: &Quiet<rdkafka::admin::AdminClient<QuietContext>>) -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(admin.timeout))
        .operation_timeout(Some(admin.timeout))
}

/// The first failure of a per-topic admin result, as an error naming the topic.
fn check(results: Vec<rdkafka::admin::TopicResult>, doing: &str) -> anyhow::Result<()> {
    for result in results {
        if let Err((topic, code)) = result {
            anyhow::bail!("{doing} {topic}: {code}");
        }
    }
    Ok(())
}

/// Every topic with its partition count.
pub fn list(cluster: &ClusterArgs) -> anyhow::Result<Rows> {
    let metadata = cluster.consumer(None)?.metadata(None)?;
    let mut topics: Vec<_> = metadata.topics().iter().collect();
    topics.sort_by_key(|t| t.name());
    let mut rows = Rows::new(&["topic", "partitions"]);
    for topic in topics {
        rows.push(vec![json!(topic.name()), json!(topic.partitions().len())]);
    }
    Ok(rows)
}

/// The partitions (with offsets) and the configs of a topic.
pub fn describe(cluster: &ClusterArgs, topic: &str) -> anyhow::Result<(Rows, Rows)> {
    let consumer = cluster.consumer(None)?;
    let metadata = consumer.metadata(Some(topic))?;
    let mut partitions = Rows::new(&["partition", "leader", "replicas", "isr", "low", "high"]);
    for found in metadata.topics().iter().filter(|t| t.name() == topic) {
        let mut list: Vec<_> = found.partitions().iter().collect();
        list.sort_by_key(|p| p.id());
        for partition in list {
            let (low, high) = consumer.watermarks(topic, partition.id())?;
            partitions.push(vec![
                json!(partition.id()),
                json!(partition.leader()),
                json!(partition.replicas()),
                json!(partition.isr()),
                json!(low),
                json!(high),
            ]);
        }
    }
    let mut configs = Rows::new(&["config", "value", "source"]);
    for entry in topic_configs(cluster, topic)? {
        configs.push(vec![
            json!(entry.name),
            json!(if entry.is_sensitive {
                None
            } else {
                entry.value
            }),
            json!(format!("{:?}", entry.source)),
        ]);
    }
    Ok((partitions, configs))
}

/// Every topic with its partitions, the records it holds (high minus low watermark,
/// all partitions) and the sum of its high watermarks (records ever written: the
/// console's throughput is its change over time).
pub fn sizes(cluster: &ClusterArgs) -> anyhow::Result<Rows> {
    let consumer = cluster.consumer(None)?;
    let metadata = consumer.metadata(None)?;
    let mut topics: Vec<_> = metadata.topics().iter().collect();
    topics.sort_by_key(|t| t.name());
    let mut rows = Rows::new(&["topic", "partitions", "records", "end_offsets"]);
    for topic in topics {
        let (mut records, mut end) = (0, 0);
        for partition in topic.partitions() {
            let (low, high) = consumer.watermarks(topic.name(), partition.id())?;
            records += high - low;
            end += high;
        }
        rows.push(vec![
            json!(topic.name()),
            json!(topic.partitions().len()),
            json!(records),
            json!(end),
        ]);
    }
    Ok(rows)
}

fn topic_configs(
    cluster: &ClusterArgs,
    topic: &str,
) -> anyhow::Result<Vec<rdkafka::admin::ConfigEntry>> {
    let admin = cluster.admin()?;
    let results = super::runtime()?
        .block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &options(&admin)))
        .map_err(|e| admin.explain(&format!("reading the configs of {topic}"), e))?;
    let mut entries = Vec::new();
    for result in results {
        let resource =
            result.map_err(|code| anyhow::anyhow!("reading the configs of {topic}: {code}"))?;
        entries.extend(resource.entries);
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// AlterConfigs (the API rdkafka offers) replaces a topic's whole set of overrides, so
/// the current overrides are read first and sent back with the changes applied: the
/// configs not named keep their values.
fn alter_config(
    cluster: &ClusterArgs,
    topic: &str,
    set: &[String],
    delete: &[String],
) -> anyhow::Result<()> {
    let mut overrides: Vec<(String, String)> = topic_configs(cluster, topic)?
        .into_iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name, e.value?)))
        .collect();
    for name in delete {
        overrides.retain(|(n, _)| n != name);
    }
    for setting in set {
        let (name, value) = name_value(setting).context("--set")?;
        overrides.retain(|(n, _)| *n != name);
        overrides.push((name, value));
    }
    let admin = cluster.admin()?;
    let mut request = AlterConfig::new(ResourceSpecifier::Topic(topic));
    for (name, value) in &overrides {
        request = request.set(name, value);
    }
    let results = super::runtime()?
        .block_on(admin.alter_configs([&request], &options(&admin)))
        .map_err(|e| admin.explain(&format!("altering the configs of {topic}"), e))?;
    for result in results {
        result.map_err(|(_, code)| anyhow::anyhow!("altering the configs of {topic}: {code}"))?;
    }
    Ok(())
}
