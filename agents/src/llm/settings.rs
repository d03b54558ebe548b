//! `[llm.<name>]` tables: typed, validated model endpoint settings.
//!
//! ```toml
//! [llm.local]
//! base_url = "http://127.0.0.1:8080/v1"   # OpenAI-compatible, `/v1` included
//! base_url_env = "OPENAI_BASE_URL"        # the NAME of a variable overriding base_url
//! model = "smollm2"
//! api_key_env = "OPENAI_API_KEY"          # the NAME of a variable, never the key
//! timeout_ms = 30000                      # per attempt
//! max_retries = 3                         # on 429, 5xx, timeouts, connection errors
//! max_concurrency = 4                     # calls in flight to this endpoint
//! price_per_1k_input = 0.00015
//! price_per_1k_output = 0.0006
//! breaker_failures = 5                    # consecutive failures that open the breaker
//! breaker_cooldown_ms = 30000             # how long it stays open
//! structured_output = "json_schema"       # or "json_object_schema" (llama-cpp-python)
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// `[llm.<name>]` tables: the endpoints LLM agents may call, by name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(transparent)]
pub struct LlmSettings {
    /// Endpoint definitions by name.
    pub endpoints: BTreeMap<String, EndpointSettings>,
}

/// How an endpoint wants JSON-schema-constrained output asked for. OpenAI, vLLM and
/// llama.cpp's own server take OpenAI's `response_format = {type: "json_schema"}`;
/// llama-cpp-python's server refuses it and takes `{type: "json_object", schema}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// OpenAI's `json_schema` response format, sent as is.
    #[default]
    JsonSchema,
    /// `{"type": "json_object", "schema": ...}` (llama-cpp-python's dialect).
    JsonObjectSchema,
}

/// One `[llm.<name>]` table. Unknown keys are refused (with the key named) so a typo
/// such as `timeout = 5` cannot silently leave the default in place.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSettings {
    /// OpenAI-compatible base URL, `/v1` included. The default when `base_url_env`
    /// is absent or its variable is unset or empty.
    pub base_url: String,
    /// Name of an environment variable that, when set and non-empty, overrides
    /// `base_url` (as the OpenAI SDKs honour `OPENAI_BASE_URL`), so one configuration
    /// file serves every deployment and test rig. Read when the endpoint is
    /// validated and when its client is built.
    #[serde(default)]
    pub base_url_env: Option<String>,
    /// Model name sent with every request.
    pub model: String,
    /// Name of the environment variable holding the API key (the key itself never
    /// belongs in a configuration file). None: no `Authorization` header.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Longest one HTTP attempt may take.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Retries after the first attempt on 429, 5xx, timeouts and connection errors.
    #[serde(default = "defaults::max_retries")]
    pub max_retries: u32,
    /// First retry backoff; doubled per retry (a `Retry-After` header wins).
    #[serde(default = "defaults::retry_backoff_ms")]
    pub retry_backoff_ms: u64,
    /// Calls in flight to this endpoint at once, across all agents using it.
    #[serde(default = "defaults::max_concurrency")]
    pub max_concurrency: usize,
    /// Price of 1,000 prompt tokens (any currency; cost metrics use the same one).
    #[serde(default)]
    pub price_per_1k_input: f64,
    /// Price of 1,000 completion tokens.
    #[serde(default)]
    pub price_per_1k_output: f64,
    /// Consecutive failed attempts after which the circuit breaker opens.
    #[serde(default = "defaults::breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker fails calls fast before letting one trial through.
    #[serde(default = "defaults::breaker_cooldown_ms")]
    pub breaker_cooldown_ms: u64,
    /// How constrained output is asked for.
    #[serde(default)]
    pub structured_output: StructuredOutput,
}

mod defaults {
    pub fn timeout_ms() -> u64 {
        30_000
    }
    pub fn max_retries() -> u32 {
        3
    }
    pub fn retry_backoff_ms() -> u64 {
        200
    }
    pub fn max_concurrency() -> usize {
        4
    }
    pub fn breaker_failures() -> u32 {
        5
    }
    pub fn breaker_cooldown_ms() -> u64 {
        30_000
    }
}

/// An endpoint's settings are unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SettingsError {
    /// No `[llm.<name>]` table of that name.
    #[error("no [llm.{0}] endpoint is configured")]
    UnknownEndpoint(String),
    /// A value is out of range.
    #[error("[llm.{endpoint}] {key}: {reason}")]
    Invalid {
        /// The endpoint.
        endpoint: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// `api_key_env` names a variable that is not set (checked at start, so a
    /// misconfigured deployment fails before handling anything).
    #[error("[llm.{endpoint}] api_key_env: environment variable `{variable}` is not set")]
    MissingApiKey {
        /// The endpoint.
        endpoint: String,
        /// The variable.
        variable: String,
    },
}

