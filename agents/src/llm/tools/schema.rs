//! A deliberately small JSON-schema check of the arguments a model passes to a tool:
//! `type`, `required`, `properties` (recursively), `enum`, `minimum`/`maximum` and
//! `items`. Anything else in the schema is accepted as is. Its job is to catch what
//! small models get wrong (missing or mistyped arguments) and tell them precisely, not
//! to be a complete validator.

use serde_json::Value;

fn type_matches(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

/// Checks `value` against `schema`; the error names the offending path.
pub fn check(schema: &Value, value: &Value) -> Result<(), String> {
    check_at(schema, value, "arguments")
}

fn check_at(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    match schema.get("type") {
        Some(Value::String(t)) if !type_matches(t, value) => {
            return Err(format!("{path} must be of type {t}"));
        }
        Some(Value::Array(types))
            if !types
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_matches(t, value)) =>
        {
            return Err(format!(
                "{path} must be one of the types {}",
                Value::Array(types.clone())
            ));
        }
        _ => {}
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            return Err(format!(
                "{path} must be one of {}",
                Value::Array(allowed.clone())
            ));
        }
    }
    if let Some(n) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if n < min {
                return Err(format!("{path} must be at least {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if n > max {
                return Err(format!("{path} must be at most {max}"));
            }
        }
    }
    if let Value::Object(fields) = value {
        if let Some(Value::Array(required)) = schema.get("required") {
            for name in required.iter().filter_map(Value::as_str) {
                if !fields.contains_key(name) {
                    return Err(format!("{path}.{name} is required"));
                }
            }
        }
        if let Some(Value::Object(properties)) = schema.get("properties") {
            for (name, field) in fields {
                if let Some(sub) = properties.get(name) {
                    check_at(sub, field, &format!("{path}.{name}"))?;
                }
            }
        }
    }
    if let (Value::Array(items), Some(sub)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check_at(sub, item, &format!("{path}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check;

    #[test]
    fn catches_missing_mistyped_and_out_of_range_arguments() {
        let schema = json!({
            "type": "object",
            "properties": {
                "city": {"type": "string", "enum": ["Paris", "Oslo"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["city"],
        });
        assert_eq!(check(&schema, &json!({"city": "Oslo", "days": 3})), Ok(()));
        assert_eq!(
            check(&schema, &json!({"days": 3})),
            Err("arguments.city is required".to_string())
        );
        assert!(check(&schema, &json!({"city": "Rome"}))
            .unwrap_err()
            .contains("one of"));
        assert!(check(&schema, &json!({"city": "Oslo", "days": 9}))
            .unwrap_err()
            .contains("at most"));
        assert!(check(&schema, &json!({"city": "Oslo", "days": "3"}))
            .unwrap_err()
            .contains("integer"));
        assert_eq!(
            check(&schema, &json!({"city": "Oslo", "tags": ["a", 1]})),
            Err("arguments.tags[1] must be of type string".to_string())
        );
        assert!(check(&schema, &json!("Oslo")).is_err());
    }
}
