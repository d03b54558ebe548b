//! A2A over Kafka topics: any agent can publish an A2A v1.0 agent card and accept A2A
//! tasks, with the log as the transport (the binding is written down in
//! `docs/a2a-over-kafka.md`).
//!
//! ```toml
//! [[agents]]
//! name = "orders"
//! kind = "router"
//! topics = ["events"]
//! [agents.options]
//! field = "type"
//! routes = { order = "orders" }
//! [agents.a2a]                       # or `a2a = true` for the defaults
//! description = "Routes events by type."
//! skills = [{ id = "route", name = "Route", description = "Routes an event.", tags = ["routing"] }]
//! max_request_bytes = 1048576        # larger requests get a JSON-RPC error
//! broadcast = true                   # also take requests from `a2a.broadcast`
//! advertised_bootstrap = "kafka-1:9092"  # the host part of the card's url
//! ```
//!
//! Topics: the compacted registry `a2a.registry` (key = agent id, value = the card,
//! a tombstone when the agent stops), the agent's inbox `a2a.<agent-id>`, the shared
//! `a2a.broadcast`, and the requester's reply topic named by the `reply_to` header of
//! each request (`a2a.replies` without one). A request is a JSON-RPC 2.0 object
//! (`SendMessage`, `GetTask`, `CancelTask`); the agent answers with a JSON-RPC
//! response carrying the request's `correlation_id`, after status and artifact events
//! for the task. The agent's own group reads its inbox, so requests get the runtime's
//! retries, ordering and at-least-once delivery; a redelivered `SendMessage` is
//! answered from the task recorded in the agent's state instead of running again.

pub mod client;
pub mod jsonrpc;
pub mod registry;
mod server;
pub mod types;

use serde::{Deserialize, Deserializer};

pub use client::{A2aClient, CallError};
pub use server::A2aAgent;

use crate::agent::Agent;
use crate::backend::Backend;
use crate::runtime::{AgentHandle, AgentSpec, Runtime, StartError};
use types::{AgentCapabilities, AgentCard, AgentInterface, AgentSkill, PROTOCOL_VERSION};

/// This binding's identifier in a card's `supportedInterfaces` (the specification asks
/// custom bindings for a URI; a new version of the binding gets a new one).
pub const PROTOCOL_BINDING: &str = "urn:agentlog:a2a:kafka:v1";
/// The topic every A2A agent also takes requests from.
pub const BROADCAST_TOPIC: &str = "a2a.broadcast";
/// Where answers go when a request names no reply topic.
pub const DEFAULT_REPLY_TOPIC: &str = "a2a.replies";
/// Header on every record of a task on the reply topic: the task id.
pub const TASK_ID: &str = "a2a.task_id";
/// Header on every record on the reply topic: `response`, `status-update` or
/// `artifact-update`.
pub const KIND: &str = "a2a.kind";
/// Header a request's `reply_to` names its reply topic with (shared with tools).
pub use crate::llm::tools::replies::{CORRELATION_ID, REPLY_TO};

/// Requests larger than this are answered with an error unless configured otherwise.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;

/// The inbox of agent `agent_id`.
pub fn inbox_topic(agent_id: &str) -> String {
    format!("a2a.{agent_id}")
}

/// The reply topic an [`A2aClient`] of `requester` reads.
pub fn reply_topic(requester: &str) -> String {
    format!("{DEFAULT_REPLY_TOPIC}.{requester}")
}

/// `[agents.a2a]`: how an agent shows itself in the registry and takes requests.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct A2aSettings {
    /// Off keeps the table but serves nothing (default on).
    #[serde(default = "on")]
    pub enabled: bool,
    /// The card's description (default: names the agent and its kind).
    pub description: Option<String>,
    /// The card's skills (default: one skill named after the agent's kind).
    #[serde(default)]
    pub skills: Vec<AgentSkill>,
    /// Host and port put in the card's url; without it the url has no authority,
    /// meaning the cluster the card was read from.
    pub advertised_bootstrap: Option<String>,
    /// Requests larger than this are answered with an `Invalid Request` error.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Also take requests from [`BROADCAST_TOPIC`] (default on).
    #[serde(default = "on")]
    pub broadcast: bool,
}

fn on() -> bool {
    true
}

fn default_max_request_bytes() -> usize {
    DEFAULT_MAX_REQUEST_BYTES
}

impl Default for A2aSettings {
    fn default() -> A2aSettings {
        A2aSettings {
            enabled: true,
            description: None,
            skills: Vec::new(),
            advertised_bootstrap: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            broadcast: true,
        }
    }
}

/// `a2a = true` / `a2a = false` or an `[agents.a2a]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct A2aDecl(pub A2aSettings);

impl<'de> Deserialize<'de> for A2aDecl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<A2aDecl, D::Error> {
        // By hand rather than `untagged`, so a typo in the table is reported as such.
        match toml::Value::deserialize(deserializer)? {
            toml::Value::Boolean(enabled) => Ok(A2aDecl(A2aSettings {
                enabled,
                ..A2aSettings::default()
            })),
            table @ toml::Value::Table(_) => table
                .try_into()
                .map(A2aDecl)
                .map_err(serde::de::Error::custom),
            other => Err(serde::de::Error::custom(format!(
                "a2a must be true, false or a table, not {}",
                other.type_str()
            ))),
        }
    }
}

