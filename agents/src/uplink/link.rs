//! One uplink's forwarding loop. A *session* is one remote producer: it fences any
//! earlier incarnation (`init_transactions`), reads the committed progress, then
//! forwards batches of local records, each in one remote transaction together with
//! the progress it makes. Any doubt (a failed send, a commit that timed out, a cut
//! link) ends the session; the next one trusts only what the remote committed, which
//! is what makes crashes and cuts neither lose nor duplicate records.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use thiserror::Error;
use tokio::sync::watch;

use super::local::{LocalTopics, ReadBatch};
use super::pacer::Pacer;
use super::progress::{self, LoadProgressError};
use super::remote::{self, LinkProducer, RemoteError, RemoteTopics};
use super::session::{self, Backoff, Sessions};
use super::settings::{Mode, UplinkDef};
use super::status::{LinkState, UplinkStatus};
use crate::event::{now_ms, Event};

/// How long a topic the remote refused is set aside before it is tried again.
const REFUSED_RETRY: Duration = Duration::from_secs(30);
/// How often new local topics matching the uplink are looked for (a topic not yet
/// found is not yet held against retention).
const DISCOVER_EVERY: Duration = Duration::from_millis(250);
/// Longest idle wait for local records before looking around again.
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// A session ended before it was asked to stop.
#[derive(Debug, Error)]
pub enum SessionError {
    /// A remote client call failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// The progress topic could not be read.
    #[error(transparent)]
    Progress(#[from] LoadProgressError),
    /// The progress topic could not be created or is unusable.
    #[error("{0}")]
    ProgressTopic(String),
    /// A record or progress write was not acknowledged.
    #[error("delivery to the remote failed: {0}")]
    Delivery(KafkaError),
}

impl SessionError {
    /// The link state this failure puts the uplink in.
    fn state(&self) -> LinkState {
        let refused = match self {
            SessionError::Remote(error) => error.is_refusal(),
            SessionError::ProgressTopic(_) => true,
            SessionError::Delivery(error) => {
                error.rdkafka_error_code().is_some_and(remote::is_refusal)
            }
            SessionError::Progress(LoadProgressError::Kafka { source, .. }) => {
                source.rdkafka_error_code().is_some_and(remote::is_refusal)
            }
            SessionError::Progress(LoadProgressError::Timeout(_)) => false,
        };
        if refused {
            LinkState::Error(self.to_string())
        } else {
            LinkState::Down(self.to_string())
        }
    }
}

/// Sending one batch failed.
enum SendError {
    /// The remote refuses one local topic's records: set it aside, go on.
    Refused { topic: String, reason: String },
    /// Anything else: the session ends.
    Session(SessionError),
}

impl From<SessionError> for SendError {
    fn from(error: SessionError) -> Self {
        SendError::Session(error)
    }
}

/// The state one uplink keeps across sessions.
pub struct Link {
    def: UplinkDef,
    local: LocalTopics,
    status: Arc<UplinkStatus>,
    stop: watch::Receiver<bool>,
    /// Local topics the remote refused, with when to try them again.
    refused: HashMap<String, Instant>,
    /// The bandwidth cap.
    pacer: Pacer,
}

impl Link {
    /// A link forwarding `local` as `def` says, reporting to `status`.
    pub fn new(
        def: UplinkDef,
        local: LocalTopics,
        status: Arc<UplinkStatus>,
        stop: watch::Receiver<bool>,
    ) -> Link {
        Link {
            pacer: Pacer::new(def.max_bytes_per_second),
            def,
            local,
            status,
            stop,
            refused: HashMap::new(),
        }
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Runs `work` (a remote call or a wait, borrowing nothing of the link) while
    /// picking up new local topics, so that even with the remote unreachable their
    /// records are held against retention and counted as behind. Positions found here
    /// start at the log start; a session resets them to the remote's progress.
    async fn discovering<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        let mut tick = tokio::time::interval(DISCOVER_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                out = &mut work => return out,
                _ = tick.tick() => {
                    self.local.discover(&HashMap::new());
                    self.status.add_lost(self.local.skip_deleted());
                    self.status.set_lag(
                        self.local.behind(),
                        self.local.oldest_unforwarded_ms(),
                    );
                }
            }
        }
    }

