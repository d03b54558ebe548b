//! `agentlog decisions tail AGENT`: an agent's audit log (`agent.decisions.<agent>`,
//! envelopes of type `decision`) as readable text, optionally one trace only, so an
//! operator can see what an agent decided and why without decoding JSON by hand.

use std::io::Write;

use agentlog_agents::envelope::{rfc3339, Envelope};
use clap::{Args, Subcommand};
use rdkafka::message::BorrowedMessage;
use rdkafka::Message;

use super::client::ClusterArgs;
use super::consume::{headers, text_or_hex, Reader, Stop};
use super::{Output, OutputArgs, StartFrom};

/// `agentlog decisions` arguments.
#[derive(Debug, Args)]
pub struct DecisionsArgs {
    #[command(subcommand)]
    command: DecisionsCommand,
}

#[derive(Debug, Subcommand)]
enum DecisionsCommand {
    /// Print an agent's decisions, oldest first; with -f, keep printing new ones.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
struct TailArgs {
    /// The agent id (its decisions are in `agent.decisions.<agent>`).
    agent: String,
    /// Only decisions of this trace (32 hex digits).
    #[arg(long, value_name = "ID")]
    trace: Option<String>,
    /// Where to start: `beginning`, `end`, `offset:N` or `time:T`.
    #[arg(long, default_value = "beginning")]
    from: StartFrom,
    /// Follow: wait for new decisions instead of stopping at the end.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Stop after this many decisions.
    #[arg(long, short = 'n', value_name = "N")]
    num: Option<u64>,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs a `decisions` subcommand.
pub fn run(args: DecisionsArgs) -> anyhow::Result<()> {
    let DecisionsCommand::Tail(args) = args.command;
    let topic = crate::mcp_server::decisions::topic_of(&args.agent);
    let reader = Reader::open(&args.cluster, &topic, args.from, None, None)?;
    let stop = Stop {
        num: args.num,
        at_end: !args.follow,
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    reader.each(stop, |message| {
        let Some(text) = describe(message, args.trace.as_deref(), args.output.output) else {
            return Ok(false);
        };
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(true)
    })
}

/// The printed form of one record, or None when it is of another trace. A record that
/// is not an envelope is shown as it is, never dropped.
fn describe(message: &BorrowedMessage<'_>, trace: Option<&str>, output: Output) -> Option<String> {
    let value = message.payload().unwrap_or_default();
    let envelope = serde_json::from_slice::<Envelope>(value).ok();
    if !of_trace(message, envelope.as_ref(), trace) {
        return None;
    }
    let position = format!("{}/{}", message.partition(), message.offset());
    Some(match (envelope, output) {
        (Some(envelope), Output::Json) => format!(
            "{}\n",
            serde_json::json!({"position": position, "envelope": envelope})
        ),
        (Some(envelope), Output::Table) => pretty(&envelope, &position),
        (None, Output::Json) => format!(
            "{}\n",
            serde_json::json!({"position": position, "value": text_or_hex(value)})
        ),
        (None, Output::Table) => {
            format!("{position}  (not an envelope) {}\n\n", text_or_hex(value))
        }
    })
}

/// Whether a record belongs to `trace` (any record when None): by its envelope's trace
/// id, else its `ce_traceid` header; compared case-insensitively, as the MCP server's
/// `search_decisions` does.
fn of_trace(
    message: &BorrowedMessage<'_>,
    envelope: Option<&Envelope>,
    trace: Option<&str>,
) -> bool {
    let Some(wanted) = trace else {
        return true;
    };
    let found = envelope.map(|e| e.trace_id.clone()).or_else(|| {
        headers(message)
            .into_iter()
            .find(|(k, _)| k == "ce_traceid")
            .map(|(_, v)| v)
    });
    found.is_some_and(|t| t.eq_ignore_ascii_case(wanted))
}

/// The topics agents record their steps in: every `agent.decisions.<agent>` and
/// `agent.traces` (the tool agents' step log).
fn step_topics(cluster: &ClusterArgs) -> anyhow::Result<Vec<String>> {
    let metadata = cluster.consumer(None)?.metadata(None)?;
    let mut topics: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|name| {
            name.starts_with(crate::mcp_server::decisions::TOPIC_PREFIX)
                || name == agentlog_agents::llm::tools::TRACES_TOPIC
        })
        .collect();
    topics.sort();
    Ok(topics)
}

/// One recorded step as the console shows it: where it is, its time, and the envelope
/// (or, for a record that is not one, its value).
fn step_json(message: &BorrowedMessage<'_>, envelope: Option<Envelope>) -> serde_json::Value {
    let mut step = super::consume::record_json(message);
    if let Some(envelope) = envelope {
        step["time"] = serde_json::json!(envelope.timestamp);
        step["envelope"] = serde_json::json!(envelope);
    } else {
        step["time"] = step["timestamp"].clone();
    }
    step
}

/// Every step of one trace across all agents' step topics, in time order.
pub fn trace_steps(cluster: &ClusterArgs, trace: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut steps = Vec::new();
    each_step(cluster, StartFrom::Beginning, |message, envelope| {
        if of_trace(message, envelope.as_ref(), Some(trace)) {
            steps.push(step_json(message, envelope));
        }
    })?;
    steps.sort_by_key(|s| s["time"].as_i64().unwrap_or(0));
    Ok(steps)
}

/// The latest `limit` steps of each agent, newest first, so an operator can pick a trace.
pub fn recent_steps(cluster: &ClusterArgs, limit: i64) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut steps = Vec::new();
    each_step(cluster, StartFrom::Last(limit), |message, envelope| {
        steps.push(step_json(message, envelope));
    })?;
    steps.sort_by_key(|s| std::cmp::Reverse(s["time"].as_i64().unwrap_or(0)));
    steps.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    Ok(steps)
}

/// Reads every agent's step topic from `from` to its end now, handing each record and
/// its envelope (when it parses as one) to `step`.
fn each_step(
    cluster: &ClusterArgs,
    from: StartFrom,
    mut step: impl FnMut(&BorrowedMessage<'_>, Option<Envelope>),
) -> anyhow::Result<()> {
    for topic in step_topics(cluster)? {
        let reader = Reader::open(cluster, &topic, from, None, None)?;
        let stop = Stop {
            num: None,
            at_end: true,
        };
        reader.each(stop, |message| {
            let envelope = message
                .payload()
                .and_then(|v| serde_json::from_slice::<Envelope>(v).ok());
            step(message, envelope);
            Ok(true)
        })?;
    }
    Ok(())
}

/// A header line (time, agent, decision, trace, position) and the details, indented.
fn pretty(envelope: &Envelope, position: &str) -> String {
    let decision = envelope
        .data
        .get("decision")
        .and_then(|d| d.as_str())
        .unwrap_or(&envelope.event_type);
    let details = envelope.data.get("details").unwrap_or(&envelope.data);
    let mut text = format!(
        "{}  {}  {decision}  trace {}  at {position}\n",
        rfc3339(envelope.timestamp),
        envelope.agent_id,
        envelope.trace_id
    );
    let body = serde_json::to_string_pretty(details).unwrap_or_else(|_| details.to_string());
    for line in body.lines() {
        text.push_str("    ");
        text.push_str(line);
        text.push('\n');
    }
    if !envelope.metadata.is_empty() {
        text.push_str(&format!(
            "    metadata: {}\n",
            serde_json::Value::Object(envelope.metadata.clone())
        ));
    }
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_prints_its_time_agent_name_trace_and_details() {
        let mut envelope = Envelope::new(
            "decision",
            "triage",
            Some("0123456789abcdef0123456789abcdef".to_string()),
            serde_json::json!({"decision": "route", "details": {"route": "billing"}}),
        );
        envelope.timestamp = 1_714_564_800_123;
        let text = pretty(&envelope, "0/7");
        assert_eq!(
            text,
            "2024-05-01T12:00:00.123Z  triage  route  trace 0123456789abcdef0123456789abcdef  at 0/7\n    {\n      \"route\": \"billing\"\n    }\n\n"
        );
    }
}
