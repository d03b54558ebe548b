//! The `tool_agent` kind: a model that calls tools in a loop until it can answer.
//!
//! ```toml
//! [[agents]]
//! name = "assistant"
//! kind = "tool_agent"
//! topics = ["questions"]
//! max_in_flight = 4
//! [agents.options]
//! llm = "local"                    # the [llm.<name>] endpoint
//! system = "You answer questions about the weather."
//! prompt = "{{data.question}}"     # default: the input payload
//! output_topic = "answers"
//! event_type = "answer"            # default "tool_agent.answer"
//! max_steps = 4                    # model calls per event (default 6)
//! tool_calls = "json"              # or "native" (default): OpenAI tool calls
//! max_tokens = 256                 # per call; and `temperature`, `model` (default:
//!                                  # the endpoint's), `reply_topic` (default
//!                                  # agent.replies.<agent>)
//! [[agents.options.tools]]         # request/reply over topics
//! name = "weather"
//! description = "Current weather of a city."
//! parameters = { type = "object", properties = { city = { type = "string" } }, required = ["city"] }
//! topic = "tools.weather"
//! timeout_ms = 5000
//! [[agents.options.tools]]         # built-ins: produce, read_topic, state_get, search
//! name = "notes"
//! builtin = "read_topic"
//! topics = ["notes"]
//! max_records = 10
//! [[agents.options.tools]]         # every tool of an MCP server, over topics
//! mcp_server = "weather"           # (see crate::mcp::tools for its options)
//! [[agents.options.tools]]
//! name = "search_docs"              # the k best chunks of a [rag.<name>] index (the
//!                                   # answer's `sources`: the document ids returned)
//! builtin = "search"
//! index = "docs"
//! k = 4
//! ```
//!
//! Each model call is one step, numbered from 0, so the durable [`ChatModel`] answers a
//! re-run from its call log and the re-run takes the same path. A request/reply tool
//! gets an enveloped request on its topic with headers `reply_to` (the agent's reply
//! topic, `agent.replies.<agent>` by default) and `correlation_id` (stable per event,
//! step and call); its reply is a record on the reply topic with the same
//! `correlation_id` (a tool built as an agent gets that for free: emits inherit it).
//! Unknown tools, invalid arguments and tool timeouts go back to the model as tool
//! errors; running out of steps fails the event (retried, then dead-lettered).

mod agent;
pub mod protocol;
pub mod replies;
pub mod schema;
pub mod spec;

use std::sync::Arc;

pub(crate) use agent::trace;
pub use agent::{ToolAgent, TRACES_TOPIC};
use protocol::{Mode, RequestShape};
use replies::Replies;
use spec::{ToolKind, ToolSpec};

use crate::backend::Backend;
use crate::config::{AgentDef, ConfigError, StartAgentsError};
use crate::llm::model::ChatModel;
use crate::mcp::tools::McpToolset;
use crate::mcp::McpTopicClient;
use crate::runtime::{AgentHandle, Runtime, StartError};

/// Model calls per event when `max_steps` is not set.
pub const DEFAULT_MAX_STEPS: u32 = 6;

/// The options a `tool_agent` takes; anything else is refused, so a typo cannot
/// silently leave a default in place.
const KNOWN: [&str; 12] = [
    "llm",
    "model",
    "system",
    "prompt",
    "output_topic",
    "event_type",
    "max_steps",
    "tool_calls",
    "max_tokens",
    "temperature",
    "reply_topic",
    "tools",
];

/// A tool agent's options, checked.
#[derive(Debug, Clone)]
struct Options {
    llm: String,
    tools: Vec<ToolSpec>,
    mcp: Vec<McpToolset>,
    shape: RequestShape,
    system: Option<String>,
    prompt: Option<String>,
    max_steps: u32,
    output_topic: String,
    event_type: String,
    reply_topic: String,
}

