//! The tool loop: ask the model, run the tools it asks for, give it the results, until
//! it answers or `max_steps` model calls were made. Every step goes to `agent.traces`;
//! the answer goes to the output topic and the decision log.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::protocol::{self, Action, Call, Mode, RequestShape};
use super::replies::{Replies, CORRELATION_ID, REPLY_TO};
use super::schema;
use super::spec::{ToolKind, ToolSpec};
use crate::agent::{Agent, Context, HandlerError};
use crate::backend::{Backend, StartAt};
use crate::envelope::Envelope;
use crate::event::{Event, OutRecord};
use crate::llm::model::ChatModel;
use crate::mcp::tools::McpToolset;
use crate::mcp::{McpCallError, McpTopicClient};

/// Topic every tool agent writes its steps to, keyed by trace id.
pub const TRACES_TOPIC: &str = "agent.traces";

/// A `tool_agent`: one model, its tools, and where answers go.
pub struct ToolAgent<B: Backend, M: ChatModel> {
    pub(super) name: String,
    pub(super) backend: B,
    pub(super) model: Arc<M>,
    pub(super) tools: Vec<ToolSpec>,
    /// The `mcp_server` tables and their clients; their tools join `tools` per event.
    pub(super) mcp: Vec<(McpToolset, McpTopicClient<B>)>,
    pub(super) shape: RequestShape,
    pub(super) system: Option<String>,
    pub(super) prompt: Option<String>,
    pub(super) max_steps: u32,
    pub(super) output_topic: String,
    pub(super) event_type: String,
    pub(super) reply_topic: String,
    pub(super) replies: Replies,
    /// The process's vector indexes, for `search` tools.
    pub(super) indexes: Arc<crate::rag::Indexes>,
}

impl<B: Backend, M: ChatModel> std::fmt::Debug for ToolAgent<B, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolAgent")
            .field("name", &self.name)
            .field("tools", &self.tools)
            .field("max_steps", &self.max_steps)
            .finish_non_exhaustive()
    }
}

/// What one handling used, for the decision log.
#[derive(Debug, Default)]
struct Usage {
    input: u64,
    output: u64,
    cost: f64,
    tools: Vec<String>,
    /// Document ids the `search` tools returned, first appearance first.
    sources: Vec<String>,
}

impl Usage {
    /// Notes the document ids of a `search` result.
    fn add_sources(&mut self, hits: &Value) {
        for doc in hits
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["doc"].as_str())
        {
            if !self.sources.iter().any(|known| known == doc) {
                self.sources.push(doc.to_string());
            }
        }
    }
}

/// One record of an agent's trace in `agent.traces`, keyed by the event's trace id
/// (shared with the `rag` kind, whose retrieval is traced the same way).
pub(crate) fn trace(ctx: &mut Context, agent: &str, step: u32, kind: &str, mut details: Value) {
    details["agent"] = json!(agent);
    details["step"] = json!(step);
    details["kind"] = json!(kind);
    let key = Some(Bytes::copy_from_slice(ctx.trace_id().as_bytes()));
    ctx.emit(TRACES_TOPIC, key, "agent.trace", details);
}