impl A2aSettings {
    /// Refuses settings the binding cannot serve, naming what is wrong.
    pub fn validate(&self, agent_id: &str) -> Result<(), String> {
        let inbox = inbox_topic(agent_id);
        if [
            registry::REGISTRY_TOPIC,
            BROADCAST_TOPIC,
            DEFAULT_REPLY_TOPIC,
        ]
        .contains(&&*inbox)
            || inbox.starts_with(&format!("{DEFAULT_REPLY_TOPIC}."))
        {
            return Err(format!(
                "`{agent_id}` is reserved: its inbox would be `{inbox}`"
            ));
        }
        if !server::is_topic_name(&inbox) {
            return Err(format!("its inbox `{inbox}` is not a valid topic name"));
        }
        if self.max_request_bytes == 0 {
            return Err("a2a.max_request_bytes must be at least 1".to_string());
        }
        Ok(())
    }

    /// The card of agent `agent_id` of `kind` under these settings.
    pub fn card(&self, agent_id: &str, kind: &str) -> AgentCard {
        let description = self
            .description
            .clone()
            .unwrap_or_else(|| format!("agentlog `{kind}` agent `{agent_id}`"));
        let skills = if self.skills.is_empty() {
            vec![AgentSkill {
                id: kind.to_string(),
                name: kind.to_string(),
                description: description.clone(),
                tags: vec![kind.to_string()],
                examples: Vec::new(),
            }]
        } else {
            self.skills.clone()
        };
        let authority = self.advertised_bootstrap.as_deref().unwrap_or_default();
        AgentCard {
            name: agent_id.to_string(),
            description,
            supported_interfaces: vec![AgentInterface {
                url: format!("kafka://{authority}/{}", inbox_topic(agent_id)),
                protocol_binding: PROTOCOL_BINDING.to_string(),
                protocol_version: PROTOCOL_VERSION.to_string(),
            }],
            version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: AgentCapabilities {
                streaming: Some(false),
                push_notifications: Some(false),
            },
            default_input_modes: vec!["application/json".to_string(), "text/plain".to_string()],
            default_output_modes: vec!["application/json".to_string()],
            skills,
        }
    }
}

/// Starts `agent` serving A2A as well: its group also reads its inbox (and the
/// broadcast topic), its card is published once it runs and withdrawn when it stops.
pub(crate) async fn start<B: Backend, A: Agent>(
    runtime: &Runtime<B>,
    mut spec: AgentSpec,
    agent: A,
    settings: A2aSettings,
) -> Result<AgentHandle, StartError> {
    let backend = runtime.backend().clone();
    let agent_id = spec.name.clone();
    registry::ensure(&backend)
        .await
        .map_err(|source| StartError::Topics {
            agent: agent_id.clone(),
            source,
        })?;
    let mut inputs = vec![inbox_topic(&agent_id)];
    if settings.broadcast {
        inputs.push(BROADCAST_TOPIC.to_string());
    }
    for topic in inputs {
        if !spec.topics.contains(&topic) {
            spec.topics.push(topic);
        }
    }
    let card = settings.card(&agent_id, agent.kind());
    let server = A2aAgent::new(agent, backend.clone(), &agent_id, &settings);
    let mut handle = runtime.start_agent(spec, server).await?;
    if let Err(source) = registry::publish(&backend, &agent_id, &card).await {
        handle.stop().await;
        return Err(StartError::Card {
            agent: agent_id,
            source,
        });
    }
    handle.on_stop(Box::pin(async move {
        if let Err(error) = registry::withdraw(&backend, &agent_id).await {
            tracing::warn!(agent = %agent_id, %error, "could not withdraw the agent card");
        }
    }));
    Ok(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_take_a_flag_or_a_table_and_refuse_typos() {
        #[derive(Deserialize)]
        struct Def {
            a2a: A2aDecl,
        }
        let on: Def = toml::from_str("a2a = true").unwrap();
        assert_eq!(on.a2a.0, A2aSettings::default());
        let table: Def = toml::from_str(
            "[a2a]\ndescription = 'd'\nskills = [{ id = 's', name = 'S', tags = ['t'] }]",
        )
        .unwrap();
        let card = table.a2a.0.card("echo", "custom");
        assert_eq!(card.description, "d");
        assert_eq!(card.skills[0].tags, ["t"]);
        assert_eq!(card.supported_interfaces[0].url, "kafka:///a2a.echo");
        let typo = toml::from_str::<Def>("[a2a]\ndescripton = 'd'")
            .err()
            .unwrap();
        assert!(typo.to_string().contains("descripton"), "{typo}");
        assert!(A2aSettings::default().validate("registry").is_err());
        assert!(A2aSettings::default().validate("replies.x").is_err());
        assert!(A2aSettings::default().validate("bad name").is_err());
        assert!(A2aSettings::default().validate("echo").is_ok());
    }
}
