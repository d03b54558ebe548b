//! One `direction = "down"` uplink's loop: remote topics (commands, model updates)
//! mirrored into local topics. A *session* is one remote consumer: it finds the remote
//! topics, resumes each partition from the progress the local log holds (see
//! [`super::mirror`] for why that is exactly once), then appends what it fetches.
//! Any remote failure (metadata not answered within `remote_timeout_ms`, a fetch
//! error) or local one ends the session; the next one trusts only the local log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agentlog_broker::partition::Partition;
use agentlog_broker::Broker;
use bytes::Bytes;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use regex::Regex;
use thiserror::Error;
use tokio::sync::watch;

use super::mirror::{self, Fetched, MirrorError};
use super::pacer::Pacer;
use super::remote::{self, LinkContext, RemoteError};
use super::session::{self, Backoff, Sessions};
use super::settings::UplinkDef;
use super::status::{LinkState, UplinkStatus};
use crate::event::{now_ms, OutRecord};

/// How often remote topics are looked for and the link is checked (a metadata call
/// that fails ends the session, as a consumer alone would wait silently forever).
const DISCOVER_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for the first record of a round before looking around again.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// After a round's first record, how long to wait for more before appending.
const GATHER_WAIT: Duration = Duration::from_millis(2);

type DownConsumer = StreamConsumer<LinkContext>;

