"""kafka-python: fetch positioning and size limits with Kafka's error semantics."""
import time

import pytest
from kafka import TopicPartition
from kafka import errors as Errors

from clients import admin, consumer, producer


def _fill(b, topic, n, partition=0, **kw):
    p = producer(b, **kw)
    try:
        for i in range(n):
            p.send(topic, key=b"k%d" % i, value=b"v%d" % i, partition=partition)
        p.flush(timeout=30)
    finally:
        p.close()


def _poll_until(c, n, timeout_s=15):
    out = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for recs in c.poll(timeout_ms=300).values():
            out.extend(recs)
    return out


def test_seek_into_the_middle_of_a_batch(broker):
    topic = "py-seek"
    _fill(broker, topic, 50, linger_ms=50)  # few large batches
    tp = TopicPartition(topic, 0)
    c = consumer(broker)
    try:
        c.assign([tp])
        c.seek(tp, 17)
        recs = _poll_until(c, 33)
        assert [r.offset for r in recs] == list(range(17, 50))
        assert [r.value for r in recs] == [b"v%d" % i for i in range(17, 50)]
        assert c.position(tp) == 50
    finally:
        c.close()


def test_offset_out_of_range_resets_per_policy(broker):
    topic = "py-oor"
    _fill(broker, topic, 10)
    tp = TopicPartition(topic, 0)
    # earliest: OFFSET_OUT_OF_RANGE from the broker makes the client restart at 0
    c = consumer(broker, auto_offset_reset="earliest")
    try:
        c.assign([tp])
        c.seek(tp, 1000)
        recs = _poll_until(c, 10)
        assert [r.offset for r in recs] == list(range(10))
    finally:
        c.close()
    # no reset policy: the error surfaces to the application
    c = consumer(broker, auto_offset_reset="none")
    try:
        c.assign([tp])
        c.seek(tp, 1000)
        with pytest.raises(Errors.OffsetOutOfRangeError):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                c.poll(timeout_ms=300)
    finally:
        c.close()


def test_message_max_bytes_is_enforced(broker_factory):
    b = broker_factory({"num.partitions": 1, "message.max.bytes": 20000})
    a = admin(b)
    try:
        a.create_topics({"py-big-override": {"num_partitions": 1, "replication_factor": 1,
                                             "configs": {"max.message.bytes": "200000"}}})
    finally:
        a.close()
    p = producer(b, max_request_size=4 * 1024 * 1024, retries=0, linger_ms=0)
    try:
        # under the limit: fine
        assert p.send("py-big", value=b"x" * 10000).get(timeout=30).offset == 0
        # over the broker-wide limit: MESSAGE_TOO_LARGE (10) from the broker
        with pytest.raises(Errors.MessageSizeTooLargeError):
            p.send("py-big", value=b"y" * 100000).get(timeout=30)
        # the topic-level max.message.bytes override raises the limit for that topic
        assert p.send("py-big-override", value=b"z" * 100000).get(timeout=30).offset == 0
        with pytest.raises(Errors.MessageSizeTooLargeError):
            p.send("py-big-override", value=b"z" * 300000).get(timeout=30)
    finally:
        p.close()
    # nothing of the rejected batches was stored
    c = consumer(b)
    try:
        tps = [TopicPartition("py-big", 0), TopicPartition("py-big-override", 0)]
        assert c.end_offsets(tps) == {tps[0]: 1, tps[1]: 1}
    finally:
        c.close()


def test_large_records_round_trip(broker):
    topic = "py-large"
    values = [bytes([i % 251]) * (500_000 + i) for i in range(4)]
    p = producer(broker, max_request_size=4 * 1024 * 1024, linger_ms=0)
    try:
        for v in values:
            p.send(topic, value=v, partition=0)
        p.flush(timeout=60)
    finally:
        p.close()
    tp = TopicPartition(topic, 0)
    c = consumer(broker, max_partition_fetch_bytes=64 * 1024)  # smaller than one record
    try:
        c.assign([tp])
        c.seek_to_beginning(tp)
        recs = _poll_until(c, 4, timeout_s=30)
        # Kafka returns at least one whole batch even when it exceeds the fetch size limits
        assert [r.offset for r in recs] == [0, 1, 2, 3]
        assert [r.value for r in recs] == values
    finally:
        c.close()
