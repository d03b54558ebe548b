//! The tools a `tool_agent` may call, as declared in `[[agents.options.tools]]`: a
//! request/reply tool served by whatever consumes a topic, or one of the built-in tools
//! (`produce`, `read_topic`, `state_get` restricted to the topics the table lists, and
//! `search` over a `[rag.<name>]` index).

use std::time::Duration;

use serde_json::{json, Value};

/// Most records the `read_topic` tool returns, whatever the configuration asks.
pub const READ_TOPIC_LIMIT: usize = 100;

/// Default wait for a request/reply tool's answer.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(30);

/// What calling a tool does.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolKind {
    /// Writes a request to `topic` and waits up to `timeout` for the reply carrying its
    /// correlation id on the agent's reply topic.
    Remote {
        /// The tool's request topic.
        topic: String,
        /// How long a reply is awaited before the call counts as failed.
        timeout: Duration,
    },
    /// Writes one record (`topic`, `key`, `value` arguments) to one of `topics`.
    Produce {
        /// The topics the model may write to.
        topics: Vec<String>,
    },
    /// Returns the last `n` records (at most `max_records`) of one of `topics`.
    ReadTopic {
        /// The topics the model may read.
        topics: Vec<String>,
        /// Upper bound on `n`.
        max_records: usize,
    },
    /// Returns the agent's keyed state under the `key` argument.
    StateGet,
    /// Searches the `[rag.<index>]` vector index for the `query` argument (with an
    /// optional `filter`), returning the `k` best chunks with their document ids.
    Search {
        /// The index.
        index: String,
        /// Chunks returned per call.
        k: usize,
    },
    /// Calls tool `tool` of an MCP server over topics (`tools/call`): the tool agent's
    /// `client`-th `mcp_server` table.
    Mcp {
        /// Which of the agent's MCP clients.
        client: usize,
        /// The tool's name on the server.
        tool: String,
    },
}

/// Most chunks the `search` tool returns per call.
pub const SEARCH_LIMIT: usize = 20;

/// One tool as the model sees it (name, description, JSON schema of its arguments) and
/// what calling it does.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// Name the model calls it by.
    pub name: String,
    /// What it is for, shown to the model.
    pub description: String,
    /// JSON schema of its arguments (an object schema).
    pub parameters: Value,
    /// What a call does.
    pub kind: ToolKind,
}

fn text(table: &toml::Table, key: &str) -> Result<Option<String>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    }
}

fn topics(table: &toml::Table) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    if let Some(topic) = text(table, "topic")? {
        out.push(topic);
    }
    match table.get("topics") {
        None => {}
        Some(toml::Value::Array(items)) => {
            for item in items {
                match item {
                    toml::Value::String(s) => out.push(s.clone()),
                    _ => return Err("`topics` must be an array of strings".to_string()),
                }
            }
        }
        Some(_) => return Err("`topics` must be an array of strings".to_string()),
    }
    if out.is_empty() {
        return Err("needs `topic` or `topics`".to_string());
    }
    Ok(out)
}

fn positive(table: &toml::Table, key: &str) -> Result<Option<u64>, String> {
    match table.get(key) {
        None => Ok(None),
        Some(toml::Value::Integer(n)) if *n > 0 => Ok(Some(*n as u64)),
        Some(_) => Err(format!("`{key}` must be a positive integer")),
    }
}

