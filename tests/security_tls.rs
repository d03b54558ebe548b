//! TLS identity and certificates with real clients: an SSL client's principal is its
//! certificate's subject mapped by `ssl.principal.mapping.rules` (and ACLs on that
//! principal allow or deny rdkafka's produce and consume), and certificates reload
//! without dropping open connections.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::certs::{first_certificate, make_certificates, served_certificate, sign, tls_client};
use common::{base_config, poll_until, BrokerProcess};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::{ApiVersionsRequest, CreateAclsRequest};
use kafka_protocol::protocol::StrBytes;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message};

/// rdkafka over SSL trusting the test CA, with `dir/NAME.crt`/`.key` if given.
fn ssl_config(address: &str, dir: &Path, certificate: Option<&str>) -> ClientConfig {
    let mut config = base_config(address);
    config
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", dir.join("ca.crt").to_str().unwrap())
        .set("enable.idempotence", "false")
        .set("message.timeout.ms", "10000");
    if let Some(name) = certificate {
        let path = |ext: &str| dir.join(format!("{name}.{ext}")).display().to_string();
        config
            .set("ssl.certificate.location", path("crt"))
            .set("ssl.key.location", path("key"));
    }
    config
}

fn allow(principal: &str, resource_type: i8, name: &str, operation: i8) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(StrBytes::from_string(name.to_string()))
        .with_resource_pattern_type(3) // LITERAL
        .with_principal(StrBytes::from_string(principal.to_string()))
        .with_host(StrBytes::from_static_str("*"))
        .with_operation(operation)
        .with_permission_type(3) // ALLOW
}

const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const READ: i8 = 3;
const WRITE: i8 = 4;

