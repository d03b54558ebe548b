//! Queue delivery (`delivery = "queue"`): an agent's instances are members of a share
//! group (KIP-932) instead of a consumer group. Each instance acquires as many events
//! as it has free slots (`max_in_flight`), from any partition, and acknowledges each
//! once it is handled (accept), dead-lettered (reject) or could not be delivered
//! (release, for another instance). No partition is owned, so the swarm can be larger
//! than the partition count, and a slow event holds back nothing but itself: the fit
//! for slow LLM calls.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlog_broker::share::partition::AckType;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::agent::{Agent, HandlerError};
use crate::backend::queue::{QueueSource, QueuedEvent};
use crate::backend::Backend;
use crate::delivery::{Delivery, DeliveryError, Outcome};
use crate::event::Event;
use crate::rejoin::{self, REJOIN_AFTER};
use crate::runtime::AgentSpec;

/// How an agent's instances share its input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliveryMode {
    /// A consumer group: partitions are divided among instances, offsets committed in
    /// order (the default).
    #[default]
    Stream,
    /// A share group: events are acquired and acknowledged one by one.
    Queue,
}

impl DeliveryMode {
    /// Reads `delivery = "stream" | "queue"`.
    pub fn parse(text: &str) -> Option<DeliveryMode> {
        match text {
            "stream" => Some(DeliveryMode::Stream),
            "queue" => Some(DeliveryMode::Queue),
            _ => None,
        }
    }
}

type Handled = (Event, Result<Outcome, DeliveryError>);

/// One instance of a queue agent: joins the share group, handles and acknowledges
/// events until stopped, then finishes what it holds and leaves.
pub(crate) async fn run_queue_instance<B: Backend, A: Agent>(
    backend: B,
    delivery: Arc<Delivery<A>>,
    spec: AgentSpec,
    client_id: String,
    mut stop: watch::Receiver<bool>,
    assignment: Arc<Mutex<Vec<(String, i32)>>>,
) {
    let join = || backend.queue(&spec.group, &spec.topics, &client_id);
    while let Some(mut source) = rejoin::until_stopped(
        &mut stop,
        &spec.name,
        "cannot join share group",
        REJOIN_AFTER,
        join,
    )
    .await
    {
        serve(
            &backend,
            &delivery,
            &spec,
            &mut source,
            &mut stop,
            &assignment,
        )
        .await;
        source.close();
    }
    assignment.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

async fn serve<B: Backend, A: Agent>(
    backend: &B,
    delivery: &Arc<Delivery<A>>,
    spec: &AgentSpec,
    source: &mut QueueSource,
    stop: &mut watch::Receiver<bool>,
    assignment: &Mutex<Vec<(String, i32)>>,
) {
    let slots = spec.max_in_flight.max(1);
    let mut tasks: JoinSet<Handled> = JoinSet::new();
    loop {
        let stopping = *stop.borrow();
        if stopping && tasks.is_empty() {
            return;
        }
        if !stopping && tasks.len() < slots {
            let wait = if tasks.is_empty() {
                spec.poll_wait
            } else {
                Duration::from_millis(5)
            };
            let polled = tokio::select! {
                _ = stop.changed() => continue,
                polled = source.poll(slots - tasks.len(), wait) => polled,
            };
            match polled {
                Ok(events) => {
                    *assignment.lock().unwrap_or_else(|p| p.into_inner()) = source.assignment();
                    for queued in events {
                        spawn(
                            &mut tasks,
                            backend,
                            delivery,
                            stop,
                            source.delivery_limit(),
                            queued,
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(agent = %spec.name, %error, "share poll failed");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        } else if let Some(joined) = tasks.join_next().await {
            acknowledge(spec, source, joined).await;
        }
        while let Some(joined) = tasks.try_join_next() {
            acknowledge(spec, source, joined).await;
        }
    }
}

fn spawn<B: Backend, A: Agent>(
    tasks: &mut JoinSet<Handled>,
    backend: &B,
    delivery: &Arc<Delivery<A>>,
    stop: &watch::Receiver<bool>,
    limit: i16,
    queued: QueuedEvent,
) {
    let (backend, delivery, stop) = (backend.clone(), delivery.clone(), stop.clone());
    tasks.spawn(async move {
        let QueuedEvent { event, deliveries } = queued;
        // Delivered the last time the group allows, after earlier deliveries that were
        // never acknowledged (instances crashed or stalled on it): a poison pill, which
        // goes to the dead-letter topic instead of being run once more.
        let outcome = if deliveries >= limit && deliveries > 1 {
            let error = HandlerError::new(format!(
                "delivered {deliveries} times without an acknowledgement \
                 (group.share.delivery.count.limit)"
            ));
            delivery
                .dead_letter_durably(
                    &backend,
                    &event,
                    &error,
                    u32::from(deliveries.unsigned_abs()),
                )
                .await
        } else {
            delivery.deliver(&backend, &event, &stop).await
        };
        (event, outcome)
    });
}

async fn acknowledge(
    spec: &AgentSpec,
    source: &QueueSource,
    joined: Result<Handled, tokio::task::JoinError>,
) {
    let (event, outcome) = match joined {
        Ok(done) => done,
        Err(error) => {
            // Its lock times out and another delivery follows.
            tracing::error!(agent = %spec.name, %error, "handler task failed");
            return;
        }
    };
    let ack = match outcome {
        Ok(Outcome::Handled) => AckType::Accept,
        Ok(Outcome::DeadLettered) => AckType::Reject,
        Err(error) => {
            tracing::warn!(agent = %spec.name, %error, "event not delivered; released for another delivery");
            AckType::Release
        }
    };
    if let Err(error) = source.acknowledge(&event, ack).await {
        // Its lock times out and it is delivered again: at least once.
        tracing::warn!(agent = %spec.name, %error, offset = event.offset, "acknowledgement failed");
    }
}
