"""Share groups (KIP-932) with confluent-kafka's ShareConsumer (librdkafka 2.16) against
the real binary: members of one share group split a topic's records, acknowledgements
(accept, release, reject) are honoured, and after a SIGKILL of the broker nothing
acknowledged comes back and nothing unacknowledged is lost.

Part of the confluent-kafka suite (scripts/test.sh runs it with AGENTLOG_BIN set).
"""
import signal
import time

import pytest

confluent_kafka = pytest.importorskip("confluent_kafka")
if not hasattr(confluent_kafka, "ShareConsumer"):
    pytest.skip("this confluent-kafka has no ShareConsumer", allow_module_level=True)

from confluent_kafka import AcknowledgeType, Producer, ShareConsumer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

from agentlog_harness import Broker  # noqa: E402


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def produce(bootstrap, topic, values):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for value in values:
        producer.produce(topic, value=value.encode())
    assert producer.flush(30) == 0


def share_consumer(bootstrap, group, topic):
    consumer = ShareConsumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "share.acknowledgement.mode": "explicit",
    })
    consumer.subscribe([topic])
    return consumer


def started(bootstrap, topic, consumers):
    """Share-partitions start at the end of the log (share.auto.offset.reset=latest):
    produce probes until one is delivered, so the records that follow are all seen.
    Probes are accepted and left out."""
    deadline = time.monotonic() + 60
    i = 0
    while time.monotonic() < deadline:
        produce(bootstrap, topic, [f"probe-{i}"])
        i += 1
        for consumer in consumers:
            messages = [m for m in consumer.poll(0.5) if m.error() is None]
            for m in messages:
                consumer.acknowledge(m)
            consumer.commit_sync()
            if messages:
                return
    raise AssertionError("no probe was ever delivered")


def drain(consumers, want, ack=AcknowledgeType.ACCEPT, timeout=60):
    """Polls every consumer round robin, acknowledging with `ack`, until `want` data
    records arrived; returns {value: [consumer index, ...]}."""
    seen = {}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in seen.values()) < want and time.monotonic() < deadline:
        for index, consumer in enumerate(consumers):
            for m in consumer.poll(0.2):
                assert m.error() is None, m.error()
                value = m.value().decode()
                consumer.acknowledge(m, ack)
                if not value.startswith("probe-"):
                    seen.setdefault(value, []).append(index)
            consumer.commit_sync()
    return seen


def test_share_consumers_split_records_and_acknowledgements_hold():
    broker = Broker({"num.partitions": 3, "group.share.record.lock.duration.ms": 5000})
    try:
        create_topic(broker.bootstrap, "work", 3)
        a = share_consumer(broker.bootstrap, "crew", "work")
        b = share_consumer(broker.bootstrap, "crew", "work")
        started(broker.bootstrap, "work", [a, b])
        values = [f"job-{i}" for i in range(300)]
        produce(broker.bootstrap, "work", values)
        seen = drain([a, b], len(values))
        assert sorted(seen) == sorted(values)
        assert all(len(who) == 1 for who in seen.values()), "each record once"
        # Accepted records are never delivered again.
        assert drain([a, b], 1, timeout=2) == {}

        # Released records come back (to someone); rejected ones never do.
        produce(broker.bootstrap, "work", ["again", "never"])
        got = {}
        deadline = time.monotonic() + 30
        while len(got) < 2 and time.monotonic() < deadline:
            for consumer in (a, b):
                for m in consumer.poll(0.2):
                    value = m.value().decode()
                    got[value] = m
                    kind = AcknowledgeType.RELEASE if value == "again" else AcknowledgeType.REJECT
                    consumer.acknowledge(m, kind)
                consumer.commit_sync()
        assert set(got) == {"again", "never"}
        again = drain([a, b], 1, timeout=30)
        assert list(again) == ["again"], again
        assert drain([a, b], 1, timeout=2) == {}, "rejected records never come back"
        a.close()
        b.close()
    finally:
        assert broker.stop() == 0
        broker.cleanup()


def test_sigkill_loses_no_unacknowledged_record_and_redelivers_no_acknowledged_one():
    broker = Broker({"num.partitions": 1})
    data_dir = broker.data_dir
    try:
        create_topic(broker.bootstrap, "jobs", 1)
        consumer = share_consumer(broker.bootstrap, "workers", "jobs")
        started(broker.bootstrap, "jobs", [consumer])
        values = [f"job-{i}" for i in range(100)]
        produce(broker.bootstrap, "jobs", values)
        acked = set()
        deadline = time.monotonic() + 60
        while len(acked) < 50 and time.monotonic() < deadline:
            messages = list(consumer.poll(0.5))
            for m in messages:
                value = m.value().decode()
                # Accept the first half; the rest stays acquired, unacknowledged.
                if len(acked) < 50 and not value.startswith("probe-"):
                    consumer.acknowledge(m, AcknowledgeType.ACCEPT)
                    acked.add(value)
                else:
                    consumer.acknowledge(m, AcknowledgeType.RELEASE)
            results = consumer.commit_sync()
            assert all(error is None for error in results.values()), results
        assert len(acked) == 50
        # Take the rest and hold it: in flight when the broker dies.
        held = [m for m in consumer.poll(2.0)]
        assert broker.stop(sig=signal.SIGKILL) != 0
    finally:
        broker.stop()
    restarted = Broker({"num.partitions": 1}, data_dir=data_dir)
    try:
        fresh = share_consumer(restarted.bootstrap, "workers", "jobs")
        seen = drain([fresh], 100 - len(acked), timeout=90)
        assert not (set(seen) & acked), "acknowledged records were delivered again"
        assert set(seen) == set(values) - acked, "unacknowledged records were lost"
        assert all(m.error() is None for m in held)
        fresh.close()
    finally:
        assert restarted.stop() == 0
        restarted.cleanup()
        broker.cleanup()
