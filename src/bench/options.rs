//! Flags shared by every workload, and the librdkafka settings derived from them.

use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use rdkafka::ClientConfig;

/// Options of `agentlog bench produce|consume|e2e`, named as in Kafka's perf tools and
/// rpk where those have an equivalent, so users can carry their commands over.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// Broker(s) to connect to, `host:port[,host:port...]`.
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    pub bootstrap: String,
    /// Topic to produce to / consume from.
    #[arg(long, default_value = "agentlog-bench")]
    pub topic: String,
    /// Stop after this many records (default 1,000,000 unless --duration is given).
    #[arg(long, value_name = "N")]
    pub records: Option<u64>,
    /// Stop after this many seconds (with --records: whichever comes first).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Value size of each produced record, in bytes.
    #[arg(long, default_value_t = 100, value_name = "BYTES")]
    pub record_size: usize,
    /// How produced records are keyed.
    #[arg(long, value_enum, default_value_t = KeyDistribution::None)]
    pub key_distribution: KeyDistribution,
    /// Number of distinct keys for sequential/random keys.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub keys: u64,
    /// Partitions to create the topic with if it does not exist (produce and e2e).
    #[arg(long, default_value_t = 1, value_name = "P")]
    pub partitions: i32,
    /// Producer acknowledgements.
    #[arg(long, value_enum, default_value_t = Acks::One)]
    pub acks: Acks,
    /// Producer compression codec.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    pub compression: Compression,
    /// Producer `linger.ms` (librdkafka's default when absent).
    #[arg(long, value_name = "MS")]
    pub linger_ms: Option<u64>,
    /// Producer `batch.size` in bytes (librdkafka's default when absent).
    #[arg(long, value_name = "BYTES")]
    pub batch_size: Option<u64>,
    /// Independent producer instances, each on its own thread, sharing the record count.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub producers: usize,
    /// Target records per second in total, paced evenly (default: as fast as possible).
    #[arg(long, value_name = "R")]
    pub rate: Option<f64>,
    /// Extra librdkafka property `key=value` for every client; repeatable.
    #[arg(short = 'X', value_name = "KEY=VALUE")]
    pub extra: Vec<String>,
    /// Print the final report as one JSON object on the last line of stdout.
    #[arg(long)]
    pub json: bool,
    /// Broker process id: report its CPU time and peak RSS from /proc.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
}

/// How keys are chosen: none (round-robin partitioning by librdkafka's sticky
/// partitioner), cycling through `--keys`, or uniformly random among them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KeyDistribution {
    /// Null keys.
    None,
    /// key-0, key-1, ... key-(N-1), key-0, ...
    Sequential,
    /// A uniformly random key among N.
    Random,
}

/// `acks` as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Acks {
    /// Fire and forget.
    #[value(name = "0")]
    Zero,
    /// Leader wrote it.
    #[value(name = "1")]
    One,
    /// Every in-sync replica has it (agentlog: fsynced, per its flush policy).
    #[value(name = "all", alias = "-1")]
    All,
}

/// `compression.type` values librdkafka accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// snappy.
    Snappy,
    /// lz4.
    Lz4,
    /// zstd.
    Zstd,
}

/// Record count when neither `--records` nor `--duration` is given.
const DEFAULT_RECORDS: u64 = 1_000_000;

impl Options {
    /// Rejects combinations that would make a run meaningless before any client starts.
    pub fn validate(&self, mode: &str) -> anyhow::Result<()> {
        if self.producers == 0 {
            bail!("--producers must be at least 1");
        }
        if self.partitions < 1 {
            bail!("--partitions must be at least 1");
        }
        if self.keys == 0 && self.key_distribution != KeyDistribution::None {
            bail!("--keys must be at least 1");
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                bail!("--rate must be a positive number");
            }
        }
        if let Some(d) = self.duration {
            if !(d.is_finite() && d > 0.0) {
                bail!("--duration must be a positive number of seconds");
            }
        }
        if mode == "e2e" && self.record_size < crate::bench::payload::TIMESTAMP_LEN {
            bail!(
                "e2e embeds a timestamp in each value: --record-size must be at least {}",
                crate::bench::payload::TIMESTAMP_LEN
            );
        }
        for kv in &self.extra {
            if !kv.contains('=') {
                bail!("-X {kv}: expected key=value");
            }
        }
        Ok(())
    }

    /// The record budget: `--records`, or unlimited when only `--duration` is given.
    pub fn record_limit(&self) -> u64 {
        match (self.records, self.duration) {
            (Some(n), _) => n,
            (None, Some(_)) => u64::MAX,
            (None, None) => DEFAULT_RECORDS,
        }
    }

    /// The time budget, if any.
    pub fn time_limit(&self) -> Option<Duration> {
        self.duration.map(Duration::from_secs_f64)
    }

    /// Settings every client gets: bootstrap servers, then the `-X` overrides last so
    /// that they win.
    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config.set("client.id", "agentlog-bench");
        config
    }

    fn apply_extra(&self, config: &mut ClientConfig) -> anyhow::Result<()> {
        for kv in &self.extra {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("-X {kv}: expected key=value"))?;
            config.set(k.trim(), v.trim());
        }
        Ok(())
    }

    /// Producer settings from the flags.
    pub fn producer_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.base_config();
        let acks = match self.acks {
            Acks::Zero => "0",
            Acks::One => "1",
            Acks::All => "all",
        };
        config.set("acks", acks);
        let codec = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        config.set("compression.type", codec);
        if let Some(ms) = self.linger_ms {
            config.set("linger.ms", ms.to_string());
        }
        if let Some(bytes) = self.batch_size {
            config.set("batch.size", bytes.to_string());
        }
        self.apply_extra(&mut config)?;
        Ok(config)
    }

    /// Consumer settings: a group id is required by librdkafka, but partitions are
    /// assigned (no group protocol) and nothing is committed.
    pub fn consumer_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.base_config();
        config.set("group.id", "agentlog-bench");
        config.set("enable.auto.commit", "false");
        config.set("enable.auto.offset.store", "false");
        config.set("enable.partition.eof", "false");
        self.apply_extra(&mut config)?;
        Ok(config)
    }

    /// Settings for the admin client that creates the topic.
    pub fn admin_config(&self) -> anyhow::Result<ClientConfig> {
        let mut config = self.base_config();
        self.apply_extra(&mut config)?;
        Ok(config)
    }
}
