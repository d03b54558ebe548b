//! Agents declared in agentlog's TOML configuration: the backend to run on and
//! `[[agents]]` tables (and the other tables the agent runtime owns: `[llm]`,
//! `[inference]`, `[rag]`, `[[mcp_servers]]`, `[[uplinks]]`). The broker's own settings in the same file are ignored here
//! (and these keys are ignored by the broker).
//!
//! ```toml
//! backend = "embedded"            # or "kafka" (then `bootstrap` is required)
//! bootstrap = "kafka-1:9092"
//!
//! [agents_backend.properties]     # extra librdkafka properties for the kafka backend
//! "security.protocol" = "plaintext"
//!
//! [[agents]]
//! name = "router"
//! kind = "router"
//! topics = ["events"]
//! group = "router"                # default: the name
//! instances = 2
//! max_attempts = 3
//! backoff_ms = 100
//! processing = "at_least_once"   # or "exactly_once": outputs and offsets in one transaction
//! [agents.options]
//! field = "type"
//! default = "events.other"
//! routes = { order = "orders", payment = "payments" }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

use crate::backend::Backend;
use crate::backend::KafkaConfig;
use crate::builtins::{ContentRouter, DlqReplayer};
use crate::delivery::RetryPolicy;
use crate::exactly_once::Processing;
use crate::inference::InferenceSettings;
use crate::llm::LlmSettings;
use crate::mcp::McpServerDef;
use crate::queue::DeliveryMode;
use crate::rag::RagSettings;
use crate::runtime::{AgentHandle, AgentSpec, Runtime, StartError};
use crate::uplink::{UplinkConfigError, UplinkDef};

/// The configuration is unusable.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// Not TOML, or fields of the wrong type.
    #[error("agents configuration: {0}")]
    Parse(String),
    /// `backend` names no backend.
    #[error("unknown agents backend `{0}` (expected `embedded` or `kafka`)")]
    UnknownBackend(String),
    /// The kafka backend needs `bootstrap`.
    #[error("the kafka agents backend needs `bootstrap`")]
    MissingBootstrap,
    /// An agent's kind is not built in.
    #[error(
        "agent `{name}`: unknown kind `{kind}` (built in: router, dlq_replayer, llm, llm_router, \
         tool_agent, aggregate, onnx, embed)"
    )]
    UnknownKind {
        /// The agent.
        name: String,
        /// Its kind.
        kind: String,
    },
    /// An `[[uplinks]]` table is wrong.
    #[error(transparent)]
    Uplink(#[from] UplinkConfigError),
    /// Uplinks read the local broker's logs, which a `kafka` backend does not start.
    #[error("[[uplinks]] need the embedded backend (they forward this process's broker)")]
    UplinksNeedEmbedded,
    /// An agent's options are wrong.
    #[error("agent `{name}`: {reason}")]
    Options {
        /// The agent.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

/// Which backend agents run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendChoice {
    /// In the broker's process (`agentlog serve` starts the broker).
    Embedded,
    /// On an external cluster (no broker is started).
    Kafka(KafkaConfig),
}

/// `[agents_backend]`: an alternative to the top-level keys.
#[derive(Debug, Clone, Default, Deserialize)]
struct BackendTable {
    kind: Option<String>,
    bootstrap: Option<String>,
    principal: Option<String>,
    #[serde(default)]
    properties: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Document {
    backend: Option<String>,
    bootstrap: Option<String>,
    agents_backend: Option<BackendTable>,
    #[serde(default)]
    agents: Vec<AgentDef>,
    #[serde(default)]
    llm: LlmSettings,
    #[serde(default)]
    inference: InferenceSettings,
    #[serde(default)]
    rag: RagSettings,
    #[serde(default)]
    mcp_servers: Vec<McpServerDef>,
    #[serde(default)]
    uplinks: Vec<UplinkDef>,
}

/// One `[[agents]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AgentDef {
    /// Agent id.
    pub name: String,
    /// Built-in kind: `router` or `dlq_replayer`.
    pub kind: String,
    /// Topics to consume.
    pub topics: Vec<String>,
    /// Consumer group (default: the name).
    pub group: Option<String>,
    /// Swarm size (default 1).
    pub instances: Option<usize>,
    /// Attempts before dead-lettering (default 3).
    pub max_attempts: Option<u32>,
    /// First retry backoff in ms (default 100).
    pub backoff_ms: Option<u64>,
    /// Dead-letter topic (default `<topic>.dlq`).
    pub dlq_topic: Option<String>,
    /// Events one instance handles at once (default 1); same-key events stay in order.
    pub max_in_flight: Option<usize>,
    /// Most events handed to the agent as one batch (default 1000).
    pub max_batch: Option<usize>,
    /// Kind-specific options.
    #[serde(default)]
    pub options: toml::Table,
    /// `a2a = true` or `[agents.a2a]`: serve A2A and publish a card (see [`crate::a2a`]).
    #[serde(default)]
    pub a2a: Option<crate::a2a::A2aDecl>,
    /// `processing = "at_least_once"` (default) or `"exactly_once"` (see
    /// [`crate::exactly_once`]).
    #[serde(default)]
    pub processing: Processing,
    /// `"stream"` (a consumer group, the default) or `"queue"` (a share group: per-event
    /// acknowledgement, any number of instances per partition; embedded backend only).
    pub delivery: Option<String>,
}

/// A built-in agent made from its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuiltinAgent {
    /// See [`ContentRouter`].
    Router(ContentRouter),
    /// See [`DlqReplayer`].
    DlqReplayer(DlqReplayer),
}

