//! Shared helpers for the integration tests: the real `agentlog` binary as a child
//! process, rdkafka configuration, and a tiny blocking Kafka-protocol client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};
use rdkafka::ClientConfig;

pub mod certs;

/// How long the broker may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `agentlog` binary running as a child process on an ephemeral port.
pub struct BrokerProcess {
    child: Option<Child>,
    bootstrap: String,
    data_dir: PathBuf,
    settings: Vec<String>,
    /// Owned temporary directory, when the caller did not give one.
    _temp: Option<tempfile::TempDir>,
    /// Where the broker's stderr goes (one file per start, appended).
    pub stderr_log: PathBuf,
    starts: u32,
    /// Later stdout lines (the listening lines of secured listeners among them).
    stdout_lines: Option<std::sync::Mutex<(mpsc::Receiver<String>, Vec<String>)>>,
}

impl BrokerProcess {
    /// Starts the binary on a fresh temporary data directory.
    pub fn start(settings: &[&str]) -> BrokerProcess {
        let temp = tempfile::Builder::new()
            .prefix("agentlog-it-")
            .tempdir()
            .expect("temp dir");
        let dir = temp.path().join("data");
        let mut broker = BrokerProcess::unstarted(dir, settings);
        broker._temp = Some(temp);
        broker.spawn();
        broker
    }

    /// Starts the binary on the given data directory (kept after the test).
    pub fn start_in(data_dir: &Path, settings: &[&str]) -> BrokerProcess {
        let mut broker = BrokerProcess::unstarted(data_dir.to_path_buf(), settings);
        broker.spawn();
        broker
    }

