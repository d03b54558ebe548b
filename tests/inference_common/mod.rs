//! Helpers of `tests/inference.rs`: the venv python and the fraud example's script
//! (models, transactions, reference scores), agent configurations, brokers of both
//! kinds, and reading predictions and decisions back.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use agentlog_agents::inference::registry::deploy_records;
use agentlog_agents::{Backend, Event, OutRecord};
use bytes::Bytes;
use serde_json::Value;

pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
pub const WAIT: Duration = Duration::from_secs(90);

pub fn library() -> String {
    format!("{ROOT}/.models/libonnxruntime.so")
}

pub fn run_python(args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    let mut child = Command::new(crate::agents_common::python())
        .args(args)
        .current_dir(ROOT)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run .models/python (bash scripts/models.sh installs it)");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "python {args:?} failed");
    String::from_utf8(out.stdout).unwrap()
}

pub const FRAUD: &str = "examples/fraud-scoring/fraud.py";

/// Trains the fraud example's model (small training set) into `dir/name`.
pub fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        FRAUD,
        "train",
        "--n",
        "4000",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    run_python(&args, None);
    out
}

/// `n` synthetic transactions (JSON lines) and their file.
pub fn transactions(dir: &Path, n: usize, seed: u64) -> (PathBuf, Vec<Value>) {
    let path = dir.join(format!("tx-{seed}.jsonl"));
    let n = n.to_string();
    let seed = seed.to_string();
    run_python(
        &[
            FRAUD,
            "generate",
            "--n",
            &n,
            "--seed",
            &seed,
            "--out",
            path.to_str().unwrap(),
        ],
        None,
    );
    let rows = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (path, rows)
}

pub fn record(tx: &Value) -> OutRecord {
    OutRecord {
        key: Some(Bytes::from(tx["card"].as_str().unwrap().to_string())),
        value: Some(Bytes::from(tx.to_string())),
        headers: Vec::new(),
        timestamp: agentlog_agents::event::now_ms(),
    }
}

pub const FIELDS: &str = r#""amount", "hour", "online", "foreign", "card_present", "pin_used",
  "new_merchant", "distance_km", "merchant_risk", "account_age_days",
  "category.grocery", "category.fuel", "category.restaurant", "category.electronics",
  "category.travel", "category.jewelry",
  "window.count_60s", "window.sum_60s", "window.count_3600s", "window.sum_3600s""#;

pub struct Scorer<'a> {
    pub name: &'a str,
    pub topic: &'a str,
    pub instances: usize,
    pub path: Option<&'a Path>,
    pub poll_ms: u64,
    pub max_wait_ms: u64,
}

pub fn onnx_config(s: &Scorer) -> String {
    let path = s
        .path
        .map(|p| format!("path = \"{}\"\nversion = \"file\"\n", p.display()))
        .unwrap_or_default();
    format!(
        r#"
[inference]
library = "{library}"
models_poll_ms = {poll}

[[agents]]
name = "{name}"
kind = "onnx"
topics = ["{topic}"]
instances = {instances}
max_attempts = 2
backoff_ms = 10
[agents.options]
model = "fraud"
{path}output_topic = "{topic}.scores"
alert_topic = "{topic}.alerts"
threshold = 0.8
labels = ["legit", "fraud"]
batch_size = 64
max_wait_ms = {wait}
[agents.options.windows]
key = "card"
amount = "amount"
time_field = "ts"
[[agents.options.inputs]]
name = "features"
fields = [{FIELDS}]
"#,
        library = library(),
        poll = s.poll_ms,
        name = s.name,
        topic = s.topic,
        instances = s.instances,
        wait = s.max_wait_ms,
    )
}

pub fn data(event: &Event) -> Value {
    event.envelope().expect("an enveloped prediction").data
}

pub fn decisions(events: &[Event], kind: &str) -> Vec<Value> {
    events
        .iter()
        .map(data)
        .filter(|d| d["decision"] == kind)
        .map(|d| d["details"].clone())
        .collect()
}

/// The input record a prediction names.
pub async fn read_source<B: Backend>(backend: &B, prediction: &Value) -> Bytes {
    let partition = prediction["source"]["partition"].as_i64().unwrap() as i32;
    let offset = prediction["source"]["offset"].as_i64().unwrap();
    let mut stream = backend
        .read_topic("tx", agentlog_agents::StartAt::Offset(offset))
        .await
        .unwrap();
    while let Some(event) = stream.next().await {
        let event = event.unwrap();
        if event.partition == partition && event.offset == offset {
            return event.value.unwrap();
        }
    }
    panic!("no record at tx-{partition}@{offset}");
}

pub async fn deploy<B: Backend>(backend: &B, version: &str, bytes: &[u8]) {
    // Small chunks: every version travels in several records.
    for record in deploy_records("fraud", version, bytes, 200) {
        backend.produce("agent.models", vec![record]).await.unwrap();
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (norm(a) * norm(b))
}

pub fn agentlog(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(args)
        .env("AGENTLOG_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "agentlog {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
