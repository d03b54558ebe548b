//! `agentlog uplinks status`: the edge uplinks of a running `agentlog serve`, read from
//! the `uplinks` section of its HTTP `/health` (the uplinks live in that process; only
//! it knows their link state and lag).

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::table::Rows;
use super::{Output, OutputArgs};

/// `agentlog uplinks` arguments.
#[derive(Debug, Args)]
pub struct UplinksArgs {
    #[command(subcommand)]
    command: UplinksCommand,
}

#[derive(Debug, Subcommand)]
enum UplinksCommand {
    /// Each uplink's direction, link state, lag and last send.
    Status(StatusArgs),
}

/// `agentlog uplinks status` arguments.
#[derive(Debug, Args)]
struct StatusArgs {
    /// The running process's HTTP listener (its `--http` / `http.listen`).
    #[arg(
        id = "uplinks_http",
        long = "http",
        value_name = "HOST:PORT",
        default_value = "127.0.0.1:9644"
    )]
    http: String,
    /// Seconds to wait for the answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    timeout: f64,
    #[command(flatten)]
    output: OutputArgs,
}

/// Runs an `uplinks` subcommand.
pub fn run(args: UplinksArgs) -> anyhow::Result<()> {
    let UplinksCommand::Status(args) = args.command;
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .with_context(|| {
            format!(
                "--timeout {}: expected a positive number of seconds",
                args.timeout
            )
        })?;
    let health = fetch_health(&args.http, timeout)?;
    let uplinks = health
        .get("uplinks")
        .cloned()
        .unwrap_or_else(|| Value::Array(Vec::new()));
    let Value::Array(list) = uplinks else {
        anyhow::bail!("http://{}/health: `uplinks` is not a list", args.http);
    };
    match args.output.output {
        Output::Json => println!("{}", Value::Array(list)),
        Output::Table => {
            if list.is_empty() {
                println!("no uplinks run in the process at {}", args.http);
                return Ok(());
            }
            rows(&list, agentlog_agents::event::now_ms()).print(Output::Table);
        }
    }
    Ok(())
}

/// GETs `/health` of the process at `http` and parses it.
fn fetch_health(http: &str, timeout: Duration) -> anyhow::Result<Value> {
    let url = format!("http://{http}/health");
    // /health answers 503 with the same body while something is unhealthy (a link down
    // is one of the things it reports), so the status code is not an error.
    let (_status, json) = super::http_get_json(&url, timeout)
        .with_context(|| format!("{url}: is `agentlog serve --http {http}` running?"))?;
    Ok(json)
}

/// One row per uplink; ages in seconds relative to `now_ms`.
fn rows(uplinks: &[Value], now_ms: i64) -> Rows {
    let age = |ms: &Value| -> Value {
        match ms.as_i64() {
            Some(at) if at > 0 => {
                json!(((now_ms - at).max(0) as f64 / 1000.0 * 10.0).round() / 10.0)
            }
            _ => Value::Null,
        }
    };
    let mut rows = Rows::new(&[
        "name",
        "direction",
        "state",
        "records_behind",
        "bytes_behind",
        "oldest_unforwarded_age_s",
        "last_send_age_s",
        "records_forwarded",
        "records_lost",
        "refused_topics",
    ]);
    for uplink in uplinks {
        let refused = uplink["topic_errors"]
            .as_object()
            .map(|errors| errors.keys().cloned().collect::<Vec<_>>().join(","))
            .unwrap_or_default();
        rows.push(vec![
            uplink["name"].clone(),
            uplink["direction"].clone(),
            uplink["state"].clone(),
            uplink["records_behind"].clone(),
            uplink["bytes_behind"].clone(),
            age(&uplink["oldest_unforwarded_ms"]),
            age(&uplink["last_send_ms"]),
            uplink["records_forwarded"].clone(),
            uplink["records_lost"].clone(),
            json!(refused),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_per_uplink_with_ages() {
        let uplinks = json!([{
            "name": "central", "direction": "up", "state": "up", "records_behind": 3,
            "bytes_behind": 300, "oldest_unforwarded_ms": 9_000, "last_send_ms": 0,
            "records_forwarded": 7, "records_lost": 0, "topic_errors": {"big": "too large"}
        }]);
        let rows = rows(uplinks.as_array().unwrap(), 10_000);
        let json = rows.to_json();
        assert_eq!(json[0]["oldest_unforwarded_age_s"], 1.0);
        assert_eq!(json[0]["last_send_age_s"], Value::Null);
        assert_eq!(json[0]["refused_topics"], "big");
        assert!(rows.to_table().starts_with("NAME"));
    }
}
