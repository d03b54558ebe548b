//! Kind `llm_router`: asks the model which configured route an event belongs to,
//! under a JSON schema whose `route` is an enum of the route names (plus a `reason`),
//! and forwards the event unchanged to that route's topic. An answer naming no
//! allowed route (or no JSON at all) sends the event to `default` instead; either
//! way the decision records the route, the reason and the call.
//!
//! ```toml
//! [[agents]]
//! name = "triage"
//! kind = "llm_router"
//! topics = ["tickets"]
//! [agents.options]
//! llm = "local"
//! default = "tickets.other"
//! routes = { billing = { topic = "tickets.billing", description = "payments, invoices, refunds" }, tech = { topic = "tickets.tech", description = "bugs, errors, crashes" } }
//! # system = "..."   prompt = "{{data.subject}}: {{data.body}}"   max_tokens = 128
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::model::ChatModel;
use super::request::{answer_text, call_details, chat_request, Options};
use super::template::{event_view, Template};
use crate::agent::{Agent, Context, HandlerError};
use crate::builtins::forward;
use crate::config::{AgentDef, ConfigError};
use crate::event::Event;
use crate::metrics::{llm_metrics, LlmErrorKind};

/// One route: where its events go and what the model is told it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Destination topic.
    pub topic: String,
    /// What belongs here, in words the model reads.
    pub description: String,
}

/// The options of an `llm_router` agent, checked at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct RouterOptions {
    /// The `[llm.<name>]` endpoint.
    pub llm: String,
    /// Routes by name (the names the model chooses among).
    pub routes: BTreeMap<String, Route>,
    /// Topic for events the model routes nowhere allowed.
    pub default: String,
    /// Instructions before the route list.
    pub system: Option<String>,
    /// The user message template.
    pub prompt: Template,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
}

const KNOWN: [&str; 7] = [
    "llm",
    "routes",
    "default",
    "system",
    "prompt",
    "max_tokens",
    "temperature",
];

/// Longest `reason` the schema allows (about 50 tokens, well within the default
/// `max_tokens` of 128).
const REASON_MAX_CHARS: u32 = 200;

const DEFAULT_SYSTEM: &str = "You are a router. Choose the one route that best fits the \
message and give a short reason. Answer in JSON.";

impl RouterOptions {
    /// Reads and checks `def.options`.
    pub fn from_def(def: &AgentDef) -> Result<RouterOptions, ConfigError> {
        let options = Options::new(def, &KNOWN)?;
        let Some(toml::Value::Table(table)) = options.raw("routes") else {
            return Err(options.error("options.routes must be a table of routes".into()));
        };
        let mut routes = BTreeMap::new();
        for (name, route) in table {
            let field = |key: &str| {
                route
                    .get(key)
                    .and_then(toml::Value::as_str)
                    .map(str::to_string)
            };
            let topic = field("topic").ok_or_else(|| {
                options.error(format!("options.routes.{name} needs a `topic` string"))
            })?;
            if let Some(extra) = route
                .as_table()
                .and_then(|t| t.keys().find(|k| *k != "topic" && *k != "description"))
            {
                return Err(options.error(format!(
                    "options.routes.{name}: unknown key `{extra}` (known: topic, description)"
                )));
            }
            let description = field("description").unwrap_or_default();
            routes.insert(name.clone(), Route { topic, description });
        }
        if routes.is_empty() {
            return Err(options.error("options.routes must name at least one route".into()));
        }
        let prompt = options
            .string("prompt")?
            .unwrap_or_else(|| "{{data}}".to_string());
        Ok(RouterOptions {
            llm: options.required("llm")?,
            routes,
            default: options.required("default")?,
            system: options.string("system")?,
            prompt: Template::parse(&prompt)
                .map_err(|e| options.error(format!("options.prompt: {e}")))?,
            max_tokens: options.unsigned("max_tokens", 128)?,
            temperature: options.number("temperature", 0.0)?,
        })
    }

    /// The system message: the instructions, then every route and its description.
    fn system_message(&self) -> String {
        let mut text = self.system.clone().unwrap_or_else(|| DEFAULT_SYSTEM.into());
        text.push_str("\nRoutes:");
        for (name, route) in &self.routes {
            text.push_str(&format!("\n- {name}: {}", route.description));
        }
        text
    }

    /// `{route: enum of names, reason: string}`, both required; the reason is
    /// bounded so a verbose model cannot run into `max_tokens` mid-answer (a cut-off
    /// answer is no JSON, hence a fallback).
    fn schema(&self) -> Value {
        let names: Vec<&String> = self.routes.keys().collect();
        json!({
            "type": "object",
            "properties": {
                "route": { "type": "string", "enum": names },
                "reason": { "type": "string", "maxLength": REASON_MAX_CHARS },
            },
            "required": ["route", "reason"],
        })
    }
}

