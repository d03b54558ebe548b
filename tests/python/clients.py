"""Small helpers to build kafka-python clients for the suite:
plain (non-idempotent) producers and group-less consumers unless a test says otherwise;
idempotence, transactions and groups have their own tests."""
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition


def producer(broker, **kw):
    cfg = dict(
        bootstrap_servers=broker.bootstrap,
        enable_idempotence=False,  # kafka-python 3.x defaults to True; test_transactions.py covers it
        acks="all",  # see test_acks1_produce_is_visible_to_the_next_request
        linger_ms=5,
        batch_size=64 * 1024,
        request_timeout_ms=20000,
        max_block_ms=20000,
    )
    cfg.update(kw)
    return KafkaProducer(**cfg)


def consumer(broker, **kw):
    cfg = dict(
        bootstrap_servers=broker.bootstrap,
        group_id=None,  # no group management: manual assignment only
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=20000,
        fetch_max_wait_ms=100,
    )
    cfg.update(kw)
    return KafkaConsumer(**cfg)


def admin(broker, **kw):
    cfg = dict(bootstrap_servers=broker.bootstrap, request_timeout_ms=20000)
    cfg.update(kw)
    return KafkaAdminClient(**cfg)


def read_all(broker, topic, partitions, expected_total, idle_timeout_s=15.0, max_s=300.0, **kw):
    """Assign the given partitions, seek to beginning, and poll until expected_total records
    arrived, or nothing arrived for idle_timeout_s. Returns {partition: [ConsumerRecord...]}"""
    c = consumer(broker, **kw)
    try:
        tps = [TopicPartition(topic, p) for p in partitions]
        c.assign(tps)
        c.seek_to_beginning(*tps)
        out = {p: [] for p in partitions}
        n = 0
        start = last_progress = time.monotonic()
        while n < expected_total:
            now = time.monotonic()
            if now - last_progress > idle_timeout_s or now - start > max_s:
                break
            batch = c.poll(timeout_ms=500, max_records=5000)
            for tp, recs in batch.items():
                out[tp.partition].extend(recs)
                n += len(recs)
                last_progress = time.monotonic()
        # one extra short poll to catch any unexpected extra (duplicate) records
        for tp, recs in c.poll(timeout_ms=300).items():
            out[tp.partition].extend(recs)
        return out
    finally:
        c.close()