impl<B: Backend, M: ChatModel> ToolAgent<B, M> {
    /// The tools offered for this event: the declared ones, then each MCP server's
    /// (cached; listed again once the server says its list changed). A server that
    /// cannot list its tools makes the event wait, as an unreachable model does.
    async fn tools_now(&self) -> Result<Cow<'_, [ToolSpec]>, HandlerError> {
        if self.mcp.is_empty() {
            return Ok(Cow::Borrowed(&self.tools));
        }
        let mut tools = self.tools.clone();
        for (index, (set, client)) in self.mcp.iter().enumerate() {
            let listed = client.tools().await.map_err(|e| {
                if e.is_unavailable() {
                    HandlerError::unavailable(e.to_string())
                } else {
                    HandlerError::new(e.to_string())
                }
            })?;
            for spec in set.specs(index, &listed) {
                if tools.iter().any(|t| t.name == spec.name) {
                    tracing::warn!(agent = %self.name, tool = %spec.name, server = %set.server,
                        "MCP tool skipped: another tool has its name");
                    continue;
                }
                tools.push(spec);
            }
        }
        Ok(Cow::Owned(tools))
    }

    fn first_messages(&self, tools: &[ToolSpec], input: &Value) -> Vec<Value> {
        let mut system = self.system.clone().unwrap_or_default();
        if self.shape.mode == Mode::Json {
            if !system.is_empty() {
                system.push_str("\n\n");
            }
            system.push_str(&protocol::json_instructions(tools));
        }
        let user = match &self.prompt {
            Some(template) => protocol::render(template, &json!({ "data": input })),
            None => match input {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        };
        let mut messages = Vec::new();
        if !system.is_empty() {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": user}));
        messages
    }

    /// Runs one tool call; `Err` is a tool error the model gets to see. Only a failure
    /// to write the request (the log is unavailable) fails the handler.
    async fn call(
        &self,
        tools: &[ToolSpec],
        event: &Event,
        ctx: &mut Context,
        step: u32,
        index: usize,
        call: &Call,
    ) -> Result<Result<Value, String>, HandlerError> {
        let Some(tool) = tools.iter().find(|t| t.name == call.name) else {
            let known: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
            return Ok(Err(format!(
                "unknown tool `{}`; the tools are: {}",
                call.name,
                known.join(", ")
            )));
        };
        let arguments = match &call.arguments {
            Ok(arguments) => arguments,
            Err(problem) => return Ok(Err(problem.clone())),
        };
        if let Err(problem) = schema::check(&tool.parameters, arguments) {
            return Ok(Err(problem));
        }
        let text = |key: &str| {
            arguments
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        // Stable for this event, step and call, so a re-run sends the same id and a
        // tool can deduplicate.
        let correlation_id = format!(
            "{}/{}/{}/{}/{step}/{index}",
            self.name, event.topic, event.partition, event.offset
        );
        match &tool.kind {
            ToolKind::Remote { topic, timeout } => {
                let waiter = self.replies.register(&correlation_id);
                if !waiter.is_answered() {
                    let record = self.request(ctx, &tool.name, correlation_id, arguments);
                    self.backend
                        .produce(topic, vec![record])
                        .await
                        .map_err(|e| {
                            HandlerError::unavailable(format!(
                                "sending a `{}` request: {e}",
                                tool.name
                            ))
                        })?;
                }
                Ok(match waiter.wait(*timeout).await {
                    None => Err(format!(
                        "tool `{}` did not reply within {} ms",
                        tool.name,
                        timeout.as_millis()
                    )),
                    Some(reply) => match reply.error {
                        Some(error) => Err(error),
                        None => Ok(reply.value),
                    },
                })
            }
            ToolKind::Produce { topics } => {
                let topic = text("topic");
                if !topics.iter().any(|t| t == topic) {
                    return Ok(Err(format!("topic `{topic}` is not writable by this tool")));
                }
                let value = text("value");
                let data = serde_json::from_str(value).unwrap_or_else(|_| json!(value));
                let key = Some(Bytes::copy_from_slice(text("key").as_bytes()));
                ctx.emit(topic, key, "tool_agent.produced", data);
                Ok(Ok(json!({"written": true, "topic": topic})))
            }
            ToolKind::ReadTopic {
                topics,
                max_records,
            } => {
                let topic = text("topic");
                if !topics.iter().any(|t| t == topic) {
                    return Ok(Err(format!("topic `{topic}` is not readable by this tool")));
                }
                let n = arguments
                    .get("n")
                    .and_then(Value::as_u64)
                    .map_or(*max_records, |n| (n as usize).min(*max_records));
                Ok(self.last_records(topic, n).await)
            }
            ToolKind::StateGet => Ok(Ok(ctx.state_get(text("key")).unwrap_or(Value::Null))),
            ToolKind::Search { index, k } => Ok(self.search(index, *k, arguments).await),
            ToolKind::Mcp { client, tool } => {
                let Some((_, client)) = self.mcp.get(*client) else {
                    return Ok(Err(format!("tool `{tool}` has no MCP server")));
                };
                match client.call_tool(tool, arguments, &correlation_id).await {
                    Ok(outcome) => Ok(outcome),
                    // The model sees a timeout like any tool's; the request stays on
                    // the log and a re-run gets its answer without calling again.
                    Err(error @ McpCallError::Timeout { .. })
                    | Err(error @ McpCallError::Rpc { .. })
                    | Err(error @ McpCallError::Malformed { .. }) => Ok(Err(error.to_string())),
                    Err(error @ McpCallError::Send { .. }) => {
                        Err(HandlerError::unavailable(error.to_string()))
                    }
                }
            }
        }
    }

    /// Whether tool `name` is a `search` tool.
    fn is_search(tools: &[ToolSpec], name: &str) -> bool {
        tools
            .iter()
            .any(|t| t.name == name && matches!(t.kind, ToolKind::Search { .. }))
    }

    /// Whether any tool is a `search` tool (then answers carry `sources`).
    fn has_search(tools: &[ToolSpec]) -> bool {
        tools
            .iter()
            .any(|t| matches!(t.kind, ToolKind::Search { .. }))
    }

    /// The `search` tool: the best `k` chunks of `index` for the `query` argument, each
    /// with its document id and chunk number so the answer can cite them.
    async fn search(&self, index: &str, k: usize, arguments: &Value) -> Result<Value, String> {
        let request = crate::rag::SearchRequest {
            index: Some(index.to_string()),
            query: arguments
                .get("query")
                .and_then(Value::as_str)
                .map(str::to_string),
            vector: None,
            k: Some(k),
            filter: arguments.get("filter").cloned(),
        };
        let response = self
            .indexes
            .search(&request)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Value::Array(
            response
                .hits
                .iter()
                .map(|hit| {
                    json!({
                        "doc": hit.chunk.doc,
                        "chunk": hit.chunk.no,
                        "score": hit.score,
                        "text": hit.chunk.text,
                    })
                })
                .collect(),
        ))
    }

    /// A request to a request/reply tool: the arguments, enveloped in the event's
    /// trace, keyed by the correlation id, with the `reply_to` and `correlation_id`
    /// headers (and `tool`, the tool's name).
    fn request(
        &self,
        ctx: &Context,
        tool: &str,
        correlation_id: String,
        arguments: &Value,
    ) -> OutRecord {
        let envelope = Envelope::new(
            "tool.request",
            &self.name,
            Some(ctx.trace_id().to_string()),
            arguments.clone(),
        );
        let mut record =
            envelope.to_record(Some(Bytes::copy_from_slice(correlation_id.as_bytes())));
        record.headers.extend([
            (REPLY_TO.to_string(), Bytes::from(self.reply_topic.clone())),
            (CORRELATION_ID.to_string(), Bytes::from(correlation_id)),
            ("tool".to_string(), Bytes::copy_from_slice(tool.as_bytes())),
        ]);
        record
    }

    /// The last `n` records of `topic` (by timestamp across partitions), as payloads.
    /// The backend seam has no end offsets, so the topic is read through once, keeping
    /// `n` records per partition: fine for the small reference topics tools read.
    async fn last_records(&self, topic: &str, n: usize) -> Result<Value, String> {
        let mut stream = match self.backend.read_topic(topic, StartAt::Earliest).await {
            Ok(stream) => stream,
            Err(e) => return Err(format!("cannot read `{topic}`: {e}")),
        };
        let mut kept: Vec<(i32, VecDeque<Event>)> = Vec::new();
        while let Some(event) = stream.next().await {
            let event = event.map_err(|e| format!("cannot read `{topic}`: {e}"))?;
            let at = match kept.iter().position(|(p, _)| *p == event.partition) {
                Some(at) => at,
                None => {
                    kept.push((event.partition, VecDeque::new()));
                    kept.len() - 1
                }
            };
            let ring = &mut kept[at].1;
            if ring.len() == n {
                ring.pop_front();
            }
            ring.push_back(event);
        }
        let mut all: Vec<Event> = kept.into_iter().flat_map(|(_, ring)| ring).collect();
        all.sort_by_key(|e| (e.timestamp, e.partition, e.offset));
        let skip = all.len().saturating_sub(n);
        Ok(Value::Array(
            all[skip..]
                .iter()
                .map(|e| {
                    json!({
                        "key": e.key.as_deref().map(String::from_utf8_lossy),
                        "value": e.payload(),
                    })
                })
                .collect(),
        ))
    }
}

impl<B: Backend, M: ChatModel> Agent for ToolAgent<B, M> {
    fn kind(&self) -> &str {
        "tool_agent"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let input = event.payload();
        let tools = self.tools_now().await?;
        let tools = tools.as_ref();
        let mut messages = self.first_messages(tools, &input);
        let mut usage = Usage::default();
        for step in 0..self.max_steps {
            let request =
                protocol::request(&self.shape, tools, &messages).map_err(HandlerError::new)?;
            let outcome = self.model.chat(event, step, request).await?;
            usage.input += outcome.usage.input;
            usage.output += outcome.usage.output;
            usage.cost += outcome.cost;
            let (action, recorded) = protocol::parse(self.shape.mode, &outcome.response);
            trace(
                ctx,
                &self.name,
                step,
                "model",
                json!({
                    "content": recorded.get("content"),
                    "tool_calls": recorded.get("tool_calls"),
                    "tokens": {"input": outcome.usage.input, "output": outcome.usage.output},
                    "replayed": outcome.replayed,
                }),
            );
            if protocol::keeps_answers(self.shape.mode) {
                messages.push(recorded);
            }
            match action {
                Action::Final(answer) => {
                    trace(ctx, &self.name, step, "final", json!({ "answer": answer }));
                    let mut data = json!({ "answer": answer, "input": input, "steps": step + 1 });
                    let searches = Self::has_search(tools);
                    if searches {
                        data["sources"] = json!(usage.sources);
                    }
                    ctx.emit(
                        &self.output_topic,
                        event.key.clone(),
                        &self.event_type,
                        data,
                    );
                    let mut details = json!({
                        "steps": step + 1,
                        "tools": usage.tools,
                        "tokens": {"input": usage.input, "output": usage.output},
                        "cost": usage.cost,
                    });
                    if searches {
                        details["sources"] = json!(usage.sources);
                    }
                    ctx.decide("answered", details);
                    return Ok(());
                }
                Action::Invalid(problem) => {
                    trace(
                        ctx,
                        &self.name,
                        step,
                        "invalid",
                        json!({ "error": problem }),
                    );
                    messages.push(json!({"role": "user", "content": format!(
                        "That reply was invalid: {problem}. Reply with the next action."
                    )}));
                }
                Action::Calls(calls) => {
                    for (index, call) in calls.iter().enumerate() {
                        let arguments = match &call.arguments {
                            Ok(v) => v.clone(),
                            Err(e) => json!({ "invalid": e }),
                        };
                        trace(
                            ctx,
                            &self.name,
                            step,
                            "tool_call",
                            json!({"tool": call.name, "arguments": arguments}),
                        );
                        usage.tools.push(call.name.clone());
                        let outcome = self.call(tools, event, ctx, step, index, call).await?;
                        // Counted when made (retries included), unlike the outputs.
                        ctx.metric("tool_calls", 1);
                        let details = match &outcome {
                            Ok(result) => {
                                if Self::is_search(tools, &call.name) {
                                    usage.add_sources(result);
                                }
                                json!({"tool": call.name, "result": result})
                            }
                            Err(error) => {
                                ctx.metric("tool_errors", 1);
                                json!({"tool": call.name, "error": error})
                            }
                        };
                        trace(ctx, &self.name, step, "tool_result", details);
                        messages.push(protocol::result_message(self.shape.mode, call, &outcome));
                    }
                }
            }
        }
        Err(HandlerError::new(format!(
            "no final answer within max_steps = {}",
            self.max_steps
        ))
        .with_dlq_header("tool_agent.tools_called", usage.tools.join(",")))
    }
}
