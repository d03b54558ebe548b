//! LLM agents against a REAL model server (llama.cpp's OpenAI-compatible server with
//! SmolLM2-135M-Instruct, see `model_server`): the router and the `llm` kind on the
//! embedded backend, dead letters for events the prompt cannot be built from, events
//! waiting (not dead-lettered) while the model server is down, our own bounded retries
//! on 429, and a SIGKILL of the real binary on the kafka backend while calls are in
//! flight, followed by `agentlog agents replay`; and a `--live` replay after a prompt
//! change. (The README's example runs against the model in `llm_readme`.)
//!
//! Tiny models answer reliably only under schema-constrained output, so assertions are
//! about structure (an allowed route, an answer satisfying its schema), never wording;
//! and nothing is timed (the model is slow on a shared CPU): waits are generous.

mod agents_common;
mod common;
mod llm_common;
mod model_server;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::sync::atomic::Ordering;
use std::time::Duration;

use agentlog_agents::config::{start_declared, AgentsConfig};
use agentlog_agents::delivery::DLQ_ERROR;
use agentlog_agents::llm::calls::call_log_topic;
use agentlog_agents::llm::replay::replay_agent;
use agentlog_agents::llm::{EndpointSettings, LlmClient, LlmError};
use agentlog_agents::metrics::llm_metrics;
use agentlog_agents::{Envelope, Event, Runtime, Sink, StartAt};
use agents_common::{embedded, eventually, read_all, wait_for};
use bytes::Bytes;
use common::BrokerProcess;
use llm_common::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_router_picks_an_allowed_route_records_the_call_and_replays_without_calls() {
    let base_url = model_base_url().await;
    let (_broker, backend) = embedded().await;
    let text = endpoint(&base_url, "") + &router("triage", "tickets", "");
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    backend
        .produce("tickets", (0..3).map(ticket).collect())
        .await
        .unwrap();

    let decisions = wait_for(&backend, "agent.decisions.triage", 3, MODEL_WAIT).await;
    assert_eq!(decisions.len(), 3);
    let routes = BTreeMap::from([("billing", "tickets.billing"), ("tech", "tickets.tech")]);
    for event in &decisions {
        let (kind, details) = decision(event);
        assert_eq!(kind, "route");
        let route = details["route"]
            .as_str()
            .expect("an allowed route, not a fallback");
        assert_eq!(details["topic"], routes[route], "{details}");
        assert_eq!(details["fallback"], false);
        assert!(details["reason"].is_string());
        assert_eq!(details["model"], "smollm2");
        assert!(details["tokens_in"].as_u64().unwrap() > 0);
        assert!(details["tokens_out"].as_u64().unwrap() > 0);
        assert!(details["cost"].as_f64().unwrap() > 0.0);
        assert_eq!(details["replayed"], false);
    }
    // Forwarded unchanged: every ticket is in exactly one route topic, byte for byte.
    let mut forwarded = Vec::new();
    for topic in ["tickets.billing", "tickets.tech", "tickets.other"] {
        forwarded.extend(read_all(&backend, topic).await);
    }
    let originals = read_all(&backend, "tickets").await;
    assert_eq!(forwarded.len(), 3);
    let values = |events: &[Event]| -> BTreeSet<Bytes> {
        events.iter().filter_map(|e| e.value.clone()).collect()
    };
    assert_eq!(values(&forwarded), values(&originals));

    // Every call is in the call log, once, keyed by its input event and step.
    let calls = call_records(&read_all(&backend, &call_log_topic("triage")).await);
    let keys: BTreeSet<String> = calls.iter().map(|c| c.key.clone()).collect();
    assert_eq!(keys, (0..3).map(|o| format!("tickets/0/{o}/0")).collect());
    let metrics = llm_metrics().of("triage", "smollm2").snapshot();
    assert_eq!(metrics.requests, 3);
    assert_eq!(metrics.replayed, 0);
    assert!(metrics.tokens_in > 0 && metrics.cost > 0.0);
    for handle in handles {
        handle.stop().await;
    }

    // A replay from the recordings makes the same decisions without calling anyone.
    let def = &config.agents[0];
    let comparison = replay_agent(backend.clone(), def, &config.llm, StartAt::Offset(0), false)
        .await
        .unwrap();
    assert_eq!(comparison.events, 3);
    assert_eq!(comparison.identical, 3, "{comparison:?}");
    assert!(comparison.differing.is_empty() && comparison.not_recorded.is_empty());
    assert_eq!(comparison.model_calls, 0);
    assert_eq!(
        read_all(&backend, "agent.decisions.triage").await.len(),
        3,
        "a replay writes nothing"
    );
}

