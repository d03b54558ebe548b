//! Prompt templates: text with `{{path}}` placeholders, where `path` is dotted into
//! the event's view `{ "data": <envelope data, or the value as JSON, or as text>,
//! "key": <key text>, "topic": <topic>, "text": <raw value as UTF-8> }`, e.g.
//! `{{data.ticket.subject}}` or `{{data.items.0}}`. Strings substitute as they are,
//! other values as compact JSON. Templates are parsed when the configuration is
//! loaded (an unclosed `{{` is refused then); a field an event lacks is a per-event
//! [`RenderError`] naming it, never a panic.

use serde_json::Value;
use thiserror::Error;

use crate::event::Event;

/// A template is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    /// `{{` without a matching `}}`.
    #[error("unclosed `{{{{` at byte {0}")]
    Unclosed(usize),
    /// `{{}}`.
    #[error("empty placeholder at byte {0}")]
    Empty(usize),
}

/// An event lacks a field its template uses.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("the event has no field `{field}` (used by the prompt template)")]
pub struct RenderError {
    /// The dotted path.
    pub field: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Field(Vec<String>),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// Parses `text`.
    pub fn parse(text: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut at = 0;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or(TemplateError::Unclosed(at + open))?;
            let path = after[..close].trim();
            if path.is_empty() {
                return Err(TemplateError::Empty(at + open));
            }
            parts.push(Part::Field(path.split('.').map(str::to_string).collect()));
            let consumed = open + 2 + close + 2;
            at += consumed;
            rest = &rest[consumed..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// Fills the placeholders from `view` (see [`event_view`]).
    pub fn render(&self, view: &Value) -> Result<String, RenderError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Field(path) => {
                    let value = lookup(view, path).ok_or_else(|| RenderError {
                        field: path.join("."),
                    })?;
                    match value {
                        Value::String(s) => out.push_str(s),
                        other => out.push_str(&other.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The value at a dotted path (array elements by index); `None` when absent or null.
pub fn lookup<'a, S: AsRef<str>>(root: &'a Value, path: &[S]) -> Option<&'a Value> {
    let mut node = root;
    for part in path {
        let part = part.as_ref();
        node = match node {
            Value::Object(fields) => fields.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    (!node.is_null()).then_some(node)
}

/// What templates see of an event (see the module documentation).
pub fn event_view(event: &Event) -> Value {
    let text = event
        .value
        .as_deref()
        .map(|v| String::from_utf8_lossy(v).into_owned());
    let data = match event.envelope() {
        Some(envelope) => envelope.data,
        None => match event.value.as_deref() {
            Some(bytes) => serde_json::from_slice(bytes)
                .unwrap_or_else(|_| Value::String(text.clone().unwrap_or_default())),
            None => Value::Null,
        },
    };
    let key = event
        .key
        .as_deref()
        .map(|k| Value::String(String::from_utf8_lossy(k).into_owned()))
        .unwrap_or(Value::Null);
    serde_json::json!({
        "data": data,
        "key": key,
        "topic": event.topic.as_ref(),
        "text": text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_strings_raw_and_other_values_as_compact_json() {
        let view = json!({"data": {"subject": "Refund", "tags": ["a", "b"], "n": 3, "o": {"x": 1}}, "key": "k1", "topic": "t", "text": "{}"});
        let template =
            Template::parse("{{ data.subject }} {{data.tags}} {{data.tags.1}} {{data.n}} {{data.o}} ({{key}}@{{topic}})")
                .unwrap();
        assert_eq!(
            template.render(&view).unwrap(),
            r#"Refund ["a","b"] b 3 {"x":1} (k1@t)"#
        );
    }

    #[test]
    fn a_missing_field_is_an_error_naming_it() {
        let template = Template::parse("Subject: {{data.ticket.subject}}").unwrap();
        let error = template
            .render(&json!({"data": {"ticket": {}}}))
            .unwrap_err();
        assert_eq!(error.field, "data.ticket.subject");
        assert!(error.to_string().contains("`data.ticket.subject`"));
        assert!(template.render(&json!({"data": null})).is_err());
    }

    #[test]
    fn malformed_templates_are_refused_at_parse_time() {
        assert_eq!(Template::parse("a {{b"), Err(TemplateError::Unclosed(2)));
        assert_eq!(Template::parse("{{ }}"), Err(TemplateError::Empty(0)));
        assert_eq!(
            Template::parse("no placeholders")
                .unwrap()
                .render(&json!({}))
                .unwrap(),
            "no placeholders"
        );
    }
}
