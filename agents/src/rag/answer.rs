//! Kind `rag`: a question in, a grounded answer out.
//!
//! The question (a JSON event's `question_field`, or the whole text of a plain event) is
//! embedded with the index's encoder, the `k` nearest chunks meeting the filters are
//! retrieved, and the model answers from them alone under a JSON schema whose citations
//! can only be the numbers of the retrieved chunks. The answer (with citations as
//! document id and chunk) goes to `output_topic`; the retrieval (chunk ids and scores)
//! and the answer go to `agent.traces`; the decision has both, with the call's tokens,
//! cost and latency. The model call is durable like every LLM kind's: a re-run is
//! answered from the agent's call log.
//!
//! ```toml
//! [[agents]]
//! name = "answers"
//! kind = "rag"
//! topics = ["questions"]
//! [agents.options]
//! index = "docs"                # the [rag.docs] index
//! llm = "local"                 # the [llm.local] endpoint
//! output_topic = "answers"
//! k = 4
//! question_field = "question"   # JSON questions; plain text is the question itself
//! filter_field = "filter"       # optional {field: value} in the question event
//! filter = { lang = "en" }      # always applied (wins over the event's)
//! ```

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::index::{Filter, Hit};
use super::live::LiveIndex;
use super::query::parse_filter;
use crate::agent::{Agent, Context, HandlerError};
use crate::config::{AgentDef, ConfigError};
use crate::event::Event;
use crate::inference::mapping::lookup;
use crate::llm::completion::RAW_ANSWER_HEADER;
use crate::llm::model::ChatModel;
use crate::llm::request::{answer_text, call_details, chat_request, Options};
use crate::llm::schema::check;
use crate::llm::tools::trace;

const DEFAULT_SYSTEM: &str = "You answer the question using only the numbered sources. \
Cite the numbers of the sources the answer comes from. If the sources do not contain the \
answer, say that you do not know.";

/// Longest answer the schema allows, so `max_tokens` cannot cut the JSON off.
const MAX_ANSWER_CHARS: usize = 500;

const KNOWN: [&str; 12] = [
    "index",
    "llm",
    "output_topic",
    "k",
    "question_field",
    "filter_field",
    "filter",
    "system",
    "max_tokens",
    "temperature",
    "max_context_chars",
    "event_type",
];

/// The options of a `rag` agent, checked at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct AnswerOptions {
    /// The `[rag.<name>]` index.
    pub index: String,
    /// The `[llm.<name>]` endpoint.
    pub llm: String,
    /// Where answers go.
    pub output_topic: String,
    /// Chunks retrieved per question.
    pub k: usize,
    /// Dotted path of the question in a JSON event.
    pub question_field: String,
    /// Dotted path of the event's own filter.
    pub filter_field: String,
    /// Filter always applied.
    pub filter: Filter,
    /// System message.
    pub system: String,
    /// Completion token limit.
    pub max_tokens: u32,
    /// Sampling temperature.
    pub temperature: f32,
    /// Most characters of retrieved text given to the model.
    pub max_context_chars: usize,
    /// Type of the emitted envelopes.
    pub event_type: String,
}

impl AnswerOptions {
    /// Reads and checks `def.options`.
    pub fn from_def(def: &AgentDef) -> Result<AnswerOptions, ConfigError> {
        let options = Options::new(def, &KNOWN)?;
        let k = options.unsigned("k", 4)? as usize;
        if k == 0 || k > 20 {
            return Err(options.error("options.k must be 1 to 20".to_string()));
        }
        let filter = options
            .raw("filter")
            .map(|value| {
                parse_filter(Some(&crate::llm::tools::spec::toml_to_json(value)))
                    .map_err(|e| options.error(format!("options.{e}")))
            })
            .transpose()?
            .unwrap_or_default();
        Ok(AnswerOptions {
            index: options.required("index")?,
            llm: options.required("llm")?,
            output_topic: options.required("output_topic")?,
            k,
            question_field: options
                .string("question_field")?
                .unwrap_or_else(|| "question".to_string()),
            filter_field: options
                .string("filter_field")?
                .unwrap_or_else(|| "filter".to_string()),
            filter,
            system: options
                .string("system")?
                .unwrap_or_else(|| DEFAULT_SYSTEM.to_string()),
            max_tokens: options.unsigned("max_tokens", 256)?,
            temperature: options.number("temperature", 0.0)?,
            max_context_chars: options.unsigned("max_context_chars", 4000)? as usize,
            event_type: options
                .string("event_type")?
                .unwrap_or_else(|| "rag.answer".to_string()),
        })
    }
}

