//! `agentlog agents list|status`: what the agents are and what they are doing.
//!
//! Two sources, because an agent leaves traces in two places. The cluster (any Kafka)
//! holds what agents wrote: `agent.decisions.<agent>`, `agent.state.<agent>` and
//! `agent.llm.<agent>`, and their consumer group (named after the agent by default) with
//! its members (instances) and lag. The process running them holds the counters
//! (processed, errors, dead letters, latency, LLM tokens and cost), which the console
//! serves as `/ui/api/agents` merged with the cluster's view; `--http` reads that.

use std::collections::BTreeMap;

use agentlog_agents::metrics::{LlmMetricsSnapshot, MetricsSnapshot, LATENCY_BUCKETS_US};
use anyhow::Context;
use clap::Args;
use rdkafka::consumer::Consumer;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::ClusterArgs;
use super::table::Rows;
use super::{Output, OutputArgs};

/// The topic prefixes that name an agent after them.
const AGENT_TOPICS: [&str; 3] = ["agent.decisions.", "agent.state.", "agent.llm."];

/// One agent as the cluster and (when known) its process's counters show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AgentView {
    /// The agent id.
    pub agent: String,
    /// Its kind (`router`, `llm_router`, a user type); known from the counters only.
    pub kind: Option<String>,
    /// The state of its consumer group (`Stable`, `Empty`, ...); None: no such group.
    pub group_state: Option<String>,
    /// Members of its consumer group: the running instances.
    pub instances: usize,
    /// Records its group has yet to consume, all partitions.
    pub lag: Option<i64>,
    /// Records in `agent.decisions.<agent>`.
    pub decisions: i64,
    /// Records in `agent.llm.<agent>` (recorded model calls).
    pub llm_calls: i64,
    /// Events handled successfully (counters).
    pub processed: Option<u64>,
    /// Failed handling attempts (counters).
    pub errors: Option<u64>,
    /// Events sent to a dead-letter topic (counters).
    pub dead_lettered: Option<u64>,
    /// Median handling latency in ms: the upper bound of its histogram bucket.
    pub latency_p50_ms: Option<f64>,
    /// 99th-percentile handling latency in ms, the same way.
    pub latency_p99_ms: Option<f64>,
    /// Prompt tokens of its model calls.
    pub llm_tokens_in: Option<u64>,
    /// Completion tokens of its model calls.
    pub llm_tokens_out: Option<u64>,
    /// Cost of its model calls, from the endpoint's prices.
    pub llm_cost: Option<f64>,
}

/// `agentlog agents list` arguments.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// A running agentlog's HTTP listener: adds its agents' counters (processed, errors,
    /// dead letters, latency, LLM tokens and cost) to what its cluster shows.
    #[arg(long, value_name = "HOST:PORT")]
    http: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// `agentlog agents status AGENT` arguments.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The agent id.
    agent: String,
    #[command(flatten)]
    list: ListArgs,
}

/// Prints every agent found.
pub fn list(args: ListArgs) -> anyhow::Result<()> {
    let views = read(&args)?;
    match args.output.output {
        Output::Json => println!("{}", serde_json::to_value(&views)?),
        Output::Table => print!("{}", table(&views).to_table()),
    }
    Ok(())
}

/// Prints one agent, with its group's lag per partition.
pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let view = read(&args.list)?
        .into_iter()
        .find(|v| v.agent == args.agent)
        .with_context(|| {
            format!(
                "agent {} not found (no agent.decisions/state/llm topic, group or counters by that name)",
                args.agent
            )
        })?;
    let offsets = offsets(&args.list, &view)?;
    match args.list.output.output {
        Output::Json => {
            let mut document = serde_json::to_value(&view)?;
            document["offsets"] = offsets.clone();
            println!("{document}");
        }
        Output::Table => {
            if let serde_json::Value::Object(fields) = serde_json::to_value(&view)? {
                for (name, value) in fields {
                    let text = match value {
                        serde_json::Value::Null => "-".to_string(),
                        serde_json::Value::String(s) => s,
                        other => other.to_string(),
                    };
                    println!("{name:<16} {text}");
                }
            }
            let rows = offsets.as_array().map_or(&[][..], Vec::as_slice);
            if !rows.is_empty() {
                let mut table =
                    Rows::new(&["topic", "partition", "committed", "high_watermark", "lag"]);
                for row in rows {
                    table.push(
                        ["topic", "partition", "committed", "high_watermark", "lag"]
                            .iter()
                            .map(|c| row[*c].clone())
                            .collect(),
                    );
                }
                println!();
                print!("{}", table.to_table());
            }
        }
    }
    Ok(())
}

