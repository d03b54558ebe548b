//! Replies to request/reply tool calls: one background consumer per agent per process
//! reads the agent's reply topic and hands each reply to the call waiting for its
//! `correlation_id`.
//!
//! Why a group subscription ([`Backend::subscribe`]) under a group of its own per
//! process, rather than the agent's group or `read_topic` tailing: a reply must reach
//! the process whose handler sent the request, and nothing ties the reply topic's
//! partitions to that process, so every process reads every reply and keeps those it
//! waits for (a shared group would split them). A subscription long-polls on both
//! backends (the embedded log's watch, librdkafka's fetch) where tailing with
//! `read_topic` would poll a fresh range read at a fixed interval. The group is new at
//! each start and commits nothing, so it starts at the earliest retained reply: a
//! reply written while the process was down (the tool answered a request whose
//! handler then crashed) is still seen and parked among the recent unclaimed replies,
//! where the re-run, which re-sends the same correlation id, finds it even if the tool
//! deduplicates and does not answer again. Keep the reply topic's retention short.
//!
//! The listener holds only a weak reference to the routing table: it ends, and leaves
//! its group, once the agent that owns the table is gone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::backend::{Backend, Source};
use crate::event::Event;

/// Header naming the topic a tool must reply to.
pub const REPLY_TO: &str = "reply_to";
/// Header pairing a request with its reply.
pub const CORRELATION_ID: &str = "correlation_id";
/// Header a tool sets on a reply to report a failure (its value is the message).
pub const TOOL_ERROR: &str = "tool.error";

/// Unclaimed replies remembered for a late (re-run) call, oldest dropped first.
const UNCLAIMED: usize = 1024;

/// A tool's answer: its payload (the envelope's data, else the value as JSON, else as
/// text) or the failure it reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The answer.
    pub value: Value,
    /// The `tool.error` header, when the tool failed.
    pub error: Option<String>,
}

impl Reply {
    fn of(event: &Event) -> Reply {
        let value = match event.envelope() {
            Some(envelope) => envelope.data,
            None => match event.value.as_deref() {
                None => Value::Null,
                Some(bytes) => serde_json::from_slice(bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned())),
            },
        };
        Reply {
            value,
            error: event.header_str(TOOL_ERROR).map(str::to_string),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    waiting: HashMap<String, oneshot::Sender<Reply>>,
    unclaimed: VecDeque<(String, Reply)>,
}

impl Table {
    fn deliver(&mut self, correlation_id: String, reply: Reply) {
        match self.waiting.remove(&correlation_id) {
            Some(waiter) => {
                // The call may have timed out just now; then the reply is simply late.
                let _ = waiter.send(reply);
            }
            None => {
                if self.unclaimed.len() >= UNCLAIMED {
                    self.unclaimed.pop_front();
                }
                self.unclaimed.push_back((correlation_id, reply));
            }
        }
    }
}

/// Routes replies on one agent's reply topic to the calls waiting for them.
#[derive(Debug, Clone)]
pub struct Replies {
    table: Arc<Mutex<Table>>,
}

/// A call waiting for its reply; dropping it (timeout, cancelled handler) stops waiting.
#[derive(Debug)]
pub struct Waiter {
    correlation_id: String,
    table: Arc<Mutex<Table>>,
    receiver: oneshot::Receiver<Reply>,
}

impl Waiter {
    /// The reply, or `None` when none came within `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Option<Reply> {
        tokio::time::timeout(timeout, &mut self.receiver)
            .await
            .ok()
            .and_then(Result::ok)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        lock(&self.table).waiting.remove(&self.correlation_id);
    }
}

fn lock(table: &Mutex<Table>) -> std::sync::MutexGuard<'_, Table> {
    table.lock().unwrap_or_else(|p| p.into_inner())
}

impl Replies {
    /// Starts the listener for `agent`'s reply `topic` (which must exist).
    pub fn start<B: Backend>(backend: B, agent: &str, topic: &str) -> Replies {
        let table = Arc::new(Mutex::new(Table::default()));
        let group = format!("{agent}.replies.{}", uuid::Uuid::new_v4().simple());
        tokio::spawn(listen(
            backend,
            group,
            topic.to_string(),
            Arc::downgrade(&table),
        ));
        Replies { table }
    }

    /// Registers a call before its request is sent, so no reply can slip past; a
    /// reply that already came (to an earlier run of the same call) is handed over
    /// at once.
    pub fn register(&self, correlation_id: &str) -> Waiter {
        let (sender, receiver) = oneshot::channel();
        let mut table = lock(&self.table);
        match table
            .unclaimed
            .iter()
            .position(|(id, _)| id == correlation_id)
        {
            Some(at) => {
                if let Some((_, reply)) = table.unclaimed.remove(at) {
                    let _ = sender.send(reply);
                }
            }
            None => {
                table.waiting.insert(correlation_id.to_string(), sender);
            }
        }
        Waiter {
            correlation_id: correlation_id.to_string(),
            table: self.table.clone(),
            receiver,
        }
    }
}

async fn listen<B: Backend>(backend: B, group: String, topic: String, table: Weak<Mutex<Table>>) {
    let topics = [topic];
    'member: while table.strong_count() > 0 {
        let mut source = match backend.subscribe(&group, &topics, &group).await {
            Ok(source) => source,
            Err(error) => {
                tracing::warn!(%group, %error, "reply listener cannot join; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        loop {
            let events = match source.poll(Duration::from_millis(200)).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(%group, %error, "reply listener poll failed; rejoining");
                    source.close().await;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue 'member;
                }
            };
            let Some(table) = table.upgrade() else {
                break;
            };
            let mut table = lock(&table);
            for event in &events {
                if let Some(id) = event.header_str(CORRELATION_ID) {
                    table.deliver(id.to_string(), Reply::of(event));
                }
            }
        }
        source.close().await;
        break;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_by_correlation_id_and_parks_early_replies() {
        let replies = Replies {
            table: Arc::new(Mutex::new(Table::default())),
        };
        let reply = |n: i64| Reply {
            value: Value::from(n),
            error: None,
        };
        let first = replies.register("a");
        lock(&replies.table).deliver("b".to_string(), reply(2));
        lock(&replies.table).deliver("a".to_string(), reply(1));
        assert_eq!(first.wait(Duration::from_secs(5)).await, Some(reply(1)));
        // "b" came before anyone waited (a re-run): it is waiting for its caller.
        let late = replies.register("b");
        assert_eq!(late.wait(Duration::from_secs(5)).await, Some(reply(2)));
        let never = replies.register("c");
        assert_eq!(never.wait(Duration::from_millis(10)).await, None);
        assert!(
            lock(&replies.table).waiting.is_empty(),
            "timed-out waiters are removed"
        );
    }
}
