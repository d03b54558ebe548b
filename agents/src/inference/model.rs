//! A loaded tabular model: an ONNX Runtime session checked against the agent's input
//! mapping and output at load time (so a model of the wrong shape is refused before it
//! scores anything), and the batch runner that scores rows with it.

use std::sync::Arc;

use ort::session::Session;
use ort::value::{DynValue, Tensor, TensorElementType, ValueType};
use thiserror::Error;

use super::batcher::BatchRunner;
use super::mapping::{DType, InputSpec};

/// Which model version a row was scored with, as recorded in its prediction and decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelId {
    /// Model name (the models-topic key).
    pub name: String,
    /// Version label.
    pub version: String,
    /// SHA-256 of the ONNX bytes, hex.
    pub sha256: String,
}

/// A model's bytes do not fit the agent that would run them.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ModelLoadError {
    /// ONNX Runtime could not parse or initialise the model.
    #[error("ONNX Runtime refused the model: {0}")]
    Session(String),
    /// The model's inputs differ from the configured mapping.
    #[error("inputs do not match the mapping: {0}")]
    Inputs(String),
    /// The chosen output is missing, not float32, or not `[batch]`/`[batch, k]`.
    #[error("unexpected output: {0}")]
    Output(String),
}

/// A session ready to score, with what it was checked against.
pub struct LoadedModel {
    /// Which model this is.
    pub id: Arc<ModelId>,
    session: Session,
    inputs: Arc<Vec<InputSpec>>,
    output: String,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("id", &self.id)
            .field("output", &self.output)
            .finish_non_exhaustive()
    }
}

fn element_type(dtype: DType) -> TensorElementType {
    match dtype {
        DType::Float32 => TensorElementType::Float32,
        DType::Float64 => TensorElementType::Float64,
        DType::Int64 => TensorElementType::Int64,
        DType::Int32 => TensorElementType::Int32,
    }
}

impl LoadedModel {
    /// Checks `session` against the mapping and the output (by name, or the first
    /// output), for batches of up to `batch_size` rows.
    pub fn check(
        id: ModelId,
        session: Session,
        inputs: Arc<Vec<InputSpec>>,
        output: Option<&str>,
        batch_size: usize,
    ) -> Result<LoadedModel, ModelLoadError> {
        // A dynamic batch axis takes any batch; a fixed one only batches of exactly
        // that size, which micro-batching cannot promise unless it is 1 and so is
        // `batch_size`.
        let batch_ok = |dim: i64| dim < 0 || (dim == 1 && batch_size == 1);
        for outlet in session.inputs() {
            let spec = inputs
                .iter()
                .find(|s| s.name == outlet.name())
                .ok_or_else(|| {
                    ModelLoadError::Inputs(format!(
                        "model input `{}` has no mapping (mapped: {})",
                        outlet.name(),
                        names(inputs.iter().map(|s| s.name.as_str()))
                    ))
                })?;
            let ValueType::Tensor { ty, shape, .. } = outlet.dtype() else {
                return Err(ModelLoadError::Inputs(format!(
                    "model input `{}` is not a tensor",
                    outlet.name()
                )));
            };
            if *ty != element_type(spec.dtype) {
                return Err(ModelLoadError::Inputs(format!(
                    "model input `{}` is {ty:?}, the mapping says {:?}",
                    outlet.name(),
                    spec.dtype
                )));
            }
            let row = spec.row_shape();
            let fits = shape.len() == row.len() + 1
                && batch_ok(shape[0])
                && shape[1..]
                    .iter()
                    .zip(&row)
                    .all(|(dim, want)| *dim < 0 || *dim as usize == *want);
            if !fits {
                return Err(ModelLoadError::Inputs(format!(
                    "model input `{}` has shape {:?}; the mapping gives [batch] + {row:?} \
                     (export a dynamic batch axis, or set batch_size = 1 for a batch of 1)",
                    outlet.name(),
                    &shape[..]
                )));
            }
        }
        for spec in inputs.iter() {
            if !session.inputs().iter().any(|o| o.name() == spec.name) {
                return Err(ModelLoadError::Inputs(format!(
                    "mapped input `{}` is not a model input (model: {})",
                    spec.name,
                    names(session.inputs().iter().map(|o| o.name()))
                )));
            }
        }
        let outlet = match output {
            Some(name) => session.outputs().iter().find(|o| o.name() == name),
            None => session.outputs().first(),
        }
        .ok_or_else(|| {
            ModelLoadError::Output(format!(
                "no output `{}` (model: {})",
                output.unwrap_or("<first>"),
                names(session.outputs().iter().map(|o| o.name()))
            ))
        })?;
        let output = outlet.name().to_string();
        match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. }
                if *ty == TensorElementType::Float32
                    && (shape.len() == 1 || shape.len() == 2)
                    && batch_ok(shape[0])
                    && (shape.len() == 1 || shape[1] != 0) => {}
            other => {
                return Err(ModelLoadError::Output(format!(
                    "output `{output}` is {other:?}; expected float32 [batch] or [batch, k]"
                )))
            }
        }
        Ok(LoadedModel {
            id: Arc::new(id),
            session,
            inputs,
            output,
        })
    }

    /// Scores rows (one `Vec` per input, per row) in one session run.
    pub fn score(&mut self, rows: &[Vec<Vec<f64>>]) -> Result<Vec<Vec<f32>>, String> {
        let batch = rows.len();
        let mut values: Vec<(String, DynValue)> = Vec::with_capacity(self.inputs.len());
        for (i, spec) in self.inputs.iter().enumerate() {
            let mut shape = vec![batch as i64];
            shape.extend(spec.row_shape().iter().map(|d| *d as i64));
            let flat = rows.iter().flat_map(|r| r[i].iter().copied());
            let value = match spec.dtype {
                DType::Float32 => tensor(shape, flat.map(|v| v as f32).collect())?,
                DType::Float64 => tensor(shape, flat.collect())?,
                DType::Int64 => tensor(shape, flat.map(|v| v as i64).collect())?,
                DType::Int32 => tensor(shape, flat.map(|v| v as i32).collect())?,
            };
            values.push((spec.name.clone(), value));
        }
        let outputs = self.session.run(values).map_err(|e| e.to_string())?;
        let value = outputs
            .get(&self.output)
            .ok_or_else(|| format!("the model produced no output `{}`", self.output))?;
        let (shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        if shape.first().copied() != Some(batch as i64) || data.len() % batch.max(1) != 0 {
            return Err(format!(
                "output `{}` has shape {:?} for a batch of {batch}",
                self.output,
                &shape[..]
            ));
        }
        let width = data.len() / batch.max(1);
        Ok(data.chunks(width.max(1)).map(<[f32]>::to_vec).collect())
    }
}

