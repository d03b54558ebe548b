//! Kind `llm`: renders a prompt from each event, asks the model (optionally under a
//! JSON schema), checks the answer, and emits it: one event, or one per element of
//! an array field of the answer (`fan_out`) carrying the headers an `aggregate` agent
//! downstream joins them by.
//!
//! ```toml
//! [[agents]]
//! name = "questions"
//! kind = "llm"
//! topics = ["research.requests"]
//! [agents.options]
//! llm = "local"                          # the [llm.<name>] endpoint
//! system = "You split research requests into questions."
//! prompt = "Request: {{data.text}}"      # default: {{data}}
//! output_topic = "research.questions"
//! output_schema = { type = "object", required = ["questions"], properties = { questions = { type = "array", items = { type = "string" } } } }
//! fan_out = "questions"                  # optional
//! max_tokens = 256
//! temperature = 0.0
//! event_type = "llm.output"
//! ```

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::model::ChatModel;
use super::request::{answer_text, call_details, chat_request, event_ref, Options};
use super::schema::{check, schema_from_option};
use super::template::{event_view, lookup, Template};
use crate::agent::{Agent, Context, HandlerError};
use crate::config::{AgentDef, ConfigError};
use crate::envelope::Envelope;
use crate::event::Event;
use crate::metrics::{llm_metrics, LlmErrorKind};

/// Header naming the model's raw answer on a dead-lettered event.
pub const RAW_ANSWER_HEADER: &str = "llm.raw_answer";

/// The options of an `llm` agent, checked at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct CompletionOptions {
    /// The `[llm.<name>]` endpoint.
    pub llm: String,
    /// System message.
    pub system: Option<String>,
    /// The user message template.
    pub prompt: Template,
    /// Where answers go.
    pub output_topic: String,
    /// JSON Schema the answer must satisfy.
    pub output_schema: Option<Value>,
    /// Array field of the answer to emit one event per element of.
    pub fan_out: Option<String>,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Type of the emitted envelopes.
    pub event_type: String,
}

const KNOWN: [&str; 9] = [
    "llm",
    "system",
    "prompt",
    "output_topic",
    "output_schema",
    "fan_out",
    "max_tokens",
    "temperature",
    "event_type",
];

impl CompletionOptions {
    /// Reads and checks `def.options`.
    pub fn from_def(def: &AgentDef) -> Result<CompletionOptions, ConfigError> {
        let options = Options::new(def, &KNOWN)?;
        let prompt = options
            .string("prompt")?
            .unwrap_or_else(|| "{{data}}".to_string());
        let prompt =
            Template::parse(&prompt).map_err(|e| options.error(format!("options.prompt: {e}")))?;
        let output_schema = options
            .raw("output_schema")
            .map(schema_from_option)
            .transpose()
            .map_err(|e| options.error(e.to_string()))?;
        let fan_out = options.string("fan_out")?;
        if fan_out.is_some() && output_schema.is_none() {
            return Err(options.error(
                "options.fan_out needs options.output_schema (the answer must be JSON)".into(),
            ));
        }
        Ok(CompletionOptions {
            llm: options.required("llm")?,
            system: options.string("system")?,
            prompt,
            output_topic: options.required("output_topic")?,
            output_schema,
            fan_out,
            max_tokens: options.unsigned("max_tokens", 256)?,
            temperature: options.number("temperature", 0.0)?,
            event_type: options
                .string("event_type")?
                .unwrap_or_else(|| "llm.output".to_string()),
        })
    }
}

/// The `llm` kind (see the module documentation).
#[derive(Debug)]
pub struct LlmCompletion<M> {
    options: CompletionOptions,
    model: Arc<M>,
    model_name: String,
}

impl<M: ChatModel> LlmCompletion<M> {
    /// An agent with these options answering through `model` (which reports under
    /// `model_name` in metrics).
    pub fn new(options: CompletionOptions, model: Arc<M>, model_name: &str) -> LlmCompletion<M> {
        LlmCompletion {
            options,
            model,
            model_name: model_name.to_string(),
        }
    }