/// A TOML value as JSON (a TOML table is a JSON object), for schemas written in TOML.
pub fn toml_to_json(value: &toml::Value) -> Value {
    // Every TOML value has a JSON form except datetimes, which serialize as strings.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

impl ToolSpec {
    /// Reads one `[[agents.options.tools]]` table; the error says what is wrong with it.
    pub fn parse(table: &toml::Table) -> Result<ToolSpec, String> {
        const KNOWN: [&str; 10] = [
            "name",
            "description",
            "parameters",
            "topic",
            "timeout_ms",
            "builtin",
            "topics",
            "max_records",
            "index",
            "k",
        ];
        if let Some(unknown) = table.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!("unknown tool option `{unknown}`"));
        }
        let name = text(table, "name")?.ok_or("a tool needs a `name`")?;
        if name.is_empty()
            || name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!(
                "tool name `{name}` must be 1 to 64 of a-z, A-Z, 0-9, _ and - (OpenAI's rule)"
            ));
        }
        let context = |e: String| format!("tool `{name}`: {e}");
        let builtin = text(table, "builtin").map_err(context)?;
        let (kind, default_description, default_parameters) = match builtin.as_deref() {
            None => {
                let topic = text(table, "topic")
                    .map_err(context)?
                    .ok_or_else(|| context("a request/reply tool needs a `topic`".to_string()))?;
                let timeout = positive(table, "timeout_ms")
                    .map_err(context)?
                    .map_or(DEFAULT_TOOL_TIMEOUT, Duration::from_millis);
                (
                    ToolKind::Remote { topic, timeout },
                    String::new(),
                    json!({"type": "object", "properties": {}}),
                )
            }
            Some("produce") => {
                let topics = topics(table).map_err(context)?;
                let parameters = json!({
                    "type": "object",
                    "properties": {
                        "topic": {"type": "string", "enum": topics},
                        "key": {"type": "string"},
                        "value": {"type": "string"},
                    },
                    "required": ["topic", "key", "value"],
                });
                (
                    ToolKind::Produce { topics },
                    "Writes one record (key, value) to a topic.".to_string(),
                    parameters,
                )
            }
            Some("read_topic") => {
                let topics = topics(table).map_err(context)?;
                let max_records = positive(table, "max_records")
                    .map_err(context)?
                    .map_or(10, |n| n as usize)
                    .min(READ_TOPIC_LIMIT);
                let parameters = json!({
                    "type": "object",
                    "properties": {
                        "topic": {"type": "string", "enum": topics},
                        "n": {"type": "integer", "minimum": 1, "maximum": max_records},
                    },
                    "required": ["topic", "n"],
                });
                (
                    ToolKind::ReadTopic {
                        topics,
                        max_records,
                    },
                    "Returns the most recent records of a topic.".to_string(),
                    parameters,
                )
            }
            Some("state_get") => (
                ToolKind::StateGet,
                "Returns the value stored under a key in this agent's state.".to_string(),
                json!({
                    "type": "object",
                    "properties": {"key": {"type": "string"}},
                    "required": ["key"],
                }),
            ),
            Some("search") => {
                let index = text(table, "index")
                    .map_err(context)?
                    .ok_or_else(|| context("a search tool needs an `index`".to_string()))?;
                let k = positive(table, "k")
                    .map_err(context)?
                    .map_or(4, |k| k as usize)
                    .min(SEARCH_LIMIT);
                (
                    ToolKind::Search { index, k },
                    "Searches the document collection; returns the most relevant passages \
                     with their document ids."
                        .to_string(),
                    json!({
                        "type": "object",
                        "properties": {
                            "query": {"type": "string"},
                            "filter": {"type": "object"},
                        },
                        "required": ["query"],
                    }),
                )
            }
            Some(other) => {
                return Err(context(format!(
                    "unknown builtin `{other}` (expected produce, read_topic, state_get or search)"
                )))
            }
        };
        let description = text(table, "description")
            .map_err(context)?
            .unwrap_or(default_description);
        let parameters = match table.get("parameters") {
            None => default_parameters,
            Some(value @ toml::Value::Table(_)) => toml_to_json(value),
            Some(_) => return Err(context("`parameters` must be a table".to_string())),
        };
        if parameters.get("type").and_then(Value::as_str) != Some("object") {
            return Err(context(
                "`parameters` must be an object schema (type = \"object\")".to_string(),
            ));
        }
        Ok(ToolSpec {
            name,
            description,
            parameters,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ToolSpec, String> {
        ToolSpec::parse(&toml::from_str(text).unwrap())
    }

    #[test]
    fn parses_remote_and_builtin_tools() {
        let remote = parse(
            "name = 'weather'\ntopic = 'tools.weather'\ntimeout_ms = 500\n\
             parameters = { type = 'object', properties = { city = { type = 'string' } } }",
        )
        .unwrap();
        assert_eq!(
            remote.kind,
            ToolKind::Remote {
                topic: "tools.weather".to_string(),
                timeout: Duration::from_millis(500)
            }
        );
        assert_eq!(remote.parameters["properties"]["city"]["type"], "string");
        let read = parse("name = 'notes'\nbuiltin = 'read_topic'\ntopic = 'n'\nmax_records = 1000")
            .unwrap();
        assert_eq!(
            read.kind,
            ToolKind::ReadTopic {
                topics: vec!["n".to_string()],
                max_records: READ_TOPIC_LIMIT
            }
        );
        assert_eq!(read.parameters["properties"]["topic"]["enum"][0], "n");
    }

    #[test]
    fn parses_the_search_tool() {
        let search = parse("name = 'docs'\nbuiltin = 'search'\nindex = 'kb'\nk = 50").unwrap();
        assert_eq!(
            search.kind,
            ToolKind::Search {
                index: "kb".to_string(),
                k: SEARCH_LIMIT
            }
        );
        assert!(parse("name = 'docs'\nbuiltin = 'search'")
            .unwrap_err()
            .contains("index"));
    }

    #[test]
    fn refuses_bad_tools() {
        assert!(parse("name = 'x'").unwrap_err().contains("topic"));
        assert!(parse("name = 'bad name'\ntopic = 't'").is_err());
        assert!(
            parse("name = 'p'\nbuiltin = 'produce'").is_err(),
            "no allow-list"
        );
        assert!(parse("name = 'p'\nbuiltin = 'exec'")
            .unwrap_err()
            .contains("exec"));
        assert!(parse("name = 'x'\ntopic = 't'\nparameters = { type = 'string' }").is_err());
        assert!(parse("name = 'x'\ntopic = 't'\ntimeout = 5")
            .unwrap_err()
            .contains("timeout"));
    }
}
