//! Harness of the uplink tests: a TCP proxy that cuts and restores the link between
//! an edge and the central broker, the edge as a real `agentlog serve --config`
//! process, and the producer and read_committed reader on either side.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::common::{http_get, listening_addresses};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::common;

// ---------------------------------------------------------------------------------
// The link: a proxy between edge and central

#[derive(Default)]
struct ProxyState {
    upstream: Option<SocketAddr>,
    cut: bool,
    connections: Vec<tokio::task::AbortHandle>,
}

/// Copies one direction of a connection, holding each chunk for the link's current
/// delay (a slow link keeps transactions in flight long enough for a kill to land
/// inside one).
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay_ms: Arc<AtomicU64>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        let delay = delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

/// A TCP proxy on loopback. Cut: every open connection is dropped and new ones are
/// closed as soon as accepted, like a link that is down. The central broker advertises
/// the proxy's address, so every client of central (the edge's uplink, the test's
/// reader) goes through it.
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    delay_ms: Arc<AtomicU64>,
    _runtime: tokio::runtime::Runtime,
}

impl Proxy {
    /// A proxy with no upstream yet (connections are closed until one is set).
    pub fn start() -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let shared = state.clone();
        let delay = delay_ms.clone();
        runtime.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let mut state = shared.lock().unwrap();
                let Some(upstream) = state.upstream.filter(|_| !state.cut) else {
                    continue; // dropped: the link is down
                };
                let delay = delay.clone();
                let task = tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    // Either direction ending ends the connection.
                    tokio::select! {
                        _ = pump(in_read, out_write, delay.clone()) => {}
                        _ = pump(out_read, in_write, delay) => {}
                    }
                });
                state.connections.retain(|c| !c.is_finished());
                state.connections.push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            state,
            delay_ms,
            _runtime: runtime,
        }
    }

    /// Forwards new connections to `upstream` (`host:port`).
    pub fn set_upstream(&self, upstream: &str) {
        self.state.lock().unwrap().upstream = Some(upstream.parse().unwrap());
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap();
        state.cut = true;
        for connection in state.connections.drain(..) {
            connection.abort();
        }
    }

    /// Holds every chunk crossing the link for `delay` (zero: full speed).
    pub fn slow(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Lets connections through again.
    pub fn restore(&self) {
        self.state.lock().unwrap().cut = false;
    }
}

/// The central broker, advertising the proxy so all its clients go through the link.
pub fn central_behind(proxy: &Proxy, settings: &[&str]) -> common::BrokerProcess {
    let advertise = format!("advertise={}", proxy.addr);
    let mut all = vec![advertise.as_str()];
    all.extend_from_slice(settings);
    let central = common::BrokerProcess::start(&all);
    proxy.set_upstream(&central.bootstrap());
    central
}

// ---------------------------------------------------------------------------------
// The edge: `agentlog serve --config edge.toml`

/// The README's `## Edge uplink` TOML example number `index`, as printed but for its
/// one `bootstrap` line, which names a central cluster the tests cannot have: it
/// becomes `bootstrap`.
pub fn readme_example(index: usize, bootstrap: &str) -> String {
    let readme = include_str!("../../README.md");
    let start = readme.find("## Edge uplink").expect("the README section");
    let end = start
        + readme[start + 3..]
            .find("\n## ")
            .expect("the section's end")
        + 3;
    let block = readme[start..end]
        .split("```toml\n")
        .nth(index + 1)
        .and_then(|rest| rest.split("```").next())
        .expect("the TOML block");
    let bootstrap_lines = block
        .lines()
        .filter(|l| l.starts_with("bootstrap = "))
        .count();
    assert_eq!(bootstrap_lines, 1, "one bootstrap line to substitute");
    block
        .lines()
        .map(|line| {
            if line.starts_with("bootstrap = ") {
                format!("bootstrap = \"{bootstrap}\"\n")
            } else {
                format!("{line}\n")
            }
        })
        .collect()
}

/// The edge process, restartable on its data directory (its ports change).
pub struct Edge {
    dir: PathBuf,
    child: Option<Child>,
    /// The edge broker's `host:port`.
    pub kafka: String,
    /// The edge's HTTP listener.
    pub http: String,
}

impl Edge {
    /// Writes `config` to `dir/edge.toml` and starts the edge on it.
    pub fn start(dir: &Path, config: &str) -> Edge {
        std::fs::write(dir.join("edge.toml"), config).unwrap();
        let mut edge = Edge {
            dir: dir.to_path_buf(),
            child: None,
            kafka: String::new(),
            http: String::new(),
        };
        edge.spawn();
        edge
    }

