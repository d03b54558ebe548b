//! The serving side: [`A2aAgent`] wraps any agent so records on its inbox (and the
//! broadcast topic) are A2A JSON-RPC requests, while every other record reaches the
//! wrapped agent unchanged.
//!
//! A `SendMessage` becomes one event for the wrapped agent: its value is the message's
//! content, its key and `correlation_id` the task id. What the agent emits while
//! handling it is written where it always is and also becomes the task's artifacts.
//! The task runs inside one delivery, so it is terminal when the handler returns: the
//! finished task is kept in the agent's state under `a2a.task.<id>` (durably, with the
//! emits, before the request is committed), which answers `GetTask` and `CancelTask`
//! and makes a redelivered or resent `SendMessage` (same message id, so the same task
//! id) return the recorded task instead of running again.

use bytes::Bytes;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::jsonrpc::{self, Request, Response, RpcError};
use super::types::{
    Artifact, Message, Part, Role, SendMessageRequest, SendMessageResponse, StreamResponse, Task,
    TaskArtifactUpdateEvent, TaskIdParams, TaskState, TaskStatus, TaskStatusUpdateEvent,
};
use super::{A2aSettings, BROADCAST_TOPIC, CORRELATION_ID, DEFAULT_REPLY_TOPIC, KIND, REPLY_TO};
use crate::agent::{Agent, Context, HandlerError};
use crate::backend::Sink;
use crate::envelope::{rfc3339, Envelope};
use crate::event::{now_ms, Event, Header, OutRecord};

/// A2A methods this binding knows but does not serve (answered with
/// `UnsupportedOperationError` rather than `Method not found`).
const UNSUPPORTED: [&str; 8] = [
    "SendStreamingMessage",
    "SubscribeToTask",
    "ListTasks",
    "CreateTaskPushNotificationConfig",
    "GetTaskPushNotificationConfig",
    "ListTaskPushNotificationConfigs",
    "DeleteTaskPushNotificationConfig",
    "GetExtendedAgentCard",
];

/// An agent that also serves A2A requests from its inbox.
#[derive(Debug)]
pub struct A2aAgent<A, S> {
    inner: A,
    /// Writes the `WORKING` status before the task runs (the context's emits only
    /// appear after it), so a requester sees the task start.
    sink: S,
    agent_id: String,
    inbox: String,
    broadcast: bool,
    max_request_bytes: usize,
}

/// Where and how the answers to one request go.
struct ReplyRoute {
    topic: String,
    correlation_id: Option<String>,
}

