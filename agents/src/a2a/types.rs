//! The A2A v1.0 data model as JSON (the ProtoJSON form of `specification/a2a.proto`:
//! camelCase fields, enum values by name, a oneof as the one field that is set).
//!
//! Our own serde types, not a crate's: no maintained Rust crate followed the v1.0 proto
//! (the ones published track the 0.x JSON schema, with `kind` discriminators and
//! lower-case states). Only what this binding uses is modelled; unknown fields are
//! ignored on input, as the specification asks, and empty ones omitted on output.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The A2A protocol version this binding implements (`protocolVersion` on the card).
pub const PROTOCOL_VERSION: &str = "1.0";

/// An agent's self-description, published in the registry topic so requesters can
/// discover what it does and where its inbox is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    /// The agent's name (its agent id here).
    pub name: String,
    /// What it does, for humans and for models choosing a delegate.
    pub description: String,
    /// Where and how it is reached, in preference order.
    pub supported_interfaces: Vec<AgentInterface>,
    /// The agent's version (agentlog's version for built-in kinds).
    pub version: String,
    /// Optional protocol features it supports.
    pub capabilities: AgentCapabilities,
    /// Media types it accepts in message parts.
    pub default_input_modes: Vec<String>,
    /// Media types its artifacts carry.
    pub default_output_modes: Vec<String>,
    /// The things it can be asked to do.
    pub skills: Vec<AgentSkill>,
}

/// One way to reach an agent: a binding and an address in that binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentInterface {
    /// The address (here `kafka://<bootstrap>/a2a.<agent-id>`).
    pub url: String,
    /// The binding's identifier (a URI for custom bindings).
    pub protocol_binding: String,
    /// The A2A version spoken over it.
    pub protocol_version: String,
}

/// Optional features; all off here (no streaming RPC, no push notifications: status
/// and artifact events go to the reply topic instead).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCapabilities {
    /// `SendStreamingMessage` / `SubscribeToTask` are served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub streaming: Option<bool>,
    /// Push-notification configs are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub push_notifications: Option<bool>,
}

/// One capability of an agent, as declared in `[agents.a2a]` `skills`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentSkill {
    /// Unique within the agent.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    /// What the skill does.
    #[serde(default)]
    pub description: String,
    /// Keywords for discovery.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Example requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<String>,
}

/// Who sent a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The requester.
    #[serde(rename = "ROLE_USER")]
    User,
    /// The agent doing the task.
    #[serde(rename = "ROLE_AGENT")]
    Agent,
}

/// One piece of message or artifact content: exactly one of `text`, `raw` (base64),
/// `url` or `data` is set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Part {
    /// Plain text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Bytes, base64-encoded (kept encoded: agents receive them as given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
    /// A reference to content elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Structured JSON content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    /// A file name for `raw` or `url` content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    /// The content's media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
}

impl Part {
    /// A text part.
    pub fn text(text: impl Into<String>) -> Part {
        Part {
            text: Some(text.into()),
            ..Part::default()
        }
    }

    /// A structured-data part.
    pub fn data(data: Value) -> Part {
        Part {
            data: Some(data),
            media_type: Some("application/json".to_string()),
            ..Part::default()
        }
    }

    /// How many of the content fields are set (a valid part has exactly one).
    pub fn contents(&self) -> usize {
        usize::from(self.text.is_some())
            + usize::from(self.raw.is_some())
            + usize::from(self.url.is_some())
            + usize::from(self.data.is_some())
    }
}

/// One turn of communication between requester and agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    /// Unique per message, chosen by its sender: the idempotency key of a request.
    pub message_id: String,
    /// The conversation it belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_id: String,
    /// The task it continues, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task_id: String,
    /// Who sent it.
    pub role: Role,
    /// Its content.
    pub parts: Vec<Part>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

impl Message {
    /// A requester's message with a fresh id.
    pub fn user(parts: Vec<Part>) -> Message {
        Message {
            message_id: uuid::Uuid::new_v4().to_string(),
            context_id: String::new(),
            task_id: String::new(),
            role: Role::User,
            parts,
            metadata: None,
        }
    }
}

