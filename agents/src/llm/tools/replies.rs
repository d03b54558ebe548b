//! Replies to request/reply tool calls: one background consumer per agent per process
//! reads the agent's reply topic and hands each reply to the call waiting for its
//! `correlation_id`.
//!
//! The listener follows the reply topic in a group of its own per process
//! ([`crate::backend::follow`]): a reply must reach the process whose handler sent the
//! request, and each process keeps the replies it waits for. It starts at the earliest
//! retained reply: a reply written while the process was down (the tool answered a
//! request whose handler then crashed) is still seen. The latest replies are
//! remembered by correlation id, delivered or not, so a re-run of a call (a retry, a
//! restart), which uses the same correlation id, gets its reply at once instead of
//! asking again and waiting on a tool that deduplicates. Keep the reply topic's
//! retention short: a start reads it all. Records marked as progress (an MCP
//! request's `notifications/progress`) share the correlation id but are not the reply.
//!
//! The listener holds only a weak reference to the routing table: it ends, and leaves
//! its group, once the agent that owns the table is gone.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::oneshot;

use crate::backend::follow::follow;
use crate::backend::Backend;
use crate::event::Event;

/// Header naming the topic a tool must reply to.
pub const REPLY_TO: &str = "reply_to";
/// Header pairing a request with its reply.
pub const CORRELATION_ID: &str = "correlation_id";
/// Header a tool sets on a reply to report a failure (its value is the message).
pub const TOOL_ERROR: &str = "tool.error";

/// The header (name, value) that marks a record on a reply topic as progress of a
/// request rather than its reply (the MCP binding's `mcp.message: notification`).
pub const PROGRESS_MARKER: (&str, &str) = ("mcp.message", "notification");

/// Replies remembered for re-runs of their calls, oldest dropped first.
const RECENT: usize = 1024;

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
        let value = event.payload();
        Reply {
            value,
            error: event.header_str(TOOL_ERROR).map(str::to_string),
        }
    }
}

#[derive(Debug, Default)]
struct Table {
    waiting: HashMap<String, oneshot::Sender<Reply>>,
    /// The latest replies by correlation id, delivered or not, for re-runs.
    recent: HashMap<String, Reply>,
    /// `recent`'s ids, oldest first.
    order: VecDeque<String>,
}

impl Table {
    fn deliver(&mut self, correlation_id: String, reply: Reply) {
        if let Some(waiter) = self.waiting.remove(&correlation_id) {
            // The call may have timed out just now; then the reply is simply late.
            let _ = waiter.send(reply.clone());
        }
        if self.recent.insert(correlation_id.clone(), reply).is_none() {
            self.order.push_back(correlation_id);
            if self.order.len() > RECENT {
                if let Some(oldest) = self.order.pop_front() {
                    self.recent.remove(&oldest);
                }
            }
        }
    }
}

/// Routes replies on one agent's reply topic to the calls waiting for them.
#[derive(Debug, Clone)]
pub struct Replies {
    table: Arc<Mutex<Table>>,
}

#[derive(Debug)]
enum Wait {
    Answered(Reply),
    Pending(oneshot::Receiver<Reply>),
}

/// A call waiting for its reply; dropping it (timeout, cancelled handler) stops waiting.
#[derive(Debug)]
pub struct Waiter {
    correlation_id: String,
    table: Arc<Mutex<Table>>,
    wait: Wait,
}

impl Waiter {
    /// Whether the reply is already here (a re-run of a call that was answered): then
    /// the request need not be sent again.
    pub fn is_answered(&self) -> bool {
        matches!(self.wait, Wait::Answered(_))
    }

    /// The reply, or `None` when none came within `timeout`.
    pub async fn wait(mut self, timeout: Duration) -> Option<Reply> {
        match &mut self.wait {
            Wait::Answered(reply) => Some(reply.clone()),
            Wait::Pending(receiver) => tokio::time::timeout(timeout, receiver)
                .await
                .ok()
                .and_then(Result::ok),
        }
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
        follow(
            backend,
            &format!("{agent}.replies"),
            vec![topic.to_string()],
            Arc::downgrade(&table),
            |table: &Mutex<Table>, events: &[Event]| {
                let mut table = lock(table);
                for event in events {
                    if event.header_str(PROGRESS_MARKER.0) == Some(PROGRESS_MARKER.1) {
                        continue;
                    }
                    if let Some(id) = event.header_str(CORRELATION_ID) {
                        table.deliver(id.to_string(), Reply::of(event));
                    }
                }
            },
        );
        Replies { table }
    }

    /// Registers a call before its request is sent, so no reply can slip past. A
    /// reply that already came (to an earlier run of the same call) is handed over at
    /// once, so a re-run neither waits for a tool that deduplicates nor asks twice.
    pub fn register(&self, correlation_id: &str) -> Waiter {
        let mut table = lock(&self.table);
        let wait = match table.recent.get(correlation_id) {
            Some(reply) => Wait::Answered(reply.clone()),
            None => {
                let (sender, receiver) = oneshot::channel();
                table.waiting.insert(correlation_id.to_string(), sender);
                Wait::Pending(receiver)
            }
        };
        Waiter {
            correlation_id: correlation_id.to_string(),
            table: self.table.clone(),
            wait,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn routes_by_correlation_id_and_remembers_replies_for_re_runs() {
        let replies = Replies {
            table: Arc::new(Mutex::new(Table::default())),
        };
        let reply = |n: i64| Reply {
            value: Value::from(n),
            error: None,
        };
        let first = replies.register("a");
        assert!(!first.is_answered());
        lock(&replies.table).deliver("b".to_string(), reply(2));
        lock(&replies.table).deliver("a".to_string(), reply(1));
        assert_eq!(first.wait(Duration::from_secs(5)).await, Some(reply(1)));
        // A re-run of "a", and "b" whose reply came before anyone waited (a restart):
        // both answered at once, without a new request.
        for (id, n) in [("a", 1), ("b", 2)] {
            let again = replies.register(id);
            assert!(again.is_answered());
            assert_eq!(again.wait(Duration::from_secs(5)).await, Some(reply(n)));
        }
        let never = replies.register("c");
        assert_eq!(never.wait(Duration::from_millis(10)).await, None);
        assert!(
            lock(&replies.table).waiting.is_empty(),
            "timed-out waiters are removed"
        );
        for i in 0..RECENT {
            lock(&replies.table).deliver(format!("x{i}"), reply(0));
        }
        let table = lock(&replies.table);
        assert_eq!((table.recent.len(), table.order.len()), (RECENT, RECENT));
        assert!(
            !table.recent.contains_key("a"),
            "the oldest are forgotten first"
        );
    }
}
