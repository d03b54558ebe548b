//! MCP servers as `tool_agent` tools: a `[[agents.options.tools]]` table with
//! `mcp_server` gives the model every tool that server lists (over topics), under the
//! server's own names.
//!
//! ```toml
//! [[agents.options.tools]]
//! mcp_server = "weather"          # the server's name ([[mcp_servers]] or any bridge)
//! topic = "mcp.weather.requests"  # default: mcp.<server>.requests
//! timeout_ms = 10000              # per request (default 30000)
//! only = ["forecast"]             # default: every tool the server lists
//! ```

use std::time::Duration;

use serde_json::Value;

use super::binding;
use crate::llm::tools::spec::{ToolKind, ToolSpec, DEFAULT_TOOL_TIMEOUT};

/// One `mcp_server` table of a tool agent.
#[derive(Debug, Clone, PartialEq)]
pub struct McpToolset {
    /// The server's name.
    pub server: String,
    /// Its request topic.
    pub topic: String,
    /// How long one request is awaited.
    pub timeout: Duration,
    /// The tools offered to the model (`None`: all the server lists).
    pub only: Option<Vec<String>>,
}

impl McpToolset {
    /// Whether a tools table declares an MCP server rather than one tool.
    pub fn declared_by(table: &toml::Table) -> bool {
        table.contains_key("mcp_server")
    }

    /// Reads one `mcp_server` table; the error says what is wrong with it.
    pub fn parse(table: &toml::Table) -> Result<McpToolset, String> {
        const KNOWN: [&str; 4] = ["mcp_server", "topic", "timeout_ms", "only"];
        if let Some(unknown) = table.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            return Err(format!(
                "unknown option `{unknown}` of an mcp_server tool table"
            ));
        }
        let text = |key: &str| match table.get(key) {
            None => Ok(None),
            Some(toml::Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(format!("`{key}` must be a non-empty string")),
        };
        let server = text("mcp_server")?.ok_or("`mcp_server` must name a server")?;
        let topic = text("topic")?.unwrap_or_else(|| binding::requests_topic(&server));
        let timeout = match table.get("timeout_ms") {
            None => DEFAULT_TOOL_TIMEOUT,
            Some(toml::Value::Integer(ms)) if *ms > 0 => Duration::from_millis(*ms as u64),
            Some(_) => return Err("`timeout_ms` must be a positive integer".to_string()),
        };
        let only = match table.get("only") {
            None => None,
            Some(toml::Value::Array(items)) => Some(
                items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("`only` must be an array of tool names")?,
            ),
            Some(_) => return Err("`only` must be an array of tool names".to_string()),
        };
        Ok(McpToolset {
            server,
            topic,
            timeout,
            only,
        })
    }

    /// The tools the model is offered from the server's `tools/list` entries: those
    /// `only` allows, whose names are valid tool names, described by the server.
    pub fn specs(&self, client: usize, listed: &[Value]) -> Vec<ToolSpec> {
        listed
            .iter()
            .filter_map(|tool| {
                let name = tool["name"].as_str()?;
                let valid = !name.is_empty()
                    && name.len() <= 64
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    tracing::warn!(server = %self.server, name, "MCP tool skipped: its name is not a valid tool name");
                    return None;
                }
                if self.only.as_ref().is_some_and(|only| !only.iter().any(|o| o == name)) {
                    return None;
                }
                let parameters = match tool.get("inputSchema") {
                    Some(schema) if schema["type"] == "object" => schema.clone(),
                    _ => serde_json::json!({"type": "object", "properties": {}}),
                };
                Some(ToolSpec {
                    name: name.to_string(),
                    description: tool["description"].as_str().unwrap_or_default().to_string(),
                    parameters,
                    kind: ToolKind::Mcp {
                        client,
                        tool: name.to_string(),
                    },
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_server_table_offers_its_allowed_valid_tools() {
        let table: toml::Table =
            toml::from_str("mcp_server = 'weather'\nonly = ['forecast', 'bad name']").unwrap();
        let set = McpToolset::parse(&table).unwrap();
        assert_eq!(set.topic, "mcp.weather.requests");
        let listed = vec![
            json!({"name": "forecast", "description": "d", "inputSchema": {"type": "object", "properties": {"city": {"type": "string"}}}}),
            json!({"name": "alerts", "inputSchema": {"type": "object"}}),
            json!({"name": "bad name"}),
        ];
        let specs = set.specs(0, &listed);
        assert_eq!(specs.len(), 1);
        assert_eq!(specs[0].name, "forecast");
        assert_eq!(specs[0].parameters["properties"]["city"]["type"], "string");
        assert_eq!(
            specs[0].kind,
            ToolKind::Mcp {
                client: 0,
                tool: "forecast".to_string()
            }
        );
    }

    #[test]
    fn bad_server_tables_are_refused() {
        let parse = |text: &str| McpToolset::parse(&toml::from_str(text).unwrap());
        assert!(parse("mcp_server = ''").is_err());
        assert!(parse("mcp_server = 'w'\ntimeout_ms = 0").is_err());
        assert!(parse("mcp_server = 'w'\nonly = [1]").is_err());
        assert!(parse("mcp_server = 'w'\nname = 'x'")
            .unwrap_err()
            .contains("name"));
    }
}
