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
    let headers = headers(message);
    let envelope = serde_json::from_slice::<Envelope>(value).ok();
    let trace_of = envelope.as_ref().map(|e| e.trace_id.clone()).or_else(|| {
        headers
            .iter()
            .find(|(k, _)| k == "ce_traceid")
            .map(|(_, v)| v.clone())
    });
    // Case-insensitive, as the MCP server's `search_decisions` compares trace ids.
    if trace.is_some_and(|wanted| !trace_of.is_some_and(|t| t.eq_ignore_ascii_case(wanted))) {
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