/// Reads an environment variable (a seam so tests need not mutate the process
/// environment, which other threads read).
type Lookup = dyn Fn(&str) -> Option<String>;

fn environment(variable: &str) -> Option<String> {
    std::env::var(variable).ok()
}

impl LlmSettings {
    /// The validated settings of endpoint `name`.
    pub fn endpoint(&self, name: &str) -> Result<&EndpointSettings, SettingsError> {
        let settings = self
            .endpoints
            .get(name)
            .ok_or_else(|| SettingsError::UnknownEndpoint(name.to_string()))?;
        settings.validate(name)?;
        Ok(settings)
    }
}

impl EndpointSettings {
    /// Settings for `base_url` and `model` with every default (tests, tools).
    pub fn new(base_url: &str, model: &str) -> EndpointSettings {
        EndpointSettings {
            base_url: base_url.to_string(),
            base_url_env: None,
            model: model.to_string(),
            api_key_env: None,
            timeout_ms: defaults::timeout_ms(),
            max_retries: defaults::max_retries(),
            retry_backoff_ms: defaults::retry_backoff_ms(),
            max_concurrency: defaults::max_concurrency(),
            price_per_1k_input: 0.0,
            price_per_1k_output: 0.0,
            breaker_failures: defaults::breaker_failures(),
            breaker_cooldown_ms: defaults::breaker_cooldown_ms(),
            structured_output: StructuredOutput::default(),
        }
    }

    /// Checks ranges that types alone cannot express, and the URL `base_url_env`'s
    /// variable holds when it is set.
    pub fn validate(&self, endpoint: &str) -> Result<(), SettingsError> {
        self.validate_with(endpoint, &environment)
    }

