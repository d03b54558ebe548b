//! `agentlog agents ...`: commands about the agents a configuration declares.
//!
//! `agentlog agents replay <agent> --config FILE --from <offset|RFC3339|ms> [--live]
//! [--bootstrap HOST:PORT]` re-runs an LLM agent over its input topics with the
//! model's recorded answers (no model calls), or with `--live` with a fresh answer
//! from the model for every call (recordings ignored, nothing recorded), writes
//! nothing to any topic, and prints how the decisions it would make compare with
//! those it recorded, every differing pair shown.
//! It runs against a live agentlog or any Kafka cluster, through the kafka backend.
//!
//! `agentlog agents cards [--bootstrap HOST:PORT | --config FILE] [--output json]`
//! lists the A2A agent cards in the `a2a.registry` topic (see `cards_cmd`).
//!
//! `agentlog agents list|status [AGENT] [--bootstrap HOST:PORT] [--http HOST:PORT]` shows
//! the agents (see `cli::agents`).

use agentlog_agents::config::{AgentsConfig, BackendChoice};
use agentlog_agents::llm::replay::{replay_agent, ReplayComparison};
use agentlog_agents::{KafkaBackend, KafkaConfig, StartAt};
use anyhow::Context;
use clap::{Args, Subcommand};

/// `agentlog agents` arguments.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// Re-run an LLM agent over its inputs from its recorded model answers and compare
    /// its decisions with the recorded ones (writes nothing).
    Replay(ReplayArgs),
    /// List the A2A agent cards in the registry topic (the latest per agent, withdrawn
    /// agents left out).
    Cards(crate::cards_cmd::CardsArgs),
    /// Every agent: its group and instances, lag, decisions and model calls recorded in
    /// the cluster, and with --http the running process's counters.
    List(crate::cli::agents::ListArgs),
    /// One agent, with its group's lag per partition.
    Status(crate::cli::agents::StatusArgs),
}

#[derive(Debug, Args)]
struct ReplayArgs {
    /// The agent's name in the configuration.
    agent: String,
    /// The TOML file declaring the agent and its `[llm.<name>]` endpoint.
    #[arg(long, value_name = "FILE")]
    config: std::path::PathBuf,
    /// Where to start in every input partition: `earliest`, an offset, a timestamp in
    /// ms since the epoch (any integer from 10^12 on), or an RFC 3339 time.
    #[arg(long, value_name = "FROM")]
    from: String,
    /// Call the model for every call, ignoring the recorded answers (and recording
    /// nothing), and compare its decisions with the recorded ones.
    #[arg(long)]
    live: bool,
    /// Kafka bootstrap of the cluster (a running agentlog's listener) to read from;
    /// default: the configuration's kafka backend.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
}

/// Runs an `agents` subcommand.
pub fn run(args: AgentsArgs) -> anyhow::Result<()> {
    match args.command {
        AgentsCommand::Replay(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            runtime.block_on(replay(args))
        }
        AgentsCommand::Cards(args) => crate::cards_cmd::run(args),
        AgentsCommand::List(args) => crate::cli::exit_with(crate::cli::agents::list(args)),
        AgentsCommand::Status(args) => crate::cli::exit_with(crate::cli::agents::status(args)),
    }
}

/// The cluster a command reads: `--bootstrap` if given, else the configuration's
/// kafka backend (an embedded configuration names no address to reach).
pub fn cluster(
    bootstrap: Option<&str>,
    backend: Option<&BackendChoice>,
) -> anyhow::Result<KafkaConfig> {
    match (bootstrap, backend) {
        (Some(bootstrap), _) => Ok(KafkaConfig {
            bootstrap: bootstrap.to_string(),
            properties: Default::default(),
        }),
        (None, Some(BackendChoice::Kafka(kafka))) => Ok(kafka.clone()),
        (None, _) => anyhow::bail!(
            "no cluster to read: give --bootstrap HOST:PORT of the running agentlog (or a configuration with a kafka backend)"
        ),
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("reading config file {}", args.config.display()))?;
    let config = AgentsConfig::from_toml(&text)
        .with_context(|| format!("in config file {}", args.config.display()))?;
    let def = config
        .agents
        .iter()
        .find(|d| d.name == args.agent)
        .with_context(|| format!("no agent `{}` in {}", args.agent, args.config.display()))?;
    let from = parse_from(&args.from)?;
    let kafka = cluster(args.bootstrap.as_deref(), Some(&config.backend))?;
    let backend = KafkaBackend::new(kafka)?;
    let comparison = replay_agent(backend, def, &config.llm, from, args.live)
        .await
        .with_context(|| format!("replaying agent `{}`", args.agent))?;
    print!(
        "{}",
        report(&args.agent, &args.from, args.live, &comparison)
    );
    Ok(())
}

