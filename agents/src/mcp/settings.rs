//! `[[mcp_servers]]`: existing MCP servers served on topics by a bridge.
//!
//! ```toml
//! [[mcp_servers]]
//! name = "weather"
//! command = ["python3", "weather_server.py"]   # a stdio server; or
//! # url = "http://127.0.0.1:8000/mcp"          # a streamable-HTTP server
//! topics = ["mcp.weather.requests"]            # default: mcp.<name>.requests
//! instances = 2            # bridge members in this process (a swarm shares the topic)
//! max_in_flight = 16       # requests one member serves at once (default 16)
//! request_timeout_ms = 30000  # longest wait for the server's answer to one request
//! max_message_bytes = 1048576 # largest request and response relayed
//! env = { UNITS = "metric" }  # extra environment of a stdio server
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::binding;
use crate::config::ConfigError;
use crate::runtime::AgentSpec;

/// Default requests one bridge member serves at once: MCP calls wait on a tool, so
/// a member keeps several going (requests with the same key stay in order).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 16;
/// Default longest wait for one answer from the server.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Default largest request or response relayed (Kafka's default max message size).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// One `[[mcp_servers]]` table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct McpServerDef {
    /// The server's name: its topics and its bridge's group derive from it.
    pub name: String,
    /// A stdio server: program and arguments.
    pub command: Option<Vec<String>>,
    /// A streamable-HTTP server's endpoint.
    pub url: Option<String>,
    /// Request topics (default `mcp.<name>.requests`).
    pub topics: Option<Vec<String>>,
    /// Extra environment variables of a stdio server.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory of a stdio server.
    pub cwd: Option<PathBuf>,
    /// Bridge members in this process (default 1).
    pub instances: Option<usize>,
    /// Requests one member serves at once (default [`DEFAULT_MAX_IN_FLIGHT`]).
    pub max_in_flight: Option<usize>,
    /// Longest wait for the server's answer (default 30 s).
    pub request_timeout_ms: Option<u64>,
    /// Largest request and response relayed (default 1 MiB).
    pub max_message_bytes: Option<usize>,
}

/// How the bridge reaches the server.
#[derive(Debug, Clone, PartialEq)]
pub enum Endpoint {
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        /// Program.
        program: String,
        /// Arguments.
        args: Vec<String>,
        /// Extra environment.
        env: BTreeMap<String, String>,
        /// Working directory.
        cwd: Option<PathBuf>,
    },
    /// A streamable-HTTP endpoint.
    Http {
        /// Its URL.
        url: String,
    },
}

impl McpServerDef {
    /// The bridge's agent name (and group): `mcp.<name>`.
    pub fn agent_name(&self) -> String {
        format!("mcp.{}", self.name)
    }

    /// The request topics the bridge consumes.
    pub fn request_topics(&self) -> Vec<String> {
        self.topics
            .clone()
            .unwrap_or_else(|| vec![binding::requests_topic(&self.name)])
    }

    /// The longest wait for one answer from the server.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout_ms
            .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_millis)
    }

    /// The largest request or response relayed.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes.unwrap_or(DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// The bridge's swarm: its group, members and concurrency.
    pub fn spec(&self) -> AgentSpec {
        let topics = self.request_topics();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let mut spec = AgentSpec::new(&self.agent_name(), &topics)
            .instances(self.instances.unwrap_or(1).max(1));
        spec.max_in_flight = self.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT).max(1);
        spec
    }

    /// Checks the table and says how to reach the server.
    pub fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let bad = |reason: &str| ConfigError::Options {
            name: format!("mcp_servers.{}", self.name),
            reason: reason.to_string(),
        };
        let valid_name = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid_name {
            return Err(bad(
                "`name` must be non-empty ASCII letters, digits, '.', '_' or '-' (it names topics)",
            ));
        }
        if self.topics.as_ref().is_some_and(Vec::is_empty) {
            return Err(bad("`topics` must list at least one topic"));
        }
        if matches!(self.request_timeout_ms, Some(0)) || matches!(self.max_message_bytes, Some(0)) {
            return Err(bad(
                "`request_timeout_ms` and `max_message_bytes` must be positive",
            ));
        }
        match (&self.command, &self.url) {
            (Some(command), None) => {
                let Some((program, args)) = command.split_first() else {
                    return Err(bad("`command` must name a program"));
                };
                Ok(Endpoint::Stdio {
                    program: program.clone(),
                    args: args.to_vec(),
                    env: self.env.clone(),
                    cwd: self.cwd.clone(),
                })
            }
            (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {
                if !self.env.is_empty() || self.cwd.is_some() {
                    return Err(bad("`env` and `cwd` apply to a `command` server only"));
                }
                Ok(Endpoint::Http { url: url.clone() })
            }
            (None, Some(url)) => Err(bad(&format!(
                "`url` must be an http:// or https:// URL, not `{url}`"
            ))),
            _ => Err(bad(
                "give exactly one of `command` (a stdio server) or `url` (a streamable-HTTP server)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(toml_text: &str) -> Result<McpServerDef, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn a_stdio_server_gets_default_topics_and_swarm() {
        let server = def("name = \"weather\"\ncommand = [\"python3\", \"w.py\"]").unwrap();
        assert_eq!(server.request_topics(), vec!["mcp.weather.requests"]);
        assert_eq!(server.agent_name(), "mcp.weather");
        let spec = server.spec();
        assert_eq!(spec.max_in_flight, DEFAULT_MAX_IN_FLIGHT);
        assert!(matches!(
            server.endpoint().unwrap(),
            Endpoint::Stdio { program, args, .. } if program == "python3" && args == ["w.py"]
        ));
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let reason = |text: &str| def(text).unwrap().endpoint().unwrap_err().to_string();
        assert!(reason("name = \"a\"").contains("exactly one of"));
        assert!(reason("name = \"a\"\ncommand = []").contains("must name a program"));
        assert!(reason("name = \"a\"\nurl = \"ftp://x\"").contains("http://"));
        assert!(reason("name = \"a b\"\nurl = \"http://x\"").contains("`name`"));
        assert!(
            reason("name = \"a\"\nurl = \"http://x\"\ncommand = [\"x\"]")
                .contains("exactly one of")
        );
        assert!(reason("name = \"a\"\nurl = \"http://x\"\ntopics = []").contains("at least one"));
        assert!(def("name = \"a\"\nurl = \"http://x\"\nport = 1").is_err());
    }
}
