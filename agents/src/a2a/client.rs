//! The requesting side: [`A2aClient`] sends A2A requests to an agent's inbox and
//! waits for the answers on its own reply topic, on any backend, so an agent on one
//! backend can delegate to an agent on another through a shared cluster.
//!
//! Answers are routed by `correlation_id` with the listener request/reply tools use
//! ([`Replies`]): one consumer per client reads the reply topic and hands each
//! response to the call waiting for it. A `SendMessage` uses the message id as its
//! correlation id, so resending the same message (a requester's handler re-run after
//! a crash) finds the recorded answer instead of waiting again; the agent, for its
//! part, does not run a task twice for one message id.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use thiserror::Error;

use super::jsonrpc::{Request, Response, RpcError};
use super::types::{Message, SendMessageResponse, Task};
use super::{inbox_topic, reply_topic, CORRELATION_ID, REPLY_TO};
use crate::backend::{Backend, ProduceError, TopicError};
use crate::event::OutRecord;
use crate::llm::tools::replies::Replies;

/// How long a call waits for its answer unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// An A2A call failed.
#[derive(Debug, Error)]
pub enum CallError {
    /// The request could not be written to the agent's inbox.
    #[error("sending to agent `{agent}`: {source}")]
    Send {
        /// The agent.
        agent: String,
        /// Why.
        source: ProduceError,
    },
    /// No answer came in time (the agent may be down; resending is safe).
    #[error("no answer from agent `{agent}` to {method} within {timeout:?}")]
    Timeout {
        /// The agent.
        agent: String,
        /// The method.
        method: String,
        /// How long the call waited.
        timeout: Duration,
    },
    /// The agent answered with a JSON-RPC error.
    #[error("agent `{agent}`: {error}")]
    Rpc {
        /// The agent.
        agent: String,
        /// Its error.
        error: RpcError,
    },
    /// The answer is not what the method returns.
    #[error("agent `{agent}` answered {method} with something unreadable: {why}")]
    InvalidResponse {
        /// The agent.
        agent: String,
        /// The method.
        method: String,
        /// What is wrong.
        why: String,
    },
}

/// Sends A2A requests for one requester and receives the answers.
#[derive(Debug)]
pub struct A2aClient<B: Backend> {
    backend: B,
    reply_topic: String,
    replies: Replies,
    timeout: Duration,
}

impl<B: Backend> A2aClient<B> {
    /// A client for `requester` (an agent id or any name unique per process group)
    /// whose answers come on `a2a.replies.<requester>`.
    pub async fn start(backend: B, requester: &str) -> Result<A2aClient<B>, TopicError> {
        let reply_topic = reply_topic(requester);
        backend.ensure_topic(&reply_topic, -1, false).await?;
        let replies = Replies::start(backend.clone(), requester, &reply_topic);
        Ok(A2aClient {
            backend,
            reply_topic,
            replies,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// Waits up to `timeout` for each answer.
    pub fn timeout(mut self, timeout: Duration) -> A2aClient<B> {
        self.timeout = timeout;
        self
    }

    /// The topic answers (and task events) arrive on.
    pub fn reply_topic(&self) -> &str {
        &self.reply_topic
    }

    /// Asks `agent` to act on `message`; returns the finished task. Resending the same
    /// message returns the same task without running it again.
    pub async fn send_message(&self, agent: &str, message: Message) -> Result<Task, CallError> {
        let id = message.message_id.clone();
        let result = self
            .call(agent, &id, "SendMessage", json!({ "message": message }))
            .await?;
        match serde_json::from_value(result) {
            Ok(SendMessageResponse::Task(task)) => Ok(task),
            Ok(SendMessageResponse::Message(_)) => {
                Err(invalid(agent, "SendMessage", "a message, not a task"))
            }
            Err(e) => Err(invalid(agent, "SendMessage", e)),
        }
    }

    /// The task `task_id` as `agent` recorded it.
    pub async fn get_task(&self, agent: &str, task_id: &str) -> Result<Task, CallError> {
        self.task_call(agent, "GetTask", task_id).await
    }

    /// Asks `agent` to cancel `task_id`.
    pub async fn cancel_task(&self, agent: &str, task_id: &str) -> Result<Task, CallError> {
        self.task_call(agent, "CancelTask", task_id).await
    }

    async fn task_call(&self, agent: &str, method: &str, task_id: &str) -> Result<Task, CallError> {
        let id = uuid::Uuid::new_v4().to_string();
        let result = self
            .call(agent, &id, method, json!({ "id": task_id }))
            .await?;
        serde_json::from_value(result).map_err(|e| invalid(agent, method, e))
    }

    /// Sends request `id` and waits for its response's result.
    async fn call(
        &self,
        agent: &str,
        id: &str,
        method: &str,
        params: Value,
    ) -> Result<Value, CallError> {
        let waiter = self.replies.register(id);
        if !waiter.is_answered() {
            let request = Request::new(id, method, params);
            let record = OutRecord {
                key: Some(Bytes::from(id.to_string())),
                // Serialising a request of strings and JSON values cannot fail.
                value: Some(Bytes::from(
                    serde_json::to_vec(&request).unwrap_or_default(),
                )),
                headers: vec![
                    (REPLY_TO.to_string(), Bytes::from(self.reply_topic.clone())),
                    (CORRELATION_ID.to_string(), Bytes::from(id.to_string())),
                    (
                        "content-type".to_string(),
                        Bytes::from_static(b"application/json"),
                    ),
                ],
                timestamp: 0,
            };
            self.backend
                .produce(&inbox_topic(agent), vec![record])
                .await
                .map_err(|source| CallError::Send {
                    agent: agent.to_string(),
                    source,
                })?;
        }
        let reply = waiter
            .wait(self.timeout)
            .await
            .ok_or_else(|| CallError::Timeout {
                agent: agent.to_string(),
                method: method.to_string(),
                timeout: self.timeout,
            })?;
        let response: Response =
            serde_json::from_value(reply.value).map_err(|e| invalid(agent, method, e))?;
        match (response.result, response.error) {
            (_, Some(error)) => Err(CallError::Rpc {
                agent: agent.to_string(),
                error,
            }),
            (Some(result), None) => Ok(result),
            (None, None) => Err(invalid(agent, method, "neither result nor error")),
        }
    }
}

fn invalid(agent: &str, method: &str, why: impl std::fmt::Display) -> CallError {
    CallError::InvalidResponse {
        agent: agent.to_string(),
        method: method.to_string(),
        why: why.to_string(),
    }
}
