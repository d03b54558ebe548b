"""kcat (librdkafka 2.0.x, Debian's kcat 1.7) against agentlog: metadata, produce with
keys/headers over every codec, consume from the beginning without a group, offsets by time."""
import json
import shutil
import subprocess
import time

import pytest

from clients import admin, producer, read_all
from test_produce_consume import count_decompressions

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/test.sh installs it)")

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 300


def kcat(broker, *args, input=None, timeout=60):
    cmd = [KCAT, "-b", broker.bootstrap, "-X", "socket.timeout.ms=20000", *args]
    r = subprocess.run(cmd, input=input, capture_output=True, timeout=timeout)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\nstdout:{r.stdout!r}\nstderr:{r.stderr!r}"
    return r.stdout.decode()


def test_metadata(broker):
    a = admin(broker)
    try:
        a.create_topics({"kc-meta-a": {"num_partitions": 2, "replication_factor": 1},
                         "kc-meta-b": {"num_partitions": 1, "replication_factor": 1}})
    finally:
        a.close()
    md = json.loads(kcat(broker, "-L", "-J"))
    assert len(md["brokers"]) == 1
    bid = md["brokers"][0]["id"]
    assert md["brokers"][0]["name"] == broker.bootstrap
    assert md["controllerid"] == bid
    topics = {t["topic"]: t for t in md["topics"]}
    assert set(topics) == {"kc-meta-a", "kc-meta-b"}
    for name, n in (("kc-meta-a", 2), ("kc-meta-b", 1)):
        parts = sorted(topics[name]["partitions"], key=lambda p: p["partition"])
        assert [p["partition"] for p in parts] == list(range(n))
        for p in parts:
            assert p["leader"] == bid
            assert p["replicas"] == [{"id": bid}]
            assert p["isrs"] == [{"id": bid}]
            assert "error" not in p

    text = kcat(broker, "-L", "-t", "kc-meta-a")
    assert text == (
        f"Metadata for kc-meta-a (from broker {bid}: {broker.bootstrap}/{bid}):\n"
        f" 1 brokers:\n"
        f"  broker {bid} at {broker.bootstrap} (controller)\n"
        f" 1 topics:\n"
        f"  topic \"kc-meta-a\" with 2 partitions:\n"
        f"    partition 0, leader {bid}, replicas: {bid}, isrs: {bid}\n"
        f"    partition 1, leader {bid}, replicas: {bid}, isrs: {bid}\n"
    ), text


def test_produce_consume_keys_headers_codecs(broker):
    topic = "kc-data"  # auto-created by the first produce, num.partitions=3
    t_before = int(time.time() * 1000)
    expected = {0: [], 1: [], 2: []}
    for ci, codec in enumerate(CODECS):
        part = ci % 3
        lines = []
        for i in range(PER_CODEC):
            key, value = f"{codec}-key-{i}", f"{codec} value {i} " + "x" * (i % 50)
            lines.append(f"{key}:{value}")
            expected[part].append((key, value, f"codec={codec},n=v:with=equals"))
        data = ("\n".join(lines) + "\n").encode()
        kcat(broker, "-P", "-t", topic, "-p", str(part), "-K:", "-z", codec,
             "-H", f"codec={codec}", "-H", "n=v:with=equals", input=data)
    t_after = int(time.time() * 1000)

    for part in range(3):
        out = kcat(broker, "-C", "-t", topic, "-p", str(part), "-o", "beginning", "-e", "-q",
                   "-f", "%o|%k|%s|%h|%T\\n", timeout=120)
        lines = out.splitlines()
        assert len(lines) == len(expected[part]), \
            f"partition {part}: consumed {len(lines)} records, expected {len(expected[part])}"
        for off, (line, (key, value, headers)) in enumerate(zip(lines, expected[part])):
            o, k, v, h, ts = line.split("|")
            assert (int(o), k, v, h) == (off, key, value, headers), f"partition {part}: {line!r}"
            assert t_before - 1000 <= int(ts) <= t_after + 1000, f"bad timestamp in {line!r}"

    # all partitions in one consumer, record count and the key/value set
    out = kcat(broker, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", "%p %k\\n",
               timeout=120)
    got = sorted(out.splitlines())
    want = sorted(f"{p} {k}" for p, recs in expected.items() for k, _, _ in recs)
    assert got == want

    # cross-client: kafka-python reads what librdkafka wrote
    recs = read_all(broker, topic, [0, 1, 2], len(CODECS) * PER_CODEC, idle_timeout_s=10)
    for part in range(3):
        assert [(r.key.decode(), r.value.decode()) for r in recs[part]] == \
            [(k, v) for k, v, _ in expected[part]]
        assert [r.offset for r in recs[part]] == list(range(len(expected[part])))


