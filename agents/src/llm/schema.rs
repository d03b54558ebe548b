//! Checking a model's answer against the JSON Schema it was asked to follow.
//!
//! Endpoints constrain decoding to the schema, but not all honour every keyword and
//! some ignore `response_format` altogether, so answers are checked before anything
//! is emitted. The subset checked is what output schemas use: `type` (one or a list),
//! `enum`, `const`, `required`, `properties`, `additionalProperties: false`, `items`,
//! `minItems`/`maxItems`, `minLength`/`maxLength`, `minimum`/`maximum`. Other keywords
//! are accepted and not checked.

use serde_json::Value;
use thiserror::Error;

/// An answer does not satisfy its schema.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("answer does not satisfy the output schema at `{path}`: {reason}")]
pub struct SchemaViolation {
    /// Where, as a JSON pointer-like path (`$` is the root).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

/// A schema given in the configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SchemaError {
    /// A string that is not JSON.
    #[error("output_schema is not valid JSON: {0}")]
    NotJson(String),
    /// Not an object with a `type`.
    #[error("output_schema must be an object with a `type`")]
    NotASchema,
}

/// The schema from an `output_schema` option: a TOML table or a JSON string.
pub fn schema_from_option(option: &toml::Value) -> Result<Value, SchemaError> {
    let schema = match option {
        toml::Value::String(text) => {
            serde_json::from_str(text).map_err(|e| SchemaError::NotJson(e.to_string()))?
        }
        other => serde_json::to_value(other).map_err(|e| SchemaError::NotJson(e.to_string()))?,
    };
    if schema.get("type").is_none() {
        return Err(SchemaError::NotASchema);
    }
    Ok(schema)
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => value.as_i64().is_some() || value.as_u64().is_some(),
        _ => true,
    }
}

/// Checks `value` against `schema`.
pub fn check(schema: &Value, value: &Value) -> Result<(), SchemaViolation> {
    check_at(schema, value, "$")
}

fn check_at(schema: &Value, value: &Value, path: &str) -> Result<(), SchemaViolation> {
    let fail = |reason: String| {
        Err(SchemaViolation {
            path: path.to_string(),
            reason,
        })
    };
    match schema.get("type") {
        Some(Value::String(name)) if !type_matches(name, value) => {
            return fail(format!("expected {name}, got {value}"));
        }
        Some(Value::Array(names))
            if !names
                .iter()
                .filter_map(Value::as_str)
                .any(|n| type_matches(n, value)) =>
        {
            return fail(format!(
                "expected one of {}, got {value}",
                Value::Array(names.clone())
            ));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            return fail(format!(
                "{value} is not one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    if let Some(expected) = schema.get("const") {
        if expected != value {
            return fail(format!("expected {expected}, got {value}"));
        }
    }
    if let Value::Object(fields) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return fail(format!("missing required property `{name}`"));
                }
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(properties) = properties {
            for (name, sub) in properties {
                if let Some(field) = fields.get(name) {
                    check_at(sub, field, &format!("{path}.{name}"))?;
                }
            }
        }
        if schema.get("additionalProperties") == Some(&Value::Bool(false)) {
            if let Some(extra) = fields
                .keys()
                .find(|k| properties.is_none_or(|p| !p.contains_key(*k)))
            {
                return fail(format!("unexpected property `{extra}`"));
            }
        }
    }
    if let Value::Array(items) = value {
        let len = items.len() as u64;
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if len < min {
                return fail(format!("{len} items, at least {min} required"));
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if len > max {
                return fail(format!("{len} items, at most {max} allowed"));
            }
        }
        if let Some(item_schema) = schema.get("items").filter(|s| s.is_object()) {
            for (i, item) in items.iter().enumerate() {
                check_at(item_schema, item, &format!("{path}[{i}]"))?;
            }
        }
    }
    if let Value::String(text) = value {
        let len = text.chars().count() as u64;
        if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
            if len < min {
                return fail(format!("length {len}, at least {min} required"));
            }
        }
        if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
            if len > max {
                return fail(format!("length {len}, at most {max} allowed"));
            }
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if number < min {
                return fail(format!("{number} is below the minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if number > max {
                return fail(format!("{number} is above the maximum {max}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["questions", "priority"],
            "properties": {
                "priority": {"type": "string", "enum": ["low", "high"]},
                "questions": {"type": "array", "minItems": 1, "items": {"type": "string"}}
            }
        })
    }

    #[test]
    fn accepts_conforming_answers() {
        check(
            &schema(),
            &json!({"priority": "low", "questions": ["a", "b"], "extra": 1}),
        )
        .unwrap();
    }

    #[test]
    fn reports_type_required_enum_and_item_violations_with_paths() {
        let cases = [
            (json!([]), "$", "expected object"),
            (
                json!({"priority": "low"}),
                "$",
                "missing required property `questions`",
            ),
            (
                json!({"priority": "urgent", "questions": ["a"]}),
                "$.priority",
                "is not one of",
            ),
            (
                json!({"priority": "low", "questions": ["a", 3]}),
                "$.questions[1]",
                "expected string",
            ),
            (
                json!({"priority": "low", "questions": []}),
                "$.questions",
                "at least 1",
            ),
        ];
        for (answer, path, reason) in cases {
            let violation = check(&schema(), &answer).unwrap_err();
            assert_eq!(violation.path, path, "{answer}");
            assert!(violation.reason.contains(reason), "{violation}");
        }
        let closed = json!({"type": "object", "properties": {"a": {"type": "integer"}}, "additionalProperties": false});
        assert!(check(&closed, &json!({"a": 1})).is_ok());
        assert!(check(&closed, &json!({"a": 1.5})).is_err());
        assert!(check(&closed, &json!({"a": 1, "b": 2})).is_err());
    }

    #[test]
    fn schemas_come_from_toml_tables_or_json_strings() {
        let table: toml::Value = toml::from_str::<toml::Table>("type = 'object'\nrequired = ['a']")
            .unwrap()
            .into();
        assert_eq!(
            schema_from_option(&table).unwrap()["required"],
            json!(["a"])
        );
        let text = toml::Value::String(r#"{"type": "string"}"#.to_string());
        assert_eq!(
            schema_from_option(&text).unwrap(),
            json!({"type": "string"})
        );
        assert!(matches!(
            schema_from_option(&toml::Value::String("{".to_string())),
            Err(SchemaError::NotJson(_))
        ));
        assert_eq!(
            schema_from_option(&toml::Value::String("{}".to_string())),
            Err(SchemaError::NotASchema)
        );
    }
}