/// The `rag` kind (see the module documentation).
pub struct RagAnswer<M> {
    options: AnswerOptions,
    index: Arc<LiveIndex>,
    model: Arc<M>,
}

impl<M> std::fmt::Debug for RagAnswer<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RagAnswer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

/// The answer's schema: citations can only be numbers of retrieved sources.
fn answer_schema(sources: usize) -> Value {
    let citation = if sources == 0 {
        json!({"type": "integer"})
    } else {
        json!({"type": "integer", "enum": (1..=sources).collect::<Vec<_>>()})
    };
    json!({
        "type": "object",
        "required": ["answer", "citations"],
        "properties": {
            "answer": {"type": "string", "minLength": 1, "maxLength": MAX_ANSWER_CHARS},
            "citations": {"type": "array", "items": citation, "maxItems": sources},
        },
    })
}

fn source_ref(hit: &Hit) -> Value {
    json!({"doc": hit.chunk.doc, "chunk": hit.chunk.no, "score": hit.score})
}

impl<M: ChatModel> RagAnswer<M> {
    /// An agent answering from `index` through `model`.
    pub fn new(options: AnswerOptions, index: Arc<LiveIndex>, model: Arc<M>) -> RagAnswer<M> {
        RagAnswer {
            options,
            index,
            model,
        }
    }

    /// The question and the filter of `event`.
    fn question(&self, event: &Event) -> Result<(String, Filter), HandlerError> {
        let payload = match event.envelope() {
            Some(envelope) => Some(envelope.data),
            None => event
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice::<Value>(v).ok())
                .filter(Value::is_object),
        };
        let (question, mut filter) = match payload {
            Some(payload) => {
                let question = match lookup(&payload, &self.options.question_field) {
                    Some(Value::String(q)) => q.clone(),
                    _ => {
                        return Err(HandlerError::new(format!(
                            "the event has no text field `{}`",
                            self.options.question_field
                        )))
                    }
                };
                let filter = parse_filter(lookup(&payload, &self.options.filter_field))
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                (question, filter)
            }
            None => {
                let text = event.value.as_deref().unwrap_or_default();
                let text = std::str::from_utf8(text)
                    .map_err(|_| HandlerError::new("the question is not UTF-8 text"))?;
                (text.to_string(), Filter::new())
            }
        };
        if question.trim().is_empty() {
            return Err(HandlerError::new("the question is empty"));
        }
        filter.extend(self.options.filter.clone());
        Ok((question, filter))
    }

    /// The user message: the numbered sources, then the question. Sources past
    /// `max_context_chars` are left out (and so cannot be cited).
    fn prompt(&self, question: &str, hits: &[Hit]) -> (String, usize) {
        let mut prompt = String::from("Sources:\n");
        let mut used = 0;
        let mut chars = 0;
        for (i, hit) in hits.iter().enumerate() {
            let size = hit.chunk.text.chars().count();
            if used > 0 && chars + size > self.options.max_context_chars {
                break;
            }
            chars += size;
            used += 1;
            prompt.push_str(&format!("[{}] {}\n", i + 1, hit.chunk.text));
        }
        if used == 0 {
            prompt.push_str("(no source matched)\n");
        }
        prompt.push_str(&format!("\nQuestion: {question}"));
        (prompt, used)
    }
}