async fn produce(config: &ClientConfig, topic: &str, payload: &str) -> Result<(), KafkaError> {
    let producer: FutureProducer = config.create().unwrap();
    producer
        .send(
            FutureRecord::<(), _>::to(topic).payload(payload),
            Duration::from_secs(15),
        )
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

#[tokio::test]
async fn certificate_subjects_are_mapped_principals_that_acls_allow_and_deny() {
    let certs = make_certificates();
    let dir = certs.path();
    sign(dir, "alice", "/O=acme/OU=eng/CN=alice", false);
    sign(dir, "admin", "/O=acme/OU=eng/CN=Admin", false);
    sign(dir, "mallory", "/O=evil/CN=mallory", false);
    let broker = BrokerProcess::start(&[
        "listeners=SSL://127.0.0.1:0",
        &format!("ssl.keystore.location={}", dir.join("broker.pem").display()),
        &format!("ssl.truststore.location={}", dir.join("ca.crt").display()),
        "ssl.client.auth=requested",
        // acme's engineers by their lower-cased common name, anyone else by full DN.
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+),OU=eng,O=acme$/$1/L,DEFAULT",
        "authorizer.enable=true",
        "super.users=User:admin",
        "num.partitions=1",
    ]);
    let address = broker.listener("SSL");

    // The admin certificate maps to User:admin, a super user: it creates the topics
    // and the ACLs.
    let admin: AdminClient<DefaultClientContext> =
        ssl_config(&address, dir, Some("admin")).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topics = [
        NewTopic::new("payments", 1, TopicReplication::Fixed(1)),
        NewTopic::new("open", 1, TopicReplication::Fixed(1)),
    ];
    let created = admin.create_topics(&topics, &options).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let mut raw = tls_client(&address, dir, Some("admin"));
    let response = raw.call(
        &CreateAclsRequest::default().with_creations(vec![
            allow("User:alice", TOPIC, "payments", WRITE),
            allow("User:alice", TOPIC, "payments", READ),
            allow("User:alice", GROUP, "alice-group", READ),
            allow("User:ANONYMOUS", TOPIC, "open", WRITE),
            allow("User:CN=mallory,O=evil", TOPIC, "open", WRITE),
        ]),
        2,
    );
    assert!(
        response.results.iter().all(|r| r.error_code == 0),
        "{response:?}"
    );

    // alice (CN=alice,OU=eng,O=acme -> alice) may write and read payments.
    let alice = ssl_config(&address, dir, Some("alice"));
    for i in 0..3 {
        produce(&alice, "payments", &format!("p{i}"))
            .await
            .expect("alice may write payments");
    }
    let mut reader = alice.clone();
    reader
        .set("group.id", "alice-group")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = reader.create().unwrap();
    consumer.subscribe(&["payments"]).unwrap();
    let mut seen = Vec::new();
    poll_until(Duration::from_secs(60), "alice reads 3 records", || {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("alice may read payments");
            seen.push(message.payload().unwrap().to_vec());
        }
        (seen.len() == 3).then_some(())
    });
    assert_eq!(seen, [b"p0", b"p1", b"p2"]);

    // mallory (no rule but DEFAULT: User:CN=mallory,O=evil) may write open only.
    let mallory = ssl_config(&address, dir, Some("mallory"));
    produce(&mallory, "open", "m")
        .await
        .expect("mallory may write open");
    let denied = produce(&mallory, "payments", "m").await.unwrap_err();
    assert_eq!(
        denied.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{denied}"
    );
    let mut sneak = mallory.clone();
    sneak
        .set("group.id", "alice-group")
        .set("auto.offset.reset", "earliest");
    let sneak: BaseConsumer = sneak.create().unwrap();
    sneak.subscribe(&["payments"]).unwrap();
    let error = poll_until(
        Duration::from_secs(30),
        "mallory is refused",
        || match sneak.poll(Duration::from_millis(200)) {
            Some(Err(error)) => Some(error),
            Some(Ok(message)) => panic!("mallory read {message:?}"),
            None => None,
        },
    );
    assert!(
        matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
            )
        ),
        "{error}"
    );

    // No certificate on SSL: User:ANONYMOUS, which may write open but not payments.
    let anonymous = ssl_config(&address, dir, None);
    produce(&anonymous, "open", "a")
        .await
        .expect("anonymous may write open");
    let denied = produce(&anonymous, "payments", "a").await.unwrap_err();
    assert_eq!(
        denied.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}

#[test]
fn a_malformed_mapping_rule_stops_start_up_with_kafkas_message() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(["--set", "ssl.principal.mapping.rules=RULE:^CN=(.*)$/$1/L/U"])
        .env_remove("AGENTLOG_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("invalid rule: `RULE:^CN=(.*)$/$1/L/U`, unmatched substring: `/U`"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("listening"));
}

/// Writes `bytes` to `path` the way deployment tools do: a new file renamed over it.
fn replace(path: &Path, bytes: &[u8]) {
    let temp = path.with_extension("new");
    std::fs::write(&temp, bytes).unwrap();
    std::fs::rename(&temp, path).unwrap();
}

fn wait_for_log(broker: &BrokerProcess, needle: &str, count: usize) {
    poll_until(Duration::from_secs(30), needle, || {
        let log = std::fs::read_to_string(&broker.stderr_log).unwrap_or_default();
        (log.matches(needle).count() >= count).then_some(())
    });
}

