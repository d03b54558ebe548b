//! From an event to the rows of a model's input tensors: JSON fields by dotted path
//! (numbers, booleans, arrays of numbers), defaults for missing ones, or the raw value
//! bytes; then shaped and typed per input. A bad event fails here, alone, before it
//! reaches a batch.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use thiserror::Error;

use crate::event::Event;

/// Element type of an input tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    /// 32-bit float (`float32`), what most exported models take.
    Float32,
    /// 64-bit float.
    Float64,
    /// 64-bit signed integer (token ids, categorical codes).
    Int64,
    /// 32-bit signed integer.
    Int32,
}

/// How the raw record value becomes an input, for models that take bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawFormat {
    /// Each byte one element (0..=255).
    U8,
    /// Little-endian f32 values (e.g. an `embed` agent's output).
    F32le,
}

/// One input tensor of the model: where its per-event values come from.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The model's input name.
    pub name: String,
    /// Element type (default `float32`).
    #[serde(default = "default_dtype")]
    pub dtype: DType,
    /// Dotted JSON paths, in column order; an array value contributes all its numbers.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Take the record value's bytes instead of JSON fields.
    pub raw: Option<RawFormat>,
    /// Per-event shape without the batch dimension (default: `[number of values]`).
    pub shape: Option<Vec<usize>>,
    /// Value for any missing field (without one a missing field fails the event).
    pub default: Option<f64>,
    /// Values for particular missing fields, over `default`.
    #[serde(default)]
    pub defaults: BTreeMap<String, f64>,
}

fn default_dtype() -> DType {
    DType::Float32
}

/// An event does not fit the input mapping.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum MappingError {
    /// The value is not JSON (and no raw input is configured).
    #[error("value is not JSON: {0}")]
    NotJson(String),
    /// A field is absent and has no default.
    #[error("missing field `{field}` (input `{input}`)")]
    MissingField {
        /// Input tensor.
        input: String,
        /// Dotted path.
        field: String,
    },
    /// A field holds something other than a number, boolean or array of numbers.
    #[error("field `{field}` (input `{input}`) is {found}, expected a number")]
    WrongType {
        /// Input tensor.
        input: String,
        /// Dotted path.
        field: String,
        /// What it holds.
        found: String,
    },
    /// The values do not fill the input's shape.
    #[error("input `{input}` needs {expected} values, the event gave {got}")]
    WrongCount {
        /// Input tensor.
        input: String,
        /// Elements of the per-event shape.
        expected: usize,
        /// Values found.
        got: usize,
    },
    /// The raw value cannot be read in the configured format.
    #[error("raw value of input `{input}`: {reason}")]
    Raw {
        /// Input tensor.
        input: String,
        /// Why.
        reason: String,
    },
}

impl InputSpec {
    /// The per-event shape (without the batch dimension).
    pub fn row_shape(&self) -> Vec<usize> {
        self.shape
            .clone()
            .unwrap_or_else(|| vec![self.fields.len()])
    }

    /// Elements per event.
    pub fn row_len(&self) -> usize {
        self.row_shape().iter().product()
    }

    /// Checks the mapping itself (before any event).
    pub fn check(&self) -> Result<(), String> {
        if self.raw.is_some() != self.fields.is_empty() {
            return Err(format!(
                "input `{}` needs either `fields` or `raw`, not both",
                self.name
            ));
        }
        if self.raw.is_some() && self.shape.is_none() {
            return Err(format!("raw input `{}` needs a `shape`", self.name));
        }
        if self.row_len() == 0 {
            return Err(format!("input `{}` has an empty shape", self.name));
        }
        Ok(())
    }

    /// This input's values for one event. `payload` is the event's JSON (envelope data
    /// or plain value), `extra` fields computed before the model (window features).
    pub fn extract(
        &self,
        event: &Event,
        payload: Option<&Value>,
        extra: &BTreeMap<String, f64>,
    ) -> Result<Vec<f64>, MappingError> {
        let values = match self.raw {
            Some(format) => self.raw_values(event, format)?,
            None => {
                let mut values = Vec::with_capacity(self.fields.len());
                for field in &self.fields {
                    self.push_field(field, payload, extra, &mut values)?;
                }
                values
            }
        };
        let expected = self.row_len();
        if values.len() != expected {
            return Err(MappingError::WrongCount {
                input: self.name.clone(),
                expected,
                got: values.len(),
            });
        }
        Ok(values)
    }

    fn push_field(
        &self,
        field: &str,
        payload: Option<&Value>,
        extra: &BTreeMap<String, f64>,
        values: &mut Vec<f64>,
    ) -> Result<(), MappingError> {
        if let Some(value) = extra.get(field) {
            values.push(*value);
            return Ok(());
        }
        let wrong = |found: &Value| MappingError::WrongType {
            input: self.name.clone(),
            field: field.to_string(),
            found: describe(found),
        };
        match payload.and_then(|p| lookup(p, field)) {
            None | Some(Value::Null) => {
                let default = self.defaults.get(field).copied().or(self.default);
                values.push(default.ok_or_else(|| MappingError::MissingField {
                    input: self.name.clone(),
                    field: field.to_string(),
                })?);
            }
            Some(Value::Array(items)) => {
                for item in items {
                    values.push(number(item).ok_or_else(|| wrong(item))?);
                }
            }
            Some(other) => values.push(number(other).ok_or_else(|| wrong(other))?),
        }
        Ok(())
    }

