"""kafka-python against small segments and a broker restart on the same data dir:
offsets, timestamps and ListOffsets must survive a graceful stop/start."""
import shutil
import time
from pathlib import Path

from kafka import TopicPartition

from agentlog_harness import Broker
from clients import admin, consumer, producer, read_all

SETTINGS = {"num.partitions": 2, "log.segment.bytes": 64 * 1024}


def _produce(b, topic, start, n, t0, codec):
    p = producer(b, compression_type=codec, batch_size=16 * 1024)
    try:
        for i in range(start, start + n):
            p.send(topic, key=b"k%06d" % i, value=b"value-%06d-" % i + b"x" * (i % 200),
                   headers=[("i", str(i).encode())], partition=i % 2, timestamp_ms=t0 + i)
        p.flush(timeout=60)
    finally:
        p.close()


def _check(b, topic, n, t0):
    got = read_all(b, topic, [0, 1], n, idle_timeout_s=10)
    for part in (0, 1):
        recs = got[part]
        want = [i for i in range(n) if i % 2 == part]
        assert [r.offset for r in recs] == list(range(len(want))), f"partition {part} offsets"
        assert [r.key for r in recs] == [b"k%06d" % i for i in want]
        assert [r.timestamp for r in recs] == [t0 + i for i in want]
        assert [r.value for r in recs] == [b"value-%06d-" % i + b"x" * (i % 200) for i in want]
        assert [list(r.headers) for r in recs] == [[("i", str(i).encode())] for i in want]
    tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
    c = consumer(b)
    try:
        assert c.end_offsets(tps) == {tps[0]: (n + 1) // 2, tps[1]: n // 2}
        assert c.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
        # record i is at offset i // 2 of partition i % 2; ask for ts between records
        for i in (1, 777, n - 3):  # odd: partition 1, offset i // 2; previous record is on p0
            r = c.offsets_for_times({tps[1]: t0 + i - 1})[tps[1]]
            assert (r.offset, r.timestamp) == (i // 2, t0 + i)
        r = c.offsets_for_times({tps[0]: t0 + n + 5})[tps[0]]
        assert r is None
    finally:
        c.close()


def test_many_segments_survive_restart():
    topic = "py-restart"
    n1, n2 = 4000, 2000
    t0 = int(time.time() * 1000) - 3_600_000
    b = Broker(SETTINGS)
    data_dir = b.data_dir
    try:
        a = admin(b)
        try:
            a.create_topics({topic: {"num_partitions": 2, "replication_factor": 1}})
        finally:
            a.close()
        a = admin(b)
        try:
            cluster_id = a.describe_cluster()["cluster_id"]
        finally:
            a.close()
        _produce(b, topic, 0, n1 // 2, t0, None)
        _produce(b, topic, n1 // 2, n1 // 2, t0, "gzip")
        _check(b, topic, n1, t0)
    finally:
        assert b.stop() == 0, b.stderr_tail()
    # with 64 KiB segments the ~1 MB written must have rolled into many segment files
    segments = list(Path(data_dir).rglob("*.log"))
    assert len(segments) >= 6, f"expected several segments, found {segments}"

    b2 = Broker(SETTINGS, data_dir=data_dir)
    try:
        a = admin(b2)
        try:
            assert a.describe_cluster()["cluster_id"] == cluster_id, "cluster id must persist"
            assert topic in a.list_topics()
        finally:
            a.close()
        _check(b2, topic, n1, t0)  # everything is still there after a restart
        _produce(b2, topic, n1, n2, t0, "lz4")  # and offsets continue where they were
        _check(b2, topic, n1 + n2, t0)
    finally:
        assert b2.stop() == 0, b2.stderr_tail()
        b2.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)