/// Every agent-related setting of a configuration file.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentsConfig {
    /// Where agents run.
    pub backend: BackendChoice,
    /// The declared agents.
    pub agents: Vec<AgentDef>,
    /// `[llm.<name>]`: the model endpoints LLM agents call.
    pub llm: LlmSettings,
    /// `[inference]`: ONNX Runtime and the models topic.
    pub inference: InferenceSettings,
    /// `[rag.<name>]`: the vector indexes this process keeps.
    pub rag: RagSettings,
    /// `[[mcp_servers]]`: MCP servers this process bridges onto topics.
    pub mcp_servers: Vec<McpServerDef>,
    /// `[[uplinks]]`: links forwarding local topics to a central cluster (started by
    /// `serve` next to the broker: they read its logs in-process).
    pub uplinks: Vec<UplinkDef>,
    /// The process's data directory (not read from the file: `serve` sets it), where
    /// indexes keep their snapshots by default.
    pub data_dir: Option<PathBuf>,
    /// `[agents_backend] principal`: who in-process agents act as for the broker's
    /// authorizer (`User:scorer`); unset, they act as the broker itself.
    pub principal: Option<String>,
}

fn value_text(value: &toml::Value) -> String {
    match value {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl AgentsConfig {
    /// Reads the agent settings of a whole agentlog TOML file.
    pub fn from_toml(text: &str) -> Result<AgentsConfig, ConfigError> {
        let doc: Document = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let table = doc.agents_backend.unwrap_or_default();
        let principal = table.principal.clone();
        if let Some(p) = &principal {
            if !p
                .split_once(':')
                .is_some_and(|(k, n)| !k.is_empty() && !n.is_empty())
            {
                return Err(ConfigError::Options {
                    name: "agents_backend.principal".to_string(),
                    reason: format!("`{p}` is not Type:name, e.g. User:scorer"),
                });
            }
        }
        let kind = doc
            .backend
            .or(table.kind)
            .unwrap_or_else(|| "embedded".to_string());
        let backend = match kind.as_str() {
            "embedded" => BackendChoice::Embedded,
            "kafka" => BackendChoice::Kafka(KafkaConfig {
                bootstrap: doc
                    .bootstrap
                    .or(table.bootstrap)
                    .ok_or(ConfigError::MissingBootstrap)?,
                properties: table
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), value_text(v)))
                    .collect(),
            }),
            other => return Err(ConfigError::UnknownBackend(other.to_string())),
        };
        let config = AgentsConfig {
            backend,
            agents: doc.agents,
            llm: doc.llm,
            inference: doc.inference,
            rag: doc.rag,
            mcp_servers: doc.mcp_servers,
            uplinks: doc.uplinks,
            data_dir: None,
            principal,
        };
        for def in &config.agents {
            config.validate(def)?;
            config.validate_delivery(def)?;
            if let Some(decl) = &def.a2a {
                decl.0
                    .validate(&def.name)
                    .map_err(|reason| ConfigError::Options {
                        name: def.name.clone(),
                        reason,
                    })?;
            }
        }
        for (i, server) in config.mcp_servers.iter().enumerate() {
            server.endpoint()?;
            if config.mcp_servers[..i]
                .iter()
                .any(|s| s.name == server.name)
            {
                return Err(ConfigError::Options {
                    name: format!("mcp_servers.{}", server.name),
                    reason: "declared twice".to_string(),
                });
            }
        }
        crate::uplink::settings::validate_all(&config.uplinks)?;
        if !config.uplinks.is_empty() && config.backend != BackendChoice::Embedded {
            return Err(ConfigError::UplinksNeedEmbedded);
        }
        Ok(config)
    }

    /// Checks `delivery`: a known mode, and `queue` only where a share consumer exists.
    fn validate_delivery(&self, def: &AgentDef) -> Result<(), ConfigError> {
        let refuse = |reason: String| ConfigError::Options {
            name: def.name.clone(),
            reason,
        };
        match def.delivery.as_deref().map(DeliveryMode::parse) {
            None | Some(Some(DeliveryMode::Stream)) => Ok(()),
            Some(Some(DeliveryMode::Queue)) if self.backend != BackendChoice::Embedded => {
                Err(refuse(crate::backend::QUEUE_NEEDS_EMBEDDED.to_string()))
            }
            // A share group acknowledges each record on its own; there is no offset to
            // commit inside a transaction, so Kafka's exactly-once does not apply.
            Some(Some(DeliveryMode::Queue)) if def.processing == Processing::ExactlyOnce => {
                Err(refuse(
                    "delivery = \"queue\" acknowledges each event on its own and cannot be \
                     processing = \"exactly_once\" (use delivery = \"stream\")"
                        .to_string(),
                ))
            }
            Some(Some(DeliveryMode::Queue)) => Ok(()),
            Some(None) => Err(refuse(format!(
                "delivery = {:?}: expected \"stream\" or \"queue\"",
                def.delivery.as_deref().unwrap_or_default()
            ))),
        }
    }

    /// Checks one definition against its kind, so a bad one is refused at start-up
    /// with the agent named, before anything runs.
    fn validate(&self, def: &AgentDef) -> Result<(), ConfigError> {
        if def.processing == Processing::ExactlyOnce && def.max_in_flight.is_some_and(|n| n > 1) {
            return Err(ConfigError::Options {
                name: def.name.clone(),
                reason: "processing = \"exactly_once\" commits one batch at a time: \
                         max_in_flight must be 1 (use max_batch to size the transactions)"
                    .to_string(),
            });
        }
        let kind = def.kind.as_str();
        if crate::llm::KINDS.contains(&kind) {
            crate::llm::validate(def, &self.llm)
        } else if crate::inference::KINDS.contains(&kind) {
            crate::inference::validate(def, &self.inference)
        } else if crate::workflow::KINDS.contains(&kind) {
            crate::workflow::validate(def)
        } else if crate::rag::KINDS.contains(&kind) {
            crate::rag::validate(def, self)
        } else {
            def.builtin().map(|_| ())
        }
    }
}

