//! `agentlog models ...`: publish ONNX models to a models topic on any Kafka-protocol
//! cluster, and list what is deployed.

use clap::Args;

/// `agentlog models` arguments.
#[derive(Debug, Args)]
pub struct ModelsArgs {}

/// Runs a `models` subcommand.
pub fn run(_args: ModelsArgs) -> anyhow::Result<()> {
    anyhow::bail!("agentlog models: no subcommand is built yet")
}