const QUESTIONS: &str = r#"
[[agents]]
name = "splitter"
kind = "llm"
topics = ["research"]
max_attempts = 2
backoff_ms = 10
[agents.options]
llm = "local"
system = "Split the research request into at most three short questions."
prompt = "Request: {{data.text}}"
output_topic = "research.questions"
output_schema = '{"type": "object", "required": ["questions"], "properties": {"questions": {"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "string", "maxLength": 80}}}}'
fan_out = "questions"
max_tokens = 160
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn llm_answers_satisfy_the_schema_and_fan_out_with_correlation_headers() {
    let base_url = model_base_url().await;
    let (_broker, backend) = embedded().await;
    let config = AgentsConfig::from_toml(&(endpoint(&base_url, "") + QUESTIONS)).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let request = Envelope::new(
        "research.requested",
        "test",
        None,
        json!({ "text": "How do solar panels work and what do they cost?" }),
    )
    .to_record(Some(Bytes::from_static(b"r1")));
    backend.produce("research", vec![request]).await.unwrap();

    let decisions = wait_for(&backend, "agent.decisions.splitter", 1, MODEL_WAIT).await;
    let (kind, details) = decision(&decisions[0]);
    assert_eq!(kind, "fan_out", "{details}");
    let questions = details["output"]["questions"].as_array().unwrap().clone();
    let n = questions.len();
    assert!((1..=3).contains(&n));
    assert_eq!(details["fanned_out"], n);
    let items = wait_for(&backend, "research.questions", n, MODEL_WAIT).await;
    assert_eq!(items.len(), n);
    for (i, item) in items.iter().enumerate() {
        let data = item.envelope().unwrap().data;
        assert_eq!(data["index"], i);
        assert_eq!(data["count"], n);
        assert_eq!(data["item"], questions[i]);
        assert!(data["item"].is_string());
        assert_eq!(item.header_str("correlation_id"), Some("research-0-0"));
        assert_eq!(
            item.header_str("fanout.count"),
            Some(n.to_string().as_str())
        );
        assert_eq!(
            item.header_str("fanout.index"),
            Some(i.to_string().as_str())
        );
        assert_eq!(item.key.as_deref(), Some(&b"r1"[..]));
    }
    assert!(read_all(&backend, "research.dlq").await.is_empty());
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_missing_a_template_field_is_dead_lettered_naming_it() {
    let (_broker, backend) = embedded().await;
    // Never called: the prompt cannot be built, so no request goes out.
    let text = endpoint("http://127.0.0.1:9/v1", "") + &QUESTIONS.replace("splitter", "strict");
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let record =
        Envelope::new("research.requested", "test", None, json!({ "topic": "x" })).to_record(None);
    backend.produce("research", vec![record]).await.unwrap();
    let dead = wait_for(&backend, "research.dlq", 1, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 1);
    let reason = dead[0].header_str(DLQ_ERROR).unwrap();
    assert!(reason.contains("`data.text`"), "{reason}");
    assert_eq!(dead[0].header_str("dlq.attempts"), Some("2"));
    assert!(read_all(&backend, "research.questions").await.is_empty());
    assert_eq!(llm_metrics().of("strict", "smollm2").snapshot().requests, 0);
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_down_model_server_makes_events_wait_and_never_dead_letters_them() {
    let upstream = tokio::task::spawn_blocking(|| model_server::shared().port)
        .await
        .unwrap();
    let (_broker, backend) = embedded().await;
    let port = model_server::free_port(); // nothing listens there yet
    let breaker = "retry_backoff_ms = 10\nbreaker_failures = 2\nbreaker_cooldown_ms = 200";
    let text = endpoint(&format!("http://127.0.0.1:{port}/v1"), breaker)
        + r#"
[[agents]]
name = "greeter"
kind = "llm"
topics = ["people"]
max_attempts = 2
backoff_ms = 20
[agents.options]
llm = "local"
prompt = "Say hello to {{data.name}} in three words."
output_topic = "greetings"
max_tokens = 8
"#;
    let config = AgentsConfig::from_toml(&text).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &config).await.unwrap();
    let record = Envelope::new("person", "test", None, json!({ "name": "Ada" })).to_record(None);
    backend.produce("people", vec![record]).await.unwrap();

    eventually(
        "attempts failing as unavailable",
        Duration::from_secs(60),
        || handles[0].metrics().unavailable >= 4,
    )
    .await;
    let llm = llm_metrics().of("greeter", "smollm2").snapshot();
    assert!(llm.errors["unavailable"] >= 4, "{llm:?}");
    assert_eq!(handles[0].metrics().dead_lettered, 0);
    assert!(read_all(&backend, "people.dlq").await.is_empty());

    // The server comes back on the configured address: the waiting event is handled.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    forward_connections(listener, upstream);
    let greetings = wait_for(&backend, "greetings", 1, MODEL_WAIT).await;
    assert_eq!(greetings.len(), 1);
    assert!(greetings[0].envelope().unwrap().data["text"].is_string());
    assert!(
        read_all(&backend, "people.dlq").await.is_empty(),
        "never dead-lettered"
    );
    assert_eq!(handles[0].metrics().dead_lettered, 0);
    assert_eq!(
        llm_metrics().of("greeter", "smollm2").snapshot().requests,
        1
    );
    for handle in handles {
        handle.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_are_retried_by_our_bounded_loop_only() {
    let request = serde_json::from_value(json!({
        "model": "", "messages": [{"role": "user", "content": "hi"}]
    }))
    .unwrap();
    // No retries configured: exactly one request (async-openai's own retry layer,
    // which would send four, is not in the path).
    let (base, seen) = rate_limited_stub(usize::MAX).await;
    let mut settings = EndpointSettings::new(&base, "stub");
    settings.max_retries = 0;
    let client = LlmClient::new("stub", &settings).unwrap();
    let error = client.complete(&request).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Unavailable { reason, .. } if reason.contains("429")),
        "{error}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1);

    // Two 429s then an answer: three requests, answered.
    let (base, seen) = rate_limited_stub(2).await;
    let mut settings = EndpointSettings::new(&base, "stub");
    settings.max_retries = 2;
    settings.retry_backoff_ms = 60_000; // Retry-After: 0 wins over the backoff
    let client = LlmClient::new("stub", &settings).unwrap();
    let outcome = client.complete(&request).await.unwrap();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(outcome.usage.input, 2);

    // The breaker: one failure opens it; calls then fail fast without a request
    // until the cool-down lets one trial through, which succeeds and closes it.
    let (base, seen) = rate_limited_stub(1).await;
    let mut settings = EndpointSettings::new(&base, "stub");
    settings.max_retries = 0;
    settings.breaker_failures = 1;
    settings.breaker_cooldown_ms = 5_000;
    let client = LlmClient::new("stub", &settings).unwrap();
    assert!(client.complete(&request).await.is_err());
    let error = client.complete(&request).await.unwrap_err();
    assert!(
        matches!(&error, LlmError::Unavailable { reason, .. } if reason.starts_with("circuit breaker open")),
        "{error}"
    );
    assert_eq!(seen.load(Ordering::SeqCst), 1, "no request while open");
    let mut answered = None;
    for _ in 0..200 {
        if let Ok(outcome) = client.complete(&request).await {
            answered = Some(outcome);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered.is_some(), "the half-open trial was answered");
    assert_eq!(seen.load(Ordering::SeqCst), 2, "exactly one trial went out");
    assert!(client.complete(&request).await.is_ok(), "closed again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kafka_backend_sigkill_mid_calls_loses_no_decision_and_repeats_no_recorded_call() {
    const N: usize = 8;
    let base_url = model_base_url().await;
    let cluster = BrokerProcess::start(&[
        "group.initial.rebalance.delay.ms=100",
        "group.min.session.timeout.ms=1000",
        "num.partitions=2",
    ]);
    let backend = kafka_client(&cluster.bootstrap());
    // Produced before the agents start, so the first poll takes several events and
    // none is committed until that batch is done: the kill lands on uncommitted,
    // already-answered events.
    backend.ensure_topic("inbox", 2, false).await.unwrap();
    backend
        .produce("inbox", (0..N).map(ticket).collect())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "backend = \"kafka\"\nbootstrap = \"{}\"\n{}{}",
        cluster.bootstrap(),
        endpoint(&base_url, ""),
        router("crashrouter", "inbox", "")
    );
    let calls_topic = call_log_topic("crashrouter");
    let (mut first, _) = serve_agents(dir.path(), &config);
    wait_for(&backend, &calls_topic, 2, MODEL_WAIT).await;
    first.0.kill().unwrap(); // SIGKILL: no commit, no goodbye
    first.0.wait().unwrap();
    // Inputs (`topic/partition/offset`) answered, and decided, before the kill.
    let recorded_before_kill: BTreeSet<String> =
        call_records(&read_all(&backend, &calls_topic).await)
            .iter()
            .filter_map(|c| c.key.rsplit_once('/').map(|(input, _)| input.to_string()))
            .collect();
    assert!(
        recorded_before_kill.len() < N,
        "killed while calls were still to come"
    );
    let decided = |events: &[Event]| -> BTreeSet<String> {
        events
            .iter()
            .map(|e| {
                decision(e).1["input"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect()
    };
    let decided_before_kill = decided(&read_all(&backend, "agent.decisions.crashrouter").await);
    // Answered but not committed at the kill: exactly these must re-run from the log.
    let committed = committed_offsets(&cluster.bootstrap(), "crashrouter", "inbox", 2);
    let uncommitted_answered: BTreeSet<String> = recorded_before_kill
        .iter()
        .filter(|input| {
            let mut parts = input.rsplit('/');
            let offset: i64 = parts.next().unwrap().parse().unwrap();
            let partition: usize = parts.next().unwrap().parse().unwrap();
            offset >= committed[partition]
        })
        .cloned()
        .collect();

    let (second, http) = serve_agents(dir.path(), &config);
    let mut decisions = Vec::new();
    for _ in 0..(MODEL_WAIT.as_secs() / 2) {
        decisions = read_all(&backend, "agent.decisions.crashrouter").await;
        if decided(&decisions).len() == N {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let inputs = decided(&decisions);
    assert_eq!(inputs.len(), N, "every event decided: {inputs:?}");
    let metrics = scrape(&http);
    second.stop();

    // No call whose answer was recorded was made again: one recording per key.
    let calls = call_records(&read_all(&backend, &calls_topic).await);
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for call in &calls {
        *per_key.entry(call.key.clone()).or_default() += 1;
    }
    assert_eq!(per_key.len(), N, "{per_key:?}");
    assert!(
        per_key.values().all(|n| *n == 1),
        "a recorded call was repeated: {per_key:?}"
    );
    // Re-run events were answered from the log, with the recorded route.
    let replayed: Vec<&Event> = decisions
        .iter()
        .filter(|e| decision(e).1["replayed"] == true)
        .collect();
    let replayed_inputs: BTreeSet<String> = replayed
        .iter()
        .map(|e| {
            decision(e).1["input"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(
        replayed_inputs, uncommitted_answered,
        "exactly the answered, uncommitted events re-ran, from the log"
    );
    let route_of = |input: &str, replayed: bool| {
        decisions
            .iter()
            .map(decision)
            .find(|(_, d)| d["input"] == input && d["replayed"] == replayed)
            .map(|(_, d)| d["route"].clone())
    };
    for event in &replayed {
        let input = decision(event).1["input"].as_str().unwrap().to_string();
        if let Some(original) = route_of(&input, false) {
            assert_eq!(
                Some(original),
                route_of(&input, true),
                "same decision for {input}"
            );
        }
    }
    assert!(
        metrics.contains("agentlog_llm_replayed_total{agent=\"crashrouter\",model=\"smollm2\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("agentlog_llm_requests_total{agent=\"crashrouter\""));
    assert!(metrics.contains("agentlog_llm_cost_total{agent=\"crashrouter\""));
    eprintln!(
        "crash: {} calls recorded, {} events decided, {} answered events uncommitted at SIGKILL; {} decisions re-made from the log, {} decisions in all",
        recorded_before_kill.len(),
        decided_before_kill.len(),
        uncommitted_answered.len(),
        replayed.len(),
        decisions.len()
    );

    // `agentlog agents replay`: the same decisions from the recordings, no model call,
    // nothing written.
    let output = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["agents", "replay", "crashrouter", "--from", "0", "--config"])
        .arg(dir.path().join("agents.toml"))
        .env("AGENTLOG_LOG", "warn")
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{report}");
    assert!(report.contains(&format!("events: {N}\n")), "{report}");
    assert!(
        report.contains(&format!("identical decisions: {N}\n")),
        "{report}"
    );
    assert!(report.contains("differing decisions: 0\n"), "{report}");
    assert!(
        report.contains("calls without a recording: 0\n"),
        "{report}"
    );
    assert!(report.contains("model calls made: 0\n"), "{report}");
    assert_eq!(
        read_all(&backend, "agent.decisions.crashrouter")
            .await
            .len(),
        decisions.len(),
        "the replay wrote no decision"
    );
}

/// `--live` asks the model again for every event, ignoring the recordings, compares
/// every live decision with the recorded one and writes nothing. The recordings come
/// from a stub that routes everything to `tech`, so the real model's routing of the
/// billing tickets shows up as differences; a recorded-only replay of the same
/// configuration calls nobody and finds every decision identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_live_replay_calls_the_model_for_every_event_and_compares_every_decision() {
    const N: usize = 4;
    let (stub, stub_requests) =
        answering_stub(r#"{"route": "tech", "reason": "the stub always says tech"}"#).await;
    let (_broker, backend) = embedded().await;
    let agent = router("livetriage", "livetickets", "");
    let recorded_config = AgentsConfig::from_toml(&(endpoint(&stub, "") + &agent)).unwrap();
    let runtime = Runtime::new(backend.clone());
    let handles = start_declared(&runtime, &recorded_config).await.unwrap();
    backend
        .produce("livetickets", (0..N).map(ticket).collect())
        .await
        .unwrap();
    let decisions = wait_for(&backend, "agent.decisions.livetriage", N, MODEL_WAIT).await;
    assert_eq!(decisions.len(), N);
    assert!(decisions.iter().all(|e| decision(e).1["route"] == "tech"));
    for handle in handles {
        handle.stop().await;
    }
    assert_eq!(stub_requests.load(Ordering::SeqCst), N);
    let forwarded = || async {
        let mut n = 0;
        for route in ["billing", "tech", "other"] {
            n += read_all(&backend, &format!("livetickets.{route}"))
                .await
                .len();
        }
        n
    };
    assert_eq!(forwarded().await, N);

    // The same agent, now pointed at the real model.
    let base_url = model_base_url().await;
    let config = AgentsConfig::from_toml(&(endpoint(&base_url, "") + &agent)).unwrap();
    let def = &config.agents[0];
    let recorded = replay_agent(backend.clone(), def, &config.llm, StartAt::Offset(0), false)
        .await
        .unwrap();
    assert_eq!((recorded.identical, recorded.model_calls), (N, 0));

    let live = replay_agent(backend.clone(), def, &config.llm, StartAt::Offset(0), true)
        .await
        .unwrap();
    eprintln!(
        "live replay: {} identical, {} differing: {:?}",
        live.identical,
        live.differing.len(),
        live.differing
    );
    assert_eq!(live.events, N);
    assert_eq!(
        live.model_calls, N as u64,
        "one live call per event, recordings ignored"
    );
    assert_eq!(
        live.identical + live.differing.len(),
        N,
        "every decision compared: {live:?}"
    );
    assert!(live.not_recorded.is_empty() && live.unmatched.is_empty());
    assert!(live.failed.is_empty(), "{live:?}");
    assert_eq!(live.emits, N, "each ticket would be forwarded once");
    assert!(
        !live.differing.is_empty(),
        "the model routes some billing ticket elsewhere than the stub did: {live:?}"
    );
    for diff in &live.differing {
        assert_eq!(diff.recorded["details"]["route"], "tech");
        assert_ne!(diff.replayed["details"]["route"], "tech");
        assert_eq!(diff.replayed["decision"], "route");
    }

    // Nothing written: no decision, no call recording, no forwarded ticket.
    assert_eq!(stub_requests.load(Ordering::SeqCst), N);
    assert_eq!(
        read_all(&backend, "agent.decisions.livetriage").await.len(),
        N
    );
    assert_eq!(
        read_all(&backend, &call_log_topic("livetriage"))
            .await
            .len(),
        N,
        "live calls are not recorded"
    );
    assert_eq!(forwarded().await, N, "nothing forwarded");
}
