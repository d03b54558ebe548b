//! `agentlog cluster info`: the brokers (from librdkafka's metadata), and the
//! controller, cluster id and API versions, which librdkafka does not expose: those come
//! from one ApiVersions and one Metadata request over a plain TCP connection to the
//! bootstrap broker (so they are left out on TLS/SASL clusters).

use std::time::Duration;

use clap::{Args, Subcommand};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest, MetadataResponse};
use serde_json::json;

use super::client::ClusterArgs;
use super::raw::Connection;
use super::table::Rows;
use super::{Output, OutputArgs};

/// `agentlog cluster` arguments.
#[derive(Debug, Args)]
pub struct ClusterCommandArgs {
    #[command(subcommand)]
    command: ClusterCommand,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Brokers, controller, cluster id and the API versions the bootstrap broker supports.
    Info,
}

/// Runs a `cluster` subcommand.
pub fn run(args: ClusterCommandArgs) -> anyhow::Result<()> {
    let ClusterCommand::Info = args.command;
    let consumer = args.cluster.consumer(None)?;
    let metadata = consumer.metadata(None)?;
    let mut brokers = Rows::new(&["id", "host", "port"]);
    for broker in metadata.brokers() {
        brokers.push(vec![
            json!(broker.id()),
            json!(broker.host()),
            json!(broker.port()),
        ]);
    }
    let plaintext = args
        .cluster
        .properties
        .iter()
        .filter_map(|p| p.split_once('='))
        .filter(|(name, _)| *name == "security.protocol")
        .all(|(_, value)| value.eq_ignore_ascii_case("plaintext"));
    let raw = if plaintext {
        Some(RawInfo::read(&args.cluster.bootstrap, consumer.timeout)?)
    } else {
        None
    };
    let mut versions = Rows::new(&["api", "key", "min", "max"]);
    for (key, min, max) in raw
        .as_ref()
        .map(|r| r.versions.as_slice())
        .unwrap_or_default()
    {
        let name =
            ApiKey::try_from(*key).map_or_else(|_| format!("unknown({key})"), |k| format!("{k:?}"));
        versions.push(vec![json!(name), json!(key), json!(min), json!(max)]);
    }
    let controller = raw.as_ref().map(|r| r.controller);
    let cluster_id = raw.as_ref().and_then(|r| r.cluster_id.clone());
    match args.output.output {
        Output::Json => println!(
            "{}",
            json!({
                "cluster_id": cluster_id,
                "controller": controller,
                "brokers": brokers.to_json(),
                "api_versions": versions.to_json(),
            })
        ),
        Output::Table => {
            println!("cluster id: {}", cluster_id.as_deref().unwrap_or("-"));
            match controller {
                Some(id) => println!("controller: {id}"),
                None => println!("controller: - (read over plaintext only)"),
            }
            println!("\n{}", brokers.to_table());
            if raw.is_some() {
                print!("{}", versions.to_table());
            } else {
                println!("API versions: not read (only over a plaintext connection)");
            }
        }
    }
    Ok(())
}

/// What the raw requests return.
struct RawInfo {
    versions: Vec<(i16, i16, i16)>,
    controller: i32,
    cluster_id: Option<String>,
}

impl RawInfo {
    /// ApiVersions v0 and Metadata v1 (or v2, for the cluster id, when supported) on
    /// the first bootstrap address that accepts a connection.
    fn read(bootstrap: &str, timeout: Duration) -> anyhow::Result<RawInfo> {
        let mut connection = Connection::open(bootstrap, timeout)?;
        let versions = connection.call::<ApiVersionsRequest>(&ApiVersionsRequest::default(), 0)?;
        anyhow::ensure!(
            versions.error_code == 0,
            "ApiVersions: error code {}",
            versions.error_code
        );
        let versions: Vec<(i16, i16, i16)> = versions
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let metadata_max = versions
            .iter()
            .find(|(key, _, _)| *key == ApiKey::Metadata as i16)
            .map_or(0, |(_, _, max)| *max);
        anyhow::ensure!(metadata_max >= 1, "the broker does not support Metadata v1");
        let version = metadata_max.min(2);
        let request = MetadataRequest::default().with_topics(Some(Vec::new()));
        let metadata: MetadataResponse = connection.call::<MetadataRequest>(&request, version)?;
        Ok(RawInfo {
            versions,
            controller: metadata.controller_id.0,
            cluster_id: metadata.cluster_id.map(|id| id.to_string()),
        })
    }
}
