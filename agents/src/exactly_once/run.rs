//! The loop of one exactly-once instance: a transactional producer and a group member,
//! every batch one transaction; any failure aborts, re-initialises and rejoins.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use super::{Transaction, TxnError};
use crate::agent::Agent;
use crate::backend::{Backend, Source};
use crate::delivery::Delivery;
use crate::rejoin;
use crate::runtime::AgentSpec;
use crate::stream::Positions;

/// How long an instance waits before initialising or joining again after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Runs one instance until `stop`: (re)initialises its transactional producer,
/// joins the group and serves batches as transactions.
pub(crate) async fn run_instance<B: Backend, A: Agent>(
    backend: B,
    delivery: Arc<Delivery<A>>,
    spec: AgentSpec,
    client_id: String,
    transactional_id: String,
    mut stop: watch::Receiver<bool>,
    assignment: Arc<Mutex<Vec<(String, i32)>>>,
) {
    // The producer first: initialising it aborts what an earlier incarnation left open,
    // which a member taking over those partitions would otherwise wait for.
    let initialise = || backend.transactional(&transactional_id);
    while let Some(txn) = rejoin::until_stopped(
        &mut stop,
        &spec.name,
        "cannot initialise the transactional producer",
        RETRY_AFTER,
        initialise,
    )
    .await
    {
        let join = || backend.subscribe(&spec.group, &spec.topics, &client_id);
        let joined = rejoin::until_stopped(
            &mut stop,
            &spec.name,
            "cannot join group",
            RETRY_AFTER,
            join,
        )
        .await;
        let Some(mut source) = joined else {
            txn.close().await;
            break;
        };
        let stopped = serve(&txn, &delivery, &spec, &mut source, &mut stop, &assignment).await;
        source.close().await;
        txn.close().await;
        if stopped {
            break;
        }
        tokio::time::sleep(RETRY_AFTER).await;
    }
    assignment.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

/// Serves batches, each one transaction, until stopped (`true`) or a transaction fails
/// (`false`: its work was aborted; rejoin and read again from the committed offsets).
async fn serve<S: Source, T: Transaction<S>, A: Agent>(
    txn: &T,
    delivery: &Delivery<A>,
    spec: &AgentSpec,
    source: &mut S,
    stop: &mut watch::Receiver<bool>,
    assignment: &Mutex<Vec<(String, i32)>>,
) -> bool {
    loop {
        let polled = tokio::select! {
            _ = stop.changed() => return true,
            polled = source.poll(spec.poll_wait) => polled,
        };
        let events = match polled {
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(agent = %spec.name, %error, "poll failed");
                tokio::time::sleep(RETRY_AFTER).await;
                continue;
            }
        };
        *assignment.lock().unwrap_or_else(|p| p.into_inner()) = source.assignment();
        for batch in events.chunks(spec.max_batch.max(1)) {
            if *stop.borrow() {
                return true;
            }
            if let Err(error) = txn.begin() {
                tracing::warn!(agent = %spec.name, %error, "cannot begin a transaction");
                return false;
            }
            let (delivered, undelivered) = match delivery.deliver_batch(txn, batch, stop).await {
                Ok(()) => (batch.len(), None),
                Err(partial) => (partial.delivered, Some(partial.error)),
            };
            let mut positions = Positions::default();
            positions.advance(batch.get(..delivered).unwrap_or_default());
            if let Err(error) = txn.commit(source, positions.into_commit()).await {
                log_abort(&spec.name, &error);
                txn.abort().await;
                return false;
            }
            if let Some(error) = undelivered {
                tracing::error!(agent = %spec.name, %error, "delivery failed; will re-read");
                return false;
            }
        }
    }
}

fn log_abort(agent: &str, error: &TxnError) {
    match error {
        TxnError::Rebalanced(_) => {
            tracing::debug!(%agent, %error, "transaction aborted by a rebalance; its records will be redelivered")
        }
        _ => tracing::warn!(%agent, %error, "transaction aborted; its records will be redelivered"),
    }
}