    fn unstarted(data_dir: PathBuf, settings: &[&str]) -> BrokerProcess {
        let stderr_log = data_dir.with_extension("stderr.log");
        BrokerProcess {
            child: None,
            bootstrap: String::new(),
            data_dir,
            settings: settings.iter().map(|s| s.to_string()).collect(),
            _temp: None,
            stderr_log,
            starts: 0,
            stdout_lines: None,
        }
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        std::fs::create_dir_all(&self.data_dir).expect("create data dir");
        self.starts += 1;
        let mut command = Command::new(env!("CARGO_BIN_EXE_agentlog"));
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir);
        for setting in &self.settings {
            command.arg("--set").arg(setting);
        }
        command
            .env_remove("AGENTLOG_CONFIG")
            .env(
                "AGENTLOG_LOG",
                std::env::var("AGENTLOG_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawn agentlog binary");

        // stderr: to a file and to the test's captured output, so failures show logs.
        let stderr = child.stderr.take().unwrap();
        let log_path = self.stderr_log.clone();
        let start_no = self.starts;
        std::thread::spawn(move || {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
                .ok();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[broker#{start_no}] {line}");
                if let Some(f) = file.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
            }
        });

        // stdout: the listening line(s), then keep draining.
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let address = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(address) = line.trim().strip_prefix("agentlog listening on ") {
                        break address.to_string();
                    }
                }
                Err(_) => {
                    let status = child.try_wait().ok().flatten();
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "agentlog did not print its listening line within {START_TIMEOUT:?} (exit status: {status:?}); stderr in {}",
                        self.stderr_log.display()
                    );
                }
            }
        };
        self.bootstrap = address;
        self.child = Some(child);
        self.stdout_lines = Some(std::sync::Mutex::new((rx, Vec::new())));
    }

    /// `host:port` of the listener with this security protocol (`SASL_SSL`, ...), from
    /// its `agentlog listening on PROTOCOL://host:port` line.
    pub fn listener(&self, protocol: &str) -> String {
        let prefix = format!("agentlog listening on {protocol}://");
        let lines = self.stdout_lines.as_ref().expect("broker started");
        let mut lines = lines.lock().unwrap();
        let (rx, seen) = &mut *lines;
        loop {
            if let Some(address) = seen.iter().find_map(|l| l.trim().strip_prefix(&prefix)) {
                return address.to_string();
            }
            let line = rx
                .recv_timeout(START_TIMEOUT)
                .unwrap_or_else(|_| panic!("no {protocol} listening line"));
            seen.push(line);
        }
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.bootstrap.clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The child's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => child.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, wait (bounded) and assert a clean exit 0.
    pub fn terminate(&mut self) {
        let status = self.terminate_status();
        assert!(
            status.success(),
            "agentlog exited with {status:?} after SIGTERM"
        );
    }

    /// SIGTERM and wait (bounded); returns the exit status.
    pub fn terminate_status(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("broker not running");
        let pid = child.id();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("agentlog did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary again on the same data directory and settings (after `kill`
    /// or `terminate`); the port changes.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------
// rdkafka configuration

/// Base client configuration: fast metadata, quiet logs.
pub fn base_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .set("socket.timeout.ms", "10000")
        .set("log_level", "4");
    config
}

/// A producer: no idempotence (InitProducerId is not implemented), acks=all.
pub fn producer_config(bootstrap: &str) -> ClientConfig {
    let mut config = base_config(bootstrap);
    config
        .set("enable.idempotence", "false")
        .set("acks", "all")
        .set("message.timeout.ms", "30000")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    config
}

/// A consumer for `assign()` only: a group.id is required by rdkafka but never used
/// (no subscribe, no commits).
pub fn consumer_config(bootstrap: &str) -> ClientConfig {
    let mut config = base_config(bootstrap);
    config
        .set("group.id", "agentlog-tests-unused")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "error")
        .set("fetch.wait.max.ms", "100")
        .set("isolation.level", "read_uncommitted");
    config
}

/// An admin client configuration.
pub fn admin_config(bootstrap: &str) -> ClientConfig {
    base_config(bootstrap)
}

/// Polls `condition` until it returns `Some` or the deadline passes.
pub fn poll_until<T>(timeout: Duration, what: &str, mut condition: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = condition() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---------------------------------------------------------------------------------
// A tiny blocking Kafka-protocol client over std::net::TcpStream.

/// One connection speaking raw Kafka frames with the `kafka_protocol` types, over TCP
/// or (see [`certs::tls_client`]) TLS.
pub struct RawClient<S = TcpStream> {
    pub stream: S,
    pub next_correlation: i32,
}

impl RawClient {
    /// Connects to `host:port`.
    pub fn connect(address: &str) -> RawClient {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        RawClient {
            stream,
            next_correlation: 1,
        }
    }

    /// True if the peer closed the connection (EOF or reset) within `timeout`.
    pub fn is_closed_within(&mut self, timeout: Duration) -> bool {
        is_closed_within(&mut self.stream, timeout)
    }
}

impl<S: Read + Write> RawClient<S> {
    /// Encodes and writes a request; returns its correlation id.
    pub fn send<R: Request>(&mut self, request: &R, version: i16) -> i32 {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("agentlog-raw-test")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("encode header");
        request.encode(&mut body, version).expect("encode request");
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).expect("write request");
        correlation_id
    }

    /// Reads one raw frame body (without the length prefix).
    pub fn read_frame(&mut self) -> std::io::Result<Bytes> {
        let mut prefix = [0u8; 4];
        self.stream.read_exact(&mut prefix)?;
        let len = i32::from_be_bytes(prefix);
        assert!((0..256 << 20).contains(&len), "bad response length {len}");
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body)?;
        Ok(Bytes::from(body))
    }

    /// Reads and decodes the response to a request of type `R` sent at `version`,
    /// asserting the correlation id.
    pub fn receive<R: Request>(&mut self, version: i16, correlation_id: i32) -> R::Response {
        let mut frame = self.read_frame().expect("read response");
        let header = ResponseHeader::decode(
            &mut frame,
            <R::Response as HeaderVersion>::header_version(version),
        )
        .expect("decode response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "response out of order"
        );
        let response =
            <R::Response as Decodable>::decode(&mut frame, version).expect("decode response");
        assert_eq!(frame.remaining(), 0, "trailing bytes after the response");
        response
    }

    /// Send and receive.
    pub fn call<R: Request>(&mut self, request: &R, version: i16) -> R::Response {
        let correlation_id = self.send(request, version);
        self.receive::<R>(version, correlation_id)
    }
}

/// True if nothing at all (no byte, no close) arrives on `stream` within `timeout`.
pub fn silent_for(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 1];
    let silent = match stream.read(&mut buf) {
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    silent
}

/// True if the peer closed `stream` (EOF or reset) within `timeout`; false if it
/// stayed open (read timed out) or sent data.
pub fn is_closed_within(stream: &mut TcpStream, timeout: Duration) -> bool {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut buf = [0u8; 1];
    match stream.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => matches!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe
        ),
    }
}

/// (key, value, timestamp) of one record to encode.
pub type RawRecord<'a> = (Option<&'a [u8]>, Option<&'a [u8]>, i64);

/// Encodes records as one uncompressed v2 batch (base offset 0; the broker assigns).
pub fn encode_batch(records: &[RawRecord<'_>]) -> Bytes {
    let records: Vec<_> = records
        .iter()
        .enumerate()
        .map(|(i, (key, value, timestamp))| {
            agentlog_protocol::fixtures::record(
                i as i32,
                key.map(Bytes::copy_from_slice),
                value.map(Bytes::copy_from_slice),
                *timestamp,
            )
        })
        .collect();
    agentlog_protocol::fixtures::encode(&records, kafka_protocol::records::Compression::None)
        .freeze()
}

// ---------------------------------------------------------------------------------
// rdkafka consumption and administration helpers

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

/// An admin client.
pub fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    admin_config(bootstrap).create().expect("admin client")
}

