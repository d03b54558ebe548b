//! Operator commands for any Kafka-protocol cluster (`topic`, `group`, `produce`,
//! `consume`, `cluster`, `decisions`, `users`), so that looking inside agentlog (or any Kafka)
//! needs neither kcat nor Kafka's JVM scripts.
//!
//! Every command talks to the cluster over the wire through librdkafka (`rdkafka`), never
//! in-process, so the same binary works against a remote cluster. Errors are printed as
//! one line on stderr with exit code 1.

pub mod agents;
pub mod client;
mod cluster;
pub mod consume;
pub mod decisions;
pub mod group;
mod produce;
mod raw;
mod table;
pub mod topic;
mod uplinks;
mod users;

pub use table::Rows;

use clap::{Args, Subcommand, ValueEnum};

/// The operator subcommands, flattened into the binary's top-level command list.
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// List, describe, create, delete and configure topics.
    Topic(topic::TopicArgs),
    /// List, describe, delete consumer groups and reset their offsets.
    Group(group::GroupArgs),
    /// Produce lines from stdin to a topic, one record per line.
    Produce(produce::ProduceArgs),
    /// Print the records of a topic (follows new records unless --num or --exit).
    Consume(consume::ConsumeArgs),
    /// The cluster's brokers, controller and supported API versions.
    Cluster(cluster::ClusterCommandArgs),
    /// Pretty-print an agent's decisions (`agent.decisions.<agent>`).
    Decisions(decisions::DecisionsArgs),
    /// Add, remove and list SCRAM users (over a PLAINTEXT listener).
    Users(users::UsersArgs),
    /// The edge uplinks of a running `agentlog serve` (read from its `/health`).
    Uplinks(uplinks::UplinksArgs),
}

/// How results are printed: aligned columns for people, JSON for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Output {
    /// Aligned columns with a header line.
    #[default]
    Table,
    /// One JSON document (or, for consume, one JSON object per record and line).
    Json,
}

/// `--output`, shared by every command that prints results.
#[derive(Debug, Args, Clone)]
pub struct OutputArgs {
    /// `table` (default) or `json`.
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Runs an operator command; an error ends the process with one line on stderr and
/// exit code 1 (the top-level `anyhow` report spans several lines).
pub fn run(command: OperatorCommand) -> ! {
    exit_with(match command {
        OperatorCommand::Topic(args) => topic::run(args),
        OperatorCommand::Group(args) => group::run(args),
        OperatorCommand::Produce(args) => produce::run(args),
        OperatorCommand::Consume(args) => consume::run(args),
        OperatorCommand::Cluster(args) => cluster::run(args),
        OperatorCommand::Decisions(args) => decisions::run(args),
        OperatorCommand::Users(args) => users::run(args),
        OperatorCommand::Uplinks(args) => uplinks::run(args),
    })
}

/// Ends the process: exit code 0, or one line on stderr and exit code 1.
pub fn exit_with(result: anyhow::Result<()>) -> ! {
    match result {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            // `{:#}` joins the context chain with ": " on a single line.
            let line = format!("{error:#}").replace('\n', " ");
            eprintln!("agentlog: error: {line}");
            std::process::exit(1);
        }
    }
}

/// A point in a partition: `beginning`, `end`, `offset:N`, `last:N` or `time:T` (T an
/// RFC 3339 time or ms since the epoch), as `consume --from` and `decisions tail --from` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    /// The log start offset.
    Beginning,
    /// The high watermark: only records produced from now on.
    End,
    /// This offset in every partition.
    Offset(i64),
    /// The first record at or after this time (ms since the epoch).
    Time(i64),
    /// The last N records of every partition (fewer where it holds fewer).
    Last(i64),
}

impl std::str::FromStr for StartFrom {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<StartFrom> {
        match text {
            "beginning" | "earliest" => return Ok(StartFrom::Beginning),
            "end" | "latest" => return Ok(StartFrom::End),
            _ => {}
        }
        if let Some(offset) = text.strip_prefix("offset:") {
            let offset: i64 = offset
                .parse()
                .map_err(|_| anyhow::anyhow!("{text}: the offset is not an integer"))?;
            anyhow::ensure!(offset >= 0, "{text}: the offset must not be negative");
            return Ok(StartFrom::Offset(offset));
        }
        if let Some(count) = text.strip_prefix("last:") {
            let count: i64 = count
                .parse()
                .map_err(|_| anyhow::anyhow!("{text}: the count is not an integer"))?;
            anyhow::ensure!(count >= 0, "{text}: the count must not be negative");
            return Ok(StartFrom::Last(count));
        }
        if let Some(time) = text.strip_prefix("time:") {
            return parse_time(time).map(StartFrom::Time);
        }
        anyhow::bail!("{text}: expected beginning, end, offset:N, last:N or time:T")
    }
}

/// An RFC 3339 time or a count of ms since the epoch, as ms since the epoch.
pub fn parse_time(text: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        anyhow::ensure!(ms >= 0, "{text}: a time must not be negative");
        return Ok(ms);
    }
    crate::agents_cmd::rfc3339_ms(text).ok_or_else(|| {
        anyhow::anyhow!(
            "{text}: expected an RFC 3339 time (2024-05-01T12:00:00Z) or ms since the epoch"
        )
    })
}

/// Splits `name=value` (the `-X`, `-H` and `--set` arguments).
pub fn name_value(text: &str) -> anyhow::Result<(String, String)> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => anyhow::bail!("{text}: expected NAME=VALUE"),
    }
}

/// A tokio runtime for the commands that drive rdkafka's async admin API.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `GET url` of a running agentlog's HTTP listener: the status and the body, parsed as
/// JSON. `agents --http` and `uplinks status` read the process this way; the caller
/// decides what a status means (/health answers 503 with a body worth showing).
pub fn http_get_json(
    url: &str,
    timeout: std::time::Duration,
) -> anyhow::Result<(u16, serde_json::Value)> {
    use anyhow::Context;
    runtime()?.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("building the HTTP client")?;
        let response = client
            .get(url)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        let json = serde_json::from_str(&body)
            .with_context(|| format!("{url} answered {status}, not JSON: {body}"))?;
        Ok((status, json))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_points_parse_and_bad_ones_say_why() {
        assert_eq!(
            "beginning".parse::<StartFrom>().unwrap(),
            StartFrom::Beginning
        );
        assert_eq!("end".parse::<StartFrom>().unwrap(), StartFrom::End);
        assert_eq!(
            "offset:7".parse::<StartFrom>().unwrap(),
            StartFrom::Offset(7)
        );
        assert_eq!(
            "time:2024-05-01T12:00:00.123Z"
                .parse::<StartFrom>()
                .unwrap(),
            StartFrom::Time(1_714_564_800_123)
        );
        assert_eq!("time:5".parse::<StartFrom>().unwrap(), StartFrom::Time(5));
        assert_eq!("last:3".parse::<StartFrom>().unwrap(), StartFrom::Last(3));
        assert!("last:-3".parse::<StartFrom>().is_err());
        assert!("offset:-1".parse::<StartFrom>().is_err());
        assert!("time:yesterday".parse::<StartFrom>().is_err());
        assert!("middle".parse::<StartFrom>().is_err());
    }

    #[test]
    fn name_value_needs_a_name_and_an_equals_sign() {
        assert_eq!(name_value("a=b=c").unwrap(), ("a".into(), "b=c".into()));
        assert!(name_value("=b").is_err());
        assert!(name_value("ab").is_err());
    }
}