    fn spawn(&mut self) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
            .args(["serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
            .arg("--config")
            .arg(self.dir.join("edge.toml"))
            .arg("--data-dir")
            .arg(self.dir.join("edge-data"))
            .env(
                "AGENTLOG_LOG",
                std::env::var("AGENTLOG_LOG")
                    .unwrap_or_else(|_| "warn,agentlog_agents::uplink=info".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let (kafka, http) = listening_addresses(child.stdout.take().unwrap(), true);
        self.kafka = kafka.expect("the edge did not print its listening line");
        self.http = http.expect("the edge did not print its http line");
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM; waits for the exit (bounded by `timeout`) and returns how long it took
    /// and whether the exit was clean.
    pub fn terminate(&mut self, timeout: Duration) -> (Duration, bool) {
        let mut child = self.child.take().expect("the edge runs");
        let started = Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(sent.success());
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return (started.elapsed(), status.success());
            }
            if started.elapsed() > timeout {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the edge did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The running edge process's id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL, then start again on the same data and configuration.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// The first uplink's entry of `/health`.
    pub fn uplink(&self) -> serde_json::Value {
        let (_, body) = http_get(&self.http, "/health");
        let health: serde_json::Value = serde_json::from_str(&body).unwrap();
        health["uplinks"][0].clone()
    }

    /// Polls `/health` until the first uplink satisfies `condition`.
    pub fn wait_uplink(
        &self,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let uplink = self.uplink();
            if condition(&uplink) {
                return uplink;
            }
            assert!(
                Instant::now() < deadline,
                "uplink never got {what} within {timeout:?}; last: {uplink}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Edge {
    /// Waits until the first uplink reports its link down (after a cut).
    pub fn wait_link_down(&self, timeout: Duration) -> serde_json::Value {
        self.wait_uplink("the link down", timeout, |u| {
            u["state"].as_str().is_some_and(|s| s.starts_with("down"))
        })
    }

    /// SIGKILLs the edge while its first uplink catches up (it forwarded more since
    /// this call and still has a backlog), restarts it, and returns the status at the
    /// kill.
    pub fn kill_while_catching_up(&mut self, timeout: Duration) -> serde_json::Value {
        let before = forwarded(&self.uplink());
        let at_kill = self.wait_uplink("catching up", timeout, |u| {
            forwarded(u) > before && behind(u) > 0
        });
        self.restart();
        eprintln!("edge killed at {at_kill}");
        at_kill
    }
}

/// Records an uplink's `/health` entry says it forwarded.
pub fn forwarded(uplink: &serde_json::Value) -> u64 {
    uplink["records_forwarded"].as_u64().unwrap_or(0)
}

/// Records an uplink's `/health` entry says it is behind.
pub fn behind(uplink: &serde_json::Value) -> u64 {
    uplink["records_behind"].as_u64().unwrap_or(0)
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------
// Records on either side

/// A record the edge acknowledged: what central must hold once, in this order per
/// partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// Local topic.
    pub topic: String,
    /// Partition (the same number on central).
    pub partition: i32,
    /// Key.
    pub key: String,
    /// Value.
    pub value: String,
    /// Timestamp (ms).
    pub timestamp: i64,
}

/// Produces `count` records numbered from `first` to the edge (`acks=all`), spread
/// over `topics` (name, partitions), and returns those acknowledged, in send order.
pub fn produce(edge: &str, topics: &[(&str, i32)], first: usize, count: usize) -> Vec<Sent> {
    // Now-ish: a fixed old timestamp would be older than retention.ms, and retention
    // would delete the records (on either side) before they are checked.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    produce_at(edge, topics, first, count, now)
}

/// [`produce`] with timestamps from `base_ts` on.
pub fn produce_at(
    edge: &str,
    topics: &[(&str, i32)],
    first: usize,
    count: usize,
    base_ts: i64,
) -> Vec<Sent> {
    // Small stored batches: the uplink reads whole batches, so they bound how few
    // records one transaction carries.
    let producer: FutureProducer = common::producer_config(edge)
        .set("linger.ms", "2")
        .set("batch.num.messages", "10")
        .create()
        .unwrap();
    let records: Vec<Sent> = (first..first + count)
        .map(|i| {
            let (topic, partitions) = topics[i % topics.len()];
            Sent {
                topic: topic.to_string(),
                partition: (i / topics.len()) as i32 % partitions,
                key: format!("k{i}"),
                value: format!("value-{i}-{}", "x".repeat(40)),
                timestamp: base_ts + i as i64,
            }
        })
        .collect();
    common::runtime().block_on(async {
        let mut deliveries = Vec::new();
        for (i, sent) in records.iter().enumerate() {
            let index = (first + i).to_string();
            let record = FutureRecord::to(&sent.topic)
                .partition(sent.partition)
                .key(&sent.key)
                .payload(&sent.value)
                .timestamp(sent.timestamp)
                .headers(OwnedHeaders::new().insert(Header {
                    key: "seq",
                    value: Some(index.as_str()),
                }));
            deliveries.push(producer.send_result(record).map_err(|(e, _)| e).unwrap());
        }
        let mut acked = Vec::new();
        for (sent, delivery) in records.iter().zip(deliveries) {
            if matches!(delivery.await, Ok(Ok(_))) {
                acked.push(sent.clone());
            }
        }
        acked
    })
}

/// Every committed record of `topic`'s partitions on central, read with
/// `isolation.level=read_committed` up to the end, by partition.
pub fn read_committed(
    central: &str,
    topic: &str,
    partitions: i32,
) -> BTreeMap<i32, Vec<OwnedMessage>> {
    let consumer: BaseConsumer = common::consumer_config(central)
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..partitions {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(10))
            .unwrap();
        ends.insert(partition, high);
    }
    consumer.assign(&list).unwrap();
    let mut out: BTreeMap<i32, Vec<OwnedMessage>> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let positions = consumer.position().unwrap();
        let done = positions.elements().iter().all(|e| match e.offset() {
            Offset::Offset(at) => at >= ends[&e.partition()],
            _ => ends[&e.partition()] == 0,
        });
        if done {
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "read_committed of {topic} did not reach the end {ends:?}: {positions:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => out
                .entry(message.partition())
                .or_default()
                .push(message.detach()),
            Some(Err(error)) => panic!("reading {topic}: {error}"),
        }
    }
}

/// The value of header `name` as text.
pub fn header(message: &OwnedMessage, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Asserts central's `remote_topic` holds exactly the acknowledged records of local
/// `topic`, once each, in order per partition, with their keys, values, timestamps and
/// headers, and origin headers whose offsets are contiguous from 0.
pub fn assert_exactly_once(
    central: &str,
    topic: &str,
    remote_topic: &str,
    partitions: i32,
    site: &str,
    acked: &[Sent],
) {
    let held = read_committed(central, remote_topic, partitions);
    for partition in 0..partitions {
        let expected: Vec<(&str, &str, i64)> = acked
            .iter()
            .filter(|s| s.topic == topic && s.partition == partition)
            .map(|s| (s.key.as_str(), s.value.as_str(), s.timestamp))
            .collect();
        let messages = held.get(&partition).map(Vec::as_slice).unwrap_or_default();
        let got: Vec<(String, String, i64)> = messages
            .iter()
            .map(|m| {
                (
                    String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
                    String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    m.timestamp().to_millis().unwrap_or(-1),
                )
            })
            .collect();
        let got_refs: Vec<(&str, &str, i64)> = got
            .iter()
            .map(|(k, v, t)| (k.as_str(), v.as_str(), *t))
            .collect();
        assert_eq!(
            got_refs.len(),
            expected.len(),
            "{remote_topic}-{partition}: {} records on central, {} acknowledged at the edge",
            got_refs.len(),
            expected.len()
        );
        assert_eq!(
            got_refs, expected,
            "{remote_topic}-{partition}: sequence differs"
        );
        for (index, message) in messages.iter().enumerate() {
            assert_eq!(header(message, "origin.site").as_deref(), Some(site));
            assert_eq!(header(message, "origin.topic").as_deref(), Some(topic));
            assert_eq!(
                header(message, "origin.partition"),
                Some(partition.to_string())
            );
            assert_eq!(
                header(message, "origin.offset"),
                Some(index.to_string()),
                "{remote_topic}-{partition}: origin offsets not contiguous"
            );
            let seq = header(message, "seq").expect("the record's own header is kept");
            assert_eq!(format!("k{seq}"), expected[index].0);
        }
    }
}

/// The length of a message's value.
pub fn payload_len(message: &OwnedMessage) -> usize {
    message.payload().map_or(0, <[u8]>::len)
}

/// Asserts central's `remote_topic` holds every acknowledged record of local `topic` at
/// least once: with repeats (a batch sent again after a crash) removed by origin offset,
/// the sequence per partition is exactly the acknowledged one. Returns the repeats.
pub fn assert_at_least_once(
    central: &str,
    topic: &str,
    remote_topic: &str,
    partitions: i32,
    acked: &[Sent],
) -> usize {
    let held = read_committed(central, remote_topic, partitions);
    let mut repeats = 0;
    for partition in 0..partitions {
        let expected: Vec<(String, String)> = acked
            .iter()
            .filter(|s| s.topic == topic && s.partition == partition)
            .map(|s| (s.key.clone(), s.value.clone()))
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        let mut firsts = Vec::new();
        for message in held.get(&partition).map(Vec::as_slice).unwrap_or_default() {
            let offset: i64 = header(message, "origin.offset").unwrap().parse().unwrap();
            if !seen.insert(offset) {
                repeats += 1;
                continue;
            }
            firsts.push((
                String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(),
                String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
            ));
        }
        assert_eq!(
            firsts.len(),
            expected.len(),
            "{remote_topic}-{partition}: records missing"
        );
        assert_eq!(
            firsts, expected,
            "{remote_topic}-{partition}: sequence differs"
        );
    }
    repeats
}