/// A down session ended before it was asked to stop.
#[derive(Debug, Error)]
pub enum DownError {
    /// A remote client call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// Writing locally failed.
    #[error(transparent)]
    Local(#[from] MirrorError),
}

impl DownError {
    fn state(&self) -> LinkState {
        match self {
            DownError::Remote(error) if !error.is_refusal() => LinkState::Down(self.to_string()),
            _ => LinkState::Error(self.to_string()),
        }
    }
}

/// One remote partition being mirrored.
struct Mirrored {
    local_topic: String,
    local: Arc<Partition>,
    /// The next remote offset to append; `None` until the first record (resume from the
    /// remote's start).
    next: Option<i64>,
    /// The remote high watermark last seen.
    remote_end: i64,
}

/// The state one down uplink keeps.
pub struct Downlink {
    def: UplinkDef,
    broker: Arc<Broker>,
    pattern: Option<Regex>,
    holder: Option<String>,
    status: Arc<UplinkStatus>,
    stop: watch::Receiver<bool>,
    /// Remote (topic, partition) to its local partition, for this session.
    mirrored: BTreeMap<(String, i32), Mirrored>,
    pacer: Pacer,
    /// Records and key+value bytes mirrored since start (the average sizes the bytes
    /// behind).
    seen: (u64, u64),
}

impl Downlink {
    /// A down uplink mirroring what `def` selects into `broker`, reporting to `status`.
    pub fn new(
        def: UplinkDef,
        broker: Arc<Broker>,
        pattern: Option<Regex>,
        status: Arc<UplinkStatus>,
        stop: watch::Receiver<bool>,
    ) -> Downlink {
        let holder = def
            .retain_until_forwarded()
            .then(|| format!("downlink:{}", def.name));
        Downlink {
            broker,
            pattern,
            holder,
            status,
            stop,
            seen: (0, 0),
            mirrored: BTreeMap::new(),
            pacer: Pacer::new(def.max_bytes_per_second),
            def,
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// One consumer's life: resume from the local logs, mirror until stopped or a
    /// failure.
    async fn mirror(
        &mut self,
        consumer: &Arc<DownConsumer>,
        backoff: &mut Backoff,
    ) -> Result<(), DownError> {
        self.mirrored.clear();
        self.discover(consumer).await?;
        self.status.set_state(LinkState::Up);
        tracing::info!(uplink = %self.def.name, partitions = self.mirrored.len(), "down uplink resumed from local progress");
        let mut discovered_at = Instant::now();
        loop {
            if self.stopping() {
                return Ok(());
            }
            if discovered_at.elapsed() >= DISCOVER_EVERY {
                discovered_at = Instant::now();
                self.discover(consumer).await?;
                self.status.set_state(LinkState::Up);
            }
            let round = self.gather(consumer).await?;
            if round.is_empty() {
                continue;
            }
            if let Some(until) = self.pacer.next_at() {
                tokio::time::sleep_until(until).await;
            }
            let (records, bytes) = self.append(round).await?;
            self.status.record_sent(records, bytes, now_ms());
            self.seen = (self.seen.0 + records, self.seen.1 + bytes);
            self.status.set_lag(self.behind(), 0);
            backoff.reset();
            self.pacer.sent(bytes as usize);
        }
    }

    /// Whether a remote topic is mirrored. Internal topics (offsets, transactions,
    /// uplink progress) only when named outright.
    fn selects(&self, name: &str) -> bool {
        let named = self.def.topics.iter().any(|n| n == name);
        let internal = name.starts_with("__") || name.starts_with("_agentlog.");
        named || (!internal && self.pattern.as_ref().is_some_and(|p| p.is_match(name)))
    }

    /// Reads the remote's topics (which also proves the link is up), picks up new
    /// partitions starting at the local progress, and refreshes the lag figures.
    async fn discover(&mut self, consumer: &Arc<DownConsumer>) -> Result<(), DownError> {
        let timeout = self.def.remote_timeout();
        let reading = consumer.clone();
        let metadata = remote::blocking("reading remote metadata", move || {
            reading.fetch_metadata(None, timeout)
        })
        .await?;
        let mut added = TopicPartitionList::new();
        for topic in metadata.topics() {
            let name = topic.name();
            if !self.selects(name) || topic.partitions().is_empty() {
                continue;
            }
            let count = topic.partitions().len() as i32;
            if (0..count).all(|p| self.mirrored.contains_key(&(name.to_string(), p))) {
                continue;
            }
            let local_topic = self.def.remote_topic(name);
            let locals = match mirror::local_partitions(&self.broker, &local_topic, count) {
                Ok(locals) => locals,
                Err(error) => {
                    self.status.set_topic_error(name, Some(error.to_string()));
                    continue;
                }
            };
            self.status.set_topic_error(name, None);
            for (index, local) in locals.into_iter().enumerate().take(count as usize) {
                let key = (name.to_string(), index as i32);
                if self.mirrored.contains_key(&key) {
                    continue;
                }
                let resume = mirror::resume_offset(&local, &local_topic, &self.def.name, name);
                if let Some(resume) = resume {
                    self.hold(&local_topic, index as i32, resume.local_offset);
                } else if local.log.log_start_offset() > 0 {
                    tracing::warn!(uplink = %self.def.name, topic = %local_topic, partition = index,
                        "down uplink: no mirrored record left locally (deleted); mirroring from the remote's start");
                }
                let next = resume.map(|r| r.remote_next);
                let offset = next.map_or(Offset::Beginning, Offset::Offset);
                added
                    .add_partition_offset(name, index as i32, offset)
                    .map_err(RemoteError::kafka("assigning a remote partition"))?;
                self.mirrored.insert(
                    key,
                    Mirrored {
                        local_topic: local_topic.clone(),
                        local,
                        next,
                        remote_end: 0,
                    },
                );
            }
        }
        if added.count() > 0 {
            consumer
                .incremental_assign(&added)
                .map_err(RemoteError::kafka("assigning remote partitions"))?;
        }
        self.refresh_lag(consumer).await?;
        Ok(())
    }

    /// Reads every mirrored partition's remote high watermark (blocking calls).
    async fn refresh_lag(&mut self, consumer: &Arc<DownConsumer>) -> Result<(), DownError> {
        let keys: Vec<(String, i32)> = self.mirrored.keys().cloned().collect();
        let reading = consumer.clone();
        let timeout = self.def.remote_timeout();
        let ends = remote::blocking("reading remote watermarks", move || {
            keys.into_iter()
                .map(|(topic, partition)| {
                    let (_, high) = reading.fetch_watermarks(&topic, partition, timeout)?;
                    Ok(((topic, partition), high))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        for (key, high) in ends {
            if let Some(mirrored) = self.mirrored.get_mut(&key) {
                mirrored.remote_end = high;
            }
        }
        self.status.set_lag(self.behind(), 0);
        Ok(())
    }

    /// Remote records not yet mirrored (from the last watermarks read; a trailing
    /// transaction marker counts until the next record moves past it), and their bytes
    /// estimated from the average record mirrored so far.
    fn behind(&self) -> (u64, u64) {
        let records: u64 = self
            .mirrored
            .values()
            .map(|m| u64::try_from(m.remote_end - m.next.unwrap_or(0)).unwrap_or(0))
            .sum();
        let (seen_records, seen_bytes) = self.seen;
        let average = seen_bytes.checked_div(seen_records).unwrap_or(0);
        (records, records.saturating_mul(average))
    }

    /// Waits for remote records and gathers up to `batch_bytes`, by partition.
    async fn gather(
        &mut self,
        consumer: &Arc<DownConsumer>,
    ) -> Result<BTreeMap<(String, i32), Vec<Fetched>>, DownError> {
        let mut round: BTreeMap<(String, i32), Vec<Fetched>> = BTreeMap::new();
        let mut bytes = 0usize;
        let mut wait = IDLE_WAIT;
        while bytes < self.def.batch_bytes() {
            let message = match tokio::time::timeout(wait, consumer.recv()).await {
                Err(_) => break,
                Ok(Err(error)) => {
                    let error = RemoteError::Kafka {
                        what: "fetching remote records",
                        source: error,
                    };
                    if error.is_refusal() {
                        return Err(error.into());
                    }
                    // Brokers away, a request timed out: the client reconnects by
                    // itself; the link shows down until records or metadata come.
                    self.status.set_state(LinkState::Down(error.to_string()));
                    break;
                }
                Ok(Ok(message)) => message,
            };
            self.status.set_state(LinkState::Up);
            wait = GATHER_WAIT;
            let key = (message.topic().to_string(), message.partition());
            let Some(mirrored) = self.mirrored.get(&key) else {
                continue;
            };
            // Never append below the resume point: a redelivery cannot duplicate.
            if mirrored.next.is_some_and(|next| message.offset() < next) {
                continue;
            }
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            let value = Bytes::copy_from_slice(h.value.unwrap_or_default());
                            (h.key.to_string(), value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let record = OutRecord {
                key: message.key().map(Bytes::copy_from_slice),
                value: message.payload().map(Bytes::copy_from_slice),
                headers,
                timestamp: message.timestamp().to_millis().unwrap_or_else(now_ms),
            };
            bytes += record.key.as_ref().map_or(0, Bytes::len)
                + record.value.as_ref().map_or(0, Bytes::len);
            round.entry(key).or_default().push(Fetched {
                offset: message.offset(),
                record,
            });
        }
        Ok(round)
    }

    /// Appends a round, one local batch per remote partition; returns the records and
    /// key+value bytes appended.
    async fn append(
        &mut self,
        round: BTreeMap<(String, i32), Vec<Fetched>>,
    ) -> Result<(u64, u64), DownError> {
        let mut records = 0u64;
        let mut bytes = 0u64;
        for (key, fetched) in round {
            let Some(mirrored) = self.mirrored.get_mut(&key) else {
                continue;
            };
            let Some(last) = fetched.last().map(|f| f.offset) else {
                continue;
            };
            records += fetched.len() as u64;
            bytes += fetched
                .iter()
                .map(|f| {
                    f.record.key.as_ref().map_or(0, Bytes::len)
                        + f.record.value.as_ref().map_or(0, Bytes::len)
                })
                .sum::<usize>() as u64;
            let local_last = mirror::append(
                &self.broker,
                &mirrored.local,
                &mirrored.local_topic,
                &self.def.name,
                &key.0,
                fetched,
            )
            .await?;
            mirrored.next = Some(last + 1);
            mirrored.remote_end = mirrored.remote_end.max(last + 1);
            let (topic, index) = (mirrored.local_topic.clone(), mirrored.local.index);
            self.hold(&topic, index, local_last);
        }
        Ok((records, bytes))
    }

    /// The last mirrored record is the progress: retention keeps its segment.
    fn hold(&self, local_topic: &str, partition: i32, local_offset: i64) {
        if let Some(holder) = &self.holder {
            self.broker
                .lifecycle
                .pin_from(holder, local_topic, partition, local_offset);
        }
    }
}

impl Sessions for Downlink {
    type Client = Arc<DownConsumer>;
    type Error = DownError;

    fn status(&self) -> &Arc<UplinkStatus> {
        &self.status
    }

    fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    fn state_after(error: &DownError) -> LinkState {
        error.state()
    }

    fn connect(&mut self) -> Result<Arc<DownConsumer>, RemoteError> {
        remote::consumer(&self.def).map(Arc::new)
    }

    async fn session(
        &mut self,
        consumer: &Arc<DownConsumer>,
        backoff: &mut Backoff,
    ) -> Result<(), DownError> {
        self.mirror(consumer, backoff).await
    }

    async fn retire(consumer: Arc<DownConsumer>) {
        // Dropping a consumer waits for its threads: off the async workers.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }

    async fn pause(&mut self, wait: Duration) {
        session::sleep_unless_stopped(wait, self.stop.clone()).await
    }
}
