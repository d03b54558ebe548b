//! `agentlog consume TOPIC`: prints records with a kcat-style format string, from a
//! chosen point, alone (assigned partitions) or as a member of a group (committing
//! what it printed). It follows new records until interrupted, unless `--num` or
//! `--exit` says when to stop. `decisions tail` reads through the same [`Reader`].

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;

use super::client::{ClusterArgs, Quiet, QuietContext};
use super::{Output, OutputArgs, StartFrom};

/// `agentlog consume` arguments.
#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic (must exist).
    topic: String,
    /// Where to start: `beginning`, `end`, `offset:N` or `time:T` (RFC 3339 or ms);
    /// with --group, where to start when the group has no committed offset.
    #[arg(long, default_value = "beginning")]
    from: StartFrom,
    /// Read only this partition (not with --group).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Consume as a member of this group, from its committed offsets, committing
    /// what was printed.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// kcat-style format: %t topic, %p partition, %o offset, %k key, %v value,
    /// %h headers (`n=v,...`), %T timestamp (ms), %K/%S key/value size, %% a percent
    /// sign, \n \t. A newline is added unless the format ends with \n. Bytes that are
    /// not UTF-8 print as `0x` and hex. Default `%v`.
    #[arg(long = "format", short = 'f', value_name = "FORMAT")]
    format: Option<String>,
    /// Stop after this many records.
    #[arg(long, short = 'n', value_name = "N")]
    num: Option<u64>,
    /// Stop at the end of the partitions instead of waiting for new records.
    #[arg(long, short = 'e')]
    exit: bool,
    #[command(flatten)]
    cluster: ClusterArgs,
    #[command(flatten)]
    output: OutputArgs,
}

/// Prints records until the stop condition.
pub fn run(args: ConsumeArgs) -> anyhow::Result<()> {
    let reader = Reader::open(
        &args.cluster,
        &args.topic,
        args.from,
        args.partition,
        args.group.as_deref(),
    )?;
    let format = args.format.as_deref().unwrap_or("%v");
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let stop = Stop {
        num: args.num,
        at_end: args.exit,
    };
    reader.each(stop, |message| {
        match args.output.output {
            Output::Json => writeln!(out, "{}", record_json(message))?,
            Output::Table => {
                let mut line = render(format, message);
                if !line.ends_with('\n') {
                    line.push('\n');
                }
                out.write_all(line.as_bytes())?;
            }
        }
        // Followers see each record as it arrives, not when a buffer fills.
        out.flush()?;
        Ok(true)
    })
}

/// When a read stops.
#[derive(Debug, Clone, Copy)]
pub struct Stop {
    /// After this many records (counted by the callback).
    pub num: Option<u64>,
    /// When every partition has been read to its end.
    pub at_end: bool,
}

/// A consumer positioned on a topic's partitions (or subscribed through a group).
pub struct Reader {
    consumer: Quiet<BaseConsumer<QuietContext>>,
    partitions: usize,
    group: bool,
}

impl Reader {
    /// Positions a consumer on `topic` (which must exist) at `from`.
    pub fn open(
        cluster: &ClusterArgs,
        topic: &str,
        from: StartFrom,
        partition: Option<i32>,
        group: Option<&str>,
    ) -> anyhow::Result<Reader> {
        let probe = cluster.consumer(None)?;
        let mut partitions = probe.partitions(topic)?;
        if let Some(wanted) = partition {
            anyhow::ensure!(
                partitions.contains(&wanted),
                "topic {topic} has no partition {wanted}"
            );
            partitions = vec![wanted];
        }
        let mut config = cluster.config()?;
        config
            .set("group.id", group.unwrap_or("agentlog-cli"))
            .set("enable.partition.eof", "true")
            .set("enable.auto.commit", "false")
            .set("allow.auto.create.topics", "false");
        if let Some(group) = group {
            anyhow::ensure!(
                partition.is_none(),
                "--partition and --group exclude each other"
            );
            let reset = match from {
                StartFrom::Beginning => "earliest",
                StartFrom::End => "latest",
                _ => anyhow::bail!("--group {group}: --from can only be beginning or end (the group's offsets decide)"),
            };
            config.set("auto.offset.reset", reset);
            let consumer: BaseConsumer<QuietContext> = config
                .create_with_context(probe.context.clone())
                .map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
            consumer
                .subscribe(&[topic])
                .map_err(|e| probe.explain(&format!("subscribing to {topic}"), e))?;
            return Ok(Reader {
                consumer: Quiet {
                    client: consumer,
                    ..probe
                },
                partitions: partitions.len(),
                group: true,
            });
        }
        let mut assignment = TopicPartitionList::new();
        for &id in &partitions {
            let offset = match from {
                StartFrom::Beginning => Offset::Beginning,
                StartFrom::End => Offset::End,
                StartFrom::Offset(n) => Offset::Offset(n),
                StartFrom::Time(time) => super::group::offset_at(&probe, topic, id, time)?
                    .map_or(Offset::End, Offset::Offset),
                StartFrom::Last(count) => {
                    let (low, high) = probe.watermarks(topic, id)?;
                    Offset::Offset(high.saturating_sub(count).max(low))
                }
            };
            assignment
                .add_partition_offset(topic, id, offset)
                .map_err(|e| anyhow::anyhow!("{topic}/{id}: {e}"))?;
        }
        let consumer: BaseConsumer<QuietContext> = config
            .create_with_context(probe.context.clone())
            .map_err(|e| anyhow::anyhow!("creating the consumer: {e}"))?;
        consumer
            .assign(&assignment)
            .map_err(|e| probe.explain(&format!("assigning {topic}"), e))?;
        Ok(Reader {
            consumer: Quiet {
                client: consumer,
                ..probe
            },
            partitions: partitions.len(),
            group: false,
        })
    }