/// Where a task is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Accepted, not started.
    #[serde(rename = "TASK_STATE_SUBMITTED")]
    Submitted,
    /// Being worked on.
    #[serde(rename = "TASK_STATE_WORKING")]
    Working,
    /// Done; the artifacts are the result.
    #[serde(rename = "TASK_STATE_COMPLETED")]
    Completed,
    /// Ended with an error (the status message says which).
    #[serde(rename = "TASK_STATE_FAILED")]
    Failed,
    /// Canceled before it finished.
    #[serde(rename = "TASK_STATE_CANCELED")]
    Canceled,
    /// Waiting for more input from the requester.
    #[serde(rename = "TASK_STATE_INPUT_REQUIRED")]
    InputRequired,
    /// Refused by the agent.
    #[serde(rename = "TASK_STATE_REJECTED")]
    Rejected,
    /// Waiting for authentication.
    #[serde(rename = "TASK_STATE_AUTH_REQUIRED")]
    AuthRequired,
}

impl TaskState {
    /// A terminal task accepts no further messages and cannot be canceled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Completed | TaskState::Failed | TaskState::Canceled | TaskState::Rejected
        )
    }
}

/// A task's state, with an optional agent message and when it was reached.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatus {
    /// The state.
    pub state: TaskState,
    /// Why (a failure's error), from the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    /// When, ISO 8601 UTC.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// A unit of work an agent does for one requester message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Task {
    /// Chosen by the agent.
    pub id: String,
    /// The conversation it belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_id: String,
    /// Its current status.
    pub status: TaskStatus,
    /// What it produced.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifacts: Vec<Artifact>,
    /// The messages exchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<Message>,
}

/// One output of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Artifact {
    /// Unique within the task.
    pub artifact_id: String,
    /// A label (here: the topic the agent wrote the output to).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its content.
    pub parts: Vec<Part>,
}

/// A task changed state (written to the requester's reply topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskStatusUpdateEvent {
    /// The task.
    pub task_id: String,
    /// Its conversation.
    pub context_id: String,
    /// The new status.
    pub status: TaskStatus,
}

/// A task produced an artifact (written to the requester's reply topic).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskArtifactUpdateEvent {
    /// The task.
    pub task_id: String,
    /// Its conversation.
    pub context_id: String,
    /// The artifact, whole.
    pub artifact: Artifact,
}

/// One element of a task's event stream, as A2A streams them: exactly one field set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamResponse {
    /// The task as a whole.
    Task(Task),
    /// A state change.
    StatusUpdate(TaskStatusUpdateEvent),
    /// An artifact.
    ArtifactUpdate(TaskArtifactUpdateEvent),
}

/// `SendMessage` parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SendMessageRequest {
    /// The requester's message.
    pub message: Message,
}

/// `SendMessage` result: the task it started (this binding never answers with a bare
/// message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SendMessageResponse {
    /// The task.
    Task(Task),
    /// A direct answer without a task.
    Message(Message),
}

/// `GetTask` and `CancelTask` parameters: the task id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskIdParams {
    /// The task.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_follows_the_v1_proto_names() {
        let task = Task {
            id: "t".to_string(),
            context_id: "c".to_string(),
            status: TaskStatus {
                state: TaskState::Completed,
                message: None,
                timestamp: None,
            },
            artifacts: vec![Artifact {
                artifact_id: "a".to_string(),
                name: String::new(),
                parts: vec![Part::data(json!({"x": 1}))],
            }],
            history: Vec::new(),
        };
        let response = serde_json::to_value(SendMessageResponse::Task(task)).unwrap();
        assert_eq!(
            response,
            json!({"task": {"id": "t", "contextId": "c",
                "status": {"state": "TASK_STATE_COMPLETED"},
                "artifacts": [{"artifactId": "a",
                    "parts": [{"data": {"x": 1}, "mediaType": "application/json"}]}]}})
        );
        let message: Message = serde_json::from_value(json!({
            "messageId": "m", "role": "ROLE_USER", "parts": [{"text": "hi"}], "extensions": []
        }))
        .unwrap();
        assert_eq!((message.role, message.parts[0].contents()), (Role::User, 1));
    }
}
