//! Security with real clients: TLS listeners (rustls), SASL PLAIN and SCRAM, users
//! managed with `agentlog users`, and what bad logins and wrong protocols get.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::certs::make_certificates;
use common::{poll_until, producer_config, BrokerProcess, RawClient};
use kafka_protocol::messages::{
    ApiVersionsRequest, MetadataRequest, SaslAuthenticateRequest, SaslAuthenticateResponse,
    SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// A broker with one listener of every security protocol (PLAINTEXT from the harness).
fn secured_broker(certs: &Path) -> BrokerProcess {
    BrokerProcess::start(&[
        "listeners=SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        &format!(
            "ssl.keystore.location={}",
            certs.join("broker.pem").display()
        ),
        "num.partitions=1",
        "connection.failed.authentication.delay.ms=1500",
    ])
}

/// `agentlog users ...` against the PLAINTEXT listener; its output.
fn users(broker: &BrokerProcess, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .arg("users")
        .args(args)
        .args(["-b", &broker.bootstrap()])
        .output()
        .expect("run agentlog users")
}

fn sasl_ssl_config(address: &str, certs: &Path, user: &str, password: &str) -> ClientConfig {
    let mut config = producer_config(address);
    config
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .set("ssl.ca.location", certs.join("ca.crt").to_str().unwrap());
    config
}