    /// The parsed answer, or why it is unusable (with the raw answer attached).
    fn parse_answer(&self, ctx: &Context, text: &str) -> Result<Value, HandlerError> {
        let Some(schema) = &self.options.output_schema else {
            return Ok(json!({ "text": text }));
        };
        let invalid = |reason: String| {
            llm_metrics()
                .of(ctx.agent_id(), &self.model_name)
                .observe_error(LlmErrorKind::InvalidAnswer);
            HandlerError::new(reason).with_dlq_header(RAW_ANSWER_HEADER, text)
        };
        let value: Value = serde_json::from_str(text.trim())
            .map_err(|e| invalid(format!("the model's answer is not JSON: {e}")))?;
        check(schema, &value).map_err(|v| invalid(v.to_string()))?;
        Ok(value)
    }
}

impl<M: ChatModel> Agent for LlmCompletion<M> {
    fn kind(&self) -> &str {
        "llm"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let prompt = self
            .options
            .prompt
            .render(&event_view(event))
            .map_err(|e| HandlerError::new(e.to_string()))?;
        let request = chat_request(
            self.options.system.as_deref(),
            prompt,
            self.options.max_tokens,
            self.options.temperature,
            self.options.output_schema.as_ref().map(|s| ("output", s)),
        )?;
        let outcome = self.model.chat(event, 0, request).await?;
        let text = answer_text(&outcome);
        let output = self.parse_answer(ctx, &text)?;
        let mut details = call_details(event, &outcome);
        let topic = &self.options.output_topic;
        match &self.options.fan_out {
            None => {
                ctx.emit(
                    topic,
                    event.key.clone(),
                    &self.options.event_type,
                    output.clone(),
                );
                details.insert("output".into(), output);
                ctx.decide("output", Value::Object(details));
            }
            Some(field) => {
                let path: Vec<&str> = field.split('.').collect();
                let Some(Value::Array(items)) = lookup(&output, &path) else {
                    return Err(HandlerError::new(format!(
                        "fan_out field `{field}` of the answer is not an array"
                    ))
                    .with_dlq_header(RAW_ANSWER_HEADER, text));
                };
                let count = items.len();
                let correlation = event_ref(event).replace('/', "-");
                for (index, item) in items.iter().enumerate() {
                    let data = json!({ "item": item, "index": index, "count": count });
                    let envelope = Envelope::new(
                        &self.options.event_type,
                        ctx.agent_id(),
                        Some(ctx.trace_id().to_string()),
                        data,
                    );
                    let mut record = envelope.to_record(event.key.clone());
                    for (name, value) in [
                        ("correlation_id", correlation.clone()),
                        ("fanout.count", count.to_string()),
                        ("fanout.index", index.to_string()),
                    ] {
                        record.headers.push((name.to_string(), Bytes::from(value)));
                    }
                    ctx.emit_raw(topic, record);
                }
                details.insert("output".into(), output);
                details.insert("fanned_out".into(), count.into());
                details.insert("correlation_id".into(), correlation.into());
                ctx.decide("fan_out", Value::Object(details));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(options: &str) -> AgentDef {
        let text = format!("name = 'q'\nkind = 'llm'\ntopics = ['t']\n[options]\n{options}");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn options_take_defaults_and_refuse_mistakes_by_name() {
        let options =
            CompletionOptions::from_def(&def("llm = 'local'\noutput_topic = 'out'")).unwrap();
        assert_eq!(
            (
                options.max_tokens,
                options.temperature,
                options.event_type.as_str()
            ),
            (256, 0.0, "llm.output")
        );
        let table = "llm = 'local'\noutput_topic = 'out'\nfan_out = 'xs'\noutput_schema = { type = 'object', properties = { xs = { type = 'array' } } }";
        let options = CompletionOptions::from_def(&def(table)).unwrap();
        assert_eq!(
            options.output_schema.unwrap()["properties"]["xs"]["type"],
            "array"
        );
        for (options, expected) in [
            ("llm = 'local'", "options.output_topic is required"),
            (
                "llm = 'local'\noutput_topic = 'o'\nfan_out = 'xs'",
                "needs options.output_schema",
            ),
            (
                "llm = 'local'\noutput_topic = 'o'\nprompt = '{{data'",
                "unclosed",
            ),
            (
                "llm = 'local'\noutput_topic = 'o'\nmax_token = 5",
                "unknown option `max_token`",
            ),
            (
                "llm = 'local'\noutput_topic = 'o'\noutput_schema = '{'",
                "not valid JSON",
            ),
        ] {
            let error = CompletionOptions::from_def(&def(options))
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{options}: {error}");
        }
    }

    /// Answers every call with `content`.
    struct Canned(&'static str);

    impl ChatModel for Canned {
        async fn chat(
            &self,
            _: &Event,
            _: u32,
            _: async_openai::types::chat::CreateChatCompletionRequest,
        ) -> Result<super::super::ChatOutcome, super::super::LlmError> {
            let response = serde_json::from_value(json!({
                "id": "1", "object": "chat.completion", "created": 1, "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": self.0}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
            }))
            .map_err(|e| super::super::LlmError::Record(e.to_string()))?;
            Ok(super::super::ChatOutcome {
                response,
                usage: super::super::TokenUsage {
                    input: 5,
                    output: 3,
                },
                latency: std::time::Duration::from_millis(2),
                cost: 0.25,
                model: "m".to_string(),
                replayed: false,
            })
        }
    }

    fn handle_with(answer: &'static str) -> (Result<(), HandlerError>, Context) {
        let table = "llm = 'local'\noutput_topic = 'out'\nfan_out = 'xs'\nprompt = '{{data.q}}'\noutput_schema = { type = 'object', required = ['xs'], properties = { xs = { type = 'array', items = { type = 'string' } } } }";
        let agent = LlmCompletion::new(
            CompletionOptions::from_def(&def(table)).unwrap(),
            Arc::new(Canned(answer)),
            "m",
        );
        let event = Event {
            topic: Arc::from("in"),
            partition: 2,
            offset: 9,
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::from_static(br#"{"q": "why?"}"#)),
            headers: Vec::new(),
            undecodable: None,
        };
        let mut ctx = Context::new(
            Arc::from("completion-test"),
            None,
            1,
            Arc::new(crate::state::StateStore::default()),
            Arc::new(crate::metrics::AgentMetrics::new("llm")),
        );
        let result = futures::executor::block_on(agent.handle(&event, &mut ctx));
        (result, ctx)
    }

    #[test]
    fn fans_out_one_event_per_element_with_workflow_headers() {
        let (result, ctx) = handle_with(r#"{"xs": ["a", "b"]}"#);
        result.unwrap();
        assert_eq!(ctx.emits.len(), 2);
        for (i, (topic, record)) in ctx.emits.iter().enumerate() {
            assert_eq!(topic, "out");
            let header = |n: &str| {
                record
                    .headers
                    .iter()
                    .find(|(k, _)| k == n)
                    .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            };
            assert_eq!(header("correlation_id").as_deref(), Some("in-2-9"));
            assert_eq!(header("fanout.count").as_deref(), Some("2"));
            assert_eq!(header("fanout.index"), Some(i.to_string()));
            let envelope: Envelope =
                serde_json::from_slice(record.value.as_deref().unwrap()).unwrap();
            assert_eq!(
                envelope.data,
                json!({"item": (["a", "b"][i]), "index": i, "count": 2})
            );
        }
        assert_eq!(ctx.decisions.len(), 1);
    }

    #[test]
    fn an_answer_violating_the_schema_fails_with_the_raw_answer() {
        for answer in [r#"{"xs": [1]}"#, "not json", r#"{"ys": []}"#] {
            let (result, ctx) = handle_with(answer);
            let error = result.unwrap_err();
            assert!(
                !error.unavailable,
                "the answer's fault: retried, then dead-lettered"
            );
            assert_eq!(
                error.dlq_headers,
                vec![(RAW_ANSWER_HEADER.to_string(), answer.to_string())],
                "{error}"
            );
            assert!(ctx.emits.is_empty() && ctx.decisions.is_empty());
        }
    }
}