impl AgentDef {
    /// The runtime spec this definition describes.
    pub fn spec(&self) -> AgentSpec {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let mut spec = AgentSpec::new(&self.name, &topics)
            .group(self.group.as_deref().unwrap_or(&self.name))
            .instances(self.instances.unwrap_or(1));
        let defaults = RetryPolicy::default();
        spec.retry = RetryPolicy {
            max_attempts: self.max_attempts.unwrap_or(defaults.max_attempts),
            initial_backoff: self
                .backoff_ms
                .map_or(defaults.initial_backoff, Duration::from_millis),
            max_backoff: defaults.max_backoff,
        };
        spec.dlq_topic = self.dlq_topic.clone();
        spec.max_in_flight = self.max_in_flight.unwrap_or(1).max(1);
        spec.max_batch = self
            .max_batch
            .unwrap_or(crate::runtime::DEFAULT_MAX_BATCH)
            .max(1);
        spec.a2a = self.a2a.as_ref().map(|decl| decl.0.clone());
        spec.processing = self.processing;
        spec.delivery = self
            .delivery
            .as_deref()
            .and_then(DeliveryMode::parse)
            .unwrap_or_default();
        spec
    }

    /// The built-in agent of this kind with these options.
    pub fn builtin(&self) -> Result<BuiltinAgent, ConfigError> {
        let option = |key: &str| self.options.get(key).map(value_text);
        match self.kind.as_str() {
            "router" | "content_router" => {
                let field = option("field").ok_or_else(|| ConfigError::Options {
                    name: self.name.clone(),
                    reason: "a router needs options.field".to_string(),
                })?;
                let routes = match self.options.get("routes") {
                    None => BTreeMap::new(),
                    Some(toml::Value::Table(routes)) => routes
                        .iter()
                        .map(|(k, v)| (k.clone(), value_text(v)))
                        .collect(),
                    Some(_) => {
                        return Err(ConfigError::Options {
                            name: self.name.clone(),
                            reason: "options.routes must be a table".to_string(),
                        })
                    }
                };
                Ok(BuiltinAgent::Router(ContentRouter {
                    field,
                    routes,
                    default: option("default"),
                }))
            }
            "dlq_replayer" | "dlq-replayer" => Ok(BuiltinAgent::DlqReplayer(DlqReplayer {
                target: option("target"),
            })),
            other => Err(ConfigError::UnknownKind {
                name: self.name.clone(),
                kind: other.to_string(),
            }),
        }
    }
}

