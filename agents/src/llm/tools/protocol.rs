//! The conversation of a tool loop in OpenAI's chat format, both ways a model can ask
//! for a tool: native tool calls (`tools` in the request, `tool_calls` in the answer)
//! and, for servers without them, a JSON-schema-constrained "next action" object
//! (`{"action": "call_tool"|"final", "tool", "arguments", "answer"}`) whose `tool` is
//! an enum of the tool names and whose `arguments` must match one of their schemas.

use async_openai::types::chat::{
    ChatCompletionMessageToolCalls, CreateChatCompletionRequest, CreateChatCompletionResponse,
};
use serde_json::{json, Value};

use super::spec::ToolSpec;

/// Longest tool result (in characters) put back into the conversation.
pub const MAX_RESULT_CHARS: usize = 4000;

/// How the model asks for tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// OpenAI tool calls.
    Native,
    /// A JSON "next action" constrained by `response_format`.
    Json,
}

/// What one model answer asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Call these tools (native mode may ask for several at once).
    Calls(Vec<Call>),
    /// Done: the final answer.
    Final(String),
    /// The answer is unusable (not JSON, no action): the reason goes back to the model.
    Invalid(String),
}

/// One tool call the model asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    /// The tool call id (native mode) to answer with.
    pub id: String,
    /// The tool name as the model wrote it (possibly unknown).
    pub name: String,
    /// The arguments, or why they are not a JSON object.
    pub arguments: Result<Value, String>,
}

/// Everything fixed about an agent's requests.
#[derive(Debug, Clone)]
pub struct RequestShape {
    /// How tools are asked for.
    pub mode: Mode,
    /// `model` of each request; empty lets the chat model use its endpoint's.
    pub model: String,
    /// `max_tokens`.
    pub max_tokens: Option<u32>,
    /// `temperature`.
    pub temperature: Option<f32>,
}

/// The JSON schema of a next action over `tools`: one `call_tool` shape per tool (its
/// name and its own argument schema) or `final` with a non-empty answer. A
/// discriminated union rather than one object with every field: a small model
/// constrained by the grammar then cannot fill a tool call with an answer, or finish
/// with an empty one.
pub fn action_schema(tools: &[ToolSpec]) -> Value {
    let mut shapes: Vec<Value> = tools
        .iter()
        .map(|tool| {
            json!({
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": ["call_tool"]},
                    "tool": {"type": "string", "enum": [tool.name]},
                    "arguments": tool.parameters,
                },
                "required": ["action", "tool", "arguments"],
            })
        })
        .collect();
    shapes.push(json!({
        "type": "object",
        "properties": {
            "action": {"type": "string", "enum": ["final"]},
            "answer": {"type": "string", "minLength": 1},
        },
        "required": ["action", "answer"],
    }));
    json!({ "anyOf": shapes })
}

/// The instructions that teach the JSON protocol, appended to the system prompt.
pub fn json_instructions(tools: &[ToolSpec]) -> String {
    let mut text = String::from("You can use these tools:\n");
    for tool in tools {
        text.push_str(&format!(
            "- {}: {} Arguments: {}\n",
            tool.name, tool.description, tool.parameters
        ));
    }
    text.push_str(
        "Reply with one JSON object. To use a tool: {\"action\": \"call_tool\", \"tool\": <name>, \
         \"arguments\": {...}}. When the tool results let you answer: {\"action\": \"final\", \
         \"answer\": <your answer>}.",
    );
    text
}

/// The request for the next step of a conversation.
pub fn request(
    shape: &RequestShape,
    tools: &[ToolSpec],
    messages: &[Value],
) -> Result<CreateChatCompletionRequest, String> {
    let mut body = json!({ "model": shape.model, "messages": messages });
    if let Some(max_tokens) = shape.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    if let Some(temperature) = shape.temperature {
        body["temperature"] = json!(temperature);
    }
    match shape.mode {
        Mode::Native => {
            body["tools"] = tools
                .iter()
                .map(|t| {
                    json!({"type": "function", "function": {
                        "name": t.name, "description": t.description, "parameters": t.parameters,
                    }})
                })
                .collect();
        }
        Mode::Json => {
            body["response_format"] = json!({"type": "json_schema", "json_schema": {
                "name": "next_action", "schema": action_schema(tools), "strict": true,
            }});
        }
    }
    serde_json::from_value(body).map_err(|e| format!("building the chat request: {e}"))
}