/// The printed report: totals, then every difference and missing recording.
fn report(agent: &str, from: &str, live: bool, c: &ReplayComparison) -> String {
    let mut out = format!(
        "replay of agent `{agent}` from {from} ({})\n",
        if live {
            "live model for every call"
        } else {
            "recorded answers only"
        }
    );
    out.push_str(&format!("events: {}\n", c.events));
    out.push_str(&format!("identical decisions: {}\n", c.identical));
    out.push_str(&format!("differing decisions: {}\n", c.differing.len()));
    out.push_str(&format!(
        "calls without a recording: {}\n",
        c.not_recorded.len()
    ));
    out.push_str(&format!(
        "decisions with nothing recorded to compare: {}\n",
        c.unmatched.len()
    ));
    out.push_str(&format!("other failures: {}\n", c.failed.len()));
    out.push_str(&format!("model calls made: {}\n", c.model_calls));
    let now = if live { "live" } else { "replayed" };
    for diff in &c.differing {
        out.push_str(&format!(
            "differs {}: recorded {} {now} {}\n",
            diff.input, diff.recorded, diff.replayed
        ));
    }
    for input in &c.not_recorded {
        out.push_str(&format!("not recorded {input}\n"));
    }
    for (input, error) in &c.failed {
        out.push_str(&format!("failed {input}: {error}\n"));
    }
    out
}

/// `earliest`, an offset, a timestamp in ms (from 10^12, i.e. after September 2001),
/// or an RFC 3339 time.
fn parse_from(text: &str) -> anyhow::Result<StartAt> {
    if text == "earliest" {
        return Ok(StartAt::Earliest);
    }
    if let Ok(n) = text.parse::<i64>() {
        anyhow::ensure!(n >= 0, "--from {text}: must not be negative");
        return Ok(if n >= 1_000_000_000_000 {
            StartAt::Timestamp(n)
        } else {
            StartAt::Offset(n)
        });
    }
    rfc3339_ms(text).map(StartAt::Timestamp).with_context(|| {
        format!(
            "--from {text}: expected earliest, an offset, ms since the epoch or an RFC 3339 time"
        )
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` as ms since the epoch (days from civil,
/// Howard Hinnant's algorithm, the inverse of `envelope::rfc3339`); also the MCP
/// server's time arguments.
pub(crate) fn rfc3339_ms(text: &str) -> Option<i64> {
    let (date, rest) = text.split_once(['T', 't', ' '])?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (year, month, day) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let zone_at = rest.find(['Z', 'z', '+', '-'])?;
    let (clock, zone) = rest.split_at(zone_at);
    let (hms, fraction) = clock.split_once('.').unwrap_or((clock, ""));
    let mut parts = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (hour, minute, second) = (parts.next()??, parts.next()??, parts.next()??);
    let millis = match fraction.len() {
        0 => 0,
        n => fraction.parse::<i64>().ok()? * 1000 / 10i64.pow(n.min(9) as u32),
    };
    let offset_minutes = match zone {
        "Z" | "z" => 0,
        _ => {
            let sign = if zone.starts_with('-') { -1 } else { 1 };
            let (h, m) = zone[1..].split_once(':')?;
            sign * (h.parse::<i64>().ok()? * 60 + m.parse::<i64>().ok()?)
        }
    };
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_minutes * 60;
    Some(seconds * 1000 + millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_live_report_says_so_and_shows_each_difference() {
        use agentlog_agents::llm::replay::DecisionDiff;
        let comparison = ReplayComparison {
            events: 2,
            identical: 1,
            differing: vec![DecisionDiff {
                input: "tickets/0/1".to_string(),
                recorded: serde_json::json!({"decision": "route", "details": {"route": "billing"}}),
                replayed: serde_json::json!({"decision": "route", "details": {"route": "tech"}}),
            }],
            model_calls: 2,
            ..ReplayComparison::default()
        };
        let text = report("triage", "0", true, &comparison);
        assert!(text.contains("(live model for every call)"), "{text}");
        assert!(text.contains("model calls made: 2\n"), "{text}");
        assert!(text.contains("differing decisions: 1\n"), "{text}");
        assert!(
            text.contains(r#"differs tickets/0/1: recorded {"decision":"route","details":{"route":"billing"}} live {"decision":"route","details":{"route":"tech"}}"#),
            "{text}"
        );
        assert!(report("triage", "0", false, &comparison).contains(" replayed {"));
    }

    #[test]
    fn from_takes_offsets_timestamps_and_rfc3339() {
        assert_eq!(parse_from("0").unwrap(), StartAt::Offset(0));
        assert_eq!(parse_from("earliest").unwrap(), StartAt::Earliest);
        assert_eq!(
            parse_from("1714564800123").unwrap(),
            StartAt::Timestamp(1_714_564_800_123)
        );
        assert_eq!(
            parse_from("2024-05-01T12:00:00.123Z").unwrap(),
            StartAt::Timestamp(1_714_564_800_123)
        );
        assert_eq!(
            parse_from("2024-05-01T14:00:00+02:00").unwrap(),
            StartAt::Timestamp(1_714_564_800_000)
        );
        assert!(parse_from("yesterday").is_err());
        assert!(parse_from("-3").is_err());
    }
}