/// The `llm_router` kind (see the module documentation).
#[derive(Debug)]
pub struct LlmRouter<M> {
    options: RouterOptions,
    system: String,
    schema: Value,
    model: Arc<M>,
    model_name: String,
}

impl<M: ChatModel> LlmRouter<M> {
    /// A router with these options answering through `model` (which reports under
    /// `model_name` in metrics).
    pub fn new(options: RouterOptions, model: Arc<M>, model_name: &str) -> LlmRouter<M> {
        LlmRouter {
            system: options.system_message(),
            schema: options.schema(),
            options,
            model,
            model_name: model_name.to_string(),
        }
    }

    /// The chosen route name and reason, if the answer names an allowed route.
    fn choose(&self, text: &str) -> Option<(String, String)> {
        let answer: Value = serde_json::from_str(text.trim()).ok()?;
        let route = answer.get("route")?.as_str()?;
        self.options.routes.contains_key(route).then(|| {
            let reason = answer
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (route.to_string(), reason.to_string())
        })
    }
}

impl<M: ChatModel> Agent for LlmRouter<M> {
    fn kind(&self) -> &str {
        "llm_router"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let prompt = self
            .options
            .prompt
            .render(&event_view(event))
            .map_err(|e| HandlerError::new(e.to_string()))?;
        let request = chat_request(
            Some(&self.system),
            prompt,
            self.options.max_tokens,
            self.options.temperature,
            Some(("route", &self.schema)),
        )?;
        let outcome = self.model.chat(event, 0, request).await?;
        let text = answer_text(&outcome);
        let mut details = call_details(event, &outcome);
        let (route, topic) = match self.choose(&text) {
            Some((route, reason)) => {
                details.insert("reason".into(), reason.into());
                let topic = self.options.routes[&route].topic.clone();
                (Some(route), topic)
            }
            None => {
                llm_metrics()
                    .of(ctx.agent_id(), &self.model_name)
                    .observe_error(LlmErrorKind::InvalidAnswer);
                details.insert("reason".into(), "the answer named no allowed route".into());
                details.insert("raw_answer".into(), text.into());
                (None, self.options.default.clone())
            }
        };
        details.insert("fallback".into(), route.is_none().into());
        details.insert("route".into(), route.clone().into());
        details.insert("topic".into(), topic.clone().into());
        ctx.emit_raw(&topic, forward(event, |_| false));
        ctx.decide("route", Value::Object(details));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(options: &str) -> AgentDef {
        let text = format!("name = 'r'\nkind = 'llm_router'\ntopics = ['t']\n[options]\n{options}");
        toml::from_str(&text).unwrap()
    }

    const GOOD: &str = "llm = 'local'\ndefault = 'other'\nroutes = { billing = { topic = 'b', description = 'money' }, tech = { topic = 't' } }";

    #[test]
    fn options_are_checked_and_unknown_keys_named() {
        let options = RouterOptions::from_def(&def(GOOD)).unwrap();
        assert_eq!(options.routes["billing"].topic, "b");
        assert_eq!(
            options.schema()["properties"]["route"]["enum"],
            json!(["billing", "tech"])
        );
        assert!(options
            .system_message()
            .ends_with("- billing: money\n- tech: "));
        let error = RouterOptions::from_def(&def(&format!("{GOOD}\nfallback = 'x'")))
            .unwrap_err()
            .to_string();
        assert!(error.contains("unknown option `fallback`"), "{error}");
        let error = RouterOptions::from_def(&def(
            "llm = 'local'\ndefault = 'o'\nroutes = { a = { topik = 'x' } }",
        ))
        .unwrap_err()
        .to_string();
        assert!(error.contains("routes.a needs a `topic`"), "{error}");
        assert!(
            RouterOptions::from_def(&def("llm = 'local'\nroutes = { a = { topic = 'x' } }"))
                .is_err()
        );
    }

    #[test]
    fn only_allowed_routes_are_chosen() {
        struct Never;
        impl ChatModel for Never {
            async fn chat(
                &self,
                _: &Event,
                _: u32,
                _: async_openai::types::chat::CreateChatCompletionRequest,
            ) -> Result<super::super::ChatOutcome, super::super::LlmError> {
                Err(super::super::LlmError::Record("unused".into()))
            }
        }
        let router = LlmRouter::new(
            RouterOptions::from_def(&def(GOOD)).unwrap(),
            Arc::new(Never),
            "m",
        );
        assert_eq!(
            router.choose(r#" {"route": "tech", "reason": "crash"} "#),
            Some(("tech".to_string(), "crash".to_string()))
        );
        assert_eq!(router.choose(r#"{"route": "sales", "reason": "x"}"#), None);
        assert_eq!(router.choose("billing"), None);
    }
}
