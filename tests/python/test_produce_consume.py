"""kafka-python: 100,000 keyed records with headers over every codec, read back exactly."""
import collections
import time

import kafka.record.default_records as default_records

from clients import admin, producer, read_all

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]
PER_CODEC = 20_000
PARTITIONS = 3
TOPIC = "py-codecs"


def expected_record(codec_idx, i, t0):
    codec = CODECS[codec_idx] or "none"
    g = codec_idx * PER_CODEC + i  # global sequence number
    key = f"{codec}-{i:06d}".encode()
    if i % 997 == 0:
        value = None  # tombstone: null value must survive
    else:
        value = (f"v:{codec}:{i}:".encode() * (1 + i % 7))[: 10 + (i * 37) % 300]
    headers = [("codec", codec.encode()), ("seq", str(g).encode())]
    if i % 5 == 0:
        headers.append(("empty", b""))
    if i % 11 == 0:  # repeated header keys keep their order
        headers += [("dup", b"1"), ("dup", b"2"), ("bin", bytes(range(256)))]
    return dict(key=key, value=value, headers=headers, timestamp=t0 + g, partition=g % PARTITIONS)


def count_decompressions(monkeypatch):
    """Count kafka-python's batch decompressions per codec while reading back: agentlog must
    store (and serve) each batch with the codec the producer used, as Kafka does with
    compression.type=producer."""
    counts = collections.Counter()
    for name in ("gzip_decode", "snappy_decode", "lz4_decode", "zstd_decode"):
        orig = getattr(default_records, name)

        def wrapped(data, _orig=orig, _name=name.split("_")[0]):
            counts[_name] += 1
            return _orig(data)
        monkeypatch.setattr(default_records, name, wrapped)
    return counts


def test_produce_consume_all_codecs(broker, monkeypatch):
    a = admin(broker)
    try:
        a.create_topics({TOPIC: {"num_partitions": PARTITIONS, "replication_factor": 1}})
    finally:
        a.close()

    t0 = int(time.time() * 1000) - 3_600_000
    expected = {}
    t_start = time.monotonic()
    for ci, codec in enumerate(CODECS):
        p = producer(broker, compression_type=codec)
        try:
            futures = []
            for i in range(PER_CODEC):
                r = expected_record(ci, i, t0)
                expected[r["key"]] = r
                futures.append(p.send(TOPIC, key=r["key"], value=r["value"], headers=r["headers"],
                                      partition=r["partition"], timestamp_ms=r["timestamp"]))
            p.flush(timeout=60)
            for f in futures:
                md = f.get(timeout=30)
                assert md.topic == TOPIC
                assert md.offset >= 0
        finally:
            p.close()
    produce_s = time.monotonic() - t_start
    total = len(CODECS) * PER_CODEC
    assert len(expected) == total

    t_read = time.monotonic()
    decompressed = count_decompressions(monkeypatch)
    got = read_all(broker, TOPIC, range(PARTITIONS), total)
    read_s = time.monotonic() - t_read
    print(f"produced {total} records in {produce_s:.1f}s, read back in {read_s:.1f}s")

    n_got = sum(len(v) for v in got.values())
    assert n_got == total, f"read back {n_got} of {total} records " + \
        str({p: len(v) for p, v in got.items()})

    seen = set()
    for part, recs in got.items():
        offsets = [r.offset for r in recs]
        assert offsets == list(range(len(recs))), \
            f"partition {part}: offsets not contiguous from 0 (first bad at " \
            f"{next(i for i, o in enumerate(offsets) if o != i)})"
        assert len(recs) == total // PARTITIONS + (1 if part < total % PARTITIONS else 0)
        last_ts = None
        for r in recs:
            exp = expected.get(r.key)
            assert exp is not None, f"unexpected key {r.key!r} at {part}/{r.offset}"
            assert r.key not in seen, f"duplicate key {r.key!r}"
            seen.add(r.key)
            assert r.partition == exp["partition"] == part
            assert r.value == exp["value"], f"value mismatch for {r.key!r}"
            assert list(r.headers) == exp["headers"], f"headers mismatch for {r.key!r}: {r.headers}"
            assert r.timestamp == exp["timestamp"], f"timestamp mismatch for {r.key!r}"
            assert r.timestamp_type == 0, "expected CreateTime timestamps"
            # within one partition the producer sent in sequence order
            if last_ts is not None:
                assert r.timestamp > last_ts
            last_ts = r.timestamp
    assert len(seen) == total
    for codec in ("gzip", "snappy", "lz4", "zstd"):
        assert decompressed[codec] > 0, f"no {codec} batch came back: {dict(decompressed)}"
