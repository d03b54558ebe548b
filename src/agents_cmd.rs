//! `agentlog agents ...`: commands about the agents a configuration declares.

use clap::Args;

/// `agentlog agents` arguments.
#[derive(Debug, Args)]
pub struct AgentsArgs {}

/// Runs an `agents` subcommand.
pub fn run(_args: AgentsArgs) -> anyhow::Result<()> {
    anyhow::bail!("agentlog agents: no subcommand is built yet")
}