/// Starting the declared agents failed.
#[derive(Debug, Error)]
pub enum StartAgentsError {
    /// A definition is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An agent would not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// An inference agent's runtime or model would not load.
    #[error(transparent)]
    Inference(#[from] crate::inference::StartInferenceError),
    /// A vector index would not start.
    #[error(transparent)]
    Index(#[from] crate::rag::StartIndexError),
}

/// Starts every declared built-in agent on `runtime`.
pub async fn start_declared<B: Backend>(
    runtime: &Runtime<B>,
    config: &AgentsConfig,
) -> Result<Vec<AgentHandle>, StartAgentsError> {
    // Indexes first: RAG agents, `search` tools and HTTP search find them running.
    crate::rag::start_indexes(runtime, config).await?;
    // Bridges next: tool agents list their MCP servers' tools at their first event.
    let mut handles = crate::mcp::start_bridges(runtime, &config.mcp_servers).await?;
    for def in &config.agents {
        let kind = def.kind.as_str();
        let handle = if crate::llm::KINDS.contains(&kind) {
            crate::llm::start(runtime, def, &config.llm).await?
        } else if crate::inference::KINDS.contains(&kind) {
            crate::inference::start(runtime, def, &config.inference).await?
        } else if crate::workflow::KINDS.contains(&kind) {
            crate::workflow::start(runtime, def).await?
        } else if crate::rag::KINDS.contains(&kind) {
            crate::rag::start(runtime, def, config).await?
        } else {
            match def.builtin()? {
                BuiltinAgent::Router(agent) => runtime.start(def.spec(), agent).await?,
                BuiltinAgent::DlqReplayer(agent) => runtime.start(def.spec(), agent).await?,
            }
        };
        tracing::info!(agent = %def.name, kind = %def.kind, "agent started");
        handles.push(handle);
    }
    Ok(handles)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
num.partitions = 3
backend = "kafka"
bootstrap = "localhost:9092"

[agents_backend.properties]
"security.protocol" = "plaintext"

[[agents]]
name = "router"
kind = "router"
topics = ["events"]
instances = 2
[agents.options]
field = "type"
default = "events.other"
routes = { order = "orders" }

[[agents]]
name = "replayer"
kind = "dlq_replayer"
topics = ["events.dlq"]
"#;

    #[test]
    fn parses_backend_and_agents() {
        let config = AgentsConfig::from_toml(EXAMPLE).unwrap();
        let BackendChoice::Kafka(kafka) = &config.backend else {
            panic!("expected kafka");
        };
        assert_eq!(kafka.bootstrap, "localhost:9092");
        assert_eq!(kafka.properties["security.protocol"], "plaintext");
        assert_eq!(config.agents.len(), 2);
        let spec = config.agents[0].spec();
        assert_eq!((spec.group.as_str(), spec.instances), ("router", 2));
        assert_eq!(
            config.agents[0].builtin().unwrap(),
            BuiltinAgent::Router(ContentRouter {
                field: "type".to_string(),
                routes: BTreeMap::from([("order".to_string(), "orders".to_string())]),
                default: Some("events.other".to_string()),
            })
        );
        assert!(matches!(
            config.agents[1].builtin().unwrap(),
            BuiltinAgent::DlqReplayer(_)
        ));
    }

    #[test]
    fn refuses_unknown_kinds_and_backends() {
        let bad = "[[agents]]\nname='a'\nkind='nope'\ntopics=['t']\n";
        assert!(matches!(
            AgentsConfig::from_toml(bad),
            Err(ConfigError::UnknownKind { .. })
        ));
        assert!(matches!(
            AgentsConfig::from_toml("backend = 'x'"),
            Err(ConfigError::UnknownBackend(_))
        ));
        assert!(matches!(
            AgentsConfig::from_toml("backend = 'kafka'"),
            Err(ConfigError::MissingBootstrap)
        ));
        assert_eq!(
            AgentsConfig::from_toml("").unwrap().backend,
            BackendChoice::Embedded
        );
    }

    /// At-least-once stays the default; `processing` takes exactly the two names, and
    /// anything else is refused naming them.
    #[test]
    fn processing_defaults_to_at_least_once_and_refuses_bad_values() {
        let agent =
            "[[agents]]\nname='a'\nkind='router'\ntopics=['t']\n[agents.options]\nfield='x'\n";
        let config = AgentsConfig::from_toml(agent).unwrap();
        assert_eq!(config.agents[0].spec().processing, Processing::AtLeastOnce);
        assert_eq!(
            AgentSpec::new("a", &["t"]).processing,
            Processing::AtLeastOnce
        );
        let with = |line: &str| agent.replace("topics=['t']\n", &format!("topics=['t']\n{line}\n"));
        let config = AgentsConfig::from_toml(&with("processing = 'exactly_once'")).unwrap();
        assert_eq!(config.agents[0].spec().processing, Processing::ExactlyOnce);
        let config = AgentsConfig::from_toml(&with("processing = 'at_least_once'")).unwrap();
        assert_eq!(config.agents[0].spec().processing, Processing::AtLeastOnce);
        let Err(ConfigError::Parse(message)) =
            AgentsConfig::from_toml(&with("processing = 'exactly-once'"))
        else {
            panic!("a bad processing value was accepted");
        };
        assert!(
            message.contains("exactly-once") && message.contains("exactly_once"),
            "{message}"
        );
        let concurrent = with("processing = 'exactly_once'\nmax_in_flight = 4");
        assert!(matches!(
            AgentsConfig::from_toml(&concurrent),
            Err(ConfigError::Options { .. })
        ));
    }

    #[test]
    fn queue_delivery_is_read_and_refused_where_no_share_consumer_exists() {
        let agent = "[[agents]]\nname='r'\nkind='router'\ntopics=['t']\ndelivery='queue'\n[agents.options]\nfield='type'\n";
        let config = AgentsConfig::from_toml(agent).unwrap();
        assert_eq!(config.agents[0].spec().delivery, DeliveryMode::Queue);
        let exactly_once = agent.replace(
            "delivery='queue'",
            "delivery='queue'\nprocessing='exactly_once'",
        );
        assert!(matches!(
            AgentsConfig::from_toml(&exactly_once),
            Err(ConfigError::Options { .. })
        ));
        let on_kafka = format!("backend='kafka'\nbootstrap='k:9092'\n{agent}");
        let Err(ConfigError::Options { reason, .. }) = AgentsConfig::from_toml(&on_kafka) else {
            panic!("queue agents on the kafka backend were accepted");
        };
        assert!(reason.contains("embedded backend"), "{reason}");
        assert!(matches!(
            AgentsConfig::from_toml(&agent.replace("'queue'", "'fanout'")),
            Err(ConfigError::Options { .. })
        ));
    }

    #[test]
    fn reads_uplinks_and_refuses_them_without_a_local_broker() {
        let uplink = "[[uplinks]]\nname='c'\nbootstrap='central:9092'\nsite='rig7'\ntopics=['t']\n";
        let config = AgentsConfig::from_toml(&format!("num.partitions = 3\n{uplink}")).unwrap();
        assert_eq!(config.uplinks.len(), 1);
        assert_eq!(
            config.uplinks[0].progress_topic(),
            "_agentlog.uplink.rig7.c"
        );
        assert!(matches!(
            AgentsConfig::from_toml(&format!("backend='kafka'\nbootstrap='k:9092'\n{uplink}")),
            Err(ConfigError::UplinksNeedEmbedded)
        ));
        assert!(matches!(
            AgentsConfig::from_toml("[[uplinks]]\nname='c'\nbootstrap='b'\nsite='s'\n"),
            Err(ConfigError::Uplink(UplinkConfigError::NoTopics(_)))
        ));
    }
}
