//! `agentlog serve --http ADDR`: `/health` answers while the broker runs, and
//! `/metrics` reports the declared agents' counters and latency histogram and the
//! consumer lag of every group the coordinator knows (here a wire client's), in the
//! Prometheus text format, read back the way a scraper would.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{
    consumer_config, http_get, listening_addresses, poll_until, producer_config, watermarks,
    BrokerProcess, Serve,
};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

/// Broker settings for the embedded case: quick rebalances, one partition per topic.
const BROKER: &str = r#"
group.initial.rebalance.delay.ms = 100
num.partitions = 1
"#;

const ROUTER: &str = r#"
[[agents]]
name = "router"
kind = "router"
topics = ["events"]
[agents.options]
field = "type"
default = "events.other"
routes = { order = "orders" }
"#;

/// How many records the test produces; 6 are orders, 4 go to the default route.
const PRODUCED: usize = 10;
const ORDERS: i64 = 6;

/// Starts `serve` with both listeners on port 0 and returns (kafka, http) addresses
/// read from the stdout lines (no Kafka line in `backend = "kafka"` mode).
fn serve(dir: &std::path::Path, config: &str) -> (Serve, Option<String>, String) {
    let path = dir.join("agentlog.toml");
    std::fs::write(&path, config).unwrap();
    let with_broker = !config.contains("backend = \"kafka\"");
    // The HTTP address comes from the flag unless the file sets `http.listen`.
    let http_flag: &[&str] = match config.contains("http.listen") {
        true => &[],
        false => &["--http", "127.0.0.1:0"],
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(http_flag)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .env("AGENTLOG_LOG", "warn")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let process = Serve(child);
    let (kafka, http) = listening_addresses(stdout, with_broker);
    (process, kafka, http.expect("no http line"))
}

/// The value of the sample `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let matches = series_name == name
                && labels
                    .iter()
                    .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse().ok()).flatten()
        })
}

fn scrape(http: &str) -> String {
    let (status, body) = http_get(http, "/metrics");
    assert_eq!(status, 200, "{body}");
    body
}

fn commit(consumer: &BaseConsumer, topic: &str, offset: i64) {
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer.commit(&list, CommitMode::Sync).unwrap();
}

#[test]
fn metrics_report_agent_counters_and_consumer_lag() {
    let dir = tempfile::tempdir().unwrap();
    let (_process, kafka, http) = serve(dir.path(), &format!("{BROKER}{ROUTER}"));
    let kafka = kafka.expect("no listening line");

    let (status, body) = http_get(&http, "/health");
    assert_eq!(status, 200);
    assert!(body.contains(r#""status":"ok""#), "{body}");

    let producer: BaseProducer = producer_config(&kafka).create().unwrap();
    for i in 0..PRODUCED {
        let kind = if (i as i64) < ORDERS {
            "order"
        } else {
            "other"
        };
        let value = format!(r#"{{"type":"{kind}","i":{i}}}"#);
        let key = format!("k{i}");
        producer
            .send(BaseRecord::to("events").key(&key).payload(&value))
            .unwrap();
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let router = [("agent", "router"), ("kind", "router")];
    let text = poll_until(Duration::from_secs(60), "all events routed", || {
        let text = scrape(&http);
        let processed = sample(&text, "agentlog_agent_events_processed_total", &router)?;
        (processed == PRODUCED as f64).then_some(text)
    });
    assert_eq!(watermarks(&kafka, "orders", 0).1, ORDERS);
    assert_eq!(
        watermarks(&kafka, "events.other", 0).1,
        PRODUCED as i64 - ORDERS
    );
    let produced = PRODUCED as f64;
    assert_eq!(
        sample(
            &text,
            "agentlog_agent_handling_latency_seconds_count",
            &router
        ),
        Some(produced),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "agentlog_agent_handling_latency_seconds_bucket",
            &[("agent", "router"), ("le", "+Inf")]
        ),
        Some(produced),
        "{text}"
    );
    assert_eq!(
        sample(&text, "agentlog_agent_emits_total", &router),
        Some(produced),
        "{text}"
    );
    assert_eq!(
        sample(&text, "agentlog_agent_errors_total", &router),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, "agentlog_agent_dead_lettered_total", &router),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "agentlog_partition_high_watermark",
            &[("topic", "orders"), ("partition", "0")]
        ),
        Some(ORDERS as f64)
    );

    // A wire client's group: lag = high watermark - committed, and it follows commits.
    let mut config = consumer_config(&kafka);
    config.set("group.id", "lag-checker");
    let consumer: BaseConsumer = config.create().unwrap();
    let lag_labels = [
        ("group", "lag-checker"),
        ("topic", "orders"),
        ("partition", "0"),
    ];
    commit(&consumer, "orders", 2);
    let text = scrape(&http);
    assert_eq!(
        sample(&text, "agentlog_consumer_lag", &lag_labels),
        Some((ORDERS - 2) as f64),
        "{text}"
    );
    commit(&consumer, "orders", ORDERS);
    let text = scrape(&http);
    assert_eq!(
        sample(&text, "agentlog_consumer_lag", &lag_labels),
        Some(0.0),
        "{text}"
    );

    // The router's own group is there too, caught up once it has committed.
    poll_until(Duration::from_secs(30), "router group caught up", || {
        let text = scrape(&http);
        let lag = sample(
            &text,
            "agentlog_consumer_lag",
            &[("group", "router"), ("topic", "events"), ("partition", "0")],
        )?;
        (lag == 0.0).then_some(())
    });
}

#[test]
fn kafka_backend_serves_agent_metrics_without_broker_series() {
    let cluster = BrokerProcess::start(&["group.initial.rebalance.delay.ms=100"]);
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "backend = \"kafka\"\nbootstrap = \"{}\"\n{ROUTER}",
        cluster.bootstrap()
    );
    let (_process, kafka, http) = serve(dir.path(), &config);
    assert!(kafka.is_none(), "no broker in kafka mode");

    let (status, body) = http_get(&http, "/health");
    assert_eq!(status, 200);
    assert!(body.contains(r#""broker":false"#), "{body}");
    let text = poll_until(Duration::from_secs(30), "router series", || {
        let text = scrape(&http);
        sample(
            &text,
            "agentlog_agent_events_processed_total",
            &[("agent", "router"), ("kind", "router")],
        )
        .map(|_| text)
    });
    assert!(!text.contains("agentlog_consumer_lag"), "{text}");
    assert!(!text.contains("agentlog_topics"), "{text}");
}

#[test]
fn http_listen_in_the_config_file_starts_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let (process, _kafka, http) = serve(dir.path(), "http.listen = \"127.0.0.1:0\"\n");
    let (status, _) = http_get(&http, "/health");
    assert_eq!(status, 200);
    process.stop();
}
