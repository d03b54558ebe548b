//! `agentlog models ...`: publish ONNX models to a models topic on any Kafka-protocol
//! cluster, and list what is deployed. Agents of kind `onnx` follow the topic and
//! hot-swap to each new version of their model (see `agentlog_agents::inference`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use agentlog_agents::inference::registry::{
    chunk_identity, deploy_records, sha256_hex, Assembler, DEFAULT_CHUNK_BYTES,
    DEFAULT_MODELS_TOPIC,
};
use agentlog_agents::{Backend, KafkaBackend, KafkaConfig, OutRecord, Sink, StartAt};
use anyhow::Context;
use bytes::Bytes;
use clap::{Args, Subcommand};

/// `agentlog models` arguments.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

/// Where the models topic is.
#[derive(Debug, Args)]
struct Cluster {
    /// Any broker of the cluster.
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "AGENTLOG_BOOTSTRAP",
        default_value = "localhost:9092"
    )]
    bootstrap: String,
    /// The models topic (`[inference] models_topic`).
    #[arg(long, default_value = DEFAULT_MODELS_TOPIC)]
    topic: String,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// Publish an ONNX file as a new version of model NAME; every agent serving NAME
    /// swaps to it (or refuses it, keeping the old one, if it does not load).
    Deploy {
        /// The model's name (agents' `options.model`).
        name: String,
        /// The ONNX file.
        file: PathBuf,
        /// Version label (default: the first 12 hex digits of its SHA-256).
        #[arg(long)]
        version: Option<String>,
        /// Largest chunk, in bytes: keep it under the cluster's `message.max.bytes`.
        #[arg(long, default_value_t = DEFAULT_CHUNK_BYTES)]
        chunk_bytes: usize,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// List the newest version of every model on the topic.
    List {
        #[command(flatten)]
        cluster: Cluster,
    },
}

/// Runs a `models` subcommand.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        match args.command {
            ModelsCommand::Deploy {
                name,
                file,
                version,
                chunk_bytes,
                cluster,
            } => deploy(&cluster, &name, &file, version, chunk_bytes).await,
            ModelsCommand::List { cluster } => list(&cluster).await,
        }
    })
}

fn backend(cluster: &Cluster) -> anyhow::Result<KafkaBackend> {
    KafkaBackend::new(KafkaConfig {
        bootstrap: cluster.bootstrap.clone(),
        properties: Default::default(),
    })
    .with_context(|| format!("connecting to {}", cluster.bootstrap))
}

async fn deploy(
    cluster: &Cluster,
    name: &str,
    file: &PathBuf,
    version: Option<String>,
    chunk_bytes: usize,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && !name.contains(['@', '#']),
        "model name {name:?}: must be non-empty, without '@' or '#'"
    );
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    anyhow::ensure!(!bytes.is_empty(), "{} is empty", file.display());
    let sha = sha256_hex(&bytes);
    let version = version.unwrap_or_else(|| sha[..12].to_string());
    let backend = backend(cluster)?;
    backend
        .ensure_topic(&cluster.topic, 1, true)
        .await
        .with_context(|| format!("creating {}", cluster.topic))?;
    let stale = stale_chunks(&backend, &cluster.topic, name, &version).await?;
    let records = deploy_records(name, &version, &bytes, chunk_bytes);
    let chunks = records.len();
    // In order, one at a time: the last chunk (keyed by the name) completes the version.
    for record in records {
        backend
            .produce(&cluster.topic, vec![record])
            .await
            .with_context(|| format!("publishing to {}", cluster.topic))?;
    }
    // Earlier versions' leading chunks have keys of their own; tombstones let
    // compaction reclaim them (the newest version is complete without them).
    if !stale.is_empty() {
        let tombstones = stale
            .into_iter()
            .map(|key| OutRecord {
                key: Some(Bytes::from(key)),
                value: None,
                headers: Vec::new(),
                timestamp: agentlog_agents::event::now_ms(),
            })
            .collect();
        backend.produce(&cluster.topic, tombstones).await?;
    }
    println!(
        "deployed {name} version {version}: {} bytes in {chunks} chunk(s), sha256 {sha}, to {} on {}",
        bytes.len(),
        cluster.topic,
        cluster.bootstrap
    );
    Ok(())
}

/// Keys of leading chunks of `name`'s other versions still on the topic.
async fn stale_chunks(
    backend: &KafkaBackend,
    topic: &str,
    name: &str,
    version: &str,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut stream = backend.read_topic(topic, StartAt::Earliest).await?;
    while let Some(event) = stream.next().await {
        let event = event?;
        let (Some(key), Some(_)) = (&event.key, &event.value) else {
            continue;
        };
        let key = String::from_utf8_lossy(key).into_owned();
        match chunk_identity(&event) {
            Some((n, v)) if n == name && v != version && key != name => keys.push(key),
            _ => {}
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

async fn list(cluster: &Cluster) -> anyhow::Result<()> {
    let backend = backend(cluster)?;
    let mut stream = match backend.read_topic(&cluster.topic, StartAt::Earliest).await {
        Ok(stream) => stream,
        Err(agentlog_agents::backend::ReadError::UnknownTopic(_)) => {
            println!("no models deployed ({} does not exist)", cluster.topic);
            return Ok(());
        }
        Err(error) => return Err(error.into()),
    };
    let mut assembler = Assembler::default();
    let mut newest = BTreeMap::new();
    while let Some(event) = stream.next().await {
        let event = event?;
        if let Some(result) = assembler.push(&event) {
            match result {
                Ok(model) => {
                    newest.insert(model.name.clone(), Ok(model));
                }
                Err(error) => {
                    if let Some((name, _)) = chunk_identity(&event) {
                        newest.insert(name, Err(error));
                    }
                }
            }
        }
    }
    if newest.is_empty() {
        println!("no models deployed on {}", cluster.topic);
    }
    println!(
        "{:<20} {:<16} {:>10}  {:<24}  SHA256",
        "MODEL", "VERSION", "BYTES", "DEPLOYED"
    );
    for (name, model) in newest {
        match model {
            Ok(m) => println!(
                "{:<20} {:<16} {:>10}  {:<24}  {}",
                name,
                m.version,
                m.bytes.len(),
                agentlog_agents::envelope::rfc3339(m.deployed_at),
                m.sha256
            ),
            Err(error) => println!("{name:<20} (newest version unusable: {error})"),
        }
    }
    Ok(())
}