impl<A: Agent, S: Sink + 'static> A2aAgent<A, S> {
    /// `inner`, serving requests for `agent_id` with `settings`; `sink` is the
    /// backend the agent runs on.
    pub fn new(inner: A, sink: S, agent_id: &str, settings: &A2aSettings) -> A2aAgent<A, S> {
        A2aAgent {
            inner,
            sink,
            agent_id: agent_id.to_string(),
            inbox: super::inbox_topic(agent_id),
            broadcast: settings.broadcast,
            max_request_bytes: settings.max_request_bytes,
        }
    }

    fn is_request(&self, event: &Event) -> bool {
        *event.topic == *self.inbox || (self.broadcast && &*event.topic == BROADCAST_TOPIC)
    }

    /// Answers one request; only an unavailable dependency is an error (retried).
    async fn serve(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let mut route = ReplyRoute {
            topic: DEFAULT_REPLY_TOPIC.to_string(),
            correlation_id: event.header_str(CORRELATION_ID).map(str::to_string),
        };
        let (id, outcome) = match event.header_str(REPLY_TO) {
            Some(topic) if !is_topic_name(topic) => {
                let why = format!("invalid request: reply_to `{topic}` is not a topic name");
                (
                    Value::Null,
                    Err(jsonrpc::RpcError::new(jsonrpc::INVALID_REQUEST, why)),
                )
            }
            reply_to => {
                if let Some(topic) = reply_to {
                    route.topic = topic.to_string();
                }
                match jsonrpc::parse(event.value.as_deref(), self.max_request_bytes) {
                    Err((id, error)) => (id, Err(error)),
                    Ok(request) => {
                        let outcome = self.call(&request, event, ctx, &route).await?;
                        (request.id, outcome)
                    }
                }
            }
        };
        if route.correlation_id.is_none() {
            route.correlation_id = jsonrpc::id_text(&id);
        }
        ctx.metric(
            if outcome.is_ok() {
                "a2a.requests"
            } else {
                "a2a.errors"
            },
            1,
        );
        let task_id = outcome.as_ref().ok().and_then(|(_, task)| task.clone());
        let response = Response::new(id, outcome.map(|(result, _)| result));
        let mut record = reply_record(&response, task_id.as_deref(), "response");
        if let Some(correlation_id) = &route.correlation_id {
            record.headers.push((
                CORRELATION_ID.to_string(),
                Bytes::from(correlation_id.clone()),
            ));
        }
        ctx.emit_raw(&route.topic, record);
        Ok(())
    }

    /// The result of `request` and the task it concerns.
    async fn call(
        &self,
        request: &Request,
        event: &Event,
        ctx: &mut Context,
        route: &ReplyRoute,
    ) -> Result<Result<(Value, Option<String>), RpcError>, HandlerError> {
        let stored = |ctx: &Context| -> Result<(String, Option<Task>), RpcError> {
            let params: TaskIdParams =
                serde_json::from_value(request.params.clone()).map_err(RpcError::invalid_params)?;
            let task = stored_task(ctx, &params.id);
            Ok((params.id, task))
        };
        Ok(match request.method.as_str() {
            "SendMessage" => {
                match serde_json::from_value::<SendMessageRequest>(request.params.clone()) {
                    Err(error) => Err(RpcError::invalid_params(error)),
                    Ok(params) => self
                        .send_message(params.message, request, event, ctx, route)
                        .await?
                        .map(|task| {
                            let id = task.id.clone();
                            (to_json(&SendMessageResponse::Task(task)), Some(id))
                        }),
                }
            }
            "GetTask" => stored(ctx).and_then(|(id, task)| match task {
                Some(task) => Ok((to_json(&task), Some(id))),
                None => Err(RpcError::task_not_found(&id)),
            }),
            // A task is terminal once it is recorded, and unknown before: a task runs
            // within one delivery, so there is never a running one to cancel.
            "CancelTask" => stored(ctx).and_then(|(id, task)| match task {
                Some(task) => Err(RpcError::new(
                    jsonrpc::TASK_NOT_CANCELABLE,
                    format!("task `{id}` is {:?}, which is terminal", task.status.state),
                )),
                None => Err(RpcError::task_not_found(&id)),
            }),
            method if UNSUPPORTED.contains(&method) => Err(RpcError::new(
                jsonrpc::UNSUPPORTED_OPERATION,
                format!("`{method}` is not supported by the Kafka binding"),
            )),
            method => Err(RpcError::new(
                jsonrpc::METHOD_NOT_FOUND,
                format!("method not found: `{method}`"),
            )),
        })
    }

    async fn send_message(
        &self,
        message: Message,
        request: &Request,
        event: &Event,
        ctx: &mut Context,
        route: &ReplyRoute,
    ) -> Result<Result<Task, RpcError>, HandlerError> {
        if let Err(error) = check(&message) {
            return Ok(Err(error));
        }
        if !message.task_id.is_empty() {
            // Every recorded task is terminal, so a follow-up message has nowhere to go.
            return Ok(Err(match stored_task(ctx, &message.task_id) {
                Some(_) => RpcError::new(
                    jsonrpc::UNSUPPORTED_OPERATION,
                    format!("task `{}` is terminal", message.task_id),
                ),
                None => RpcError::task_not_found(&message.task_id),
            }));
        }
        let task_id = task_id(&self.agent_id, &message.message_id);
        if let Some(task) = stored_task(ctx, &task_id) {
            ctx.metric("a2a.duplicates", 1);
            return Ok(Ok(task));
        }
        let context_id = if message.context_id.is_empty() {
            task_id.clone()
        } else {
            message.context_id.clone()
        };
        let working = status_event(&task_id, &context_id, TaskState::Working, None);
        let record = reply_record(
            &stream_response(request, working),
            Some(&task_id),
            "status-update",
        );
        self.sink
            .produce(&route.topic, vec![record])
            .await
            .map_err(|e| HandlerError::unavailable(format!("writing the task's status: {e}")))?;

        let task_event = task_event(event, &message, &task_id, &context_id);
        let mark = (ctx.emits.len(), ctx.decisions.len(), ctx.state_writes.len());
        let (state, artifacts) = match self.inner.handle(&task_event, ctx).await {
            Err(error) if error.unavailable => return Err(error),
            Err(error) => {
                // The task failed: its partial outputs are dropped, as a failed
                // delivery's are, and the failure is the answer.
                ctx.emits.truncate(mark.0);
                ctx.decisions.truncate(mark.1);
                ctx.state_writes.truncate(mark.2);
                let why = Message {
                    role: Role::Agent,
                    ..Message::user(vec![Part::text(error.message)])
                };
                (status(TaskState::Failed, Some(why)), Vec::new())
            }
            Ok(()) => {
                let artifacts = ctx.emits[mark.0..]
                    .iter()
                    .enumerate()
                    .map(|(i, (topic, record))| Artifact {
                        artifact_id: format!("{task_id}.{i}"),
                        name: topic.clone(),
                        parts: vec![part_of(record)],
                    })
                    .collect();
                (status(TaskState::Completed, None), artifacts)
            }
        };
        let task = Task {
            id: task_id.clone(),
            context_id: context_id.clone(),
            status: state,
            artifacts,
            history: vec![message],
        };
        ctx.state_put(&task_key(&task_id), to_json(&task));
        for artifact in &task.artifacts {
            let update = StreamResponse::ArtifactUpdate(TaskArtifactUpdateEvent {
                task_id: task_id.clone(),
                context_id: context_id.clone(),
                artifact: artifact.clone(),
            });
            let record = reply_record(
                &stream_response(request, update),
                Some(&task_id),
                "artifact-update",
            );
            ctx.emit_raw(&route.topic, record);
        }
        let done = status_event(
            &task_id,
            &context_id,
            task.status.state,
            task.status.message.clone(),
        );
        let record = reply_record(
            &stream_response(request, done),
            Some(&task_id),
            "status-update",
        );
        ctx.emit_raw(&route.topic, record);
        Ok(Ok(task))
    }
}

