//! `agentlog produce TOPIC`: one record per line of stdin, with optional keys (split at
//! `--key-separator`), headers, a fixed partition and compression. Every record is
//! acknowledged before the command exits 0.

use std::io::{BufRead, IsTerminal};

use anyhow::Context;
use clap::{Args, ValueEnum};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use super::client::{ClusterArgs, QuietContext};
use super::name_value;

/// `agentlog produce` arguments.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic (must exist).
    topic: String,
    /// Split each line at the first occurrence of this into key and value (a line
    /// without it is all value, with no key).
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// A header on every record, `name=value`; repeatable.
    #[arg(short = 'H', long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Write every record to this partition (default: by key, or spread).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Compression codec for the batches.
    #[arg(long, short = 'z', value_enum, default_value_t = Compression::None)]
    compression: Compression,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// The codecs librdkafka (as built here) can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Compression {
    fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Deliveries awaited together; bounds memory and the producer's queue.
const IN_FLIGHT: usize = 10_000;

/// Produces stdin's lines.
pub fn run(args: ProduceArgs) -> anyhow::Result<()> {
    let headers = args
        .headers
        .iter()
        .map(|h| name_value(h).context("-H"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let partitions = args.cluster.consumer(None)?.partitions(&args.topic)?;
    if let Some(partition) = args.partition {
        anyhow::ensure!(
            partitions.contains(&partition),
            "topic {} has no partition {partition} (it has {})",
            args.topic,
            partitions.len()
        );
    }
    let mut config = args.cluster.config()?;
    let timeout_ms = args.cluster.timeout()?.as_millis().to_string();
    config
        .set("compression.type", args.compression.name())
        .set("message.timeout.ms", &timeout_ms);
    let producer: FutureProducer<QuietContext> = config
        .create_with_context(QuietContext::default())
        .map_err(|e| anyhow::anyhow!("creating the producer: {e}"))?;
    let runtime = super::runtime()?;
    let progress = std::io::stderr().is_terminal();
    let mut pending: Vec<DeliveryFuture> = Vec::new();
    let mut produced = 0u64;
    for (index, line) in std::io::stdin().lock().split(b'\n').enumerate() {
        let line = line.context("reading stdin")?;
        let (key, value) = split_key(&line, args.key_separator.as_deref());
        let mut owned_headers = OwnedHeaders::new_with_capacity(headers.len());
        for (name, value) in &headers {
            owned_headers = owned_headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::to(&args.topic)
            .payload(value)
            .headers(owned_headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break pending.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The local queue is full: wait for what is in flight, then retry.
                    produced += runtime.block_on(deliver(&mut pending))?;
                    record = back;
                }
                Err((error, _)) => anyhow::bail!("line {}: {error}", index + 1),
            }
        }
        if pending.len() >= IN_FLIGHT {
            produced += runtime.block_on(deliver(&mut pending))?;
            if progress {
                eprint!("\rproduced {produced} records");
            }
        }
    }
    produced += runtime.block_on(deliver(&mut pending))?;
    if progress {
        eprintln!("\rproduced {produced} records to {}", args.topic);
    }
    Ok(())
}

/// Awaits every pending delivery; the first failure is the command's error.
async fn deliver(pending: &mut Vec<DeliveryFuture>) -> anyhow::Result<u64> {
    let mut delivered = 0;
    for delivery in pending.drain(..) {
        match delivery.await {
            Ok(Ok(_)) => delivered += 1,
            Ok(Err((error, _))) => anyhow::bail!("producing: {error}"),
            Err(_) => anyhow::bail!("producing: the producer stopped before the delivery report"),
        }
    }
    Ok(delivered)
}

/// Key and value of one line: split at the first separator, if one is given and found.
fn split_key<'a>(line: &'a [u8], separator: Option<&str>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(separator) = separator.map(str::as_bytes).filter(|s| !s.is_empty()) else {
        return (None, line);
    };
    match line.windows(separator.len()).position(|w| w == separator) {
        Some(at) => (Some(&line[..at]), &line[at + separator.len()..]),
        None => (None, line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_at_the_first_separator_only() {
        assert_eq!(
            split_key(b"k::v::w", Some("::")),
            (Some(&b"k"[..]), &b"v::w"[..])
        );
        assert_eq!(split_key(b"plain", Some(":")), (None, &b"plain"[..]));
        assert_eq!(split_key(b"a:b", None), (None, &b"a:b"[..]));
    }
}