/// Creates a topic with `partitions` partitions and the given configs; panics on error.
pub async fn create_topic(bootstrap: &str, name: &str, partitions: i32, configs: &[(&str, &str)]) {
    let admin = admin(bootstrap);
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let result = admin
        .create_topics([&topic], &options)
        .await
        .expect("create_topics request");
    assert_eq!(result, vec![Ok(name.to_string())], "creating topic {name}");
}

/// A consumer assigned to `partitions` of `topic`, each from the given offset.
pub fn assigned_consumer(bootstrap: &str, topic: &str, partitions: &[(i32, i64)]) -> BaseConsumer {
    let consumer: BaseConsumer = consumer_config(bootstrap).create().expect("consumer");
    let mut list = TopicPartitionList::new();
    for (partition, offset) in partitions {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .unwrap();
    }
    consumer.assign(&list).expect("assign");
    consumer
}

/// Reads `expected` messages in total from the given partitions (each from its offset),
/// failing on any consumer error or on the deadline.
pub fn consume_exactly(
    bootstrap: &str,
    topic: &str,
    partitions: &[(i32, i64)],
    expected: usize,
    timeout: Duration,
) -> Vec<OwnedMessage> {
    let consumer = assigned_consumer(bootstrap, topic, partitions);
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(expected);
    while out.len() < expected {
        if Instant::now() > deadline {
            panic!(
                "consumed only {} of {expected} messages from {topic} within {timeout:?}",
                out.len()
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => out.push(message.detach()),
            Some(Err(error)) => panic!("consumer error after {} messages: {error}", out.len()),
        }
    }
    out
}

/// Low and high watermark of one partition.
pub fn watermarks(bootstrap: &str, topic: &str, partition: i32) -> (i64, i64) {
    let consumer: BaseConsumer = consumer_config(bootstrap).create().expect("consumer");
    consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(10))
        .expect("fetch_watermarks")
}

/// Message payload as bytes (empty slice for null is *not* conflated: None stays None).
pub fn payload_of(message: &OwnedMessage) -> Option<Vec<u8>> {
    message.payload().map(|p| p.to_vec())
}

// ---------------------------------------------------------------------------------
// Raw requests with the kafka_protocol types

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::produce_response::PartitionProduceResponse;
use kafka_protocol::messages::{
    BrokerId, FetchRequest, ListOffsetsRequest, ProduceRequest, TopicName,
};

/// Fetch version used by the raw helpers (topic names, not ids).
pub const FETCH_VERSION: i16 = 12;
/// ListOffsets version used by the raw helpers.
pub const LIST_OFFSETS_VERSION: i16 = 7;
/// Produce version used by the raw helpers.
pub const PRODUCE_VERSION: i16 = 9;

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A one-partition fetch request.
pub fn fetch_request(
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(50 << 20)
        .with_isolation_level(0)
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_current_leader_epoch(-1)
                .with_fetch_offset(offset)
                .with_last_fetched_epoch(-1)
                .with_log_start_offset(-1)
                .with_partition_max_bytes(10 << 20)])])
}

/// The single partition of a one-partition fetch response.
pub fn only_partition(response: &kafka_protocol::messages::FetchResponse) -> PartitionData {
    assert_eq!(response.error_code, 0, "fetch top-level error");
    assert_eq!(response.responses.len(), 1, "topics in fetch response");
    assert_eq!(
        response.responses[0].partitions.len(),
        1,
        "partitions in fetch response"
    );
    response.responses[0].partitions[0].clone()
}

/// Fetches one partition; returns the partition data.
pub fn raw_fetch(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
) -> PartitionData {
    let request = fetch_request(topic, partition, offset, max_wait_ms, min_bytes);
    only_partition(&client.call(&request, FETCH_VERSION))
}

/// ListOffsets for one partition and target timestamp (or -1 latest, -2 earliest,
/// -3 max timestamp).
pub fn raw_list_offsets(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    timestamp: i64,
) -> ListOffsetsPartitionResponse {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(0)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(partition)
                .with_current_leader_epoch(-1)
                .with_timestamp(timestamp)])]);
    let response = client.call(&request, LIST_OFFSETS_VERSION);
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].partitions.len(), 1);
    response.topics[0].partitions[0].clone()
}

/// A one-partition produce request carrying `records`.
pub fn produce_request(topic: &str, partition: i32, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_transactional_id(None)
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(records))])])
}

/// Produces with acks=all (under the default flush policy, acks=1 data becomes visible
/// only after the background fsync) and returns the partition's response.
pub fn raw_produce(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    raw_produce_acks(client, topic, partition, records, -1)
}

