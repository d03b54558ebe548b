//! The `aggregate` agent: fan-in by correlation id, with a background ticker for
//! timeouts.
//!
//! Why it writes its state and its joined events itself (through the backend) instead
//! of through the [`Context`]: a join is finished either by a handler or by the ticker,
//! which runs outside any handler, and both must leave the state topic saying the same
//! thing. So every result is durable in the state topic before its handler returns
//! (and so before its offset is committed), and a finished join is written in the
//! order output, then tombstones and `done` marker: a crash in between leaves a
//! complete or expired join in the state topic, which the ticker emits again after the
//! restart (at least once, like every emit). The in-memory table is this process's
//! working copy, restored from the state topic at start and refreshed from it before
//! the ticker expires anything, so joins finished or extended by another process are
//! not emitted twice or short.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};

use super::join::{self, Loaded, Pending};
use super::Options;
use crate::agent::{Agent, Context, HandlerError};
use crate::backend::{Backend, ProduceError, ReadError, StartAt};
use crate::delivery::decisions_topic;
use crate::envelope::Envelope;
use crate::event::{now_ms, Event};
use crate::state::{state_topic, RestoreError};

/// Header carrying the number of results of a fan-out.
pub const FANOUT_COUNT: &str = "fanout.count";
/// Header carrying a result's position in its fan-out.
pub const FANOUT_INDEX: &str = "fanout.index";
/// Header carrying the correlation id.
pub const CORRELATION_ID: &str = "correlation_id";

#[derive(Debug, Default)]
struct Table {
    pending: HashMap<String, Pending>,
    done: HashMap<String, i64>,
}

#[derive(Debug)]
struct Inner<B: Backend> {
    name: String,
    backend: B,
    options: Options,
    table: Mutex<Table>,
}

/// The `aggregate` kind: see the module documentation of `crate::workflow`.
#[derive(Debug)]
pub struct Aggregate<B: Backend> {
    inner: Arc<Inner<B>>,
}

/// Every join in `agent`'s state topic.
async fn load<B: Backend>(backend: &B, agent: &str) -> Result<Loaded, ReadError> {
    let events = backend
        .read_topic(&state_topic(agent), StartAt::Earliest)
        .await?
        .collect_all()
        .await?;
    Ok(Loaded::from_records(events))
}

impl<B: Backend> Aggregate<B> {
    /// Restores the agent's joins from its state topic (creating it, compacted, when
    /// missing), deletes results left behind by joins that had finished, and starts
    /// the ticker, which lives as long as the returned agent.
    pub async fn restore(
        backend: B,
        name: &str,
        options: Options,
    ) -> Result<Aggregate<B>, RestoreError> {
        let topic = state_topic(name);
        backend.ensure_topic(&topic, 1, true).await?;
        let loaded = load(&backend, name).await?;
        if !loaded.orphans.is_empty() {
            let tombstones = loaded.orphans.into_iter().map(join::tombstone).collect();
            if let Err(error) = backend.produce(&topic, tombstones).await {
                // Harmless: they are recognised as orphans again at the next start.
                tracing::warn!(agent = %name, %error, "cannot delete results of finished joins");
            }
        }
        let tick = (options.timeout / 4).clamp(Duration::from_millis(50), Duration::from_secs(1));
        let inner = Arc::new(Inner {
            name: name.to_string(),
            backend,
            options,
            table: Mutex::new(Table {
                pending: loaded.pending,
                done: loaded.done,
            }),
        });
        tokio::spawn(ticker(Arc::downgrade(&inner), tick));
        Ok(Aggregate { inner })
    }

    /// Results waiting for the rest of their join in this process, by correlation id.
    pub fn pending(&self) -> usize {
        self.inner.lock().pending.len()
    }
}

async fn ticker<B: Backend>(inner: Weak<Inner<B>>, period: Duration) {
    loop {
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        inner.expire().await;
    }
}

