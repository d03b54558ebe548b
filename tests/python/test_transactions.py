"""kafka-python: idempotent and transactional producers, read_committed consumers."""
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from clients import admin, read_all

TOPIC = "py-txn"


def _create(broker, name, partitions=1):
    a = admin(broker)
    try:
        a.create_topics({name: {"num_partitions": partitions, "replication_factor": 1}})
    finally:
        a.close()


def _values(records):
    return [r.value for r in records]


def test_idempotent_producer_writes_every_record_once(broker):
    _create(broker, "py-idem", 2)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=5, request_timeout_ms=20000, max_block_ms=20000)
    try:
        for i in range(10_000):
            p.send("py-idem", value=b"m%05d" % i, partition=i % 2)
        p.flush(timeout=60)
    finally:
        p.close()
    out = read_all(broker, "py-idem", [0, 1], 10_000)
    assert _values(out[0]) == [b"m%05d" % i for i in range(0, 10_000, 2)]
    assert _values(out[1]) == [b"m%05d" % i for i in range(1, 10_000, 2)]


def test_transactions_commit_abort_and_read_committed(broker):
    _create(broker, TOPIC)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="py-tx",
                      request_timeout_ms=20000, max_block_ms=20000)
    try:
        p.init_transactions()
        p.begin_transaction()
        for i in range(5):
            p.send(TOPIC, value=b"aborted-%d" % i, partition=0)
        p.flush()
        p.abort_transaction()
        p.begin_transaction()
        for i in range(5):
            p.send(TOPIC, value=b"committed-%d" % i, partition=0)
        p.commit_transaction()
    finally:
        p.close()

    committed = read_all(broker, TOPIC, [0], 5, idle_timeout_s=3, isolation_level="read_committed")
    assert _values(committed[0]) == [b"committed-%d" % i for i in range(5)]
    everything = read_all(broker, TOPIC, [0], 10, idle_timeout_s=3)
    assert sorted(_values(everything[0])) == sorted(
        [b"aborted-%d" % i for i in range(5)] + [b"committed-%d" % i for i in range(5)])


def test_an_open_transaction_holds_read_committed_consumers(broker):
    _create(broker, "py-lso")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id="py-lso-tx",
                      request_timeout_ms=20000, max_block_ms=20000)
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      isolation_level="read_committed", fetch_max_wait_ms=100)
    try:
        p.init_transactions()
        p.begin_transaction()
        p.send("py-lso", value=b"pending", partition=0)
        p.flush()
        tp = TopicPartition("py-lso", 0)
        c.assign([tp])
        c.seek_to_beginning(tp)
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            assert not c.poll(timeout_ms=200), "read past the last stable offset"
        assert c.end_offsets([tp])[tp] == 0  # LATEST for read_committed is the LSO
        p.commit_transaction()
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=200).values():
                got.extend(r.value for r in recs)
        assert got == [b"pending"]
    finally:
        c.close()
        p.close()