# What kcat 1.7.1 (librdkafka 2.0.2) really compresses against agentlog. librdkafka
# decides from ApiVersions whether a codec is usable and otherwise silently sends the batch
# uncompressed ("Broker does not support compression type gzip: not compressing batch"):
#   * gzip/snappy/lz4: librdkafka < 2.8 requires Produce v0 for them (`-d feature,msg`
#     shows "Feature LZ4 ... Enabling" yet "Broker does not support compression type lz4"),
#     and agentlog, like Kafka 4.0 (KIP-896), does not advertise it (librdkafka issue
#     #4956). Same behaviour as against Kafka 4.0; librdkafka 2.12 (the Rust suite)
#     compresses with every codec.
#   * zstd: needs Produce >= 7 and Fetch >= 10, both advertised.
EXPECT_COMPRESSED = {"gzip": False, "snappy": False, "lz4": False, "zstd": True}


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compression_matches_kafka_4(broker, monkeypatch, codec):
    """The records always arrive intact; the codec is used exactly when librdkafka 2.0.2
    would use it against Kafka 4.0 (see EXPECT_COMPRESSED)."""
    topic = f"kc-compress-{codec}"
    data = "".join(f"k{i}:{codec} value {i} {'x' * 40}\n" for i in range(200)).encode()
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", "-z", codec, input=data)
    decompressed = count_decompressions(monkeypatch)
    recs = read_all(broker, topic, [0], 200, idle_timeout_s=10)
    assert [r.value.decode() for r in recs[0]] == \
        [f"{codec} value {i} {'x' * 40}" for i in range(200)]
    expected = EXPECT_COMPRESSED[codec]
    assert (decompressed[codec] > 0) == expected, dict(decompressed)


def test_null_key_and_tombstone(broker):
    topic = "kc-nulls"
    # -Z: empty key/value are sent as NULL
    kcat(broker, "-P", "-t", topic, "-p", "0", "-K:", "-Z", input=b":\nk:\n:v\nk2:v2\n")
    out = kcat(broker, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
               "-f", "%o %K %S [%k] [%s]\\n")
    assert out == ("0 -1 -1 [] []\n"
                   "1 1 -1 [k] []\n"
                   "2 -1 1 [] [v]\n"
                   "3 2 2 [k2] [v2]\n"), out


def test_query_offsets_by_timestamp(broker):
    topic = "kc-times"
    t0 = int(time.time() * 1000) - 600_000
    p = producer(broker, linger_ms=0)
    try:
        for i in range(10):
            p.send(topic, value=b"v%d" % i, partition=0, timestamp_ms=t0 + 10 * i)
        p.flush(timeout=30)
    finally:
        p.close()

    def q(ts):
        out = kcat(broker, "-Q", "-t", f"{topic}:0:{ts}").strip()
        prefix = f"{topic} [0] offset "
        assert out.startswith(prefix), out
        return int(out[len(prefix):])

    assert q(t0) == 0
    assert q(t0 + 25) == 3        # first record with timestamp >= target
    assert q(t0 + 90) == 9
    assert q(t0 + 91) == -1       # after the last record: Kafka returns -1
    assert q(-1) == 10            # -1 = latest (end offset)
    assert q(-2) == 0             # -2 = earliest