#[tokio::test]
async fn rdkafka_scram_sha512_over_sasl_ssl_round_trips_and_sees_its_listener() {
    let certs = make_certificates();
    let broker = secured_broker(certs.path());
    let out = users(&broker, &["add", "alice", "--password", "s3cret-pw"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = users(&broker, &["list", "-o", "json"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.contains("alice") && listed.contains("SCRAM-SHA-512"),
        "{listed}"
    );
    assert!(
        listed.contains("SCRAM-SHA-256") && listed.contains("8192"),
        "{listed}"
    );

    let address = broker.listener("SASL_SSL");
    let config = sasl_ssl_config(&address, certs.path(), "alice", "s3cret-pw");
    let producer: FutureProducer = config.create().unwrap();
    for i in 0..20 {
        let payload = format!("secret-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to("secured").payload(&payload),
                Duration::from_secs(30),
            )
            .await
            .expect("delivered over SASL_SSL");
    }

    // Metadata names the listener the client came in on, not the PLAINTEXT one.
    let mut consumer_config = config.clone();
    consumer_config
        .set("group.id", "secured-readers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = consumer_config.create().unwrap();
    let metadata = consumer
        .fetch_metadata(Some("secured"), Duration::from_secs(30))
        .unwrap();
    let advertised = format!(
        "{}:{}",
        metadata.brokers()[0].host(),
        metadata.brokers()[0].port()
    );
    assert_eq!(advertised, address);

    consumer.subscribe(&["secured"]).unwrap();
    let mut seen = Vec::new();
    common::poll_until(Duration::from_secs(60), "20 records over SASL_SSL", || {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("no consumer error");
            seen.push(rdkafka::Message::payload(&message).unwrap().to_vec());
        }
        (seen.len() == 20).then_some(())
    });
    assert_eq!(seen[0], b"secret-0");

    // PLAIN over TLS checks the same stored credential.
    let mut plain = sasl_ssl_config(&address, certs.path(), "alice", "s3cret-pw");
    plain.set("sasl.mechanisms", "PLAIN");
    let plain: BaseConsumer = plain.create().unwrap();
    plain
        .fetch_metadata(Some("secured"), Duration::from_secs(30))
        .expect("PLAIN login");

    // Removing the user ends its logins.
    let out = users(&broker, &["remove", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: BaseConsumer = config.create().unwrap();
    assert!(again.fetch_metadata(None, Duration::from_secs(5)).is_err());
}

#[test]
fn bad_logins_and_wrong_protocols_get_kafka_errors_and_the_broker_keeps_serving() {
    let certs = make_certificates();
    let broker = secured_broker(certs.path());
    // No --password and an empty stdin: refused.
    let out = users(&broker, &["add", "bob", "--mechanism", "SCRAM-SHA-512"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty password"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["users", "add", "bob", "-b", &broker.bootstrap()])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"hunter2-pw\n")
        .unwrap();
    assert!(child.wait().unwrap().success());

    let address = broker.listener("SASL_SSL");
    for (user, password) in [("bob", "wrong-password-xyz"), ("mallory", "hunter2-pw")] {
        let client: BaseConsumer = sasl_ssl_config(&address, certs.path(), user, password)
            .create()
            .unwrap();
        // librdkafka reports the SASL error to its log and the call as a transport
        // failure; the broker log below says which check failed.
        assert!(client.fetch_metadata(None, Duration::from_secs(5)).is_err());
    }
    let good: BaseConsumer = sasl_ssl_config(&address, certs.path(), "bob", "hunter2-pw")
        .create()
        .unwrap();
    good.fetch_metadata(None, Duration::from_secs(30))
        .expect("bob logs in with the password from stdin");

    // An unknown mechanism: Kafka's UNSUPPORTED_SASL_MECHANISM and the list.
    let sasl_plaintext = broker.listener("SASL_PLAINTEXT");
    let mut raw = RawClient::connect(&sasl_plaintext);
    let response: SaslHandshakeResponse = raw.call(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("GSSAPI")),
        1,
    );
    assert_eq!(response.error_code, 33);
    let offered: Vec<String> = response.mechanisms.iter().map(|m| m.to_string()).collect();
    assert_eq!(offered, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(raw.is_closed_within(Duration::from_secs(5)));

    // Anything but ApiVersions before authenticating closes the connection.
    let mut raw = RawClient::connect(&sasl_plaintext);
    raw.call(&ApiVersionsRequest::default(), 3);
    raw.send(&MetadataRequest::default(), 12);
    assert!(raw.is_closed_within(Duration::from_secs(5)));

    // A plaintext Kafka client on a TLS port gets no Kafka answer, just a closed socket
    // (after rustls's alert).
    let mut stream = std::net::TcpStream::connect(broker.listener("SSL")).unwrap();
    let mut raw = RawClient {
        stream: stream.try_clone().unwrap(),
        next_correlation: 1,
    };
    raw.send(&ApiVersionsRequest::default(), 3);
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        answer.len() < 16 && answer.first() == Some(&0x15),
        "{answer:?}"
    );

    // A TLS client on the PLAINTEXT port fails cleanly too.
    let mut tls_on_plain = producer_config(&broker.bootstrap());
    tls_on_plain.set("security.protocol", "SSL").set(
        "ssl.ca.location",
        certs.path().join("ca.crt").to_str().unwrap(),
    );
    let tls_on_plain: BaseConsumer = tls_on_plain.create().unwrap();
    assert!(tls_on_plain
        .fetch_metadata(None, Duration::from_secs(5))
        .is_err());

    // Nothing crashed, and the log says why in one line without the password.
    RawClient::connect(&broker.bootstrap()).call(&ApiVersionsRequest::default(), 3);
    let log = std::fs::read_to_string(&broker.stderr_log).unwrap();
    assert!(log.contains("authentication failed"), "{log}");
    assert!(
        log.contains("mallory") && log.contains("unknown user"),
        "{log}"
    );
    assert!(log.contains("invalid credentials"), "{log}");
    assert!(!log.contains("wrong-password-xyz") && !log.contains("hunter2-pw"));
    assert!(log.contains("TLS handshake failed"), "{log}");
}

#[test]
fn unauthenticated_connections_get_small_frames_and_a_deadline() {
    let certs = make_certificates();
    let broker = secured_broker(certs.path());
    let address = broker.listener("SASL_PLAINTEXT");

    // 100 KiB announced before authenticating: over the 64 KiB limit, closed.
    let mut big = std::net::TcpStream::connect(&address).unwrap();
    big.write_all(&(100 * 1024i32).to_be_bytes()).unwrap();
    assert!(common::is_closed_within(&mut big, Duration::from_secs(5)));
    // The same frame size is fine on the PLAINTEXT listener (1 MiB first-frame limit).
    let mut plain = std::net::TcpStream::connect(broker.bootstrap()).unwrap();
    plain.write_all(&(100 * 1024i32).to_be_bytes()).unwrap();
    assert!(common::silent_for(&mut plain, Duration::from_secs(1)));

    // A failed login is answered (SASL_AUTHENTICATION_FAILED) only after the configured
    // delay, then the connection closes.
    let mut raw = RawClient::connect(&address);
    let handshake: SaslHandshakeResponse = raw.call(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        1,
    );
    assert_eq!(handshake.error_code, 0);
    let sent = std::time::Instant::now();
    let failed: SaslAuthenticateResponse = raw.call(
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(bytes::Bytes::from_static(b"\0nobody\0guess")),
        2,
    );
    assert!(sent.elapsed() >= Duration::from_millis(1500));
    assert_eq!(failed.error_code, 58);
    assert!(raw.is_closed_within(Duration::from_secs(5)));

    // A peer that connects and never authenticates is dropped after the 10 s deadline.
    let mut idle = std::net::TcpStream::connect(&address).unwrap();
    assert!(common::silent_for(&mut idle, Duration::from_secs(2)));
    assert!(common::is_closed_within(&mut idle, Duration::from_secs(20)));
    // The broker's stderr reaches the file after the close the client saw: wait for it.
    let logged = |log: &str| log.contains("not authenticated within");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut log = std::fs::read_to_string(&broker.stderr_log).unwrap();
    while !logged(&log) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        log = std::fs::read_to_string(&broker.stderr_log).unwrap();
    }
    assert!(logged(&log), "{log}");
}

/// One PLAIN login on a fresh connection: the SaslAuthenticate answer.
fn plain_login(address: &str, user: &str, password: &str) -> SaslAuthenticateResponse {
    let mut raw = RawClient::connect(address);
    let handshake: SaslHandshakeResponse = raw.call(
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        1,
    );
    assert_eq!(handshake.error_code, 0);
    let message = format!("\0{user}\0{password}");
    raw.call(
        &SaslAuthenticateRequest::default().with_auth_bytes(bytes::Bytes::from(message)),
        2,
    )
}

#[test]
fn failed_logins_from_one_address_are_refused_for_the_back_off() {
    let broker = BrokerProcess::start(&[
        "listeners=SASL_PLAINTEXT://127.0.0.1:0",
        "connection.failed.authentication.delay.ms=0",
        "connection.failed.authentication.limit=3",
        "connection.failed.authentication.backoff.ms=3000",
    ]);
    let out = users(&broker, &["add", "carol", "--password", "carol-right-pw"]);
    assert!(out.status.success());
    let address = broker.listener("SASL_PLAINTEXT");
    let message = |r: &SaslAuthenticateResponse| {
        r.error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default()
    };

    for _ in 0..3 {
        let failed = plain_login(&address, "carol", "carol-guess-pw");
        assert_eq!(failed.error_code, 58);
        assert!(
            message(&failed).contains("invalid credentials"),
            "{failed:?}"
        );
    }
    // Now even the right password is refused, with a message saying why.
    for password in ["carol-right-pw", "carol-guess-pw"] {
        let refused = plain_login(&address, "carol", password);
        assert_eq!(refused.error_code, 58);
        assert!(
            message(&refused).contains("too many failed authentication attempts from 127.0.0.1"),
            "{refused:?}"
        );
    }
    // After the back-off the address may log in again.
    poll_until(Duration::from_secs(30), "the back-off to end", || {
        let answer = plain_login(&address, "carol", "carol-right-pw");
        (answer.error_code == 0).then_some(())
    });

    let log = std::fs::read_to_string(&broker.stderr_log).unwrap();
    assert_eq!(log.matches("too many failed logins").count(), 1, "{log}");
    assert!(log.contains("127.0.0.1"));
    assert!(!log.contains("carol-guess-pw") && !log.contains("carol-right-pw"));
}