#[test]
fn certificates_reload_on_file_change_and_sighup_without_dropping_connections() {
    let certs = make_certificates();
    let dir = certs.path();
    let keystore = dir.join("broker.pem");
    let original = first_certificate(&keystore);
    sign(dir, "renewed", "/O=agentlog/CN=localhost", true);
    sign(dir, "renewed-again", "/O=agentlog-2/CN=localhost", true);
    let broker = BrokerProcess::start(&[
        "listeners=SSL://127.0.0.1:0",
        &format!("ssl.keystore.location={}", keystore.display()),
        "ssl.reload.interval.ms=200",
    ]);
    let address = broker.listener("SSL");
    let mut open = tls_client(&address, dir, None);
    assert_eq!(served_certificate(&open), original);
    open.call(&ApiVersionsRequest::default(), 3);

    // A broken file is logged and changes nothing.
    replace(&keystore, b"-----BEGIN CERTIFICATE-----\ngarbage\n");
    wait_for_log(&broker, "TLS reload failed", 1);
    assert_eq!(
        served_certificate(&tls_client(&address, dir, None)),
        original
    );

    // A renewed certificate: new connections get it, the open one keeps working.
    let renewed = std::fs::read(dir.join("renewed.pem")).unwrap();
    replace(&keystore, &renewed);
    let renewed = first_certificate(&dir.join("renewed.pem"));
    assert_ne!(renewed, original);
    poll_until(Duration::from_secs(30), "the renewed certificate", || {
        (served_certificate(&tls_client(&address, dir, None)) == renewed).then_some(())
    });
    let versions = open.call(&ApiVersionsRequest::default(), 3);
    assert_eq!(versions.error_code, 0);
    assert_eq!(served_certificate(&open), original);
    drop(broker);

    // Without polling, SIGHUP reloads.
    let broker = BrokerProcess::start(&[
        "listeners=SSL://127.0.0.1:0",
        &format!("ssl.keystore.location={}", keystore.display()),
        "ssl.reload.interval.ms=0",
    ]);
    let address = broker.listener("SSL");
    let mut open = tls_client(&address, dir, None);
    replace(
        &keystore,
        &std::fs::read(dir.join("renewed-again.pem")).unwrap(),
    );
    // No poller: still the certificate it started with.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        served_certificate(&tls_client(&address, dir, None)),
        renewed
    );
    let pid = broker.pid().unwrap().to_string();
    assert!(Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    wait_for_log(&broker, "TLS certificates reloaded", 1);
    let again = first_certificate(&dir.join("renewed-again.pem"));
    assert_eq!(served_certificate(&tls_client(&address, dir, None)), again);
    assert_eq!(open.call(&ApiVersionsRequest::default(), 3).error_code, 0);
}

#[tokio::test]
async fn on_sasl_ssl_the_sasl_user_wins_over_the_certificate() {
    let certs = make_certificates();
    let dir = certs.path();
    sign(dir, "admin", "/O=acme/OU=eng/CN=Admin", false);
    let broker = BrokerProcess::start(&[
        "listeners=SASL_SSL://127.0.0.1:0",
        &format!("ssl.keystore.location={}", dir.join("broker.pem").display()),
        &format!("ssl.truststore.location={}", dir.join("ca.crt").display()),
        "ssl.client.auth=requested",
        "ssl.principal.mapping.rules=RULE:^CN=([^,]+),OU=eng,O=acme$/$1/L,DEFAULT",
        "authorizer.enable=true",
        // The loopback PLAINTEXT listener is the admin door; the certificate's
        // principal would be a super user too.
        "super.users=User:ANONYMOUS;User:admin",
        "num.partitions=1",
    ]);
    let out = Command::new(env!("CARGO_BIN_EXE_agentlog"))
        .args(["users", "add", "bob", "--password", "bob-secret-pw"])
        .args(["-b", &broker.bootstrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin: AdminClient<DefaultClientContext> =
        base_config(&broker.bootstrap()).create().unwrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new("ledger", 1, TopicReplication::Fixed(1));
    let created = admin.create_topics([&topic], &options).await.unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // bob presents the certificate that maps to User:admin, but is User:bob, who has
    // no ACLs: refused.
    let mut bob = ssl_config(&broker.listener("SASL_SSL"), dir, Some("admin"));
    bob.set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-256")
        .set("sasl.username", "bob")
        .set("sasl.password", "bob-secret-pw");
    let denied = produce(&bob, "ledger", "b").await.unwrap_err();
    assert_eq!(
        denied.rdkafka_error_code(),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed),
        "{denied}"
    );
}