fn arguments_of(raw: &str) -> Result<Value, String> {
    match serde_json::from_str::<Value>(raw) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("arguments must be a JSON object".to_string()),
        Err(e) => Err(format!("arguments are not valid JSON: {e}")),
    }
}

/// Reads the model's answer: the action it asks for and the assistant message that
/// records it in the conversation.
pub fn parse(mode: Mode, response: &CreateChatCompletionResponse) -> (Action, Value) {
    let Some(message) = response.choices.first().map(|c| &c.message) else {
        return (
            Action::Invalid("the answer has no choices".to_string()),
            json!({"role": "assistant", "content": ""}),
        );
    };
    let content = message.content.clone().unwrap_or_default();
    if mode == Mode::Native {
        let calls: Vec<Call> = message
            .tool_calls
            .iter()
            .flatten()
            .filter_map(|call| match call {
                ChatCompletionMessageToolCalls::Function(f) => Some(Call {
                    id: f.id.clone(),
                    name: f.function.name.clone(),
                    arguments: arguments_of(&f.function.arguments),
                }),
                ChatCompletionMessageToolCalls::Custom(_) => None,
            })
            .collect();
        if calls.is_empty() {
            let recorded = json!({"role": "assistant", "content": content});
            return (Action::Final(content), recorded);
        }
        // Assistant tool-call messages carry an empty content (some servers refuse none).
        let recorded = json!({"role": "assistant", "content": "", "tool_calls": calls.iter().map(|c| json!({
            "id": c.id, "type": "function", "function": {
                "name": c.name,
                "arguments": c.arguments.as_ref().map(Value::to_string).unwrap_or_default(),
            },
        })).collect::<Vec<_>>()});
        return (Action::Calls(calls), recorded);
    }
    let recorded = json!({"role": "assistant", "content": content});
    let action = match serde_json::from_str::<Value>(&content) {
        Err(e) => Action::Invalid(format!("the reply is not a JSON object: {e}")),
        Ok(next) => match next.get("action").and_then(Value::as_str) {
            Some("final") => Action::Final(
                next.get("answer")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
            ),
            Some("call_tool") => Action::Calls(vec![Call {
                id: String::new(),
                name: next
                    .get("tool")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                arguments: match next.get("arguments") {
                    Some(value @ Value::Object(_)) => Ok(value.clone()),
                    _ => Err("arguments must be a JSON object".to_string()),
                },
            }]),
            _ => Action::Invalid("`action` must be \"call_tool\" or \"final\"".to_string()),
        },
    };
    (action, recorded)
}

/// The message that gives a tool's result (or error) back to the model. In JSON mode
/// it also restates the call: the conversation keeps no assistant turns there (see
/// [`keeps_answers`]).
pub fn result_message(mode: Mode, call: &Call, outcome: &Result<Value, String>) -> Value {
    let body = match outcome {
        Ok(result) => json!({ "result": result }),
        Err(error) => json!({ "error": error }),
    };
    let text = truncate(&body.to_string());
    match mode {
        Mode::Native => json!({"role": "tool", "tool_call_id": call.id, "content": text}),
        Mode::Json => {
            let arguments = match &call.arguments {
                Ok(arguments) => arguments.to_string(),
                Err(_) => "invalid arguments".to_string(),
            };
            json!({"role": "user", "content": format!(
                "You called the tool `{}` with {arguments}. It returned: {text}\n\
                 If this result answers the question, reply with action \"final\" and the \
                 answer; otherwise call another tool.",
                call.name
            )})
        }
    }
}

/// Whether the model's own answers stay in the conversation. Native tool calls must
/// be followed by the assistant turn that made them. In JSON mode they are left out
/// and each result message restates the call instead: small models otherwise copy
/// their previous turn and call the same tool forever.
pub fn keeps_answers(mode: Mode) -> bool {
    mode == Mode::Native
}