fn tensor<T>(shape: Vec<i64>, data: Vec<T>) -> Result<DynValue, String>
where
    T: ort::value::PrimitiveTensorElementType + Clone + std::fmt::Debug + 'static,
{
    Tensor::from_array((shape, data))
        .map(Tensor::into_dyn)
        .map_err(|e| e.to_string())
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names.collect::<Vec<_>>().join(", ")
}

/// One scored row: its scores and the model version that produced them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    /// The model's output row.
    pub scores: Vec<f32>,
    /// The version that scored it.
    pub model: Arc<ModelId>,
    /// How many rows shared its session run (1 when scored alone).
    pub batch: usize,
}

/// The batcher side of an `onnx` agent: scores batches with the current model, which a
/// deploy replaces between batches. Before the first model arrives rows fail as
/// unavailable (they wait, they are not dead-lettered).
#[derive(Debug, Default)]
pub struct OnnxRunner {
    model: Option<LoadedModel>,
}

/// Prefix of a row error meaning "no model yet": the handler turns it into an
/// unavailable error so the event waits instead of being dead-lettered.
pub const NO_MODEL: &str = "no model deployed yet";

impl BatchRunner for OnnxRunner {
    type Row = Vec<Vec<f64>>;
    type Out = Scored;
    type Swap = LoadedModel;

    fn run(&mut self, rows: Vec<Self::Row>) -> Vec<Result<Scored, String>> {
        let Some(model) = self.model.as_mut() else {
            return rows.iter().map(|_| Err(NO_MODEL.to_string())).collect();
        };
        let id = model.id.clone();
        let batch = rows.len();
        let scored = |scores: Vec<f32>, batch: usize| Scored {
            scores,
            model: id.clone(),
            batch,
        };
        match model.score(&rows) {
            Ok(all) => all.into_iter().map(|s| Ok(scored(s, batch))).collect(),
            // One row the runtime rejects must not fail the rest: score them alone.
            Err(_) if rows.len() > 1 => rows
                .iter()
                .map(|row| {
                    model
                        .score(std::slice::from_ref(row))
                        .and_then(|mut one| one.pop().ok_or_else(|| "no output row".to_string()))
                        .map(|s| scored(s, 1))
                })
                .collect(),
            Err(error) => vec![Err(error)],
        }
    }

    fn swap(&mut self, model: LoadedModel) {
        tracing::info!(model = %model.id.name, version = %model.id.version, "model version in service");
        self.model = Some(model);
    }
}
