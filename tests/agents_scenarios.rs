//! The agent scenario suite on both backends: embedded (agents in this process, calling
//! an in-process broker) and kafka (rdkafka against a separately started `agentlog`
//! binary over TCP). Same agent code, same assertions. Plus a mixed group: an in-process
//! agent and an external rdkafka consumer sharing one consumer group.

mod agents_common;
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentlog_agents::{
    Agent, AgentSpec, Context, EmbeddedBackend, Event, HandlerError, OutRecord, Runtime, Sink,
};
use agentlog_broker::EmbeddedBroker;
use agents_common::{embedded, kafka};
use bytes::Bytes;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_pipeline_retries_dlq_replay() {
    let (_broker, backend) = embedded().await;
    agents_common::pipeline_retries_dlq_replay(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_pipeline_retries_dlq_replay() {
    let (_process, backend) = kafka();
    agents_common::pipeline_retries_dlq_replay(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_swarm_scales_without_loss() {
    let (_broker, backend) = embedded().await;
    let redelivered = agents_common::swarm_scales_without_loss(backend, 1).await;
    eprintln!("embedded swarm: {redelivered} records redelivered across rebalances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_concurrent_swarm_scales_without_loss() {
    let (_broker, backend) = embedded().await;
    let redelivered = agents_common::swarm_scales_without_loss(backend, 16).await;
    eprintln!("embedded swarm, 16 in flight: {redelivered} records redelivered across rebalances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_swarm_scales_without_loss() {
    let (_process, backend) = kafka();
    let redelivered = agents_common::swarm_scales_without_loss(backend, 1).await;
    eprintln!("kafka swarm: {redelivered} records redelivered across rebalances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_concurrent_swarm_scales_without_loss() {
    let (_process, backend) = kafka();
    let redelivered = agents_common::swarm_scales_without_loss(backend, 16).await;
    eprintln!("kafka swarm, 16 in flight: {redelivered} records redelivered across rebalances");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_key_order_under_concurrency() {
    let (_broker, backend) = embedded().await;
    agents_common::key_order_under_concurrency(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_key_order_under_concurrency() {
    let (_process, backend) = kafka();
    agents_common::key_order_under_concurrency(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_state_survives_restart() {
    let (broker, backend) = embedded().await;
    agents_common::state_survives_restart(backend).await;
    let topic = broker
        .running()
        .broker
        .topics
        .get("agent.state.counter")
        .unwrap();
    assert_eq!(
        topic
            .record
            .configs
            .get("cleanup.policy")
            .map(String::as_str),
        Some("compact")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_state_survives_restart() {
    let (_process, backend) = kafka();
    agents_common::state_survives_restart(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_decision_log_replays() {
    let (_broker, backend) = embedded().await;
    agents_common::decision_log_replays(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_decision_log_replays() {
    let (_process, backend) = kafka();
    agents_common::decision_log_replays(backend).await;
}

struct Recorder {
    seen: Arc<Mutex<Vec<(i32, i64)>>>,
}

impl Agent for Recorder {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        self.seen
            .lock()
            .unwrap()
            .push((event.partition, event.offset));
        Ok(())
    }
}

/// An in-process agent and an external rdkafka consumer in one group: disjoint shares
/// of the partitions, every record processed, redeliveries counted.
async fn mixed_group(agent_first: bool) {
    let broker = EmbeddedBroker::start_with(|config| {
        config
            .set("group.initial.rebalance.delay.ms", "100")
            .unwrap();
        config.set("group.min.session.timeout.ms", "1000").unwrap();
    })
    .await
    .unwrap();
    let shared = broker.running().broker.clone();
    let backend = EmbeddedBackend::new(shared.clone());
    backend.ensure_topic("mixed", 4, false).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let agent_seen = Arc::new(Mutex::new(Vec::new()));
    let start_agent = || {
        runtime.start(
            AgentSpec::new("mixed-agent", &["mixed"]).group("mixed"),
            Recorder {
                seen: agent_seen.clone(),
            },
        )
    };
    let mut agent = None;
    if agent_first {
        agent = Some(start_agent().await.unwrap());
        let group = shared.clone();
        agents_common::eventually(
            "the agent alone in a stable group",
            Duration::from_secs(30),
            || {
                group
                    .groups
                    .describe("mixed")
                    .is_ok_and(|d| d.state.name() == "Stable")
            },
        )
        .await;
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "mixed")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "300")
        .create()
        .unwrap();
    consumer.subscribe(&["mixed"]).unwrap();
    let consumer = Arc::new(consumer);
    let external_seen = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let task = {
        let (consumer, seen, stop) = (consumer.clone(), external_seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok(Ok(message)) =
                    tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await
                else {
                    continue;
                };
                let count = {
                    let mut seen = seen.lock().unwrap();
                    seen.push((message.partition(), message.offset()));
                    seen.len()
                };
                // Commit now and then, as real consumers do (not once per record).
                if count % 50 == 0 {
                    let _ = consumer.commit_message(&message, CommitMode::Async);
                }
            }
        })
    };

    if !agent_first {
        // Let rdkafka form the group (and lead it) before the agent joins.
        let c = consumer.clone();
        agents_common::eventually(
            "rdkafka alone owning every partition",
            Duration::from_secs(30),
            || c.assignment().map(|l| l.count()).unwrap_or(0) == 4,
        )
        .await;
    }
    let agent = match agent {
        Some(agent) => agent,
        None => start_agent().await.unwrap(),
    };
    let rdkafka_assignment = || -> BTreeSet<i32> {
        consumer
            .assignment()
            .map(|l| l.elements().iter().map(|e| e.partition()).collect())
            .unwrap_or_default()
    };
    agents_common::eventually(
        "a shared, disjoint assignment",
        Duration::from_secs(30),
        || {
            let ours: BTreeSet<i32> = agent
                .assignments()
                .concat()
                .iter()
                .map(|(_, p)| *p)
                .collect();
            let theirs = rdkafka_assignment();

            !ours.is_empty()
                && !theirs.is_empty()
                && ours.is_disjoint(&theirs)
                && ours.len() + theirs.len() == 4
        },
    )
    .await;
    let generation = shared.groups.describe("mixed").unwrap().generation_id;
    let ours: BTreeSet<i32> = agent
        .assignments()
        .concat()
        .iter()
        .map(|(_, p)| *p)
        .collect();
    let theirs = rdkafka_assignment();

    const TOTAL: usize = 400;
    for chunk in 0..TOTAL / 40 {
        let records = (chunk * 40..chunk * 40 + 40)
            .map(|i| OutRecord {
                key: Some(Bytes::from(format!("key-{i}"))),
                value: Some(Bytes::from(i.to_string())),
                headers: Vec::new(),
                timestamp: agentlog_agents::event::now_ms(),
            })
            .collect();
        backend.produce("mixed", records).await.unwrap();
    }
    let total = || agent_seen.lock().unwrap().len() + external_seen.lock().unwrap().len();
    agents_common::eventually("every record processed", Duration::from_secs(30), || {
        let all: BTreeSet<(i32, i64)> = agent_seen
            .lock()
            .unwrap()
            .iter()
            .chain(external_seen.lock().unwrap().iter())
            .cloned()
            .collect();
        all.len() == TOTAL
    })
    .await;
    let redelivered = total() - TOTAL;
    let rebalanced = shared.groups.describe("mixed").unwrap().generation_id != generation;
    eprintln!("mixed group (agent first: {agent_first}): agent {ours:?}, rdkafka {theirs:?}, {redelivered} redelivered, rebalanced during the run: {rebalanced}");
    if !rebalanced {
        assert_eq!(redelivered, 0, "no rebalance, so every record exactly once");
        let parts = |seen: &Arc<Mutex<Vec<(i32, i64)>>>| -> BTreeSet<i32> {
            seen.lock().unwrap().iter().map(|(p, _)| *p).collect()
        };
        assert!(parts(&agent_seen).is_subset(&ours));
        assert!(parts(&external_seen).is_subset(&theirs));
    }
    let mut per_partition: HashMap<i32, usize> = HashMap::new();
    for (p, _) in agent_seen
        .lock()
        .unwrap()
        .iter()
        .chain(external_seen.lock().unwrap().iter())
    {
        *per_partition.entry(*p).or_default() += 1;
    }
    assert_eq!(per_partition.len(), 4, "keys spread over every partition");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = task.await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_group_in_process_leader_assigns_for_rdkafka() {
    mixed_group(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_group_rdkafka_leader_assigns_for_in_process_member() {
    mixed_group(false).await;
}

/// The embedded backend across a real broker restart: the state topic is reopened from
/// disk and the agent's state comes back from it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_state_survives_broker_restart() {
    use agentlog_broker::{BrokerConfig, RunningBroker};
    use serde_json::json;

    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::with_data_dir(dir.path());
    config.set_plaintext_listeners(&[std::net::SocketAddr::from(([127, 0, 0, 1], 0))]);
    config.set("group.initial.rebalance.delay.ms", "0").unwrap();
    let spec = AgentSpec::new("counter", &["counts"]);
    {
        let running = RunningBroker::start(config.clone()).await.unwrap();
        let backend = EmbeddedBackend::new(running.broker.clone());
        let runtime = Runtime::new(backend.clone());
        let handle = runtime
            .start(spec.clone(), agents_common::Counter)
            .await
            .unwrap();
        let records = ["a", "b", "a"].map(agents_common::keyed).to_vec();
        backend.produce("counts", records).await.unwrap();
        agents_common::eventually("counted", Duration::from_secs(20), || {
            handle.state().get("a") == Some(json!(2))
        })
        .await;
        handle.stop().await;
        drop(runtime);
        drop(backend);
        running.shutdown().await;
    }
    let running = RunningBroker::start(config).await.unwrap();
    let runtime = Runtime::new(EmbeddedBackend::new(running.broker.clone()));
    let handle = runtime.start(spec, agents_common::Counter).await.unwrap();
    assert_eq!(handle.state().get("a"), Some(json!(2)));
    assert_eq!(handle.state().get("b"), Some(json!(1)));
    handle.stop().await;
    drop(runtime);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_unavailable_dependency_waits_without_dead_letters() {
    let (_broker, backend) = embedded().await;
    agents_common::unavailable_dependency_waits_without_dead_letters(backend).await;
}
