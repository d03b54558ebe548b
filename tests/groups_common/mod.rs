//! A minimal spawner for the real `agentlog` binary and a raw Kafka request helper, for
//! the consumer group tests (kept here so they do not depend on other suites' helpers).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes};

/// A running broker process; killed on drop.
pub struct BrokerProcess {
    child: Child,
    /// `host:port` to bootstrap from.
    pub addr: String,
}

impl BrokerProcess {
    /// Starts the binary on `listen` (e.g. `127.0.0.1:0`) over `data_dir` with extra
    /// `--set NAME=VALUE` settings, and waits for its listening line.
    pub fn start(data_dir: &Path, listen: &str, sets: &[&str]) -> BrokerProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_agentlog"));
        command
            .arg("--listen")
            .arg(listen)
            .arg("--data-dir")
            .arg(data_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("AGENTLOG_LOG", "warn");
        for set in sets {
            command.arg("--set").arg(set);
        }
        let mut child = command.spawn().expect("spawn agentlog");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .expect("agentlog exited before listening")
                .expect("read stdout");
            if let Some(addr) = line.strip_prefix("agentlog listening on ") {
                break addr.trim().to_string();
            }
        };
        // Keep draining stdout so the broker never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        BrokerProcess { child, addr }
    }

    /// The default settings every group test uses, plus `extra`.
    pub fn start_for_groups(data_dir: &Path, listen: &str, extra: &[&str]) -> BrokerProcess {
        let mut sets = vec![
            "group.initial.rebalance.delay.ms=300",
            "group.min.session.timeout.ms=1000",
            "num.partitions=6",
        ];
        sets.extend_from_slice(extra);
        BrokerProcess::start(data_dir, listen, &sets)
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().expect("wait for agentlog");
        assert!(status.success(), "agentlog exited with {status}");
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends one request at `version` over a fresh connection and decodes the response.
pub fn call<R: Request>(addr: &str, version: i16, request: &R) -> R::Response {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let api_key = kafka_protocol::messages::ApiKey::try_from(R::KEY).expect("api key");
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("raw")));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, api_key.request_header_version(version))
        .expect("encode header");
    request.encode(&mut body, version).expect("encode request");
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    stream.write_all(&frame).expect("send");
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).expect("response length");
    let mut response = vec![0u8; i32::from_be_bytes(len) as usize];
    stream.read_exact(&mut response).expect("response body");
    let mut response = Bytes::from(response);
    ResponseHeader::decode(&mut response, R::Response::header_version(version))
        .expect("response header");
    let decoded = R::Response::decode(&mut response, version).expect("response");
    assert_eq!(response.remaining(), 0, "trailing bytes in response");
    decoded
}