fn options(def: &AgentDef) -> Result<Options, ConfigError> {
    let bad = |reason: String| ConfigError::Options {
        name: def.name.clone(),
        reason,
    };
    if let Some(unknown) = def.options.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown option `{unknown}` (a tool_agent takes {})",
            KNOWN.join(", ")
        )));
    }
    let text = |key: &str| -> Result<Option<String>, ConfigError> {
        match def.options.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("options.{key} must be a string"))),
        }
    };
    let positive = |key: &str| -> Result<Option<u32>, ConfigError> {
        match def.options.get(key) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) if *n > 0 && *n <= i64::from(u32::MAX) => {
                Ok(Some(*n as u32))
            }
            Some(_) => Err(bad(format!("options.{key} must be a positive integer"))),
        }
    };
    let mut tools = Vec::new();
    let mut mcp = Vec::new();
    match def.options.get("tools") {
        Some(toml::Value::Array(tables)) => {
            for table in tables {
                let toml::Value::Table(table) = table else {
                    return Err(bad("options.tools must be an array of tables".to_string()));
                };
                if McpToolset::declared_by(table) {
                    mcp.push(McpToolset::parse(table).map_err(&bad)?);
                } else {
                    tools.push(ToolSpec::parse(table).map_err(&bad)?);
                }
            }
        }
        _ => {
            return Err(bad(
                "a tool_agent needs [[agents.options.tools]]".to_string()
            ))
        }
    }
    if tools.is_empty() && mcp.is_empty() {
        return Err(bad("a tool_agent needs at least one tool".to_string()));
    }
    for (i, tool) in tools.iter().enumerate() {
        if tools[..i].iter().any(|t| t.name == tool.name) {
            return Err(bad(format!("tool `{}` is declared twice", tool.name)));
        }
    }
    let mode = match text("tool_calls")?.as_deref() {
        None | Some("native") => Mode::Native,
        Some("json") => Mode::Json,
        Some(other) => {
            return Err(bad(format!(
                "options.tool_calls is `{other}` (expected \"native\" or \"json\")"
            )))
        }
    };
    let temperature = match def.options.get("temperature") {
        None => None,
        Some(toml::Value::Float(t)) => Some(*t as f32),
        Some(toml::Value::Integer(t)) => Some(*t as f32),
        Some(_) => return Err(bad("options.temperature must be a number".to_string())),
    };
    let output_topic = text("output_topic")?
        .ok_or_else(|| bad("a tool_agent needs options.output_topic".to_string()))?;
    Ok(Options {
        llm: text("llm")?.ok_or_else(|| {
            bad("a tool_agent needs options.llm (the [llm.<name>] endpoint)".to_string())
        })?,
        tools,
        mcp,
        shape: RequestShape {
            mode,
            model: text("model")?.unwrap_or_default(),
            max_tokens: positive("max_tokens")?,
            temperature,
        },
        system: text("system")?,
        prompt: text("prompt")?,
        max_steps: positive("max_steps")?.unwrap_or(DEFAULT_MAX_STEPS),
        output_topic,
        event_type: text("event_type")?.unwrap_or_else(|| "tool_agent.answer".to_string()),
        reply_topic: text("reply_topic")?.unwrap_or_else(|| format!("agent.replies.{}", def.name)),
    })
}

/// The `[llm.<name>]` endpoint a `tool_agent` definition calls: what its [`ChatModel`]
/// must be built for.
pub fn endpoint(def: &AgentDef) -> Result<String, ConfigError> {
    options(def).map(|o| o.llm)
}

/// Checks a `tool_agent` definition, so a bad one is refused before anything runs.
// Called from `crate::llm::validate` once the kinds are wired together.
#[allow(dead_code)]
pub(crate) fn validate(def: &AgentDef) -> Result<(), ConfigError> {
    options(def).map(|_| ())
}

/// Starts a `tool_agent` answering with `model` (built for [`endpoint`]; requests leave
/// `model` empty unless `options.model` is set, for the model to fill in its own): creates its reply, trace and tool
/// topics, starts its reply listener, then its swarm. Public so that embedders (and
/// tests) can run the kind with a [`ChatModel`] of their own.
pub async fn start<B: Backend, M: ChatModel>(
    runtime: &Runtime<B>,
    def: &AgentDef,
    model: Arc<M>,
) -> Result<AgentHandle, StartAgentsError> {
    let options = options(def)?;
    let backend = runtime.backend().clone();
    let topics_error = |source| {
        StartAgentsError::Start(StartError::Topics {
            agent: def.name.clone(),
            source,
        })
    };
    // One partition: replies are read by every process anyway.
    backend
        .ensure_topic(&options.reply_topic, 1, false)
        .await
        .map_err(topics_error)?;
    backend
        .ensure_topic(TRACES_TOPIC, -1, false)
        .await
        .map_err(topics_error)?;
    backend
        .ensure_topic(&options.output_topic, -1, false)
        .await
        .map_err(topics_error)?;
    for tool in &options.tools {
        if let ToolKind::Remote { topic, .. } = &tool.kind {
            backend
                .ensure_topic(topic, -1, false)
                .await
                .map_err(topics_error)?;
        }
    }
    for tool in &options.tools {
        if let ToolKind::Search { index, .. } = &tool.kind {
            if runtime.indexes().get(index).is_none() {
                return Err(ConfigError::Options {
                    name: def.name.clone(),
                    reason: format!(
                        "tool `{}` searches index `{index}`, which is not declared (add a [rag.{index}] table)",
                        tool.name
                    ),
                }
                .into());
            }
        }
    }
    for set in &options.mcp {
        backend
            .ensure_topic(&set.topic, -1, false)
            .await
            .map_err(topics_error)?;
        backend
            .ensure_topic(
                &crate::mcp::binding::notifications_topic(&set.server),
                1,
                false,
            )
            .await
            .map_err(topics_error)?;
    }
    let replies = Replies::start(backend.clone(), &def.name, &options.reply_topic);
    let mcp = options
        .mcp
        .iter()
        .map(|set| {
            let client = McpTopicClient::new(
                backend.clone(),
                &set.server,
                &set.topic,
                &options.reply_topic,
                replies.clone(),
                set.timeout,
            );
            (set.clone(), client)
        })
        .collect();
    let agent = ToolAgent {
        name: def.name.clone(),
        backend,
        model,
        tools: options.tools,
        mcp,
        shape: options.shape,
        system: options.system,
        prompt: options.prompt,
        max_steps: options.max_steps,
        output_topic: options.output_topic,
        event_type: options.event_type,
        reply_topic: options.reply_topic,
        replies,
        indexes: runtime.indexes().clone(),
    };
    Ok(runtime.start(def.spec(), agent).await?)
}

#[cfg(test)]
mod tests;
