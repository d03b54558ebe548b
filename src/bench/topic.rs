//! Topic set-up: create the benchmark topic if it is missing, and list its partitions.

use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, ClientContext};
use rdkafka::types::RDKafkaErrorCode;

use super::options::Options;

/// How long metadata and admin requests may take before the run is abandoned.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Creates `--topic` with `--partitions` partitions unless it exists (then its partition
/// count is left as is), so a first run against an empty broker needs no other tool.
/// Replication is left to the broker's default (-1). Fails only if the broker cannot be
/// reached; a refused creation is a warning.
pub fn ensure_topic(options: &Options) -> anyhow::Result<()> {
    let admin: AdminClient<_> = options
        .admin_config()?
        .create()
        .context("creating the admin client")?;
    let topic = NewTopic::new(
        &options.topic,
        options.partitions,
        TopicReplication::Fixed(-1),
    );
    let admin_options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime for the admin client")?;
    let results = runtime
        .block_on(admin.create_topics([&topic], &admin_options))
        .context("CreateTopics request failed")?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            // Not fatal: the topic may exist and creating be forbidden (ACLs, policies);
            // if it is really missing, the first send reports it.
            Err((name, code)) => eprintln!("bench: warning: cannot create topic {name}: {code}"),
        }
    }
    Ok(())
}

/// The partition ids of `--topic`, from a metadata request on `client`.
pub fn partitions<C: ClientContext>(client: &Client<C>, topic: &str) -> anyhow::Result<Vec<i32>> {
    let metadata = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("fetching metadata for topic {topic}"))?;
    let Some(entry) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} not found in metadata");
    };
    if let Some(error) = entry.error() {
        bail!("topic {topic}: {}", RDKafkaErrorCode::from(error));
    }
    let ids: Vec<i32> = entry.partitions().iter().map(|p| p.id()).collect();
    if ids.is_empty() {
        bail!("topic {topic} has no partitions");
    }
    Ok(ids)
}