    /// One producer's life: fence, load progress, forward until stopped or a failure.
    async fn forward(
        &mut self,
        producer: &LinkProducer,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        let timeout = self.def.remote_timeout();
        if self.def.mode == Mode::ExactlyOnce {
            let fencing = producer.clone();
            self.discovering(remote::blocking("initialising transactions", move || {
                fencing.init_transactions(timeout)
            }))
            .await?;
        }
        let topics = RemoteTopics::new(&self.def)?;
        let progress_topic = self.def.progress_topic();
        self.discovering(topics.ensure(&progress_topic, 1, true))
            .await
            .map_err(SessionError::ProgressTopic)?;
        let properties = remote::client_properties(&self.def);
        let loading = progress_topic.clone();
        let uplink = self.def.name.clone();
        let stored = self
            .discovering(tokio::task::spawn_blocking(move || {
                progress::load(&uplink, &properties, &loading, timeout)
            }))
            .await
            .map_err(|_| RemoteError::Task("loading progress"))??;
        self.local.discover(&stored);
        self.status.add_lost(self.local.reset(&stored));
        let mut ensured = HashMap::new();
        self.ensure_remote_topics(producer, &topics, &mut ensured)
            .await;
        self.status.set_state(LinkState::Up);
        tracing::info!(uplink = %self.def.name, partitions = stored.len(), "uplink resumed from remote progress");
        let mut discovered_at = Instant::now();
        loop {
            if self.stopping() {
                return Ok(());
            }
            if discovered_at.elapsed() >= DISCOVER_EVERY {
                discovered_at = Instant::now();
                if !self.local.discover(&stored).is_empty() {
                    self.ensure_remote_topics(producer, &topics, &mut ensured)
                        .await;
                }
                self.retry_refused(&mut ensured);
            }
            self.status.add_lost(self.local.skip_deleted());
            let paused: HashSet<String> = self.refused.keys().cloned().collect();
            self.local.mark_seen();
            let (batch, undecodable) = self.local.read(self.def.batch_bytes(), &paused);
            for bad in undecodable {
                self.refuse(
                    &bad.topic,
                    format!(
                        "undecodable local batch at offset {}: {}",
                        bad.offset, bad.reason
                    ),
                );
            }
            let oldest = batch.events.iter().map(|e| e.timestamp).min().unwrap_or(0);
            self.status.set_lag(self.local.behind(), oldest);
            if batch.next.is_empty() {
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = self.local.wait_for_records(IDLE_WAIT) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
            if let Some(until) = self.pacer.next_at() {
                let mut stop = self.stop.clone();
                tokio::select! {
                    _ = tokio::time::sleep_until(until) => {}
                    _ = stop.changed() => return Ok(()),
                }
            }
            let mut stop = self.stop.clone();
            let sent = tokio::select! {
                sent = self.send(producer, &batch) => sent,
                // Stopping mid-transaction is safe: the remote never commits it, and
                // the next incarnation's init_transactions aborts it.
                _ = stop.changed() => return Ok(()),
            };
            match sent {
                Ok(()) => {
                    self.local.advance(&batch.next);
                    let bytes: usize = batch.events.iter().map(record_bytes).sum();
                    self.status
                        .record_sent(batch.events.len() as u64, bytes as u64, now_ms());
                    self.status.set_lag(self.local.behind(), 0);
                    for (topic, _) in batch.next.keys() {
                        self.status.set_topic_error(topic, None);
                    }
                    backoff.reset();
                    self.pacer.sent(batch.bytes);
                }
                Err(SendError::Refused { topic, reason }) => {
                    self.abort(producer).await?;
                    self.refuse(&topic, reason);
                }
                Err(SendError::Session(error)) => {
                    // Best effort: the next session's init_transactions aborts anyway.
                    let _ = self.abort(producer).await;
                    return Err(error);
                }
            }
        }
    }

    /// Sets a local topic aside after the remote refused it; its data stays local.
    fn refuse(&mut self, topic: &str, reason: String) {
        self.status.set_topic_error(topic, Some(reason));
        self.refused
            .insert(topic.to_string(), Instant::now() + REFUSED_RETRY);
    }

    /// Puts refused topics whose wait is over back in (their remote topic is checked
    /// again first).
    fn retry_refused(&mut self, ensured: &mut HashMap<String, i32>) {
        let now = Instant::now();
        self.refused.retain(|topic, retry_at| {
            let keep = *retry_at > now;
            if !keep {
                ensured.remove(topic);
            }
            keep
        });
    }

    /// Creates the remote topic of every forwarded local topic not yet checked this
    /// session with its current partition count (so partitions added locally are
    /// added remotely too); a topic the remote will not have is set aside, the others
    /// go on.
    async fn ensure_remote_topics(
        &mut self,
        producer: &LinkProducer,
        topics: &RemoteTopics,
        ensured: &mut HashMap<String, i32>,
    ) {
        for (local, partitions) in self.local.topics() {
            let done = ensured
                .get(&local)
                .is_some_and(|count| *count >= partitions);
            if done || self.refused.contains_key(&local) {
                continue;
            }
            let remote_topic = self.def.remote_topic(&local);
            match topics.ensure(&remote_topic, partitions, false).await {
                Ok(()) => {
                    ensured.insert(local, partitions);
                    // The producer learns of a topic's new partitions only from its
                    // next metadata, which may be minutes away: ask now.
                    let asking = producer.clone();
                    let timeout = self.def.remote_timeout();
                    let _ = remote::blocking("reading remote topic metadata", move || {
                        asking.client().fetch_metadata(Some(&remote_topic), timeout)
                    })
                    .await;
                }
                Err(reason) => self.refuse(&local, reason),
            }
        }
    }

    async fn abort(&self, producer: &LinkProducer) -> Result<(), SessionError> {
        if self.def.mode != Mode::ExactlyOnce {
            return Ok(());
        }
        let aborting = producer.clone();
        let timeout = self.def.remote_timeout();
        remote::blocking("aborting the transaction", move || {
            aborting.abort_transaction(timeout)
        })
        .await?;
        Ok(())
    }

    /// Sends one batch and its progress: in one transaction (exactly once), or the
    /// records first and the progress once they are acknowledged (at least once).
    async fn send(&self, producer: &LinkProducer, batch: &ReadBatch) -> Result<(), SendError> {
        let exactly_once = self.def.mode == Mode::ExactlyOnce;
        if exactly_once {
            producer
                .begin_transaction()
                .map_err(SessionError::Delivery)?;
        }
        let mut pending = Vec::with_capacity(batch.events.len() + batch.next.len());
        for event in &batch.events {
            let remote_topic = self.def.remote_topic(&event.topic);
            let mut record = FutureRecord::<[u8], [u8]>::to(&remote_topic)
                .partition(event.partition)
                .timestamp(event.timestamp)
                .headers(self.origin_headers(event));
            if let Some(key) = &event.key {
                record = record.key(key.as_ref());
            }
            if let Some(value) = &event.value {
                record = record.payload(value.as_ref());
            }
            enqueue(
                producer,
                record,
                Some(event.topic.to_string()),
                &mut pending,
            )
            .await?;
        }
        if !exactly_once {
            // Progress only after every record is acknowledged: a crash between the
            // two forwards some records twice, never skips one.
            settle(std::mem::take(&mut pending)).await?;
        }
        let progress_topic = self.def.progress_topic();
        for ((topic, partition), next) in &batch.next {
            let key = progress::key(topic, *partition);
            let value = progress::value(*next);
            let record = FutureRecord::<[u8], [u8]>::to(&progress_topic)
                .partition(0)
                .key(key.as_bytes())
                .payload(&value);
            enqueue(producer, record, None, &mut pending).await?;
        }
        settle(pending).await?;
        if exactly_once {
            let committing = producer.clone();
            let timeout = self.def.remote_timeout();
            remote::blocking("committing the transaction", move || {
                committing.commit_transaction(timeout)
            })
            .await
            .map_err(SessionError::Remote)?;
        }
        Ok(())
    }

    /// The event's headers, then where it came from, so the remote can trace (and
    /// deduplicate, for at-least-once) every record back to its edge origin.
    fn origin_headers(&self, event: &Event) -> OwnedHeaders {
        let mut headers = OwnedHeaders::new_with_capacity(event.headers.len() + 4);
        for header in &event.headers {
            let name = String::from_utf8_lossy(&header.name);
            headers = headers.insert(Header {
                key: &name,
                value: header.value.as_deref(),
            });
        }
        let partition = event.partition.to_string();
        let offset = event.offset.to_string();
        for (key, value) in [
            ("origin.site", self.def.site.as_str()),
            ("origin.topic", &event.topic),
            ("origin.partition", &partition),
            ("origin.offset", &offset),
        ] {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        headers
    }
}

/// A send awaiting its acknowledgement, with the local topic of a forwarded record
/// (`None` for progress), so a refusal can be pinned on its topic.
type Pending = (Option<String>, DeliveryFuture);

/// Queues one record, waiting for earlier acknowledgements while the producer's queue
/// is full.
async fn enqueue(
    producer: &LinkProducer,
    mut record: FutureRecord<'_, [u8], [u8]>,
    topic: Option<String>,
    pending: &mut Vec<Pending>,
) -> Result<(), SendError> {
    loop {
        match producer.send_result(record) {
            Ok(delivery) => {
                pending.push((topic, delivery));
                return Ok(());
            }
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                settle(std::mem::take(pending)).await?;
                if pending.is_empty() {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            Err((error, _)) => return Err(failure(topic, error)),
        }
    }
}

/// Waits for every acknowledgement; the first failure wins (after all are settled, so
/// nothing is in flight when the transaction is aborted).
async fn settle(pending: Vec<Pending>) -> Result<(), SendError> {
    let mut first = None;
    for (topic, delivery) in pending {
        let error = match delivery.await {
            Ok(Ok(_)) => continue,
            Ok(Err((error, _))) => error,
            Err(_) => KafkaError::Canceled,
        };
        if first.is_none() {
            first = Some(failure(topic, error));
        }
    }
    first.map_or(Ok(()), Err)
}

/// A refusal of a forwarded record's topic sets that topic aside; anything else ends
/// the session.
fn failure(topic: Option<String>, error: KafkaError) -> SendError {
    match topic {
        Some(topic) if error.rdkafka_error_code().is_some_and(remote::is_refusal) => {
            SendError::Refused {
                topic,
                reason: error.to_string(),
            }
        }
        _ => SendError::Session(SessionError::Delivery(error)),
    }
}

fn record_bytes(event: &Event) -> usize {
    event.key.as_ref().map_or(0, |k| k.len()) + event.value.as_ref().map_or(0, |v| v.len())
}

impl Sessions for Link {
    type Client = LinkProducer;
    type Error = SessionError;

    fn status(&self) -> &Arc<UplinkStatus> {
        &self.status
    }

    fn stop(&self) -> watch::Receiver<bool> {
        self.stop.clone()
    }

    fn state_after(error: &SessionError) -> LinkState {
        error.state()
    }

    fn connect(&mut self) -> Result<LinkProducer, RemoteError> {
        // Before the remote is reached: hold (and count as behind) everything local, as
        // nothing is known to be forwarded until the remote's progress is read.
        self.local.discover(&HashMap::new());
        self.status.set_behind(self.local.behind());
        remote::producer(&self.def)
    }

    async fn session(
        &mut self,
        producer: &LinkProducer,
        backoff: &mut Backoff,
    ) -> Result<(), SessionError> {
        self.forward(producer, backoff).await
    }

    async fn retire(producer: LinkProducer) {
        remote::retire(producer).await
    }

    async fn pause(&mut self, wait: Duration) {
        let stop = self.stop.clone();
        self.discovering(session::sleep_unless_stopped(wait, stop))
            .await
    }
}
