//! `agentlog agents list|status` and the web console (`/ui`) as an operator uses them:
//! the real binary serving two LLM routers in a chain (`triage` routes tickets to
//! `tickets.tech`, where `escalate` routes them on; a stub model endpoint answers), the
//! CLI as a child process with its JSON parsed, and the console's pages loaded in
//! headless Chromium (Debian's `chromium`), its DOM read back and screenshots saved.

mod common;
mod llm_common;
mod model_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use agentlog_agents::backend::Sink;
use agentlog_agents::Envelope;
use common::{
    http_get, http_request, poll_until, producer_config, serve_agentlog, watermarks, Serve,
};
use llm_common::{answering_stub, endpoint, kafka_client, router, ticket};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

/// Tickets produced; each is one trace through both agents.
const N: usize = 4;

/// The README's "Console" configuration block, exactly as printed.
fn readme_console_example() -> &'static str {
    let readme = include_str!("../README.md");
    readme
        .split("\n## Console\n")
        .nth(1)
        .and_then(|section| section.split("```toml\n").nth(1))
        .and_then(|block| block.split("```").next())
        .expect("README has a Console section with a toml block")
}

/// A running agentlog with both agents done with every ticket, and the trace ids.
struct Scenario {
    serve: Serve,
    kafka: String,
    http: String,
    traces: Vec<String>,
    _dir: tempfile::TempDir,
}

