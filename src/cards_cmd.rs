//! `agentlog agents cards`: the A2A agents a cluster knows, read from the compacted
//! `a2a.registry` topic (the latest card per agent id, tombstoned agents left out), as
//! a table or, with `--output json`, as a JSON array of the cards themselves.

use agentlog_agents::a2a::registry::read_cards;
use agentlog_agents::a2a::types::AgentCard;
use agentlog_agents::config::AgentsConfig;
use agentlog_agents::KafkaBackend;
use anyhow::Context;
use clap::{Args, ValueEnum};

/// `agentlog agents cards` arguments.
#[derive(Debug, Args)]
pub struct CardsArgs {
    /// Kafka bootstrap of the cluster (a running agentlog's listener) to read.
    #[arg(long, value_name = "HOST:PORT")]
    bootstrap: Option<String>,
    /// A configuration whose kafka backend names the cluster (when no --bootstrap).
    #[arg(long, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
    /// `table` (default) or `json`.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

/// Lists the registry.
pub fn run(args: CardsArgs) -> anyhow::Result<()> {
    let backend = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let config = AgentsConfig::from_toml(&text)
                .with_context(|| format!("in config file {}", path.display()))?;
            crate::agents_cmd::cluster(args.bootstrap.as_deref(), Some(&config.backend))?
        }
        None => crate::agents_cmd::cluster(args.bootstrap.as_deref(), None)?,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let cards = runtime.block_on(async {
        let backend = KafkaBackend::new(backend)?;
        read_cards(&backend)
            .await
            .context("reading the a2a.registry topic")
    })?;
    let cards: Vec<AgentCard> = cards.into_values().collect();
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&cards)?),
        Output::Table => print!("{}", table(&cards)),
    }
    Ok(())
}

/// One line per agent: id, skills, inbox url, description.
fn table(cards: &[AgentCard]) -> String {
    let mut rows = crate::cli::Rows::new(&["agent", "skills", "url", "description"]);
    for card in cards {
        let skills: Vec<&str> = card.skills.iter().map(|s| s.id.as_str()).collect();
        let url = card
            .supported_interfaces
            .first()
            .map(|i| i.url.clone())
            .unwrap_or_default();
        rows.push(vec![
            card.name.clone().into(),
            skills.join(",").into(),
            url.into(),
            card.description.clone().into(),
        ]);
    }
    rows.to_table()
}