impl<M: ChatModel> Agent for RagAnswer<M> {
    fn kind(&self) -> &str {
        "rag"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let (question, filter) = self.question(event)?;
        let hits = self
            .index
            .search_text(&question, self.options.k, &filter)
            .await
            .map_err(|e| HandlerError::new(format!("retrieval: {e}")))?;
        let retrieved: Vec<Value> = hits.iter().map(source_ref).collect();
        let agent = ctx.agent_id().to_string();
        trace(
            ctx,
            &agent,
            0,
            "retrieval",
            json!({"question": question, "filter": filter, "hits": retrieved}),
        );
        let (prompt, used) = self.prompt(&question, &hits);
        let schema = answer_schema(used);
        let request = chat_request(
            Some(&self.options.system),
            prompt,
            self.options.max_tokens,
            self.options.temperature,
            Some(("answer", &schema)),
        )?;
        let outcome = self.model.chat(event, 0, request).await?;
        let text = answer_text(&outcome);
        let invalid =
            |reason: String| HandlerError::new(reason).with_dlq_header(RAW_ANSWER_HEADER, &text);
        let answer: Value = serde_json::from_str(text.trim())
            .map_err(|e| invalid(format!("the model's answer is not JSON: {e}")))?;
        check(&schema, &answer).map_err(|v| invalid(v.to_string()))?;
        let mut cited: Vec<usize> = answer["citations"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_u64)
            .map(|n| n as usize)
            .collect();
        cited.sort_unstable();
        cited.dedup();
        let citations: Vec<Value> = cited
            .iter()
            .filter_map(|n| n.checked_sub(1).and_then(|at| hits.get(at)).map(source_ref))
            .collect();
        let output = json!({
            "question": question,
            "answer": answer["answer"],
            "citations": citations,
            "sources": retrieved[..used],
        });
        trace(
            ctx,
            &agent,
            1,
            "final",
            json!({"answer": answer["answer"], "citations": citations}),
        );
        ctx.emit(
            &self.options.output_topic,
            event.key.clone(),
            &self.options.event_type,
            output,
        );
        let mut details: Map<String, Value> = call_details(event, &outcome);
        details.insert("retrieved".into(), Value::Array(retrieved));
        details.insert("citations".into(), Value::Array(citations));
        details.insert("answer".into(), answer["answer"].clone());
        ctx.decide("answered", Value::Object(details));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(options: &str) -> AgentDef {
        let text = format!("name = 'a'\nkind = 'rag'\ntopics = ['q']\n[options]\n{options}");
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn options_and_their_mistakes() {
        let options =
            AnswerOptions::from_def(&def("index = 'd'\nllm = 'l'\noutput_topic = 'o'")).unwrap();
        assert_eq!(
            (options.k, options.question_field.as_str()),
            (4, "question")
        );
        for (text, expected) in [
            ("llm = 'l'\noutput_topic = 'o'", "options.index is required"),
            (
                "index = 'd'\nllm = 'l'\noutput_topic = 'o'\nk = 0",
                "1 to 20",
            ),
            (
                "index = 'd'\nllm = 'l'\noutput_topic = 'o'\nfilter = { tags = ['a'] }",
                "exact match",
            ),
            (
                "index = 'd'\nllm = 'l'\noutput_topic = 'o'\ntop_k = 3",
                "top_k",
            ),
        ] {
            let error = AnswerOptions::from_def(&def(text)).unwrap_err().to_string();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn citations_are_limited_to_the_sources() {
        let schema = answer_schema(2);
        assert!(check(&schema, &json!({"answer": "x", "citations": [2, 1]})).is_ok());
        assert!(check(&schema, &json!({"answer": "x", "citations": [3]})).is_err());
        assert!(check(&answer_schema(0), &json!({"answer": "x", "citations": [1]})).is_err());
    }
}