    fn raw_values(&self, event: &Event, format: RawFormat) -> Result<Vec<f64>, MappingError> {
        let bytes = event.value.as_deref().unwrap_or_default();
        match format {
            RawFormat::U8 => Ok(bytes.iter().map(|b| f64::from(*b)).collect()),
            RawFormat::F32le => {
                if !bytes.len().is_multiple_of(4) {
                    return Err(MappingError::Raw {
                        input: self.name.clone(),
                        reason: format!("{} bytes is not a whole number of f32", bytes.len()),
                    });
                }
                Ok(bytes
                    .chunks_exact(4)
                    .map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                    .collect())
            }
        }
    }
}

/// The JSON an event carries: its envelope's `data`, else its value parsed as JSON.
pub fn payload(event: &Event) -> Result<Value, MappingError> {
    if let Some(envelope) = event.envelope() {
        return Ok(envelope.data);
    }
    serde_json::from_slice(event.value.as_deref().unwrap_or_default())
        .map_err(|e| MappingError::NotJson(e.to_string()))
}

/// The node at a dotted path (`card.id`); array elements by number (`items.0`).
pub fn lookup<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut node = value;
    for part in path.split('.') {
        node = match node {
            Value::Object(map) => map.get(part)?,
            Value::Array(items) => items.get(part.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(node)
}

fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
        _ => None,
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("the string {s:?}"),
        Value::Object(_) => "an object".to_string(),
        Value::Array(_) => "an array holding a non-number".to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    fn event(value: &[u8]) -> Event {
        Event {
            topic: Arc::from("t"),
            partition: 0,
            offset: 0,
            timestamp: 0,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Vec::new(),
            undecodable: None,
        }
    }

    fn spec(fields: &[&str]) -> InputSpec {
        InputSpec {
            name: "x".to_string(),
            dtype: DType::Float32,
            fields: fields.iter().map(|f| f.to_string()).collect(),
            raw: None,
            shape: None,
            default: None,
            defaults: BTreeMap::new(),
        }
    }

    #[test]
    fn fields_by_dotted_path_with_defaults_and_type_errors() {
        let value = json!({"a": 1, "b": {"c": true}, "v": [1.5, 2.5]});
        let none = BTreeMap::new();
        let ev = event(b"{}");
        let mut s = spec(&["a", "b.c", "missing"]);
        assert!(matches!(
            s.extract(&ev, Some(&value), &none),
            Err(MappingError::MissingField { field, .. }) if field == "missing"
        ));
        s.defaults.insert("missing".to_string(), 7.0);
        assert_eq!(
            s.extract(&ev, Some(&value), &none).unwrap(),
            vec![1.0, 1.0, 7.0]
        );
        let s = spec(&["a", "v"]);
        let mut s3 = s.clone();
        s3.shape = Some(vec![3]);
        assert_eq!(
            s3.extract(&ev, Some(&value), &none).unwrap(),
            vec![1.0, 1.5, 2.5]
        );
        assert!(matches!(
            s.extract(&ev, Some(&value), &none),
            Err(MappingError::WrongCount {
                expected: 2,
                got: 3,
                ..
            })
        ));
        let bad = json!({"a": "lots"});
        assert!(matches!(
            spec(&["a"]).extract(&ev, Some(&bad), &none),
            Err(MappingError::WrongType { .. })
        ));
        let extra = BTreeMap::from([("w.count".to_string(), 3.0)]);
        assert_eq!(
            spec(&["w.count"]).extract(&ev, None, &extra).unwrap(),
            vec![3.0]
        );
    }

    #[test]
    fn raw_f32_values() {
        let mut s = spec(&[]);
        s.raw = Some(RawFormat::F32le);
        s.shape = Some(vec![2]);
        s.check().unwrap();
        let bytes: Vec<u8> = [1.0f32, -2.0]
            .iter()
            .flat_map(|f| f.to_le_bytes())
            .collect();
        let none = BTreeMap::new();
        assert_eq!(
            s.extract(&event(&bytes), None, &none).unwrap(),
            vec![1.0, -2.0]
        );
        assert!(s.extract(&event(&bytes[..5]), None, &none).is_err());
        assert!(spec(&[]).check().is_err());
    }

    #[test]
    fn payload_is_json_or_an_error() {
        assert_eq!(payload(&event(br#"{"a":1}"#)).unwrap(), json!({"a": 1}));
        assert!(matches!(
            payload(&event(b"nope")),
            Err(MappingError::NotJson(_))
        ));
    }
}