/// `text` cut to [`MAX_RESULT_CHARS`] characters.
pub fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_RESULT_CHARS) {
        None => text.to_string(),
        Some((at, _)) => format!("{}… (truncated)", &text[..at]),
    }
}

/// `template` with every `{{path}}` replaced by that dotted path of `scope` (strings as
/// they are, anything else as JSON; missing paths as empty).
pub fn render(template: &str, scope: &Value) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start + 2..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let path = rest[start + 2..start + 2 + len].trim();
        let mut node = Some(scope);
        for part in path.split('.') {
            node = node.and_then(|n| n.get(part));
        }
        match node {
            Some(Value::String(s)) => out.push_str(s),
            Some(Value::Null) | None => {}
            Some(other) => out.push_str(&other.to_string()),
        }
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(message: Value) -> CreateChatCompletionResponse {
        serde_json::from_value(json!({
            "id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
        }))
        .unwrap()
    }

    #[test]
    fn reads_native_calls_and_json_actions() {
        let native = response(json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{\"city\":\"Oslo\"}"}},
            {"id": "c2", "type": "function", "function": {"name": "w", "arguments": "nope"}},
        ]}));
        let (action, recorded) = parse(Mode::Native, &native);
        let Action::Calls(calls) = action else {
            panic!("calls expected")
        };
        assert_eq!(calls[0].arguments, Ok(json!({"city": "Oslo"})));
        assert!(calls[1].arguments.is_err());
        assert_eq!(recorded["tool_calls"][0]["id"], "c1");
        assert_eq!(recorded["content"], "");

        let answer = response(json!({"role": "assistant", "content": "done"}));
        assert_eq!(
            parse(Mode::Native, &answer).0,
            Action::Final("done".to_string())
        );

        let call = response(json!({"role": "assistant", "content":
            "{\"action\":\"call_tool\",\"tool\":\"w\",\"arguments\":{\"city\":\"Oslo\"},\"answer\":\"\"}"}));
        let Action::Calls(calls) = parse(Mode::Json, &call).0 else {
            panic!("call expected")
        };
        assert_eq!(
            (calls[0].name.as_str(), calls[0].arguments.clone()),
            ("w", Ok(json!({"city": "Oslo"})))
        );
        let bad = response(json!({"role": "assistant", "content": "Sure!"}));
        assert!(matches!(parse(Mode::Json, &bad).0, Action::Invalid(_)));
    }

    #[test]
    fn builds_requests_in_both_modes() {
        let tool = ToolSpec::parse(&toml::from_str("name = 'w'\ntopic = 't'").unwrap()).unwrap();
        let shape = RequestShape {
            mode: Mode::Json,
            model: "m".into(),
            max_tokens: Some(50),
            temperature: Some(0.0),
        };
        let messages = [json!({"role": "user", "content": "hi"})];
        let request = request(&shape, std::slice::from_ref(&tool), &messages).unwrap();
        let body = serde_json::to_value(&request).unwrap();
        let shapes = &body["response_format"]["json_schema"]["schema"]["anyOf"];
        assert_eq!(shapes[0]["properties"]["tool"]["enum"], json!(["w"]));
        assert_eq!(shapes[1]["properties"]["answer"]["minLength"], 1);
        assert_eq!(body["max_tokens"], 50);
        let native = RequestShape {
            mode: Mode::Native,
            ..shape
        };
        let body =
            serde_json::to_value(super::request(&native, &[tool], &messages).unwrap()).unwrap();
        assert_eq!(body["tools"][0]["function"]["name"], "w");
    }

    #[test]
    fn renders_dotted_paths() {
        let scope = json!({"data": {"item": "why?", "list": [1, 2]}});
        assert_eq!(
            render("Q: {{data.item}} {{ data.list }}{{data.none}}.", &scope),
            "Q: why? [1,2]."
        );
        assert_eq!(render("open {{data", &scope), "open {{data");
    }
}