    /// Calls `each` for every record until `stop`; `each` says whether the record
    /// counts towards `--num` (a filter may skip records). A group member commits
    /// what it has read before returning.
    pub fn each(
        &self,
        stop: Stop,
        mut each: impl FnMut(&BorrowedMessage<'_>) -> anyhow::Result<bool>,
    ) -> anyhow::Result<()> {
        let mut counted = 0u64;
        let mut at_end = HashSet::new();
        let mut read = TopicPartitionList::new();
        let done = |counted: u64, at_end: &HashSet<i32>| {
            stop.num.is_some_and(|n| counted >= n)
                || (stop.at_end && at_end.len() >= self.partitions)
        };
        while !done(counted, &at_end) {
            match self.consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Ok(message)) => {
                    at_end.remove(&message.partition());
                    if each(&message)? {
                        counted += 1;
                    }
                    if self.group {
                        read.add_partition_offset(
                            message.topic(),
                            message.partition(),
                            Offset::Offset(message.offset() + 1),
                        )
                        .map_err(|e| anyhow::anyhow!("{e}"))?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(error)) => return Err(self.consumer.explain("consuming", error)),
            }
        }
        if self.group && read.count() > 0 {
            self.consumer
                .commit(&read, CommitMode::Sync)
                .map_err(|e| self.consumer.explain("committing the group's offsets", e))
                .context("the records were printed")?;
        }
        Ok(())
    }
}

/// Text, or `0x` and hex for bytes that are not UTF-8 (never a lossy rendering).
pub fn text_or_hex(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let mut hex = String::with_capacity(2 + bytes.len() * 2);
            hex.push_str("0x");
            for byte in bytes {
                hex.push_str(&format!("{byte:02x}"));
            }
            hex
        }
    }
}

/// A record's headers as `(name, value)` pairs, values through [`text_or_hex`].
pub fn headers(message: &BorrowedMessage<'_>) -> Vec<(String, String)> {
    message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        h.value.map(text_or_hex).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One record as a JSON object (the `--output json` line, and the console's): key and
/// value through [`text_or_hex`], plus `value_base64` for a value that is not UTF-8.
pub fn record_json(message: &BorrowedMessage<'_>) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = headers(message)
        .into_iter()
        .map(|(k, v)| (k, json!(v)))
        .collect();
    let mut record = json!({
        "topic": message.topic(),
        "partition": message.partition(),
        "offset": message.offset(),
        "timestamp": message.timestamp().to_millis(),
        "key": message.key().map(text_or_hex),
        "value": message.payload().map(text_or_hex),
        "headers": headers,
    });
    if let Some(binary) = message
        .payload()
        .filter(|v| std::str::from_utf8(v).is_err())
    {
        use base64::Engine;
        record["value_base64"] = json!(base64::engine::general_purpose::STANDARD.encode(binary));
    }
    record
}

/// The format string with one record's fields substituted.
fn render(format: &str, message: &BorrowedMessage<'_>) -> String {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some('t') => out.push_str(message.topic()),
                Some('p') => out.push_str(&message.partition().to_string()),
                Some('o') => out.push_str(&message.offset().to_string()),
                Some('k') => out.push_str(&message.key().map(text_or_hex).unwrap_or_default()),
                Some('v') => out.push_str(&message.payload().map(text_or_hex).unwrap_or_default()),
                Some('K') => out.push_str(&message.key_len().to_string()),
                Some('S') => out.push_str(&message.payload_len().to_string()),
                Some('T') => {
                    out.push_str(&message.timestamp().to_millis().unwrap_or(-1).to_string())
                }
                Some('h') => {
                    let pairs: Vec<String> = headers(message)
                        .into_iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    out.push_str(&pairs.join(","));
                }
                Some(other) => {
                    out.push('%');
                    if other != '%' {
                        out.push(other);
                    }
                }
                None => out.push('%'),
            },
            '\\' => match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => {
                    out.push('\\');
                    out.push(other);
                }
                None => out.push('\\'),
            },
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_utf8_print_as_hex() {
        assert_eq!(text_or_hex(b"caf\xc3\xa9"), "café");
        assert_eq!(text_or_hex(&[0xff, 0x00, 0x10]), "0xff0010");
    }
}
