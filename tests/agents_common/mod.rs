//! The agent scenario suite, written once and generic over the backend: the same agent
//! code and the same assertions run in-process (embedded) and over TCP (kafka backend
//! against a separately started agentlog binary).

#![allow(dead_code)]

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentlog_agents::builtins::DlqReplayer;
use agentlog_agents::delivery::{DLQ_ATTEMPTS, DLQ_ERROR, DLQ_OFFSET, DLQ_PARTITION, DLQ_TOPIC};
use agentlog_agents::{
    Agent, AgentSpec, Backend, Context, Envelope, Event, HandlerError, OutRecord, RetryPolicy,
    Runtime, StartAt,
};
use agentlog_agents::{EmbeddedBackend, KafkaBackend, KafkaConfig};
use agentlog_broker::EmbeddedBroker;
use bytes::Bytes;
use serde_json::json;

/// The venv python behind `.models/python` (scripts/models.sh; it has the test suites'
/// packages too, such as the MCP SDK). It is run by its own path: Python finds its venv
/// next to argv[0], and `.models/python` is a wrapper that execs the venv's python.
pub fn python() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let link = root.join(".models/python");
    match std::fs::read_link(&link) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => root.join(".models").join(target),
        Err(_) => link,
    }
}

/// The MCP example server (official Python SDK), which the MCP tests bridge.
pub const WEATHER_SERVER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/examples/mcp-tools/weather_server.py"
);

/// A `[[mcp_servers]]` table for the example server over stdio, with `extra` keys.
pub fn weather_server(extra: &str) -> agentlog_agents::mcp::McpServerDef {
    let text = format!(
        "name = \"weather\"\ncommand = [{:?}, {WEATHER_SERVER:?}]\n{extra}",
        python().display().to_string()
    );
    toml::from_str(&text).unwrap()
}

/// An in-process broker for agent tests: one partition per new topic, and groups that
/// form 100 ms after their first member (not Kafka's 3 s).
pub async fn embedded() -> (EmbeddedBroker, EmbeddedBackend) {
    let broker = EmbeddedBroker::start_with(|config| {
        config
            .set("group.initial.rebalance.delay.ms", "100")
            .unwrap();
        config.set("num.partitions", "1").unwrap();
    })
    .await
    .unwrap();
    let backend = EmbeddedBackend::new(broker.running().broker.clone());
    (broker, backend)
}

/// The same settings in a separate `agentlog` process, reached by the kafka backend.
pub fn kafka() -> (crate::common::BrokerProcess, KafkaBackend) {
    let process = crate::common::BrokerProcess::start(&[
        "group.initial.rebalance.delay.ms=100",
        "group.min.session.timeout.ms=1000",
        "num.partitions=1",
    ]);
    let backend = KafkaBackend::new(KafkaConfig {
        bootstrap: process.bootstrap(),
        properties: Default::default(),
    })
    .unwrap();
    (process, backend)
}