/// Produces with the given acks (1 or -1) and returns the partition's response.
pub fn raw_produce_acks(
    client: &mut RawClient,
    topic: &str,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> PartitionProduceResponse {
    let response = client.call(
        &produce_request(topic, partition, records, acks),
        PRODUCE_VERSION,
    );
    assert_eq!(response.responses.len(), 1);
    assert_eq!(response.responses[0].partition_responses.len(), 1);
    response.responses[0].partition_responses[0].clone()
}

/// Batch headers (base offset, record count) of raw fetched bytes.
pub fn batch_info(records: &Bytes) -> Vec<kafka_protocol::records::BatchDecodeInfo> {
    let mut buf = records.clone();
    kafka_protocol::records::RecordBatchDecoder::decode_batch_info(&mut buf).expect("batch headers")
}

/// Every record of raw fetched bytes (uncompressed batches only).
pub fn decode_records(records: &Bytes) -> Vec<kafka_protocol::records::Record> {
    let mut buf = records.clone();
    kafka_protocol::records::RecordBatchDecoder::decode_all(&mut buf)
        .expect("decode record batches")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}

/// A multi-threaded tokio runtime for tests that drive async rdkafka helpers from
/// otherwise synchronous code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("test runtime")
}

/// A child `agentlog serve` started by a test: killed on drop, or stopped with SIGTERM
/// (which must end in exit 0) by [`Serve::stop`].
pub struct Serve(pub Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Serve {
    /// SIGTERM, then asserts a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let status = self.0.wait().expect("wait for agentlog");
        assert!(status.success(), "agentlog exited with {status}");
    }
}

/// `agentlog serve` with `config` in `dir` (data in `dir/data`, `env` added to the
/// environment, run from the repository root so `.models/` resolves): the process and
/// its Kafka and HTTP addresses.
pub fn serve_agentlog(dir: &Path, config: &str, env: &[(&str, &str)]) -> (Serve, String, String) {
    let path = dir.join("agentlog.toml");
    std::fs::write(&path, config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--config",
        ])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .envs(env.iter().copied())
        .env("AGENTLOG_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (kafka, http) = listening_addresses(child.stdout.take().unwrap(), true);
    (
        Serve(child),
        kafka.expect("the broker listens"),
        http.expect("the http listener"),
    )
}

/// The Kafka and HTTP addresses `agentlog serve` prints on stdout (`agentlog listening
/// on ADDR`, `agentlog http on ADDR`), read until the HTTP line and, with `want_kafka`,
/// the Kafka line (there is none in `backend = "kafka"` mode); the rest of stdout is
/// drained in the background so the process never blocks on a full pipe.
pub fn listening_addresses(
    stdout: std::process::ChildStdout,
    want_kafka: bool,
) -> (Option<String>, Option<String>) {
    let mut lines = BufReader::new(stdout).lines();
    let (mut kafka, mut http) = (None, None);
    for line in lines.by_ref().map_while(Result::ok) {
        if let Some(addr) = line.strip_prefix("agentlog listening on ") {
            kafka = Some(addr.trim().to_string());
        }
        if let Some(addr) = line.strip_prefix("agentlog http on ") {
            http = Some(addr.trim().to_string());
        }
        if http.is_some() && (kafka.is_some() || !want_kafka) {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    (kafka, http)
}

/// A plain HTTP/1.1 GET: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    http_request("GET", addr, path)
}

/// A plain HTTP/1.1 request without a body: (status code, body).
pub fn http_request(method: &str, addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("no end of HTTP headers");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("no status code");
    (status, body.to_string())
}

// ---------------------------------------------------------------------------------
// A group member polling on its own thread.

/// A subscribed consumer polled on its own thread, publishing its current assignment
/// (partition numbers) after every poll; dropping it stops the thread and closes the
/// consumer, which leaves the group.
pub struct PolledMember {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    assignment: std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<i32>>>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl PolledMember {
    /// Starts polling `consumer` (already subscribed) every `poll` interval.
    pub fn start(consumer: BaseConsumer, poll: Duration) -> PolledMember {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let assignment = std::sync::Arc::new(std::sync::Mutex::new(Default::default()));
        let handle = {
            let (stop, assignment) = (stop.clone(), assignment.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _ = consumer.poll(poll);
                    if let Ok(list) = consumer.assignment() {
                        let now = list.elements().iter().map(|e| e.partition()).collect();
                        if let Ok(mut slot) = assignment.lock() {
                            *slot = now;
                        }
                    }
                }
            })
        };
        PolledMember {
            stop,
            assignment,
            handle: Some(handle),
        }
    }

    /// The partitions it holds now.
    pub fn assignment(&self) -> std::collections::BTreeSet<i32> {
        self.assignment
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
    }
}

impl Drop for PolledMember {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