    /// [`Self::validate`] with environment variables read through `lookup`.
    fn validate_with(&self, endpoint: &str, lookup: &Lookup) -> Result<(), SettingsError> {
        let invalid = |key: &'static str, reason: &str| {
            Err(SettingsError::Invalid {
                endpoint: endpoint.to_string(),
                key,
                reason: reason.to_string(),
            })
        };
        if self.base_url_env.as_deref().is_some_and(str::is_empty) {
            return invalid("base_url_env", "must name an environment variable");
        }
        let is_http = |url: &str| url.starts_with("http://") || url.starts_with("https://");
        if !is_http(&self.base_url) {
            return invalid("base_url", "must start with http:// or https://");
        }
        if let Some((variable, url)) = self.base_url_override(lookup) {
            if !is_http(&url) {
                return invalid(
                    "base_url_env",
                    &format!(
                        "`{variable}` is `{url}`, which does not start with http:// or https://"
                    ),
                );
            }
        }
        if self.model.trim().is_empty() {
            return invalid("model", "must not be empty");
        }
        if self.timeout_ms == 0 {
            return invalid("timeout_ms", "must be at least 1");
        }
        if self.max_concurrency == 0 {
            return invalid("max_concurrency", "must be at least 1");
        }
        if self.breaker_failures == 0 {
            return invalid("breaker_failures", "must be at least 1");
        }
        for (key, price) in [
            ("price_per_1k_input", self.price_per_1k_input),
            ("price_per_1k_output", self.price_per_1k_output),
        ] {
            if !price.is_finite() || price < 0.0 {
                return invalid(key, "must be a finite, non-negative number");
            }
        }
        if self.api_key_env.as_deref().is_some_and(str::is_empty) {
            return invalid("api_key_env", "must name an environment variable");
        }
        Ok(())
    }

    /// The variable `base_url_env` names and its value, when it is set and non-empty.
    fn base_url_override(&self, lookup: &Lookup) -> Option<(&str, String)> {
        let variable = self.base_url_env.as_deref().filter(|v| !v.is_empty())?;
        let url = lookup(variable).filter(|u| !u.trim().is_empty())?;
        Some((variable, url.trim().to_string()))
    }

    /// The base URL calls go to: the value of the variable `base_url_env` names when
    /// it is set and non-empty, else `base_url`.
    pub fn effective_base_url(&self) -> String {
        self.effective_base_url_with(&environment)
    }

    fn effective_base_url_with(&self, lookup: &Lookup) -> String {
        self.base_url_override(lookup)
            .map_or_else(|| self.base_url.clone(), |(_, url)| url)
    }

    /// The API key from the variable `api_key_env` names (empty without one).
    pub fn api_key(&self, endpoint: &str) -> Result<String, SettingsError> {
        match &self.api_key_env {
            None => Ok(String::new()),
            Some(variable) => std::env::var(variable).map_err(|_| SettingsError::MissingApiKey {
                endpoint: endpoint.to_string(),
                variable: variable.clone(),
            }),
        }
    }

    /// Cost of a call that used these tokens.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        input_tokens as f64 / 1000.0 * self.price_per_1k_input
            + output_tokens as f64 / 1000.0 * self.price_per_1k_output
    }

    /// Per-attempt timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LlmSettings, toml::de::Error> {
        #[derive(Deserialize)]
        struct Doc {
            llm: LlmSettings,
        }
        toml::from_str::<Doc>(text).map(|d| d.llm)
    }

    #[test]
    fn parses_defaults_and_refuses_unknown_keys_by_name() {
        let settings = parse("[llm.a]\nbase_url='http://h/v1'\nmodel='m'\n").unwrap();
        let a = settings.endpoint("a").unwrap();
        assert_eq!(a.max_retries, 3);
        assert_eq!(a.structured_output, StructuredOutput::JsonSchema);
        let error = parse("[llm.a]\nbase_url='http://h/v1'\nmodel='m'\ntimeout=5\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `timeout`"), "{error}");
        assert!(matches!(
            settings.endpoint("b"),
            Err(SettingsError::UnknownEndpoint(_))
        ));
    }

    #[test]
    fn validates_ranges_and_names_the_missing_key_variable() {
        let mut s = EndpointSettings::new("ftp://x", "m");
        assert!(matches!(
            s.validate("e"),
            Err(SettingsError::Invalid {
                key: "base_url",
                ..
            })
        ));
        s.base_url = "http://x/v1".to_string();
        s.price_per_1k_input = -1.0;
        assert!(s.validate("e").is_err());
        s.price_per_1k_input = 2.0;
        s.price_per_1k_output = 4.0;
        assert!(s.validate("e").is_ok());
        assert!((s.cost(500, 250) - 2.0).abs() < 1e-9);
        s.api_key_env = Some("AGENTLOG_TEST_SURELY_UNSET_KEY".to_string());
        let error = s.api_key("e").unwrap_err().to_string();
        assert!(error.contains("AGENTLOG_TEST_SURELY_UNSET_KEY"), "{error}");
    }

    #[test]
    fn base_url_env_overrides_base_url_only_when_set_and_non_empty() {
        let env = |variable: &str| match variable {
            "SET" => Some(" http://override:9/v1 ".to_string()),
            "EMPTY" => Some(" ".to_string()),
            "BAD" => Some("override:9/v1".to_string()),
            _ => None,
        };
        let text = "[llm.a]\nbase_url='http://default/v1'\nbase_url_env='SET'\nmodel='m'\n";
        let settings = parse(text).unwrap();
        let mut s = settings.endpoints["a"].clone();
        assert_eq!(s.base_url_env.as_deref(), Some("SET"));
        assert!(s.validate_with("a", &env).is_ok());
        assert_eq!(s.effective_base_url_with(&env), "http://override:9/v1");

        s.base_url_env = Some("EMPTY".to_string());
        assert_eq!(
            s.effective_base_url_with(&env),
            "http://default/v1",
            "empty: default"
        );
        s.base_url_env = Some("UNSET".to_string());
        assert_eq!(
            s.effective_base_url_with(&env),
            "http://default/v1",
            "unset: default"
        );
        assert!(s.validate_with("a", &env).is_ok());
        s.base_url_env = None;
        assert_eq!(s.effective_base_url_with(&env), "http://default/v1");
        assert_eq!(
            s.effective_base_url(),
            "http://default/v1",
            "the real environment is read only through base_url_env"
        );

        s.base_url_env = Some("BAD".to_string());
        let error = s.validate_with("a", &env).unwrap_err().to_string();
        assert!(
            error.contains("base_url_env") && error.contains("`BAD`"),
            "{error}"
        );
        s.base_url_env = Some(String::new());
        assert!(matches!(
            s.validate_with("a", &env),
            Err(SettingsError::Invalid {
                key: "base_url_env",
                ..
            })
        ));

        // Unknown keys are still refused by name, a near miss of this one included.
        let error = parse("[llm.a]\nbase_url='http://h/v1'\nmodel='m'\nbase_url_var='X'\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown field `base_url_var`"), "{error}");
    }
}
