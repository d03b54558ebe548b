//! The HTTP client of one `[llm.<name>]` endpoint, on async-openai.
//!
//! async-openai's default `Client` wraps every request in its own `OpenAIRetryLayer`
//! (3 retries with backoff on 429/5xx/connect errors, not configurable). Retries that
//! the breaker and the agent's backoff cannot see would multiply the waits and
//! mis-count failures, so the client runs on [`AttemptService`] (installed with
//! `Client::with_http_service`, the `middleware` feature): one HTTP attempt per call,
//! with a per-attempt timeout, which turns 429 and 5xx answers into an error that
//! keeps the status and the `Retry-After` header. [`LlmClient::complete`] owns the
//! only retry loop: at most `max_retries` retries, exponential backoff or
//! `Retry-After` (capped), a semaphore of `max_concurrency` permits, and a
//! [`CircuitBreaker`] that fails calls fast while the endpoint is down.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant, SystemTime};

use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::HttpRequestFactory;
use async_openai::types::chat::{CreateChatCompletionRequest, CreateChatCompletionResponse};
use async_openai::Client;
use thiserror::Error;
use tokio::sync::Semaphore;

use super::breaker::CircuitBreaker;
use super::model::{ChatOutcome, LlmError, TokenUsage};
use super::settings::{EndpointSettings, SettingsError, StructuredOutput};

/// Longest wait a `Retry-After` header may impose on one retry; a longer one is
/// capped (the event stays in place either way: after the last retry it waits as an
/// unavailable dependency).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// An endpoint answered 429 or 5xx: transient, retried by [`LlmClient::complete`].
#[derive(Debug, Error)]
#[error("HTTP {status}: {body}")]
pub struct TransientStatus {
    /// The status code.
    pub status: u16,
    /// The `Retry-After` delay, if the endpoint sent a parseable one.
    pub retry_after: Option<Duration>,
    /// The start of the answer's body, for logs.
    pub body: String,
}

/// One HTTP attempt per request, no retries (see the module documentation).
#[derive(Debug, Clone)]
pub struct AttemptService {
    http: reqwest::Client,
}

type AttemptFuture =
    Pin<Box<dyn Future<Output = Result<reqwest::Response, OpenAIError>> + Send + 'static>>;

impl tower::Service<HttpRequestFactory> for AttemptService {
    type Response = reqwest::Response;
    type Error = OpenAIError;
    type Future = AttemptFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, factory: HttpRequestFactory) -> Self::Future {
        let http = self.http.clone();
        Box::pin(async move {
            let request = factory.build().await?;
            let response = http.execute(request).await.map_err(OpenAIError::Reqwest)?;
            let status = response.status();
            if status.as_u16() == 429 || status.is_server_error() {
                let retry_after = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| parse_retry_after(v, SystemTime::now()));
                let body = response.text().await.unwrap_or_default();
                return Err(OpenAIError::Boxed(Box::new(TransientStatus {
                    status: status.as_u16(),
                    retry_after,
                    body: body.chars().take(300).collect(),
                })));
            }
            Ok(response)
        })
    }
}

/// A `Retry-After` value: delay-seconds or an HTTP-date (RFC 9110 §10.2.3), as a delay
/// from `now` (zero for a date in the past); `None` when unparseable.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Building a client failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// The settings are invalid or the API key variable is missing.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The HTTP client could not be built (TLS set-up).
    #[error("[llm.{endpoint}]: building the HTTP client: {reason}")]
    Http {
        /// The endpoint.
        endpoint: String,
        /// Why.
        reason: String,
    },
}

/// How one failed attempt is treated.
#[derive(Debug)]
enum Failure {
    /// Retry (and count against the breaker), waiting at least this long if given.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// The endpoint is up but will not answer this request.
    Refused(String),
}

