//! Stream delivery (the default): an instance is a consumer-group member that owns
//! partitions and commits offsets in order. Events are handled in batches, one at a time
//! (`max_in_flight = 1`), or as concurrent tasks with same-key events kept in offset
//! order (`max_in_flight > 1`). A failed delivery ends the member session: the instance
//! rejoins and re-reads from the committed offsets, so nothing is skipped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent::Agent;
use crate::backend::{Backend, CommitError, Position, Source};
use crate::delivery::{Delivery, DeliveryError, Outcome};
use crate::dispatch::{KeyedDispatch, Ticket};
use crate::event::Event;
use crate::rejoin::{self, REJOIN_AFTER};
use crate::runtime::AgentSpec;

/// How long an instance waits after a failed session or poll before it goes on.
const AFTER_FAILURE: Duration = Duration::from_millis(200);

/// Runs one instance until `stop`: joins the group, serves member sessions, and
/// rejoins after a session that failed.
pub(crate) async fn run_instance<B: Backend, A: Agent>(
    backend: B,
    delivery: Arc<Delivery<A>>,
    spec: AgentSpec,
    client_id: String,
    mut stop: watch::Receiver<bool>,
    assignment: Arc<Mutex<Vec<(String, i32)>>>,
) {
    let join = || backend.subscribe(&spec.group, &spec.topics, &client_id);
    while let Some(mut source) = rejoin::until_stopped(
        &mut stop,
        &spec.name,
        "cannot join group",
        REJOIN_AFTER,
        join,
    )
    .await
    {
        let end = if spec.max_in_flight > 1 {
            serve_concurrently(
                &backend,
                &delivery,
                &spec,
                &mut source,
                &mut stop,
                &assignment,
            )
            .await
        } else {
            serve_in_order(
                &backend,
                &delivery,
                &spec,
                &mut source,
                &mut stop,
                &assignment,
            )
            .await
        };
        source.close().await;
        match end {
            SessionEnd::Stopped => break,
            SessionEnd::Failed => tokio::time::sleep(AFTER_FAILURE).await,
        }
    }
    assignment.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// One group-member session of an instance with `max_in_flight = 1`: each poll's events
/// are delivered in batches of up to `max_batch`, in offset order, then committed.
async fn serve_in_order<B: Backend, A: Agent>(
    backend: &B,
    delivery: &Delivery<A>,
    spec: &AgentSpec,
    source: &mut B::Source,
    stop: &mut watch::Receiver<bool>,
    assignment: &Mutex<Vec<(String, i32)>>,
) -> SessionEnd {
    loop {
        let polled = tokio::select! {
            _ = stop.changed() => return SessionEnd::Stopped,
            polled = source.poll(spec.poll_wait) => polled,
        };
        let events = match polled {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(agent = %spec.name, %error, "poll failed");
                tokio::time::sleep(AFTER_FAILURE).await;
                continue;
            }
        };
        *assignment.lock().unwrap_or_else(|p| p.into_inner()) = source.assignment();
        let mut positions = Positions::default();
        let mut failed = false;
        for batch in events.chunks(spec.max_batch.max(1)) {
            if *stop.borrow() {
                break;
            }
            match delivery.deliver_batch(backend, batch, stop).await {
                Ok(()) => positions.advance(batch),
                Err(partial) => {
                    // Neither handled nor dead-lettered: commit nothing past it and
                    // re-read from the committed positions.
                    positions.advance(batch.get(..partial.delivered).unwrap_or_default());
                    tracing::error!(agent = %spec.name, error = %partial.error, "delivery failed; will re-read");
                    failed = true;
                    break;
                }
            }
        }
        commit(&spec.name, source, positions.into_commit()).await;
        if failed {
            return SessionEnd::Failed;
        }
        if *stop.borrow() {
            return SessionEnd::Stopped;
        }
    }
}

/// How often a concurrent instance commits its watermarks while busy (and always when
/// it goes idle or stops).
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// How a member session of a concurrent instance ended.
enum SessionEnd {
    /// The instance was asked to stop; in-flight events finished and were committed.
    Stopped,
    /// An event could not be delivered: rejoin and re-read from the committed offsets.
    Failed,
}

type Delivered = (Event, Ticket, Result<Outcome, DeliveryError>);