impl<B: Backend> Inner<B> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Emits the join of `correlation_id` (complete or not) and closes it. On failure
    /// the join stays pending, to be finished by a retry or the ticker.
    async fn finish(&self, correlation_id: &str) -> Result<(), ProduceError> {
        let Some(join) = self.lock().pending.get(correlation_id).cloned() else {
            return Ok(());
        };
        let data = join.joined(correlation_id);
        let trace = Some(join.trace_id.clone()).filter(|t| !t.is_empty());
        let envelope = Envelope::new(&self.options.event_type, &self.name, trace, data);
        let mut record =
            envelope.to_record(Some(Bytes::copy_from_slice(correlation_id.as_bytes())));
        record.headers.push((
            CORRELATION_ID.to_string(),
            Bytes::copy_from_slice(correlation_id.as_bytes()),
        ));
        let at = now_ms();
        let written = async {
            self.backend
                .produce(&self.options.output_topic, vec![record])
                .await?;
            // Audited like a handler's decision, whoever finished the join.
            let details = json!({
                "correlation_id": correlation_id,
                "results": join.results.len(),
                "complete": join.complete(),
            });
            let decision = Envelope::new(
                "decision",
                &self.name,
                Some(join.trace_id.clone()).filter(|t| !t.is_empty()),
                json!({ "decision": "joined", "details": details }),
            );
            self.backend
                .produce(&decisions_topic(&self.name), vec![decision.to_record(None)])
                .await?;
            let closing = join::finish_records(correlation_id, join.results.keys(), at);
            self.backend
                .produce(&state_topic(&self.name), closing)
                .await
        }
        .await;
        let mut table = self.lock();
        match written {
            Ok(()) => {
                table.pending.remove(correlation_id);
                table.done.insert(correlation_id.to_string(), at);
                Ok(())
            }
            Err(error) => {
                if let Some(join) = table.pending.get_mut(correlation_id) {
                    join.emitting = false;
                }
                Err(error)
            }
        }
    }

    /// Finishes every join that is complete or past its timeout, and forgets `done`
    /// markers past their retention.
    async fn expire(&self) {
        let now = now_ms();
        let timeout = self.options.timeout.as_millis() as i64;
        let due: Vec<String> = {
            let mut table = self.lock();
            table
                .pending
                .iter_mut()
                .filter(|(_, j)| !j.emitting && (j.complete() || now - j.first_ms >= timeout))
                .map(|(id, j)| {
                    j.emitting = true;
                    id.clone()
                })
                .collect()
        };
        if !due.is_empty() {
            match load(&self.backend, &self.name).await {
                Ok(fresh) => self.refresh(&due, fresh),
                Err(error) => {
                    tracing::warn!(agent = %self.name, %error, "cannot refresh joins; retrying at the next tick");
                    let mut table = self.lock();
                    for id in &due {
                        if let Some(join) = table.pending.get_mut(id) {
                            join.emitting = false;
                        }
                    }
                    return;
                }
            }
            for id in &due {
                if let Err(error) = self.finish(id).await {
                    tracing::warn!(agent = %self.name, correlation_id = %id, %error, "cannot emit join; retrying at the next tick");
                }
            }
        }
        let retention = self.options.done_retention.as_millis() as i64;
        let forgotten: Vec<String> = {
            let mut table = self.lock();
            let old: Vec<String> = table
                .done
                .iter()
                .filter(|(_, at)| now - **at >= retention)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &old {
                table.done.remove(id);
            }
            old
        };
        if !forgotten.is_empty() {
            let tombstones = forgotten
                .iter()
                .map(|id| join::tombstone(join::done_key(id)))
                .collect();
            if let Err(error) = self
                .backend
                .produce(&state_topic(&self.name), tombstones)
                .await
            {
                // The markers stay in the topic until a restart forgets them again.
                tracing::warn!(agent = %self.name, %error, "cannot delete done markers");
            }
        }
    }

    /// Merges what the state topic says about `due` joins (written by other processes)
    /// into this process's copies.
    fn refresh(&self, due: &[String], fresh: Loaded) {
        let mut table = self.lock();
        for id in due {
            if let Some(at) = fresh.done.get(id) {
                table.pending.remove(id);
                table.done.insert(id.clone(), *at);
            } else if let (Some(join), Some(durable)) =
                (table.pending.get_mut(id), fresh.pending.get(id))
            {
                join.first_ms = join.first_ms.min(durable.first_ms);
                join.count = join.count.or(durable.count);
                for (slot, result) in &durable.results {
                    join.results
                        .entry(slot.clone())
                        .or_insert_with(|| result.clone());
                }
            }
        }
    }

    fn correlation_id(&self, event: &Event, payload: &Value) -> Option<String> {
        match &self.options.correlation_field {
            None => event.header_str(CORRELATION_ID).map(str::to_string),
            Some(path) => {
                let mut node = payload;
                for part in path.split('.') {
                    node = node.get(part)?;
                }
                match node {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                }
            }
        }
    }
}

impl<B: Backend> Agent for Aggregate<B> {
    fn kind(&self) -> &str {
        "aggregate"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let inner = &self.inner;
        let payload = event.payload();
        let correlation_id = inner.correlation_id(event, &payload).ok_or_else(|| {
            HandlerError::new(match &inner.options.correlation_field {
                Some(path) => format!("no correlation id at `{path}`"),
                None => "no correlation_id header".to_string(),
            })
        })?;
        let number = |name: &str| {
            event
                .header_str(name)
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let count = inner
            .options
            .count
            .or(number(FANOUT_COUNT).map(|c| c as usize));
        let slot = join::slot(number(FANOUT_INDEX), event);
        let (write, finish) = {
            let mut table = inner.lock();
            if table.done.contains_key(&correlation_id) {
                ctx.metric("late_results", 1);
                return Ok(());
            }
            let join = table
                .pending
                .entry(correlation_id.clone())
                .or_insert_with(|| Pending {
                    first_ms: now_ms(),
                    count,
                    trace_id: ctx.trace_id().to_string(),
                    results: Default::default(),
                    emitting: false,
                });
            join.count = join.count.or(count);
            let write = if join.results.contains_key(&slot) {
                ctx.metric("duplicate_results", 1);
                None
            } else {
                join.results.insert(slot.clone(), payload.clone());
                Some(join::result_record(&correlation_id, &slot, join, &payload))
            };
            // A retried duplicate may find its join complete but never emitted.
            let finish = join.complete() && !join.emitting;
            if finish {
                join.emitting = true;
            }
            (write, finish)
        };
        if let Some(record) = write {
            if let Err(error) = inner
                .backend
                .produce(&state_topic(&inner.name), vec![record])
                .await
            {
                let mut table = inner.lock();
                if let Some(join) = table.pending.get_mut(&correlation_id) {
                    join.results.remove(&slot);
                    if finish {
                        join.emitting = false;
                    }
                }
                return Err(HandlerError::unavailable(format!(
                    "writing the partial join: {error}"
                )));
            }
        }
        if finish {
            inner
                .finish(&correlation_id)
                .await
                .map_err(|e| HandlerError::unavailable(format!("emitting the join: {e}")))?;
        }
        Ok(())
    }
}
