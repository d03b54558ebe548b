//! Exactly-once agents (`processing = "exactly_once"`) with the real binary: inputs are
//! produced with rdkafka, the process running the agents is SIGKILLed mid-stream and
//! started again (with more instances, or a second process joining), and a
//! read_committed rdkafka consumer counts each input's output exactly once. On the
//! embedded backend (the README's example, verbatim) and on the kafka backend (the
//! agents in their own process, pointed at a separate broker process).

mod agents_common;
mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentlog_agents::{KafkaBackend, KafkaConfig};
use common::{listening_addresses, producer_config, BrokerProcess, Serve};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// Inputs per test: enough batches (of 100) that the SIGKILL lands mid-stream.
const INPUTS: usize = 20_000;

/// How long the whole stream may take to come out.
const DONE_WITHIN: Duration = Duration::from_secs(120);

/// The README's exactly-once example, exactly as printed.
fn readme_example() -> String {
    let readme = include_str!("../README.md");
    let marker = "```toml\n# agents-exactly-once.toml\n";
    let start = readme
        .find(marker)
        .expect("the README's exactly-once example")
        + "```toml\n".len();
    let body = &readme[start..];
    body[..body.find("```").expect("end of the example")].to_string()
}

/// `agentlog serve --config` in `dir` (data in `dir/data`); waits for its HTTP line
/// (and its Kafka line when it runs a broker). Returns the process and the Kafka
/// address it listens on, if any.
fn serve(dir: &Path, config: &str, broker: bool) -> (Serve, Option<String>) {
    let path = dir.join("agentlog.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .arg("--config")
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--set", "group.initial.rebalance.delay.ms=100"])
        .env("AGENTLOG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (kafka, http) = listening_addresses(child.stdout.take().unwrap(), broker);
    assert!(http.is_some(), "agentlog serve did not start");
    (Serve(child), kafka)
}

fn sigkill(mut serve: Serve) {
    serve.0.kill().unwrap();
    serve.0.wait().unwrap();
}

/// Produces inputs `0..INPUTS` (JSON without a `type`, so the router's default route
/// forwards each one), keyed so they spread over the partitions.
async fn produce_inputs(bootstrap: &str, topic: &str) {
    let producer: FutureProducer = producer_config(bootstrap).create().unwrap();
    let sends: Vec<_> = (0..INPUTS)
        .map(|i| {
            let key = format!("k{i}");
            let value = format!(r#"{{"i":{i}}}"#);
            let producer = producer.clone();
            let topic = topic.to_string();
            async move {
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    )
                    .await
                    .map_err(|(error, _)| error)
            }
        })
        .collect();
    for result in futures::future::join_all(sends).await {
        result.unwrap();
    }
}

/// The values of `topic` a read_committed rdkafka consumer sees now, counted.
async fn committed_counts(bootstrap: &str, topic: &str) -> BTreeMap<String, usize> {
    let reader = KafkaBackend::new(KafkaConfig {
        bootstrap: bootstrap.to_string(),
        // librdkafka's default, said out loud: what the test counts.
        properties: [("isolation.level".to_string(), "read_committed".to_string())].into(),
    })
    .unwrap();
    let mut counts = BTreeMap::new();
    for event in agents_common::read_all(&reader, topic).await {
        let value = String::from_utf8_lossy(event.value.as_deref().unwrap_or_default());
        *counts.entry(value.into_owned()).or_insert(0) += 1;
    }
    counts
}

/// Waits until at least `n` outputs are committed (a test that never gets there fails).
async fn wait_outputs(bootstrap: &str, topic: &str, n: usize) -> BTreeMap<String, usize> {
    let deadline = Instant::now() + DONE_WITHIN;
    loop {
        let counts = committed_counts(bootstrap, topic).await;
        if counts.values().sum::<usize>() >= n {
            return counts;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} outputs committed within {DONE_WITHIN:?}",
            counts.values().sum::<usize>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every input's output once, and nothing else.
fn assert_exactly_once(counts: &BTreeMap<String, usize>) {
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(twice.is_empty(), "outputs seen more than once: {twice:?}");
    let missing: Vec<usize> = (0..INPUTS)
        .filter(|i| !counts.contains_key(&format!(r#"{{"i":{i}}}"#)))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "inputs without an output: {missing:?}");
    assert_eq!(counts.len(), INPUTS, "unexpected outputs");
}

/// Embedded backend, the README's example verbatim: two instances, SIGKILL of the
/// whole process mid-stream, restart with three instances (a rebalance among more
/// members); each input's output exactly once for a read_committed consumer, while the
/// log holds records of the transaction the kill left open (aborted at restart, so
/// invisible).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_exactly_once_across_sigkill_and_scale_up() {
    let config = readme_example();
    assert!(config.contains(r#"processing = "exactly_once""#));
    let dir = tempfile::tempdir().unwrap();
    let (process, bootstrap) = serve(dir.path(), &config, true);
    let bootstrap = bootstrap.unwrap();
    // The agent created its input topic at start, with the example's 4 partitions.
    produce_inputs(&bootstrap, "payments").await;
    let before = wait_outputs(&bootstrap, "payments.checked", INPUTS / 5).await;
    sigkill(process);
    assert!(
        before.values().sum::<usize>() < INPUTS,
        "the stream was done before the kill: make INPUTS larger"
    );

    let scaled = config.replace("instances = 2", "instances = 3");
    assert_ne!(scaled, config);
    let (process, bootstrap) = serve(dir.path(), &scaled, true);
    let bootstrap = bootstrap.unwrap();
    let after = wait_outputs(&bootstrap, "payments.checked", INPUTS).await;
    assert_exactly_once(&after);
    // Nothing more comes: every input's offset was committed with its output.
    assert_exactly_once(&committed_counts(&bootstrap, "payments.checked").await);
    process.stop();
}

const KAFKA_AGENTS: &str = r#"
backend = "kafka"
bootstrap = "BOOTSTRAP"

[[agents]]
name = "checker"
kind = "router"
topics = ["payments"]
instances = 2
processing = "exactly_once"
max_batch = 100
[agents.options]
field = "type"
default = "payments.checked"
"#;

fn agents_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Kafka backend: the agents run in their own process against a separate broker
/// process. SIGKILL of the agents process mid-stream, restart (its transactional ids
/// fence the killed ones), then a second agents process joins the group (a rebalance
/// across processes); each input's output exactly once for a read_committed consumer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_exactly_once_across_sigkill_and_a_second_process() {
    let broker = BrokerProcess::start(&[
        "group.initial.rebalance.delay.ms=100",
        "group.min.session.timeout.ms=1000",
        "num.partitions=4",
    ]);
    let bootstrap = broker.bootstrap();
    common::create_topic(&bootstrap, "payments", 4, &[]).await;
    let root = tempfile::tempdir().unwrap();
    let config = KAFKA_AGENTS.replace("BOOTSTRAP", &bootstrap);
    let first = agents_dir(root.path(), "first");
    let (agents, _) = serve(&first, &config, false);
    produce_inputs(&bootstrap, "payments").await;
    let before = wait_outputs(&bootstrap, "payments.checked", INPUTS / 5).await;
    sigkill(agents);
    assert!(
        before.values().sum::<usize>() < INPUTS,
        "the stream was done before the kill: make INPUTS larger"
    );

    let (restarted, _) = serve(&first, &config, false);
    let (second, _) = serve(&agents_dir(root.path(), "second"), &config, false);
    let after = wait_outputs(&bootstrap, "payments.checked", INPUTS).await;
    assert_exactly_once(&after);
    assert_exactly_once(&committed_counts(&bootstrap, "payments.checked").await);
    second.stop();
    restarted.stop();
}