/// `agentlog serve` with `extra` configuration, the stub model and both routers; the
/// tickets and one non-UTF-8 record (topic `raw`) produced, and every ticket decided by
/// both agents.
async fn scenario(extra: &str) -> Scenario {
    let (stub, _) = answering_stub(r#"{"route": "tech", "reason": "the stub says tech"}"#).await;
    let config = format!(
        "group.initial.rebalance.delay.ms = 100\n{extra}\n{}{}{}",
        endpoint(&stub, ""),
        router("triage", "tickets", ""),
        router("escalate", "tickets.tech", "")
    );
    let dir = tempfile::tempdir().unwrap();
    let (serve, kafka, http) = serve_agentlog(dir.path(), &config, &[]);
    let records: Vec<_> = (0..N).map(ticket).collect();
    let traces = records
        .iter()
        .map(|r| {
            let value = r.value.as_deref().expect("a ticket has a value");
            serde_json::from_slice::<Envelope>(value).unwrap().trace_id
        })
        .collect();
    kafka_client(&kafka)
        .produce("tickets", records)
        .await
        .unwrap();
    let producer: BaseProducer = producer_config(&kafka).create().unwrap();
    producer
        .send(
            BaseRecord::to("raw")
                .key("bin")
                .payload(&[0xff, 0xfe, 0x00, 0x41][..]),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    let decided = kafka.clone();
    tokio::task::spawn_blocking(move || {
        poll_until(Duration::from_secs(60), "both agents decided", || {
            (watermarks(&decided, "agent.decisions.escalate", 0).1 >= N as i64).then_some(())
        })
    })
    .await
    .unwrap();
    Scenario {
        serve,
        kafka,
        http,
        traces,
        _dir: dir,
    }
}

/// `agentlog ARGS` to completion.
fn agentlog(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(args)
        .env("AGENTLOG_LOG", "warn")
        .output()
        .expect("run agentlog")
}

/// A command that must succeed, its stdout as JSON.
fn json_of(args: &[&str]) -> Value {
    let output = agentlog(args);
    assert!(
        output.status.success(),
        "agentlog {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

/// A command that must fail with exit code 1 and one line on stderr; that line.
fn error_of(args: &[&str]) -> String {
    let output = agentlog(args);
    assert_eq!(output.status.code(), Some(1), "agentlog {args:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one error line: {stderr}");
    stderr
}

fn agent<'a>(agents: &'a Value, name: &str) -> &'a Value {
    agents
        .as_array()
        .expect("an array of agents")
        .iter()
        .find(|a| a["agent"] == name)
        .unwrap_or_else(|| panic!("no agent {name} in {agents}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn agents_list_and_status_read_the_cluster_and_the_running_process() {
    let s = scenario("").await;
    let kafka = s.kafka.as_str();
    let http = s.http.as_str();

    // From the cluster alone (works on any Kafka): topics, groups, members.
    let agents = json_of(&["agents", "list", "-b", kafka, "-o", "json"]);
    for name in ["triage", "escalate"] {
        let a = agent(&agents, name);
        assert_eq!(a["decisions"], N as i64, "{a}");
        assert_eq!(a["llm_calls"], N as i64, "{a}");
        assert_eq!(a["instances"], 1, "{a}");
        assert!(a["group_state"].is_string(), "{a}");
        assert!(a["processed"].is_null(), "no counters without --http: {a}");
    }

    // From the running process: its counters added (an agent counts an event once its
    // outputs are durable, a moment after the next agent may have read them).
    let agents = poll_until(Duration::from_secs(30), "every ticket counted", || {
        let agents = json_of(&["agents", "list", "--http", http, "-o", "json"]);
        (agent(&agents, "escalate")["processed"] == N as u64).then_some(agents)
    });
    let triage = agent(&agents, "triage");
    assert_eq!(triage["kind"], "llm_router");
    assert_eq!(triage["processed"], N as u64);
    assert_eq!(triage["errors"], 0);
    assert_eq!(triage["dead_lettered"], 0);
    assert_eq!(triage["llm_tokens_in"], 2 * N as u64, "the stub's usage");
    assert_eq!(triage["llm_tokens_out"], N as u64);
    assert!(triage["llm_cost"].as_f64().unwrap() > 0.0, "{triage}");
    let p50 = triage["latency_p50_ms"].as_f64().unwrap();
    assert!(p50 > 0.0 && p50 <= triage["latency_p99_ms"].as_f64().unwrap());

    let table = agentlog(&["agents", "list", "-b", kafka]);
    let table = String::from_utf8(table.stdout).unwrap();
    assert!(table.starts_with("AGENT"), "{table}");
    assert!(
        table.contains("escalate") && table.contains("triage"),
        "{table}"
    );

    // Status: one agent with its group's lag per partition, from either source.
    for source in [["--http", http], ["-b", kafka]] {
        let status = poll_until(Duration::from_secs(30), "escalate committed", || {
            let status = json_of(&[
                "agents", "status", "escalate", source[0], source[1], "-o", "json",
            ]);
            let offsets = status["offsets"].as_array()?.clone();
            offsets
                .iter()
                .any(|o| {
                    o["topic"] == "tickets.tech" && o["lag"] == 0 && o["committed"] == N as i64
                })
                .then_some(status)
        });
        assert_eq!(status["agent"], "escalate");
    }

    // Bad input and faults: one line, exit code 1, within the timeout.
    let unknown = error_of(&["agents", "status", "nope", "-b", kafka]);
    assert!(
        unknown.starts_with("agentlog: error: agent nope not found"),
        "{unknown}"
    );
    let unreachable = error_of(&["agents", "list", "-b", "127.0.0.1:1", "--timeout", "2"]);
    assert!(
        unreachable.contains("cannot reach the cluster at 127.0.0.1:1"),
        "{unreachable}"
    );
    let no_console = error_of(&["agents", "list", "--http", "127.0.0.1:1", "--timeout", "2"]);
    assert!(
        no_console.contains("cannot reach http://127.0.0.1:1/ui/api/agents"),
        "{no_console}"
    );
    s.serve.stop();
}

/// Where the screenshots go (kept after the test: its artifacts).
fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Headless Chromium on `url`: the DOM once the page says it is ready (`data-ready` on
/// `<body>`), and a screenshot `name.png`.
fn browse(url: &str, name: &str) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_string());
    let run = |extra: &[&str]| -> String {
        let output = Command::new("timeout")
            .arg("120")
            .arg(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--window-size=1400,1000",
                "--virtual-time-budget=6000",
            ])
            .args(extra)
            .arg(url)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {chromium} (apt-get install chromium): {e}"));
        assert!(
            output.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let dom = poll_until(Duration::from_secs(120), "the page to render", || {
        let dom = run(&["--dump-dom"]);
        dom.contains("data-ready=").then_some(dom)
    });
    let path = screenshots().join(format!("{name}.png"));
    run(&[&format!("--screenshot={}", path.display())]);
    assert!(std::fs::metadata(&path)
        .map(|m| m.len() > 0)
        .unwrap_or(false));
    println!("screenshot: {}", path.display());
    assert!(
        !dom.contains("data-js-errors"),
        "JavaScript errors on {url}: {dom}"
    );
    dom
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_console_shows_topics_records_groups_agents_and_a_trace_in_chromium() {
    let s = scenario(readme_console_example()).await;
    let ui = format!("http://{}/ui/", s.http);
    let page = |route: &str, name: &str| {
        let url = format!("{ui}{route}");
        let dom = browse(&url, name);
        assert!(!dom.contains("id=\"error\""), "{url} shows an error: {dom}");
        dom
    };

    let overview = page("", "overview");
    assert!(overview.contains("data-ready=\"overview\""));
    for shown in [
        "tickets",
        "tickets.tech",
        "agent.decisions.triage",
        "Throughput",
        "<svg",
    ] {
        assert!(overview.contains(shown), "overview lacks {shown}");
    }

    let topic = page("#/topic/tickets?from=beginning", "topic");
    assert!(
        topic.contains("customer-0") && topic.contains("customer-3"),
        "keys shown"
    );
    assert!(
        topic.contains("\"subject\": \"Charged twice\""),
        "JSON pretty-printed"
    );
    assert!(topic.contains("ce_traceid"), "headers shown");
    let seek = page("#/topic/tickets?from=offset:3", "topic-seek");
    assert!(
        seek.contains("customer-3") && !seek.contains("customer-2"),
        "seek by offset"
    );

    let raw = page("#/topic/raw?from=beginning", "binary");
    assert!(raw.contains("binary") && raw.contains("0xfffe0041") && raw.contains("//4AQQ=="));

    let group = page("#/group/triage", "group");
    assert!(
        group.contains("Lag per partition") && group.contains("<td>tickets</td>"),
        "{group}"
    );
    assert!(
        group.contains("id=\"total-lag\">0<"),
        "every ticket consumed"
    );

    let agents = page("#/agents", "agents");
    for shown in ["triage", "escalate", "llm_router"] {
        assert!(agents.contains(shown), "agents page lacks {shown}");
    }

    let traces = page("#/traces", "traces");
    assert!(
        traces.contains(&s.traces[0]),
        "the latest decisions link their traces"
    );

    let trace = page(&format!("#/trace/{}", s.traces[0]), "trace");
    let (triage, escalate) = (
        trace.find("<td>triage</td>"),
        trace.find("<td>escalate</td>"),
    );
    assert!(
        triage.is_some() && escalate.is_some() && triage < escalate,
        "both agents' steps, in time order: {trace}"
    );
    assert_eq!(trace.matches("<td>route</td>").count(), 2, "{trace}");

    // Unknown names are errors on the page, not JavaScript failures.
    for route in ["#/topic/nope", "#/group/nope"] {
        let dom = browse(&format!("{ui}{route}"), "unknown");
        assert!(dom.contains("does not exist"), "{route}: {dom}");
    }
    s.serve.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn console_actions_are_refused_unless_enabled_and_bad_input_is_answered() {
    let dir = tempfile::tempdir().unwrap();
    let (serve, kafka, http) = serve_agentlog(dir.path(), readme_console_example(), &[]);
    let created = agentlog(&["topic", "create", "orders", "-p", "1", "-b", &kafka]);
    assert!(created.status.success());
    let (status, body) = http_request("POST", &http, "/ui/api/groups/billing/reset?to=earliest");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("console.actions = true"), "{body}");
    let (status, _) = http_request("POST", &http, "/ui/api/dlq/orders.dlq/replay");
    assert_eq!(status, 403);
    let (status, body) = http_get(&http, "/ui/api/topics/nope/records");
    assert_eq!(
        (status, body.as_str()),
        (404, r#"{"error":"topic nope does not exist"}"#)
    );
    let (status, _) = http_get(&http, "/ui/api/groups/nope");
    assert_eq!(status, 404);
    let (status, body) = http_get(&http, "/ui/api/topics/orders/records?from=offset:x");
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("offset:x: the offset is not an integer"),
        "{body}"
    );
    let (status, body) = http_get(&http, "/ui/api/topics/orders/records?from=time:yesterday");
    assert_eq!(status, 400, "{body}");
    serve.stop();

    let dir = tempfile::tempdir().unwrap();
    let (serve, kafka, http) = serve_agentlog(dir.path(), "[console]\nactions = true\n", &[]);
    let created = agentlog(&["topic", "create", "orders", "-p", "1", "-b", &kafka]);
    assert!(created.status.success());
    let mut producer = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["produce", "orders", "-b", &kafka])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(producer.stdin.as_mut().unwrap(), b"a\nb\nc\n").unwrap();
    drop(producer.stdin.take());
    assert!(producer.wait().unwrap().success());
    let consumed = agentlog(&[
        "consume", "orders", "-g", "billing", "--num", "3", "-b", &kafka,
    ]);
    assert!(consumed.status.success());
    let (status, body) = http_request("POST", &http, "/ui/api/groups/billing/reset?to=earliest");
    assert_eq!(status, 200, "{body}");
    let plan: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["offsets"][0]["old"], 3);
    assert_eq!(plan["offsets"][0]["new"], 0);
    let group = json_of(&["group", "describe", "billing", "-b", &kafka, "-o", "json"]);
    assert_eq!(
        group["offsets"][0]["committed"], 0,
        "the reset was committed"
    );
    let (status, _) = http_request("POST", &http, "/ui/api/groups/billing/reset?to=sideways");
    assert_eq!(status, 400);

    // A dead letter goes back to its topic once, without its dlq.* headers.
    let created = agentlog(&["topic", "create", "orders.dlq", "-p", "1", "-b", &kafka]);
    assert!(created.status.success());
    let producer: BaseProducer = producer_config(&kafka).create().unwrap();
    let headers = rdkafka::message::OwnedHeaders::new()
        .insert(rdkafka::message::Header {
            key: "dlq.original.topic",
            value: Some("orders"),
        })
        .insert(rdkafka::message::Header {
            key: "dlq.attempts",
            value: Some("3"),
        })
        .insert(rdkafka::message::Header {
            key: "source",
            value: Some("test"),
        });
    producer
        .send(
            BaseRecord::to("orders.dlq")
                .key("k")
                .payload("d")
                .headers(headers),
        )
        .unwrap();
    producer.flush(Duration::from_secs(10)).unwrap();
    for expected in [1, 0] {
        let (status, body) = http_request("POST", &http, "/ui/api/dlq/orders.dlq/replay");
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            answer["replayed"]["orders"].as_u64().unwrap_or(0),
            expected,
            "{body}"
        );
    }
    let replayed = json_of(&[
        "consume", "orders", "--from", "offset:3", "-e", "-o", "json", "-b", &kafka,
    ]);
    assert_eq!(replayed["value"], "d");
    assert_eq!(
        replayed["headers"],
        serde_json::json!({"source": "test", "dlq.replayed": "3"})
    );
    serve.stop();
}
