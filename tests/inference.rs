//! Inference on the log with the real ONNX Runtime (`.models/libonnxruntime.so`), real
//! models (the fraud example's script trains and exports them during the test; MiniLM
//! from `bash scripts/models.sh`) and reference outputs computed by Python onnxruntime:
//! embeddings, micro-batched scoring with a bad event dead-lettered alone, hot swaps
//! under load with every event scored exactly once, a corrupt version refused while
//! the old one keeps serving, on the embedded backend and against the agentlog binary.

mod agents_common;
mod common;
mod inference_common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::inference::embed::decode_vector;
use agentlog_agents::inference::registry::sha256_hex;
use agentlog_agents::inference::Embedder;
use agentlog_agents::{Backend, KafkaBackend, KafkaConfig, OutRecord, Runtime, Sink};
use agents_common::{embedded, kafka, read_all, wait_for};
use bytes::Bytes;
use inference_common::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------
// Scoring: micro-batches, scores equal to Python onnxruntime's, one bad event dead-lettered.

async fn scores_in_batches_and_dead_letters_a_bad_event<B: Backend>(backend: B) {
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path(), "model.onnx", &[]);
    let (data_path, txs) = transactions(dir.path(), 240, 5);
    let expected: BTreeMap<String, f64> = serde_json::from_str(&run_python(
        &[
            FRAUD,
            "score",
            "--data",
            data_path.to_str().unwrap(),
            "--model",
            model.to_str().unwrap(),
        ],
        None,
    ))
    .unwrap();
    let config = AgentsConfig::from_toml(&onnx_config(&Scorer {
        name: "scorer",
        topic: "tx",
        instances: 4,
        path: Some(&model),
        poll_ms: 500,
        max_wait_ms: 20,
    }))
    .unwrap();
    backend.ensure_topic("tx", 4, false).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();

    let mut records: Vec<OutRecord> = txs.iter().map(record).collect();
    // A bad event on a card of its own (so no good card's window sees it).
    let mut bad = txs[10].clone();
    bad["card"] = json!("bad-card");
    bad["amount"] = json!("lots");
    records.insert(100, record(&bad));
    for chunk in records.chunks(40) {
        backend.produce("tx", chunk.to_vec()).await.unwrap();
    }

    let scores = wait_for(&backend, "tx.scores", txs.len(), WAIT).await;
    let dlq = wait_for(&backend, "tx.dlq", 1, WAIT).await;
    assert_eq!(scores.len(), txs.len(), "every good event scored");
    assert_eq!(dlq.len(), 1, "the bad event dead-lettered");
    let error = dlq[0].header_str("dlq.error").unwrap();
    assert!(error.contains("amount"), "{error}");
    assert_eq!(dlq[0].header_str("dlq.stage"), Some("input"));

    let mut sources = BTreeSet::new();
    let mut largest_batch = 0;
    let mut positives = 0;
    for event in &scores {
        let p = data(event);
        sources.insert((
            p["source"]["partition"].as_i64(),
            p["source"]["offset"].as_i64(),
        ));
        assert_eq!(p["model"], "fraud");
        assert_eq!(p["version"], "file");
        assert_eq!(p["sha256"], sha256_hex(&std::fs::read(&model).unwrap()));
        largest_batch = largest_batch.max(p["batch"].as_u64().unwrap());
        let value: Value = serde_json::from_slice(&read_source(&backend, &p).await).unwrap();
        let want = expected[&value["id"].to_string()];
        let got = p["score"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-4,
            "tx {}: agent {got}, python {want}",
            value["id"]
        );
        let fraud = got >= 0.8;
        positives += usize::from(fraud);
        assert_eq!(p["label"], if fraud { "fraud" } else { "legit" });
    }
    assert_eq!(sources.len(), txs.len(), "each event scored exactly once");
    assert!(
        largest_batch > 1,
        "events shared session runs (largest batch {largest_batch})"
    );
    let alerts = read_all(&backend, "tx.alerts").await;
    assert_eq!(alerts.len(), positives);
    assert!(
        positives > 0,
        "the synthetic data holds fraud the model catches"
    );
    let audit = wait_for(&backend, "agent.decisions.scorer", txs.len(), WAIT).await;
    let scored: Vec<Value> = ["scored", "alert"]
        .iter()
        .flat_map(|k| decisions(&audit, k))
        .collect();
    assert_eq!(scored.len(), txs.len());
    assert!(scored
        .iter()
        .all(|d| d["version"] == "file" && d["model"] == "fraud"));
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_scores_in_batches_and_dead_letters_a_bad_event() {
    let (_broker, backend) = embedded().await;
    scores_in_batches_and_dead_letters_a_bad_event(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_scores_in_batches_and_dead_letters_a_bad_event() {
    let (_process, backend) = kafka();
    scores_in_batches_and_dead_letters_a_bad_event(backend).await;
}

// ---------------------------------------------------------------------------------------
// `swaps` hot swaps, one every `interval_ms`, under load; corrupt and mismatching
// versions refused.
async fn hot_swaps_under_load<B: Backend>(
    backend: B,
    poll_ms: u64,
    swaps: usize,
    interval_ms: u64,
) {
    const TOTAL: usize = 1200;
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(train(dir.path(), "a.onnx", &[])).unwrap();
    let b = std::fs::read(train(dir.path(), "b.onnx", &["--bias-shift", "1.5"])).unwrap();
    let mismatched = std::fs::read(train(dir.path(), "m.onnx", &["--input-name", "x"])).unwrap();
    let corrupt: Vec<u8> = (0..900u32).map(|i| (i * 7 % 256) as u8).collect();
    let (_, txs) = transactions(dir.path(), TOTAL, 9);

    backend.ensure_topic("agent.models", 1, true).await.unwrap();
    deploy(&backend, "v0", &a).await;
    let config = AgentsConfig::from_toml(&onnx_config(&Scorer {
        name: "swapper",
        topic: "swap",
        instances: 2,
        path: None,
        poll_ms,
        max_wait_ms: 2,
    }))
    .unwrap();
    backend.ensure_topic("swap", 2, false).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();

    let producer = {
        let backend = backend.clone();
        let records: Vec<OutRecord> = txs.iter().map(record).collect();
        // Events arrive for as long as the swaps go on.
        let pause = Duration::from_millis(interval_ms * swaps as u64 / (TOTAL / 20) as u64);
        tokio::spawn(async move {
            for chunk in records.chunks(20) {
                backend.produce("swap", chunk.to_vec()).await.unwrap();
                tokio::time::sleep(pause).await;
            }
        })
    };
    // Good versions alternate between two models; two bad ones come in between.
    let mut good = vec!["v0".to_string()];
    for i in 1..=swaps {
        tokio::time::sleep(Duration::from_millis(interval_ms)).await;
        let version = format!("v{i}");
        match i {
            3 => deploy(&backend, &version, &corrupt).await,
            6 => deploy(&backend, &version, &mismatched).await,
            _ => {
                deploy(&backend, &version, if i % 2 == 0 { &a } else { &b }).await;
                good.push(version);
            }
        }
    }
    producer.await.unwrap();

    let scores = wait_for(&backend, "swap.scores", TOTAL, WAIT).await;
    assert_eq!(scores.len(), TOTAL, "no event dropped or scored twice");
    let order = |v: &str| good.iter().position(|g| g == v);
    let mut by_partition: BTreeMap<i64, Vec<(i64, usize)>> = BTreeMap::new();
    for event in &scores {
        let p = data(event);
        let version = p["version"].as_str().unwrap();
        let rank = order(version).unwrap_or_else(|| panic!("scored by refused version {version}"));
        by_partition
            .entry(p["source"]["partition"].as_i64().unwrap())
            .or_default()
            .push((p["source"]["offset"].as_i64().unwrap(), rank));
    }
    let mut used = BTreeSet::new();
    let mut distinct = 0;
    for (partition, mut scored) in by_partition {
        scored.sort();
        distinct += scored.len();
        scored.dedup_by_key(|(offset, _)| *offset);
        for pair in scored.windows(2) {
            assert!(
                pair[0].1 <= pair[1].1,
                "partition {partition}: an older version scored after a newer one: {pair:?}"
            );
        }
        used.extend(scored.iter().map(|(_, rank)| *rank));
    }
    assert_eq!(distinct, TOTAL, "each event scored exactly once");
    assert!(
        used.len() >= 3,
        "events were scored by several versions: {used:?}"
    );

    let audit = wait_for(&backend, "agent.decisions.swapper", TOTAL + swaps + 1, WAIT).await;
    let refused = decisions(&audit, "model.refused");
    let refused: BTreeSet<&str> = refused
        .iter()
        .filter_map(|d| d["version"].as_str())
        .collect();
    assert_eq!(refused, BTreeSet::from(["v3", "v6"]));
    let deployed = decisions(&audit, "model.deployed");
    let deployed: Vec<&str> = deployed
        .iter()
        .filter_map(|d| d["version"].as_str())
        .collect();
    assert_eq!(
        deployed,
        good.iter().map(String::as_str).collect::<Vec<_>>()
    );
    for kind in ["scored", "alert"] {
        for d in decisions(&audit, kind) {
            assert!(order(d["version"].as_str().unwrap()).is_some());
        }
    }
    // After the last deploy, new events are scored by the last good version.
    backend
        .produce("swap", vec![record(&txs[0])])
        .await
        .unwrap();
    let scores = wait_for(&backend, "swap.scores", TOTAL + 1, WAIT).await;
    let last = scores
        .iter()
        .map(data)
        .max_by_key(|p| p["version"].as_str().map(order))
        .unwrap();
    assert_eq!(last["version"], format!("v{swaps}"));
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_hot_swaps_under_load_score_every_event_once() {
    let (_broker, backend) = embedded().await;
    // 100 swaps (98 good, 2 refused), one every 30 ms.
    hot_swaps_under_load(backend, 20, 100, 30).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_hot_swaps_under_load_score_every_event_once() {
    let (_process, backend) = kafka();
    hot_swaps_under_load(backend, 100, 8, 150).await;
}

/// A version ONNX Runtime cannot load is refused; the old one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_model_is_refused_and_the_old_one_keeps_serving() {
    let (_broker, backend) = embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let good = std::fs::read(train(dir.path(), "good.onnx", &[])).unwrap();
    let (_, txs) = transactions(dir.path(), 20, 3);
    backend.ensure_topic("agent.models", 1, true).await.unwrap();
    deploy(&backend, "good", &good).await;
    let config = AgentsConfig::from_toml(&onnx_config(&Scorer {
        name: "keeper",
        topic: "keep",
        instances: 1,
        path: None,
        poll_ms: 20,
        max_wait_ms: 1,
    }))
    .unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    // Truncated ONNX: the digest matches (it is what was published), the model does not.
    deploy(&backend, "truncated", &good[..good.len() / 2]).await;
    let audit = wait_for(&backend, "agent.decisions.keeper", 2, WAIT).await;
    let refused = decisions(&audit, "model.refused");
    assert_eq!(refused.len(), 1, "{audit:?}");
    assert_eq!(refused[0]["version"], "truncated");
    assert!(refused[0]["reason"]
        .as_str()
        .unwrap()
        .contains("ONNX Runtime"));
    backend
        .produce("keep", txs.iter().map(record).collect())
        .await
        .unwrap();
    let scores = wait_for(&backend, "keep.scores", txs.len(), WAIT).await;
    assert_eq!(scores.len(), txs.len());
    assert!(scores.iter().all(|e| data(e)["version"] == "good"));
    for handle in handles {
        handle.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// Embeddings against Python onnxruntime + tokenizers on the same files.

const SENTENCES: [&str; 6] = [
    "The pump on well 7 is vibrating above its threshold.",
    "Pressure in the separator dropped suddenly at 03:00.",
    "A cat sat on the mat.",
    "Kafka keeps an ordered, replayable log of events.",
    "Résumé naïve café — unicode text embeds too.",
    "",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_match_the_python_reference() {
    let model = format!("{ROOT}/.models/minilm/model.onnx");
    let tokenizer = format!("{ROOT}/.models/minilm/tokenizer.json");
    let reference: Vec<Vec<f32>> = serde_json::from_str(&run_python(
        &["scripts/embed_reference.py", &model, &tokenizer],
        Some(&serde_json::to_string(&SENTENCES).unwrap()),
    ))
    .unwrap();
    let settings = agentlog_agents::inference::InferenceSettings {
        library: Some(library()),
        ..Default::default()
    };
    let embedder = Embedder::from_files(
        settings.environment().unwrap(),
        Path::new(&model),
        Path::new(&tokenizer),
        1,
    )
    .unwrap();
    let vectors = embedder.embed(&SENTENCES).unwrap();
    assert_eq!(vectors.len(), SENTENCES.len());
    for (i, (got, want)) in vectors.iter().zip(&reference).enumerate() {
        assert_eq!(got.len(), 384);
        let norm: f32 = got.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "unit length");
        let c = cosine(got, want);
        assert!(c >= 0.99, "sentence {i}: cosine {c}");
    }
    // Related sentences are closer than unrelated ones (the model is really running).
    assert!(cosine(&vectors[0], &vectors[1]) > cosine(&vectors[0], &vectors[2]));

    // The embed kind: text field in, little-endian f32 out, source coordinates in headers.
    let (_broker, backend) = embedded().await;
    let config = AgentsConfig::from_toml(&format!(
        r#"
[inference]
library = "{library}"

[[agents]]
name = "embedder"
kind = "embed"
topics = ["notes"]
max_attempts = 1
[agents.options]
field = "note.text"
output_topic = "notes.vectors"
model = "{model}"
tokenizer = "{tokenizer}"
"#,
        library = library()
    ))
    .unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let mut records: Vec<OutRecord> = SENTENCES
        .iter()
        .enumerate()
        .map(|(i, s)| OutRecord {
            key: Some(Bytes::from(format!("n{i}"))),
            value: Some(Bytes::from(json!({"note": {"text": s}}).to_string())),
            headers: Vec::new(),
            timestamp: 0,
        })
        .collect();
    records.push(OutRecord {
        key: Some(Bytes::from_static(b"bad")),
        value: Some(Bytes::from_static(br#"{"note": {"text": 42}}"#)),
        headers: Vec::new(),
        timestamp: 0,
    });
    backend.produce("notes", records).await.unwrap();
    let out = wait_for(&backend, "notes.vectors", SENTENCES.len(), WAIT).await;
    assert_eq!(out.len(), SENTENCES.len());
    for event in &out {
        let offset: usize = event.header_str("source.offset").unwrap().parse().unwrap();
        assert_eq!(event.header_str("source.topic"), Some("notes"));
        assert_eq!(event.header_str("source.partition"), Some("0"));
        assert_eq!(event.header_str("embedding.dim"), Some("384"));
        assert_eq!(event.key.as_deref(), Some(format!("n{offset}").as_bytes()));
        let vector = decode_vector(event.value.as_deref().unwrap());
        let c = cosine(&vector, &reference[offset]);
        assert!(c >= 0.99, "note {offset}: cosine {c}");
    }
    let dlq = wait_for(&backend, "notes.dlq", 1, WAIT).await;
    assert!(dlq[0]
        .header_str("dlq.error")
        .unwrap()
        .contains("note.text"));
    for handle in handles {
        handle.stop().await;
    }
}

// ---------------------------------------------------------------------------------------
// The binary: `agentlog models deploy/list`, and the README's configuration verbatim.

/// An agent on an external cluster serves nothing until `agentlog models deploy`
/// publishes a version; then it scores with it, and `models list` shows it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_deploy_reaches_agents_on_an_external_cluster() {
    let (process, backend) = kafka();
    let dir = tempfile::tempdir().unwrap();
    let model = train(dir.path(), "cli.onnx", &[]);
    let (_, txs) = transactions(dir.path(), 30, 4);
    let config = AgentsConfig::from_toml(&onnx_config(&Scorer {
        name: "cli-scorer",
        topic: "cli",
        instances: 1,
        path: None,
        poll_ms: 100,
        max_wait_ms: 1,
    }))
    .unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    backend
        .produce("cli", txs.iter().map(record).collect())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        read_all(&backend, "cli.scores").await.is_empty(),
        "no model yet: events wait"
    );
    let bootstrap = process.bootstrap();
    let printed = agentlog(&[
        "models",
        "deploy",
        "fraud",
        model.to_str().unwrap(),
        "--version",
        "cli-1",
        "--bootstrap",
        &bootstrap,
        "--chunk-bytes",
        "100",
    ]);
    assert!(
        printed.contains("deployed fraud version cli-1"),
        "{printed}"
    );
    let scores = wait_for(&backend, "cli.scores", txs.len(), WAIT).await;
    assert_eq!(
        scores.len(),
        txs.len(),
        "the waiting events are scored once deployed"
    );
    assert!(scores.iter().all(|e| data(e)["version"] == "cli-1"));
    let listed = agentlog(&["models", "list", "--bootstrap", &bootstrap]);
    let sha = sha256_hex(&std::fs::read(&model).unwrap());
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("fraud ") && l.contains("cli-1") && l.contains(&sha)),
        "{listed}"
    );
    for handle in handles {
        handle.stop().await;
    }
}

/// The README's inference example, exactly as printed, runs under `agentlog serve`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_inference_example_works_verbatim() {
    use std::io::{BufRead, BufReader};
    let readme = include_str!("../README.md");
    let example = readme
        .split("```toml\n")
        .find(|block| block.starts_with("[inference]"))
        .and_then(|block| block.split("```").next())
        .expect("README has an inference example");
    let parsed = AgentsConfig::from_toml(example).unwrap();
    assert_eq!(parsed.agents.len(), 2);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agentlog.toml");
    std::fs::write(&path, example).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&path)
        .current_dir(ROOT)
        .stdout(std::process::Stdio::piped())
        .env("AGENTLOG_LOG", "warn")
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = lines
        .by_ref()
        .find_map(|l| {
            l.unwrap()
                .strip_prefix("agentlog listening on ")
                .map(|a| a.trim().to_string())
        })
        .expect("the broker listens");
    std::thread::spawn(move || for _ in lines {});
    let _serve = common::Serve(child);
    let backend = KafkaBackend::new(KafkaConfig {
        bootstrap: addr,
        properties: Default::default(),
    })
    .unwrap();
    let (_, txs) = transactions(dir.path(), 10, 2);
    backend
        .produce("transactions", txs.iter().map(record).collect())
        .await
        .unwrap();
    backend
        .produce(
            "notes",
            vec![OutRecord {
                key: None,
                value: Some(Bytes::from(
                    json!({"text": "valve 3 is leaking"}).to_string(),
                )),
                headers: Vec::new(),
                timestamp: 0,
            }],
        )
        .await
        .unwrap();
    let scores = wait_for(&backend, "fraud.scores", txs.len(), WAIT).await;
    assert_eq!(scores.len(), txs.len());
    assert!(scores.iter().all(|e| data(e)["version"] == "example"));
    let vectors = wait_for(&backend, "notes.vectors", 1, WAIT).await;
    assert_eq!(
        decode_vector(vectors[0].value.as_deref().unwrap()).len(),
        384
    );
}

/// A model whose inputs or output do not fit the agent is refused at load time, with
/// the mismatch named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_that_do_not_fit_are_refused_at_load() {
    let (_broker, backend) = embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            train(dir.path(), "x.onnx", &["--input-name", "x"]),
            "model input `x` has no mapping",
        ),
        (
            train(dir.path(), "f.onnx", &["--features", "7"]),
            "has shape",
        ),
        (
            train(dir.path(), "d.onnx", &["--double-output"]),
            "unexpected output",
        ),
    ];
    let runtime = Runtime::new(backend.clone());
    for (i, (model, expected)) in cases.iter().enumerate() {
        let name = format!("misfit{i}");
        let config = AgentsConfig::from_toml(&onnx_config(&Scorer {
            name: &name,
            topic: "misfit",
            instances: 1,
            path: Some(model),
            poll_ms: 500,
            max_wait_ms: 1,
        }))
        .unwrap();
        let error = start_declared(&runtime, &config)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
        assert!(error.contains(&name), "the agent is named: {error}");
    }
}