/// From the running agentlog's console with `--http`, else from the cluster alone.
fn read(args: &ListArgs) -> anyhow::Result<Vec<AgentView>> {
    match &args.http {
        Some(addr) => {
            let views = fetch(addr, "agents", args.cluster.timeout()?)?;
            serde_json::from_value(views).context("the console did not answer agents JSON")
        }
        None => Ok(from_cluster(&args.cluster)?.into_values().collect()),
    }
}

/// The lag per partition of the agent's group (none without a group), from the same
/// source as the agent.
fn offsets(args: &ListArgs, view: &AgentView) -> anyhow::Result<serde_json::Value> {
    if view.group_state.is_none() {
        return Ok(json!([]));
    }
    Ok(match &args.http {
        Some(addr) => {
            let path = format!("groups/{}", view.agent);
            fetch(addr, &path, args.cluster.timeout()?)?["offsets"].clone()
        }
        None => super::group::describe(&args.cluster, &view.agent)?
            .offsets
            .to_json(),
    })
}

/// `GET http://ADDR/ui/api/PATH`: the console's JSON.
fn fetch(
    addr: &str,
    path: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<serde_json::Value> {
    let url = format!("http://{addr}/ui/api/{path}");
    let (status, json) = super::http_get_json(&url, timeout)?;
    anyhow::ensure!(
        (200..300).contains(&status),
        "{url} answered {status}: {json}"
    );
    Ok(json)
}

/// The agents the cluster shows: named by their topics, with their groups' members and
/// lag, and how many decisions and model calls they recorded.
pub fn from_cluster(cluster: &ClusterArgs) -> anyhow::Result<BTreeMap<String, AgentView>> {
    let consumer = cluster.consumer(None)?;
    let metadata = consumer.metadata(None)?;
    let mut views: BTreeMap<String, AgentView> = BTreeMap::new();
    for topic in metadata.topics() {
        let Some((prefix, agent)) = AGENT_TOPICS
            .iter()
            .find_map(|p| topic.name().strip_prefix(p).map(|a| (*p, a)))
        else {
            continue;
        };
        if agent.is_empty() {
            continue;
        }
        let mut records = 0;
        for partition in topic.partitions() {
            let (low, high) = consumer.watermarks(topic.name(), partition.id())?;
            records += high - low;
        }
        let view = views.entry(agent.to_string()).or_insert_with(|| AgentView {
            agent: agent.to_string(),
            ..AgentView::default()
        });
        match prefix {
            "agent.decisions." => view.decisions = records,
            "agent.llm." => view.llm_calls = records,
            _ => {}
        }
    }
    add_groups(cluster, &mut views)?;
    Ok(views)
}

/// Each agent's group state, members and lag (agents without a group keep None).
fn add_groups(
    cluster: &ClusterArgs,
    views: &mut BTreeMap<String, AgentView>,
) -> anyhow::Result<()> {
    let consumer = cluster.consumer(None)?;
    let groups = consumer
        .fetch_group_list(None, consumer.timeout)
        .map_err(|e| consumer.explain("listing groups", e))?;
    for group in groups.groups() {
        let Some(view) = views.get_mut(group.name()) else {
            continue;
        };
        view.group_state = Some(group.state().to_string());
        view.instances = group.members().len();
        if let Ok(description) = super::group::describe(cluster, group.name()) {
            let lag = description.offsets.to_json();
            view.lag = Some(
                lag.as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|row| row["lag"].as_i64())
                    .sum(),
            );
        }
    }
    Ok(())
}