impl<A: Agent, S: Sink + 'static> Agent for A2aAgent<A, S> {
    fn kind(&self) -> &str {
        self.inner.kind()
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        if self.is_request(event) {
            self.serve(event, ctx).await
        } else {
            self.inner.handle(event, ctx).await
        }
    }
}

/// Whether `name` is a topic name Kafka accepts, so a requester's `reply_to` cannot
/// make the answer unwritable (which would stall the inbox instead of answering).
pub(super) fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A message the binding can hand to an agent: an id and at least one part, each with
/// exactly one kind of content.
fn check(message: &Message) -> Result<(), RpcError> {
    if message.message_id.is_empty() {
        return Err(RpcError::invalid_params("message.messageId is empty"));
    }
    if message.parts.is_empty() {
        return Err(RpcError::invalid_params("message.parts is empty"));
    }
    if message.parts.iter().any(|p| p.contents() != 1) {
        return Err(RpcError::invalid_params(
            "each part needs exactly one of text, raw, url or data",
        ));
    }
    Ok(())
}

/// The task a message starts: derived from the agent and the message id, so the same
/// message (redelivered, or resent by a requester retrying) names the same task.
fn task_id(agent_id: &str, message_id: &str) -> String {
    let digest = Sha256::new()
        .chain_update(agent_id.as_bytes())
        .chain_update([0])
        .chain_update(message_id.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Uuid::from_bytes(bytes).to_string()
}

fn task_key(task_id: &str) -> String {
    format!("a2a.task.{task_id}")
}

fn stored_task(ctx: &Context, task_id: &str) -> Option<Task> {
    serde_json::from_value(ctx.state_get(&task_key(task_id))?).ok()
}

fn status(state: TaskState, message: Option<Message>) -> TaskStatus {
    TaskStatus {
        state,
        message,
        timestamp: Some(rfc3339(now_ms())),
    }
}

fn status_event(
    task_id: &str,
    context_id: &str,
    state: TaskState,
    message: Option<Message>,
) -> StreamResponse {
    StreamResponse::StatusUpdate(TaskStatusUpdateEvent {
        task_id: task_id.to_string(),
        context_id: context_id.to_string(),
        status: status(state, message),
    })
}

/// A task event as the streaming methods of the JSON-RPC binding would send it: a
/// response to the request with a `StreamResponse` result.
fn stream_response(request: &Request, event: StreamResponse) -> Response {
    Response::new(request.id.clone(), Ok(to_json(&event)))
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    // The A2A types are strings, numbers and JSON values: serialising cannot fail.
    serde_json::to_value(value).unwrap_or_default()
}

/// A record for the reply topic, keyed by its task so a task's records stay in order.
fn reply_record(response: &Response, task_id: Option<&str>, kind: &str) -> OutRecord {
    let mut headers = vec![
        (KIND.to_string(), Bytes::from(kind.to_string())),
        (
            "content-type".to_string(),
            Bytes::from_static(b"application/json"),
        ),
    ];
    if let Some(task_id) = task_id {
        headers.push((super::TASK_ID.to_string(), Bytes::from(task_id.to_string())));
    }
    OutRecord {
        key: task_id.map(|id| Bytes::from(id.to_string())),
        value: Some(Bytes::from(
            serde_json::to_vec(response).unwrap_or_default(),
        )),
        headers,
        timestamp: 0,
    }
}

/// The event the wrapped agent handles for a task: the first data part as JSON, else
/// the text parts joined by newlines, else the parts themselves as JSON; the request's
/// trace headers, and the task and context ids.
fn task_event(request: &Event, message: &Message, task_id: &str, context_id: &str) -> Event {
    let value = match message.parts.iter().find_map(|p| p.data.as_ref()) {
        Some(data) => serde_json::to_vec(data).unwrap_or_default(),
        None if message.parts.iter().all(|p| p.text.is_some()) => message
            .parts
            .iter()
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes(),
        None => serde_json::to_vec(&message.parts).unwrap_or_default(),
    };
    let header = |name: &str, value: &str| Header {
        name: Bytes::from(name.to_string()),
        value: Some(Bytes::from(value.to_string())),
    };
    let mut headers: Vec<Header> = request
        .headers
        .iter()
        .filter(|h| [&b"traceparent"[..], b"ce_traceid"].contains(&h.name.as_ref()))
        .cloned()
        .collect();
    headers.push(header(CORRELATION_ID, task_id));
    headers.push(header(super::TASK_ID, task_id));
    headers.push(header("a2a.context_id", context_id));
    headers.push(header("a2a.message_id", &message.message_id));
    Event {
        key: Some(Bytes::from(task_id.to_string())),
        value: Some(Bytes::from(value)),
        headers,
        undecodable: None,
        ..request.clone()
    }
}

/// An emitted record as an artifact part: an envelope's data, JSON as data, anything
/// else as text.
fn part_of(record: &OutRecord) -> Part {
    let value = record.value.as_deref().unwrap_or_default();
    let enveloped = record
        .headers
        .iter()
        .any(|(name, _)| name == "ce_specversion");
    if enveloped {
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(value) {
            return Part::data(envelope.data);
        }
    }
    match serde_json::from_slice::<Value>(value) {
        Ok(data) => Part::data(data),
        Err(_) => Part::text(String::from_utf8_lossy(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_ids_are_stable_per_agent_and_message() {
        assert_eq!(task_id("a", "m"), task_id("a", "m"));
        assert_ne!(task_id("a", "m"), task_id("b", "m"));
        assert_ne!(task_id("a", "m1"), task_id("a", "m"));
        assert!(uuid::Uuid::parse_str(&task_id("a", "m")).is_ok());
    }

    #[test]
    fn reply_to_must_be_a_topic_name() {
        assert!(is_topic_name("a2a.replies.x-1_2"));
        for bad in ["", ".", "..", "a b", "a/b", &"x".repeat(250)] {
            assert!(!is_topic_name(bad), "{bad}");
        }
    }

    #[test]
    fn parts_of_outputs() {
        let envelope = Envelope::new("t", "a", None, json!({"x": 1})).to_record(None);
        assert_eq!(part_of(&envelope).data, Some(json!({"x": 1})));
        let text = OutRecord {
            value: Some(Bytes::from_static(b"plain")),
            ..OutRecord::default()
        };
        assert_eq!(part_of(&text).text.as_deref(), Some("plain"));
    }
}