/// Every record of `topic` now (none if it cannot be read, e.g. it does not exist yet).
pub async fn read_all<B: Backend>(backend: &B, topic: &str) -> Vec<Event> {
    match backend.read_topic(topic, StartAt::Earliest).await {
        Ok(stream) => stream.collect_all().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Every record of `topic` once at least `n` are there (or whatever is there at the
/// deadline).
pub async fn wait_for<B: Backend>(
    backend: &B,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<Event> {
    let deadline = Instant::now() + timeout;
    loop {
        let events = read_all(backend, topic).await;
        if events.len() >= n || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `check` holds, or panics with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
    }
}

fn enveloped(event_type: &str, key: &str, data: serde_json::Value) -> (String, OutRecord) {
    let envelope = Envelope::new(event_type, "test-producer", None, data);
    let trace = envelope.trace_id.clone();
    (
        trace,
        envelope.to_record(Some(Bytes::copy_from_slice(key.as_bytes()))),
    )
}

fn id_of(event: &Event) -> Option<i64> {
    event.envelope()?.data["id"].as_i64()
}

// ---------------------------------------------------------------------------------------
// 1. A pipeline with a failing handler: retries, dead letters, DLQ replay, traces.

struct Enricher {
    healed: Arc<AtomicBool>,
}

impl Agent for Enricher {
    fn kind(&self) -> &str {
        "enricher"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let envelope = event
            .envelope()
            .ok_or_else(|| HandlerError::new("not an enveloped event"))?;
        let id = envelope.data["id"]
            .as_i64()
            .ok_or_else(|| HandlerError::new("no id"))?;
        if envelope.data["poison"].as_bool() == Some(true) && !self.healed.load(Ordering::SeqCst) {
            return Err(HandlerError::new(format!("poison order {id}")));
        }
        ctx.emit(
            "orders.enriched",
            event.key.clone(),
            "order.enriched",
            json!({ "id": id, "enriched": true }),
        );
        ctx.decide("accept", json!({ "id": id }));
        ctx.metric("enriched", 1);
        Ok(())
    }
}

/// Failing handler -> 3 attempts -> `orders.dlq` with the right headers -> the built-in
/// DLQ replayer sends them back -> the healed handler processes them; traces follow.
pub async fn pipeline_retries_dlq_replay<B: Backend>(backend: B) {
    for (topic, partitions) in [("orders", 2), ("orders.enriched", 2), ("orders.dlq", 1)] {
        backend
            .ensure_topic(topic, partitions, false)
            .await
            .unwrap();
    }
    let runtime = Runtime::new(backend.clone());
    let healed = Arc::new(AtomicBool::new(false));
    let spec = AgentSpec::new("enricher", &["orders"]).retry(fast_retries());
    let enricher = runtime
        .start(
            spec,
            Enricher {
                healed: healed.clone(),
            },
        )
        .await
        .unwrap();
    let mut traces = HashMap::new();
    let mut records = Vec::new();
    for id in 0..10i64 {
        let (trace, record) = enveloped(
            "order.created",
            &format!("order-{id}"),
            json!({ "id": id, "poison": id == 3 || id == 7 }),
        );
        traces.insert(id, trace);
        records.push(record);
    }
    backend.produce("orders", records).await.unwrap();

    let dlq = wait_for(&backend, "orders.dlq", 2, Duration::from_secs(30)).await;
    let enriched = wait_for(&backend, "orders.enriched", 8, Duration::from_secs(30)).await;
    assert_eq!(enriched.len(), 8, "8 healthy orders enriched");
    assert_eq!(dlq.len(), 2, "2 poison orders dead-lettered");
    let mut dead: Vec<i64> = dlq.iter().filter_map(id_of).collect();
    dead.sort();
    assert_eq!(dead, vec![3, 7]);
    for record in &dlq {
        let id = id_of(record).unwrap();
        assert_eq!(
            record.header_str(DLQ_ERROR),
            Some(format!("poison order {id}").as_str())
        );
        assert_eq!(record.header_str(DLQ_TOPIC), Some("orders"));
        assert_eq!(record.header_str(DLQ_ATTEMPTS), Some("3"));
        assert!(record
            .header_str(DLQ_PARTITION)
            .unwrap()
            .parse::<i32>()
            .is_ok());
        assert!(record
            .header_str(DLQ_OFFSET)
            .unwrap()
            .parse::<i64>()
            .is_ok());
        // The original envelope headers travel with it, so the trace survives.
        assert_eq!(record.trace_id().as_deref(), Some(traces[&id].as_str()));
    }
    // Traces continue across the agent.
    for record in &enriched {
        let id = id_of(record).unwrap();
        assert_eq!(record.header_str("ce_traceid"), Some(traces[&id].as_str()));
        assert_eq!(record.header_str("ce_source"), Some("enricher"));
        assert_eq!(record.header_str("ce_type"), Some("order.enriched"));
    }
    let metrics = enricher.metrics();
    assert_eq!(metrics.kind, "enricher");
    assert_eq!(metrics.dead_lettered, 2);
    assert_eq!(metrics.errors, 6, "3 failed attempts for each poison order");
    assert_eq!(metrics.retries, 4);
    assert_eq!(metrics.events_processed, 8);
    assert_eq!(metrics.emits, 8);
    assert_eq!(metrics.decisions, 8);
    assert_eq!(metrics.custom.get("enriched"), Some(&8));

    // Fix the bug, replay the dead letters.
    healed.store(true, Ordering::SeqCst);
    let replayer = runtime
        .start(
            AgentSpec::new("dlq-replayer", &["orders.dlq"]),
            DlqReplayer::default(),
        )
        .await
        .unwrap();
    let enriched = wait_for(&backend, "orders.enriched", 10, Duration::from_secs(30)).await;
    let ids: BTreeSet<i64> = enriched.iter().filter_map(id_of).collect();
    assert_eq!(ids, (0..10).collect());
    assert_eq!(enriched.len(), 10, "each order enriched exactly once");
    eventually("replayer metrics", Duration::from_secs(10), || {
        replayer.metrics().custom.get("replayed") == Some(&2)
    })
    .await;
    replayer.stop().await;
    enricher.stop().await;
}

// ---------------------------------------------------------------------------------------
// 2. A swarm scaled 2 -> 4 -> 1 under load: nothing lost.

struct Tally {
    seen: Arc<Mutex<HashMap<i64, u32>>>,
}

impl Agent for Tally {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        let id: i64 = event
            .value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HandlerError::new("not a number"))?;
        *self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id)
            .or_default() += 1;
        tokio::time::sleep(Duration::from_micros(200)).await;
        Ok(())
    }
}

/// Returns the number of redelivered records (at-least-once across rebalances).
/// `max_in_flight` > 1 runs each instance with key-ordered concurrency.
pub async fn swarm_scales_without_loss<B: Backend>(backend: B, max_in_flight: usize) -> usize {
    const TOTAL: i64 = 1200;
    backend.ensure_topic("swarm.in", 4, false).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let mut swarm = runtime
        .start(
            AgentSpec::new("swarm", &["swarm.in"])
                .instances(2)
                .max_in_flight(max_in_flight),
            Tally { seen: seen.clone() },
        )
        .await
        .unwrap();
    let producer_backend = backend.clone();
    let producer = tokio::spawn(async move {
        for chunk in 0..TOTAL / 20 {
            let records = (chunk * 20..chunk * 20 + 20)
                .map(|id| OutRecord {
                    key: Some(Bytes::from(format!("k{id}"))),
                    value: Some(Bytes::from(id.to_string())),
                    headers: Vec::new(),
                    timestamp: agentlog_agents::event::now_ms(),
                })
                .collect();
            producer_backend.produce("swarm.in", records).await.unwrap();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let count = |seen: &Arc<Mutex<HashMap<i64, u32>>>| seen.lock().unwrap().len();
    eventually("first records", Duration::from_secs(30), || {
        count(&seen) > 0
    })
    .await;

    swarm.scale(4).await;
    assert_eq!(swarm.instances(), 4);
    eventually(
        "4 instances sharing 4 partitions",
        Duration::from_secs(30),
        || {
            let assignments = swarm.assignments();
            let all: Vec<_> = assignments.iter().flatten().cloned().collect();
            let distinct: BTreeSet<_> = all.iter().cloned().collect();
            assignments.iter().all(|a| a.len() == 1) && distinct.len() == 4 && all.len() == 4
        },
    )
    .await;

    swarm.scale(1).await;
    eventually(
        "1 instance owning every partition",
        Duration::from_secs(30),
        || swarm.assignments().first().map(Vec::len) == Some(4),
    )
    .await;
    producer.await.unwrap();
    eventually("every record handled", Duration::from_secs(60), || {
        count(&seen) == TOTAL as usize
    })
    .await;
    let seen = seen.lock().unwrap().clone();
    assert!(
        (0..TOTAL).all(|id| seen.contains_key(&id)),
        "no record lost"
    );
    swarm.stop().await;
    seen.values().map(|n| (*n - 1) as usize).sum()
}

// ---------------------------------------------------------------------------------------
// 3. Keyed state restored after a restart.

/// Counts events per key in keyed state.
pub struct Counter;

impl Agent for Counter {
    fn kind(&self) -> &str {
        "counter"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let key = event
            .key
            .as_deref()
            .and_then(|k| std::str::from_utf8(k).ok())
            .ok_or_else(|| HandlerError::new("no key"))?
            .to_string();
        let n = ctx.state_get(&key).and_then(|v| v.as_i64()).unwrap_or(0) + 1;
        ctx.state_put(&key, json!(n));
        if n == 1 {
            ctx.state_put(
                "keys",
                json!(ctx.state_get("keys").and_then(|v| v.as_i64()).unwrap_or(0) + 1),
            );
        }
        Ok(())
    }
}

/// A record with this key.
pub fn keyed(key: &str) -> OutRecord {
    OutRecord {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from_static(b"{}")),
        headers: Vec::new(),
        timestamp: agentlog_agents::event::now_ms(),
    }
}

/// Counts per key survive stopping the agent and starting it in a new runtime.
pub async fn state_survives_restart<B: Backend>(backend: B) {
    backend.ensure_topic("counts", 1, false).await.unwrap();
    let spec = AgentSpec::new("counter", &["counts"]);
    {
        let runtime = Runtime::new(backend.clone());
        let handle = runtime.start(spec.clone(), Counter).await.unwrap();
        let records = ["a", "a", "b", "a", "b", "a", "b", "a"].map(keyed).to_vec();
        backend.produce("counts", records).await.unwrap();
        eventually("counts", Duration::from_secs(30), || {
            handle.state().get("a") == Some(json!(5)) && handle.state().get("b") == Some(json!(3))
        })
        .await;
        handle.stop().await;
    }
    let runtime = Runtime::new(backend.clone());
    let handle = runtime.start(spec, Counter).await.unwrap();
    assert_eq!(
        handle.state().get("a"),
        Some(json!(5)),
        "restored from agent.state.counter"
    );
    assert_eq!(handle.state().get("b"), Some(json!(3)));
    assert_eq!(handle.state().get("keys"), Some(json!(2)));
    backend.produce("counts", vec![keyed("a")]).await.unwrap();
    eventually("count after restart", Duration::from_secs(30), || {
        handle.state().get("a") == Some(json!(6))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        handle.metrics().events_processed,
        1,
        "committed input not reprocessed"
    );
    handle.stop().await;
}

// ---------------------------------------------------------------------------------------
// 4. The decision audit log, replayed from an offset and from a timestamp.

struct Judge;

impl Agent for Judge {
    fn kind(&self) -> &str {
        "judge"
    }

    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let envelope = event
            .envelope()
            .ok_or_else(|| HandlerError::new("not an enveloped event"))?;
        let amount = envelope.data["amount"].as_i64().unwrap_or(0);
        let verdict = if amount < 100 { "approve" } else { "reject" };
        ctx.decide(verdict, json!({ "amount": amount }));
        Ok(())
    }
}

struct Collector {
    seen: Arc<Mutex<Vec<(i64, Envelope)>>>,
}

impl Agent for Collector {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        let envelope = event
            .envelope()
            .ok_or_else(|| HandlerError::new("not an enveloped event"))?;
        self.seen.lock().unwrap().push((event.offset, envelope));
        Ok(())
    }
}

/// Every decision lands in `agent.decisions.judge` enveloped and traced; the log replays
/// through another agent from an offset and from a timestamp.
pub async fn decision_log_replays<B: Backend>(backend: B) {
    backend.ensure_topic("loans", 1, false).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let judge = runtime
        .start(AgentSpec::new("judge", &["loans"]), Judge)
        .await
        .unwrap();
    let amounts = [10i64, 200, 50, 500, 99, 100];
    let mut traces = Vec::new();
    for amount in amounts {
        let (trace, record) = enveloped("loan.requested", "loan", json!({ "amount": amount }));
        traces.push(trace);
        backend.produce("loans", vec![record]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let decisions = wait_for(
        &backend,
        "agent.decisions.judge",
        6,
        Duration::from_secs(30),
    )
    .await;
    assert_eq!(decisions.len(), 6);
    for (i, record) in decisions.iter().enumerate() {
        let envelope = record.envelope().unwrap();
        assert_eq!(envelope.event_type, "decision");
        assert_eq!(envelope.agent_id, "judge");
        assert_eq!(
            envelope.trace_id, traces[i],
            "decision {i} continues its input's trace"
        );
        let expected = if amounts[i] < 100 {
            "approve"
        } else {
            "reject"
        };
        assert_eq!(envelope.data["decision"], expected);
        assert_eq!(envelope.data["details"]["amount"], amounts[i]);
    }
    judge.stop().await;

    let auditor = AgentSpec::new("auditor", &[]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let report = runtime
        .replay(
            &auditor,
            Collector { seen: seen.clone() },
            "agent.decisions.judge",
            StartAt::Offset(2),
        )
        .await
        .unwrap();
    assert_eq!(report.handled, 4);
    let offsets: Vec<i64> = seen.lock().unwrap().iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, vec![2, 3, 4, 5]);

    let since = decisions[3].timestamp;
    let first = decisions.iter().position(|d| d.timestamp >= since).unwrap() as i64;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let report = runtime
        .replay(
            &auditor,
            Collector { seen: seen.clone() },
            "agent.decisions.judge",
            StartAt::Timestamp(since),
        )
        .await
        .unwrap();
    let offsets: Vec<i64> = seen.lock().unwrap().iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (first..6).collect::<Vec<_>>());
    assert_eq!(report.handled, offsets.len());
    let verdicts: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(_, e)| e.data["decision"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(verdicts.last().map(String::as_str), Some("reject"));
}

// ---------------------------------------------------------------------------------------
// 5. Key-ordered concurrency: many events in flight, each key's events in order, and
//    the committed offsets cover exactly what was handled.

/// Records, per key, the sequence numbers in the order handled, and the most handlers
/// that ran at once.
struct SlowOrdered {
    order: Arc<Mutex<HashMap<String, Vec<i64>>>>,
    running: Arc<std::sync::atomic::AtomicUsize>,
    most: Arc<std::sync::atomic::AtomicUsize>,
}

impl Agent for SlowOrdered {
    async fn handle(&self, event: &Event, _ctx: &mut Context) -> Result<(), HandlerError> {
        let key = String::from_utf8_lossy(event.key.as_deref().unwrap_or_default()).into_owned();
        let seq: i64 = std::str::from_utf8(event.value.as_deref().unwrap_or_default())
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HandlerError::new("not a number"))?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        // Long enough for other keys' events to start meanwhile.
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(key)
            .or_default()
            .push(seq);
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

fn numbered(key: &str, seq: i64) -> OutRecord {
    OutRecord {
        key: Some(Bytes::copy_from_slice(key.as_bytes())),
        value: Some(Bytes::from(seq.to_string())),
        headers: Vec::new(),
        timestamp: agentlog_agents::event::now_ms(),
    }
}

pub async fn key_order_under_concurrency<B: Backend>(backend: B) {
    const KEYS: i64 = 8;
    const PER_KEY: i64 = 15;
    const IN_FLIGHT: usize = 16;
    backend.ensure_topic("ordered.in", 2, false).await.unwrap();
    let records: Vec<OutRecord> = (0..PER_KEY)
        .flat_map(|seq| (0..KEYS).map(move |k| numbered(&format!("key{k}"), seq)))
        .collect();
    backend.produce("ordered.in", records).await.unwrap();
    let order = Arc::new(Mutex::new(HashMap::new()));
    let agent = || SlowOrdered {
        order: order.clone(),
        running: Arc::new(Default::default()),
        most: Arc::new(Default::default()),
    };
    let first = agent();
    let most = first.most.clone();
    let runtime = Runtime::new(backend.clone());
    let spec = AgentSpec::new("ordered", &["ordered.in"]).max_in_flight(IN_FLIGHT);
    let handle = runtime.start(spec.clone(), first).await.unwrap();
    let handled = |order: &Arc<Mutex<HashMap<String, Vec<i64>>>>| {
        order.lock().unwrap().values().map(Vec::len).sum::<usize>()
    };
    eventually("every event handled", Duration::from_secs(60), || {
        handled(&order) == (KEYS * PER_KEY) as usize
    })
    .await;
    handle.stop().await;
    let most = most.load(Ordering::SeqCst);
    assert!(
        most > 1 && most <= IN_FLIGHT,
        "handlers ran concurrently, at most max_in_flight at once: {most}"
    );
    for (key, seqs) in order.lock().unwrap().iter() {
        assert_eq!(
            seqs,
            &(0..PER_KEY).collect::<Vec<_>>(),
            "{key}: its events in order, each once"
        );
    }

    // The commit covered everything: restarted, the agent sees only what is new (each
    // key's next event comes after its old ones, so a re-delivery would show first).
    let records: Vec<OutRecord> = (0..KEYS)
        .map(|k| numbered(&format!("key{k}"), PER_KEY))
        .collect();
    backend.produce("ordered.in", records).await.unwrap();
    let handle = runtime.start(spec, agent()).await.unwrap();
    eventually("the new events handled", Duration::from_secs(60), || {
        handled(&order) == (KEYS * (PER_KEY + 1)) as usize
    })
    .await;
    handle.stop().await;
    for (key, seqs) in order.lock().unwrap().iter() {
        assert_eq!(
            seqs,
            &(0..=PER_KEY).collect::<Vec<_>>(),
            "{key}: nothing handled twice after the restart"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 6. A dependency that is down: the event waits (more attempts than max_attempts), is
//    never dead-lettered, and is handled once the dependency is back.

struct NeedsService {
    down_for: std::sync::atomic::AtomicU32,
}

impl Agent for NeedsService {
    async fn handle(&self, event: &Event, ctx: &mut Context) -> Result<(), HandlerError> {
        let left = self.down_for.load(Ordering::SeqCst);
        if left > 0 {
            self.down_for.store(left - 1, Ordering::SeqCst);
            return Err(HandlerError::unavailable("service down"));
        }
        ctx.emit_raw(
            "served",
            OutRecord {
                key: event.key.clone(),
                value: event.value.clone(),
                headers: Vec::new(),
                timestamp: event.timestamp,
            },
        );
        Ok(())
    }
}

pub async fn unavailable_dependency_waits_without_dead_letters<B: Backend>(backend: B) {
    backend.produce("needs.in", vec![keyed("a")]).await.unwrap();
    let runtime = Runtime::new(backend.clone());
    let spec = AgentSpec::new("needs", &["needs.in"]).retry(fast_retries());
    let attempts_allowed = spec.retry.max_attempts;
    let agent = NeedsService {
        down_for: std::sync::atomic::AtomicU32::new(attempts_allowed * 2),
    };
    let handle = runtime.start(spec, agent).await.unwrap();
    let served = wait_for(&backend, "served", 1, Duration::from_secs(30)).await;
    assert_eq!(served.len(), 1, "handled once the dependency came back");
    let metrics = handle.metrics();
    handle.stop().await;
    assert_eq!(metrics.unavailable, u64::from(attempts_allowed * 2));
    assert_eq!(metrics.dead_lettered, 0);
    assert!(read_all(&backend, "needs.in.dlq").await.is_empty());
}
