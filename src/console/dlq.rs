//! The console's "replay DLQ" action: every record of a dead-letter topic not replayed
//! yet goes back to the topic its `dlq.original.topic` header names, without its
//! `dlq.*` headers and with `dlq.replayed` (the attempts so far), as the `dlq_replayer`
//! agent does. What was replayed is committed in one consumer group per dead-letter
//! topic, so pressing the button twice sends nothing twice; each record is acknowledged
//! before the next is read, so none is committed without having been replayed.

use std::time::Duration;

use agentlog_agents::delivery::{DLQ_ATTEMPTS, DLQ_TOPIC};
use anyhow::Context;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::Message;

use crate::cli::client::{ClusterArgs, QuietContext};
use crate::cli::consume::{Reader, Stop};
use crate::cli::StartFrom;

/// Replays `dlq`; how many records went back, by target topic.
pub fn replay(
    cluster: &ClusterArgs,
    dlq: &str,
) -> anyhow::Result<std::collections::BTreeMap<String, u64>> {
    let group = format!("agentlog-console-replay.{dlq}");
    let reader = Reader::open(cluster, dlq, StartFrom::Beginning, None, Some(&group))?;
    let runtime = crate::cli::runtime()?;
    let producer: FutureProducer<QuietContext> = cluster
        .config()?
        .create_with_context(QuietContext::default())
        .map_err(|e| anyhow::anyhow!("creating the producer: {e}"))?;
    let mut replayed = std::collections::BTreeMap::new();
    let stop = Stop {
        num: None,
        at_end: true,
    };
    reader.each(stop, |message| {
        let mut target = None;
        let mut attempts: &[u8] = b"";
        let mut headers = OwnedHeaders::new();
        for header in message.headers().iter().flat_map(|h| h.iter()) {
            match header.key {
                DLQ_TOPIC => target = header.value.and_then(|v| std::str::from_utf8(v).ok()),
                DLQ_ATTEMPTS => attempts = header.value.unwrap_or_default(),
                key if key.starts_with("dlq.") => {}
                key => {
                    headers = headers.insert(Header {
                        key,
                        value: header.value,
                    })
                }
            }
        }
        let target = target.with_context(|| {
            format!(
                "{dlq}/{}/{}: no {DLQ_TOPIC} header to replay it to",
                message.partition(),
                message.offset()
            )
        })?;
        let headers = headers.insert(Header {
            key: "dlq.replayed",
            value: Some(attempts),
        });
        let mut record = FutureRecord::to(target).headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        if let Some(value) = message.payload() {
            record = record.payload(value);
        }
        if let Some(ms) = message.timestamp().to_millis() {
            record = record.timestamp(ms);
        }
        // Acknowledged before the next one: `each` commits what it read when it
        // returns, and a record committed but not replayed would be lost.
        let delivery = producer
            .send_result(record)
            .map_err(|(error, _)| anyhow::anyhow!("replaying to {target}: {error}"))?;
        match runtime.block_on(tokio::time::timeout(Duration::from_secs(30), delivery)) {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err((error, _)))) => anyhow::bail!("replaying to {target}: {error}"),
            _ => anyhow::bail!("replaying to {target}: not acknowledged within 30 s"),
        }
        *replayed.entry(target.to_string()).or_insert(0) += 1;
        Ok(true)
    })?;
    Ok(replayed)
}
