//! Delivering a batch of events: the agent handles them all through one [`Context`]
//! ([`Agent::handle_batch`]), then their outputs are written together (one append per
//! output partition, one durable wait) and the batch is done. Per event that leaves the
//! handler's own work: no context, no produce call and no durable wait of its own.
//!
//! Failures keep the per-event semantics of [`Delivery::deliver`]: a failed event is
//! retried on its own with backoff inside the batch and finally dead-lettered (its
//! dead-letter record joins the batch's outputs); a batch whose outputs cannot be
//! written is delivered again event by event, where a write failure counts against the
//! event as before.

use std::time::Instant;

use tokio::sync::watch;

use crate::agent::{Agent, BatchError, Context, HandlerError};
use crate::backend::Sink;
use crate::delivery::{stopped, AfterFailure, Delivery, DeliveryError, NotDelivered, Tally};
use crate::event::{Event, OutRecord};
use crate::metrics::inc;

/// A batch was delivered only in part: `delivered` events (a prefix) are done and
/// durable, the next one could not be delivered (see [`DeliveryError`]).
#[derive(Debug)]
pub(crate) struct PartialBatch {
    /// Events at the start of the batch that are done.
    pub(crate) delivered: usize,
    /// Why the next one is not.
    pub(crate) error: DeliveryError,
}

/// What handling a batch (before its write) came to.
enum Handled {
    /// Every event is handled or dead-lettered; their outputs are in the context.
    All,
    /// The events before this index are; the one at it could not be delivered.
    Until(usize, DeliveryError),
    /// The handler failed without marking its events: outputs cannot be attributed.
    Unattributable,
}

impl<A: Agent> Delivery<A> {
    /// Delivers `events` as one batch: every event handled or dead-lettered and all
    /// outputs durable, or a prefix of them when one cannot be delivered.
    pub(crate) async fn deliver_batch<S: Sink>(
        &self,
        sink: &S,
        events: &[Event],
        stop: &watch::Receiver<bool>,
    ) -> Result<(), PartialBatch> {
        if events.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let mut ctx = Context::new(
            self.agent_id.clone(),
            None,
            1,
            self.state.clone(),
            self.metrics.clone(),
        );
        let mut dead_letters = Vec::new();
        let (delivered, undelivered) = match self
            .handle_all(events, &mut ctx, stop, &mut dead_letters)
            .await
        {
            Handled::All => (events.len(), None),
            Handled::Until(index, error) => (index, Some(error)),
            Handled::Unattributable => return self.deliver_each(sink, events, stop).await,
        };
        let Context {
            emits,
            decisions,
            state_writes,
            ..
        } = ctx;
        let dead_lettered = dead_letters.len() as u64;
        if let Err(error) = self
            .write(sink, emits, dead_letters, decisions, state_writes)
            .await
        {
            tracing::warn!(agent = %self.agent_id, %error, events = delivered, "batch outputs not written; delivering its events one by one");
            return self
                .deliver_each(sink, &events[..delivered], stop)
                .await
                .and(match undelivered {
                    Some(error) => Err(PartialBatch { delivered, error }),
                    None => Ok(()),
                });
        }
        let count = delivered as u64;
        inc(&self.metrics.dead_lettered, dead_lettered);
        inc(
            &self.metrics.events_processed,
            count.saturating_sub(dead_lettered),
        );
        if count > 0 {
            self.metrics
                .observe_latencies(started.elapsed() / delivered as u32, count);
        }
        match undelivered {
            Some(error) => Err(PartialBatch { delivered, error }),
            None => Ok(()),
        }
    }

    /// Runs the handler over the batch, retrying and dead-lettering failed events in
    /// place; undecodable events go straight to their dead-letter record.
    async fn handle_all(
        &self,
        events: &[Event],
        ctx: &mut Context,
        stop: &watch::Receiver<bool>,
        dead_letters: &mut Vec<(String, OutRecord)>,
    ) -> Handled {
        let mut next = 0;
        while next < events.len() {
            let end = events[next..]
                .iter()
                .position(|e| e.undecodable.is_some())
                .map_or(events.len(), |i| next + i);
            if next == end {
                // `events[next]` is an undecodable batch: no handler can use it.
                let event = &events[next];
                let reason = event.undecodable.as_deref().unwrap_or_default();
                inc(&self.metrics.errors, 1);
                tracing::warn!(agent = %self.agent_id, topic = %event.topic, partition = event.partition, offset = event.offset, %reason, "undecodable batch sent to the dead-letter topic");
                let error = HandlerError::new(format!("undecodable batch: {reason}"));
                dead_letters.push(self.dead_letter_record(event, &error, 0));
                next += 1;
                continue;
            }
            ctx.started = 0;
            let Err(BatchError { index, error }) =
                self.agent.handle_batch(&events[next..end], ctx).await
            else {
                next = end;
                continue;
            };
            if ctx.started != index + 1 || next + index >= end {
                return Handled::Unattributable;
            }
            let failed = next + index;
            match self.retry(&events[failed], error, ctx, stop).await {
                Ok(None) => {}
                Ok(Some(dead)) => dead_letters.push(dead),
                Err(error) => return Handled::Until(failed, error),
            }
            next = failed + 1;
        }
        Handled::All
    }

    /// Retries one failed event of a batch as [`Delivery::deliver`] would, its outputs
    /// added to the batch's context; after the last attempt, its dead-letter record.
    async fn retry(
        &self,
        event: &Event,
        first: HandlerError,
        ctx: &mut Context,
        stop: &watch::Receiver<bool>,
    ) -> Result<Option<(String, OutRecord)>, DeliveryError> {
        // Every attempt continues the trace the first one had.
        let trace = ctx.trace_id().to_string();
        ctx.discard_current();
        let mut tally = Tally::new(&self.retry);
        let mut attempt = 1;
        let mut error = first;
        loop {
            let waits = match self.after_failure(event, attempt, &error, &mut tally, stop) {
                AfterFailure::Retry(waits) => waits,
                AfterFailure::Stop => {
                    return Err(self.undelivered(event, NotDelivered::Stopped(error.message)))
                }
                AfterFailure::GiveUp => {
                    return Ok(Some(self.dead_letter_record(
                        event,
                        &error,
                        tally.max_attempts,
                    )))
                }
            };
            inc(&self.metrics.retries, 1);
            tokio::select! {
                _ = tokio::time::sleep(self.retry.backoff(waits)) => {}
                _ = stopped(stop.clone()) => {}
            }
            attempt += 1;
            ctx.start_event(event);
            ctx.set_trace(trace.clone());
            ctx.set_attempt(attempt);
            let result = self.agent.handle(event, ctx).await;
            ctx.set_attempt(1);
            match result {
                Ok(()) => return Ok(None),
                Err(next) => {
                    ctx.discard_current();
                    error = next;
                }
            }
        }
    }

    /// The events one by one through [`Delivery::deliver`], each written on its own:
    /// the fallback when a batch's outputs could not be written or attributed.
    async fn deliver_each<S: Sink>(
        &self,
        sink: &S,
        events: &[Event],
        stop: &watch::Receiver<bool>,
    ) -> Result<(), PartialBatch> {
        for (delivered, event) in events.iter().enumerate() {
            if let Err(error) = self.deliver(sink, event, stop).await {
                return Err(PartialBatch { delivered, error });
            }
        }
        Ok(())
    }
}