/// One group-member session of an instance with `max_in_flight > 1`: events are
/// spawned as tasks, at most `max_in_flight` at once, same-key events in offset
/// order (see [`KeyedDispatch`]), and the watermarks are committed as they advance.
async fn serve_concurrently<B: Backend, A: Agent>(
    backend: &B,
    delivery: &Arc<Delivery<A>>,
    spec: &AgentSpec,
    source: &mut B::Source,
    stop: &mut watch::Receiver<bool>,
    assignment: &Mutex<Vec<(String, i32)>>,
) -> SessionEnd {
    // Bounded read-ahead: stop polling while this many events wait for their lanes.
    let max_queued = spec.max_in_flight.saturating_mul(8).max(1024);
    let mut dispatch = KeyedDispatch::default();
    let mut tasks: JoinSet<Delivered> = JoinSet::new();
    let mut failed = false;
    let mut last_commit = tokio::time::Instant::now();
    loop {
        let stopping = *stop.borrow() || failed;
        while !stopping && tasks.len() < spec.max_in_flight {
            let Some((event, ticket)) = dispatch.next() else {
                break;
            };
            let (backend, delivery, stop) = (backend.clone(), delivery.clone(), stop.clone());
            tasks.spawn(async move {
                let outcome = delivery.deliver(&backend, &event, &stop).await;
                (event, ticket, outcome)
            });
        }
        if stopping && tasks.is_empty() {
            break;
        }
        if !stopping && tasks.len() < spec.max_in_flight && dispatch.queued() < max_queued {
            // Nothing in flight means nothing queued either (a queued event waits only
            // behind an in-flight one): wait as long as an idle instance does.
            let wait = if tasks.is_empty() {
                spec.poll_wait
            } else {
                Duration::from_millis(5)
            };
            let polled = tokio::select! {
                _ = stop.changed() => continue,
                polled = source.poll(wait) => polled,
            };
            match polled {
                Ok(events) => {
                    dispatch.accept(events);
                    let current = source.assignment();
                    dispatch.retain_assigned(&current);
                    *assignment.lock().unwrap_or_else(|p| p.into_inner()) = current;
                }
                Err(error) => {
                    tracing::warn!(agent = %spec.name, %error, "poll failed");
                    tokio::time::sleep(AFTER_FAILURE).await;
                }
            }
        } else {
            tokio::select! {
                _ = stop.changed(), if !stopping => {}
                Some(joined) = tasks.join_next() => {
                    failed |= !finish(&spec.name, &mut dispatch, joined);
                }
            }
        }
        while let Some(joined) = tasks.try_join_next() {
            failed |= !finish(&spec.name, &mut dispatch, joined);
        }
        let idle = tasks.is_empty() && dispatch.queued() == 0;
        if idle || last_commit.elapsed() >= COMMIT_INTERVAL {
            commit_due(spec, source, &mut dispatch).await;
            last_commit = tokio::time::Instant::now();
        }
    }
    commit_due(spec, source, &mut dispatch).await;
    if failed {
        SessionEnd::Failed
    } else {
        SessionEnd::Stopped
    }
}

/// Records one finished delivery; `false` when the event was not delivered.
fn finish(
    agent: &str,
    dispatch: &mut KeyedDispatch,
    joined: Result<Delivered, tokio::task::JoinError>,
) -> bool {
    match joined {
        Ok((event, ticket, Ok(_))) => {
            dispatch.done(&event, ticket);
            true
        }
        Ok((_, _, Err(error))) => {
            // Its offset stays pending: nothing at or past it is committed.
            tracing::error!(%agent, %error, "delivery failed; will re-read");
            false
        }
        Err(error) => {
            tracing::error!(%agent, %error, "handler task failed; will re-read");
            false
        }
    }
}

async fn commit_due<S: Source>(spec: &AgentSpec, source: &mut S, dispatch: &mut KeyedDispatch) {
    let due = dispatch.commits_due();
    if due.is_empty() {
        return;
    }
    if !commit(&spec.name, source, due).await {
        dispatch.recommit_all();
    }
}

/// Commits `positions`; `false` when the commit failed and is worth retrying. A commit
/// refused by a rebalance is not: the partitions' next owner re-reads from the last
/// committed offsets (at least once).
async fn commit<S: Source>(agent: &str, source: &mut S, positions: Vec<Position>) -> bool {
    match source.commit(positions).await {
        Ok(()) => true,
        Err(CommitError::Rebalanced(reason)) => {
            tracing::debug!(%agent, %reason, "commit refused by a rebalance; records will be redelivered");
            true
        }
        Err(error) => {
            tracing::warn!(%agent, %error, "commit failed");
            false
        }
    }
}

/// The next offset to commit per partition, as a batch's events are done.
#[derive(Default)]
pub(crate) struct Positions(Vec<(Arc<str>, i32, i64)>);

impl Positions {
    /// Everything up to the last of `events` in each partition is done.
    pub(crate) fn advance(&mut self, events: &[Event]) {
        for event in events {
            // Events of one partition come in runs: the last entry is nearly always it.
            let found = match self.0.last_mut() {
                Some(last) if last.1 == event.partition && last.0 == event.topic => Some(last),
                _ => self
                    .0
                    .iter_mut()
                    .find(|(t, p, _)| *p == event.partition && *t == event.topic),
            };
            match found {
                Some(entry) => entry.2 = entry.2.max(event.offset + 1),
                None => self
                    .0
                    .push((event.topic.clone(), event.partition, event.offset + 1)),
            }
        }
    }

    pub(crate) fn into_commit(self) -> Vec<Position> {
        self.0
            .into_iter()
            .map(|(topic, partition, next_offset)| Position {
                topic: topic.to_string(),
                partition,
                next_offset,
            })
            .collect()
    }
}