/// Adds the process's counters: agents only the counters know are added (an agent that
/// wrote no decision, state or model call has no topic of its own), and those known
/// are looked up again in the cluster's groups.
pub fn add_metrics(
    cluster: &ClusterArgs,
    views: &mut BTreeMap<String, AgentView>,
    agents: &BTreeMap<String, MetricsSnapshot>,
    llm: &BTreeMap<(String, String), LlmMetricsSnapshot>,
) -> anyhow::Result<()> {
    let mut added = BTreeMap::new();
    for agent in agents.keys() {
        if !views.contains_key(agent) {
            added.insert(
                agent.clone(),
                AgentView {
                    agent: agent.clone(),
                    ..AgentView::default()
                },
            );
        }
    }
    add_groups(cluster, &mut added)?;
    views.extend(added);
    for (agent, m) in agents {
        let Some(view) = views.get_mut(agent) else {
            continue;
        };
        view.kind = Some(m.kind.clone());
        view.processed = Some(m.events_processed);
        view.errors = Some(m.errors);
        view.dead_lettered = Some(m.dead_lettered);
        view.latency_p50_ms = percentile_ms(&m.latency_buckets, 0.50);
        view.latency_p99_ms = percentile_ms(&m.latency_buckets, 0.99);
    }
    for ((agent, _model), m) in llm {
        let Some(view) = views.get_mut(agent) else {
            continue;
        };
        *view.llm_tokens_in.get_or_insert(0) += m.tokens_in;
        *view.llm_tokens_out.get_or_insert(0) += m.tokens_out;
        *view.llm_cost.get_or_insert(0.0) += m.cost;
    }
    Ok(())
}

/// The upper bound (ms) of the bucket holding the `q` quantile of a cumulative latency
/// histogram (then `+Inf`, shown as the largest finite bound); None before any
/// observation.
pub fn percentile_ms(cumulative: &[u64], q: f64) -> Option<f64> {
    let total = *cumulative.last()?;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil().max(1.0) as u64;
    let bucket = cumulative.iter().position(|count| *count >= rank)?;
    let bound_us = LATENCY_BUCKETS_US
        .get(bucket)
        .or(LATENCY_BUCKETS_US.last())
        .copied()?;
    Some(bound_us as f64 / 1000.0)
}

/// The `agents list` table.
fn table(views: &[AgentView]) -> Rows {
    let mut rows = Rows::new(&[
        "agent",
        "kind",
        "group",
        "instances",
        "lag",
        "processed",
        "errors",
        "dlq",
        "p50_ms",
        "p99_ms",
        "decisions",
        "llm_calls",
        "tokens",
        "cost",
    ]);
    for v in views {
        rows.push(vec![
            json!(v.agent),
            json!(v.kind),
            json!(v.group_state),
            json!(v.instances),
            json!(v.lag),
            json!(v.processed),
            json!(v.errors),
            json!(v.dead_lettered),
            json!(v.latency_p50_ms),
            json!(v.latency_p99_ms),
            json!(v.decisions),
            json!(v.llm_calls),
            json!(v.llm_tokens_in.zip(v.llm_tokens_out).map(|(i, o)| i + o)),
            json!(v.llm_cost),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_bucket_upper_bounds() {
        // 50 observations in the 100 µs bucket, 49 in 1 ms, one over 10 s.
        let mut cumulative = vec![0u64; LATENCY_BUCKETS_US.len() + 1];
        for (i, count) in cumulative.iter_mut().enumerate() {
            *count = match i {
                0 => 0,
                1..=3 => 50,
                4..=11 => 99,
                _ => 100,
            };
        }
        assert_eq!(percentile_ms(&cumulative, 0.5), Some(0.1));
        assert_eq!(percentile_ms(&cumulative, 0.99), Some(1.0));
        assert_eq!(percentile_ms(&cumulative, 1.0), Some(10_000.0));
        assert_eq!(percentile_ms(&[0, 0], 0.5), None);
        assert_eq!(percentile_ms(&[], 0.5), None);
    }
}