fn classify(error: OpenAIError) -> Failure {
    match error {
        OpenAIError::Boxed(boxed) => match boxed.downcast::<TransientStatus>() {
            Ok(status) => Failure::Transient {
                retry_after: status.retry_after,
                reason: status.to_string(),
            },
            Err(other) => Failure::Transient {
                reason: other.to_string(),
                retry_after: None,
            },
        },
        // Connection refused or reset, timeouts, a body cut short: the transport.
        OpenAIError::Reqwest(error) => Failure::Transient {
            reason: error.to_string(),
            retry_after: None,
        },
        OpenAIError::ApiError(api)
            if api.status_code.as_u16() == 429 || api.status_code.is_server_error() =>
        {
            Failure::Transient {
                reason: api.to_string(),
                retry_after: None,
            }
        }
        other => Failure::Refused(other.to_string()),
    }
}

/// The client of one endpoint, shared by every agent that calls it (so
/// `max_concurrency` and the breaker hold for the endpoint as a whole).
#[derive(Debug)]
pub struct LlmClient {
    name: String,
    settings: EndpointSettings,
    client: Client<OpenAIConfig>,
    permits: Semaphore,
    breaker: CircuitBreaker,
}

impl LlmClient {
    /// A client for endpoint `name`; fails when the settings are invalid or the API
    /// key variable is not set.
    pub fn new(name: &str, settings: &EndpointSettings) -> Result<LlmClient, ClientError> {
        settings.validate(name)?;
        let api_key = settings.api_key(name)?;
        let http = reqwest::Client::builder()
            .timeout(settings.timeout())
            .build()
            .map_err(|e| ClientError::Http {
                endpoint: name.to_string(),
                reason: e.to_string(),
            })?;
        // Every field set explicitly: OpenAIConfig's defaults read OPENAI_* variables,
        // which must not leak into an endpoint configured otherwise.
        let config = OpenAIConfig::new()
            .with_api_base(settings.effective_base_url().trim_end_matches('/'))
            .with_api_key(api_key)
            .with_org_id("")
            .with_project_id("");
        let client = Client::with_config(config).with_http_service(AttemptService { http });
        Ok(LlmClient {
            name: name.to_string(),
            settings: settings.clone(),
            client,
            permits: Semaphore::new(settings.max_concurrency),
            breaker: CircuitBreaker::new(
                settings.breaker_failures,
                Duration::from_millis(settings.breaker_cooldown_ms),
            ),
        })
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The endpoint's settings.
    pub fn settings(&self) -> &EndpointSettings {
        &self.settings
    }

    fn unavailable(&self, reason: String) -> LlmError {
        LlmError::Unavailable {
            endpoint: self.name.clone(),
            reason,
        }
    }

    /// The request as this endpoint wants it: the configured model when the request
    /// names none, `max_tokens` (which llama.cpp honours) from `max_completion_tokens`,
    /// and the structured-output dialect.
    fn body(&self, request: &CreateChatCompletionRequest) -> Result<serde_json::Value, LlmError> {
        let mut body = serde_json::to_value(request).map_err(|e| LlmError::Refused {
            endpoint: self.name.clone(),
            reason: format!("request not serialisable: {e}"),
        })?;
        let Some(fields) = body.as_object_mut() else {
            return Ok(body);
        };
        if fields
            .get("model")
            .and_then(|m| m.as_str())
            .is_none_or(str::is_empty)
        {
            fields.insert("model".into(), self.settings.model.clone().into());
        }
        if !fields.contains_key("max_tokens") {
            if let Some(limit) = fields.get("max_completion_tokens").cloned() {
                fields.insert("max_tokens".into(), limit);
            }
        }
        if self.settings.structured_output == StructuredOutput::JsonObjectSchema {
            let schema = fields
                .get("response_format")
                .filter(|f| f["type"] == "json_schema")
                .map(|f| f["json_schema"]["schema"].clone());
            if let Some(schema) = schema {
                fields.insert(
                    "response_format".into(),
                    serde_json::json!({ "type": "json_object", "schema": schema }),
                );
            }
        }
        Ok(body)
    }

    /// Sends `request`, retrying transient failures (bounded), and returns the answer
    /// with its usage, cost and latency (from the first attempt to the answer).
    pub async fn complete(
        &self,
        request: &CreateChatCompletionRequest,
    ) -> Result<ChatOutcome, LlmError> {
        let body = self.body(request)?;
        // Fail fast without queueing for a permit while the breaker is open (a read:
        // only the attempt below may take the half-open trial).
        if self.breaker.is_open(Instant::now()) {
            return Err(self.unavailable("circuit breaker open".to_string()));
        }
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| self.unavailable("client closed".to_string()))?;
        let started = Instant::now();
        let mut retry = 0u32;
        loop {
            if let Err(open_for) = self.breaker.allow(Instant::now()) {
                return Err(self.unavailable(format!(
                    "circuit breaker open for another {} ms",
                    open_for.as_millis()
                )));
            }
            let attempt = self
                .client
                .chat()
                .create_byot::<_, CreateChatCompletionResponse>(body.clone())
                .await;
            let failure = match attempt {
                Ok(response) => {
                    self.breaker.record_success();
                    return Ok(self.outcome(response, started.elapsed()));
                }
                Err(error) => classify(error),
            };
            let (reason, retry_after) = match failure {
                Failure::Refused(reason) => {
                    self.breaker.record_success();
                    return Err(LlmError::Refused {
                        endpoint: self.name.clone(),
                        reason,
                    });
                }
                Failure::Transient {
                    reason,
                    retry_after,
                } => (reason, retry_after),
            };
            self.breaker.record_failure(Instant::now());
            if retry >= self.settings.max_retries {
                return Err(self.unavailable(format!("{reason} (after {} attempts)", retry + 1)));
            }
            let backoff = Duration::from_millis(self.settings.retry_backoff_ms)
                .saturating_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX));
            let wait = retry_after.unwrap_or(backoff).min(MAX_RETRY_AFTER);
            tracing::debug!(endpoint = %self.name, %reason, retry, wait_ms = wait.as_millis() as u64, "model call failed; retrying");
            tokio::time::sleep(wait).await;
            retry += 1;
        }
    }

    fn outcome(&self, response: CreateChatCompletionResponse, latency: Duration) -> ChatOutcome {
        let usage = response
            .usage
            .as_ref()
            .map(|u| TokenUsage {
                input: u64::from(u.prompt_tokens),
                output: u64::from(u.completion_tokens),
            })
            .unwrap_or_default();
        let model = if response.model.is_empty() {
            self.settings.model.clone()
        } else {
            response.model.clone()
        };
        ChatOutcome {
            cost: self.settings.cost(usage.input, usage.output),
            response,
            usage,
            latency,
            model,
            replayed: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn rewrites_the_request_for_the_endpoint_dialect() {
        let mut settings = EndpointSettings::new("http://127.0.0.1:1/v1", "m");
        settings.structured_output = StructuredOutput::JsonObjectSchema;
        let client = LlmClient::new("e", &settings).unwrap();
        let request: CreateChatCompletionRequest = serde_json::from_value(serde_json::json!({
            "model": "",
            "messages": [{"role": "user", "content": "hi"}],
            "max_completion_tokens": 9,
            "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
        }))
        .unwrap();
        let body = client.body(&request).unwrap();
        assert_eq!(body["model"], "m");
        assert_eq!(body["max_tokens"], 9);
        assert_eq!(
            body["response_format"],
            serde_json::json!({"type": "json_object", "schema": {"type": "object"}})
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable_after_bounded_retries_then_fails_fast() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port(); // released: nothing listens there
        let mut settings = EndpointSettings::new(&format!("http://127.0.0.1:{port}/v1"), "m");
        settings.max_retries = 2;
        settings.retry_backoff_ms = 1;
        settings.breaker_failures = 3;
        let client = LlmClient::new("down", &settings).unwrap();
        let request: CreateChatCompletionRequest = serde_json::from_value(
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .unwrap();
        let error = client.complete(&request).await.unwrap_err();
        assert!(
            matches!(&error, LlmError::Unavailable { reason, .. } if reason.contains("after 3 attempts")),
            "{error}"
        );
        let error = client.complete(&request).await.unwrap_err();
        assert!(
            matches!(&error, LlmError::Unavailable { reason, .. } if reason.starts_with("circuit breaker open")),
            "{error}"
        );
    }
}
