"""kafka-python over SASL_PLAINTEXT with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512, users
created with `agentlog users`, and over SASL_SSL with the test CA; wrong passwords are
refused with Kafka's error and nothing is written."""
import os
import subprocess
import tempfile

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from agentlog_harness import REPO_ROOT, agentlog_bin


@pytest.fixture(scope="module")
def certs():
    with tempfile.TemporaryDirectory() as d:
        subprocess.run([str(REPO_ROOT / "scripts" / "make-test-certs.sh"), d], check=True,
                       stdout=subprocess.DEVNULL)
        yield d


@pytest.fixture
def secured(broker_factory, certs):
    b = broker_factory({
        "listeners": "SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        "ssl.keystore.location": os.path.join(certs, "broker.pem"),
        "num.partitions": 1,
    })
    subprocess.run([agentlog_bin(), "users", "add", "carol", "-b", b.bootstrap],
                   input=b"c4rol-pw\n", check=True, capture_output=True)
    return b


def _sasl(mechanism, password="c4rol-pw"):
    return dict(sasl_mechanism=mechanism, sasl_plain_username="carol",
                sasl_plain_password=password)


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_kafka_python_sasl_plaintext_round_trip(secured, mechanism):
    address = secured.listener("SASL_PLAINTEXT")
    topic = f"sasl-{mechanism.lower()}"
    producer = KafkaProducer(bootstrap_servers=address, security_protocol="SASL_PLAINTEXT",
                             **_sasl(mechanism))
    for i in range(5):
        producer.send(topic, f"{mechanism}-{i}".encode()).get(timeout=30)
    producer.close()
    consumer = KafkaConsumer(bootstrap_servers=address, security_protocol="SASL_PLAINTEXT",
                             auto_offset_reset="earliest", consumer_timeout_ms=10000,
                             **_sasl(mechanism))
    consumer.assign([TopicPartition(topic, 0)])
    values = [m.value.decode() for m in consumer]
    consumer.close()
    assert values == [f"{mechanism}-{i}" for i in range(5)]


def test_kafka_python_scram_over_sasl_ssl(secured, certs):
    address = secured.listener("SASL_SSL")
    producer = KafkaProducer(bootstrap_servers=address, security_protocol="SASL_SSL",
                             ssl_cafile=os.path.join(certs, "ca.crt"),
                             **_sasl("SCRAM-SHA-256"))
    producer.send("over-tls", b"hello").get(timeout=30)
    producer.close()


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_wrong_password_is_refused_and_writes_nothing(secured, mechanism):
    address = secured.listener("SASL_PLAINTEXT")
    with pytest.raises(KafkaError):
        producer = KafkaProducer(bootstrap_servers=address, security_protocol="SASL_PLAINTEXT",
                                 max_block_ms=5000, **_sasl(mechanism, "not-the-password"))
        producer.send("refused", b"x").get(timeout=10)
    assert "authentication failed" in secured.stderr_tail()
    assert "not-the-password" not in secured.stderr_tail(100000)
    # nothing was written: the topic does not even exist
    listed = subprocess.run([agentlog_bin(), "topic", "list", "-b", secured.bootstrap],
                            check=True, capture_output=True, text=True).stdout
    assert "refused" not in listed
