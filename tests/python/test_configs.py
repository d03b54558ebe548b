"""kafka-python: AlterConfigs and IncrementalAlterConfigs (SET, DELETE, APPEND, SUBTRACT)
on topics and on the broker, visible in DescribeConfigs and kept across a restart;
DeleteRecords; CreatePartitions."""

import shutil

import pytest

from kafka.admin import ConfigResource, ConfigResourceType, NewPartitions, NewTopic

from agentlog_harness import Broker
from clients import admin, producer


def describe(a, kind, name):
    result = a.describe_configs([ConfigResource(kind, name)], config_filter="all")
    return result[kind.name.lower()][name]


def test_incremental_and_full_alter_configs_persist():
    b = Broker({"num.partitions": 1})
    data_dir = b.data_dir
    try:
        a = admin(b)
        try:
            a.create_topics([NewTopic("py-cfg", 1, 1, topic_configs={"retention.ms": "60000"})])
            result = a.alter_configs([
                ConfigResource(ConfigResourceType.TOPIC, "py-cfg", configs={
                    "retention.bytes": ("SET", "1000000"),
                    "cleanup.policy": ("APPEND", "compact"),
                    "retention.ms": ("DELETE", None),
                }),
            ], incremental=True)
            assert result["topic"]["py-cfg"] == "OK", result
            configs = describe(a, ConfigResourceType.TOPIC, "py-cfg")
            assert configs["retention.bytes"]["value"] == "1000000"
            assert configs["retention.bytes"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
            assert configs["cleanup.policy"]["value"] == "delete,compact"
            assert configs["retention.ms"]["value"] == "604800000"  # back to the default
            result = a.alter_configs([
                ConfigResource(ConfigResourceType.TOPIC, "py-cfg", configs={
                    "cleanup.policy": ("SUBTRACT", "delete"),
                }),
            ], incremental=True)
            assert result["topic"]["py-cfg"] == "OK", result
            # APPEND on a non-list setting is refused with INVALID_CONFIG.
            result = a.alter_configs([
                ConfigResource(ConfigResourceType.TOPIC, "py-cfg", configs={
                    "retention.ms": ("APPEND", "5"),
                }),
            ], incremental=True)
            assert "40" in result["topic"]["py-cfg"], result
            # validate_only changes nothing.
            result = a.alter_configs(
                [ConfigResource(ConfigResourceType.TOPIC, "py-cfg", configs={"retention.ms": "1"})],
                validate_only=True, incremental=False)
            assert result["topic"]["py-cfg"] == "OK", result
            assert describe(a, ConfigResourceType.TOPIC, "py-cfg")["retention.ms"]["value"] == "604800000"
            # Broker: dynamic settings are accepted and described as dynamic.
            result = a.alter_configs([
                ConfigResource(ConfigResourceType.BROKER, "1", configs={
                    "log.retention.ms": ("SET", "3600000"),
                }),
            ], incremental=True)
            assert result["broker"]["1"] == "OK", result
        finally:
            a.close()
    finally:
        assert b.stop() == 0, b.stderr_tail()
    b2 = Broker({"num.partitions": 1}, data_dir=data_dir)
    try:
        a = admin(b2)
        try:
            configs = describe(a, ConfigResourceType.TOPIC, "py-cfg")
            assert configs["cleanup.policy"]["value"] == "compact"
            assert configs["retention.bytes"]["value"] == "1000000"
            broker = describe(a, ConfigResourceType.BROKER, "1")
            assert broker["log.retention.ms"]["value"] == "3600000"
            assert broker["log.retention.ms"]["config_source"] == "DYNAMIC_BROKER_CONFIG"
            assert broker["log.retention.ms"]["read_only"] is False
        finally:
            a.close()
    finally:
        assert b2.stop() == 0, b2.stderr_tail()
        b2.cleanup()
        shutil.rmtree(b.tmp, ignore_errors=True)


def test_create_partitions_and_delete_records(broker):
    a = admin(broker)
    try:
        a.create_topics([NewTopic("py-grow", 1, 1)])
        a.create_partitions({"py-grow": NewPartitions(total_count=4)})
        md = a.describe_topics(["py-grow"])
        assert len(md[0]["partitions"]) == 4
        p = producer(broker)
        try:
            for i in range(100):
                p.send("py-grow", value=b"v%d" % i, partition=0)
            p.flush()
        finally:
            p.close()
        from kafka.structs import TopicPartition
        result = a.delete_records({TopicPartition("py-grow", 0): 40})
        assert result[TopicPartition("py-grow", 0)]["low_watermark"] == 40, result
    finally:
        a.close()


def test_a_compacted_topic_refuses_keyless_records(broker):
    """Kafka refuses a record without a key on a compacted topic (INVALID_RECORD) and
    writes nothing of its batch: the keyless record's future fails with the record error
    (Produce v8+ record_errors), its batch-mate's with the batch's; keyed records go on."""
    import pytest
    from kafka.errors import InvalidRecordError, KafkaError

    a = admin(broker)
    try:
        a.create_topics([NewTopic("py-compacted", 1, 1, topic_configs={"cleanup.policy": "compact"})])
    finally:
        a.close()
    p = producer(broker, linger_ms=50, retries=0)
    try:
        batch_mate = p.send("py-compacted", key=b"k", value=b"batched with a keyless one")
        keyless = p.send("py-compacted", value=b"no key")
        with pytest.raises(InvalidRecordError, match="without key in topic partition py-compacted-0"):
            keyless.get(timeout=20)
        with pytest.raises(KafkaError, match="part of a batch"):
            batch_mate.get(timeout=20)
        kept = p.send("py-compacted", key=b"k", value=b"kept").get(timeout=20)
        assert kept.offset == 0, "the refused batch took offsets"
    finally:
        p.close()


def test_kafka4_topic_broker_and_group_configs(broker):
    """Every Kafka 4 topic config is accepted and described; invalid values are refused
    with INVALID_CONFIG; the broker reports its read-only identity settings; group
    configs (resource type 32) are validated, stored and described."""
    from kafka.errors import InvalidConfigurationError

    a = admin(broker)
    try:
        kafka4 = {
            "file.delete.delay.ms": "1000", "max.compaction.lag.ms": "600000",
            "flush.messages": "10", "flush.ms": "1000", "local.retention.ms": "-2",
            "local.retention.bytes": "-2", "remote.storage.enable": "false",
            "unclean.leader.election.enable": "true", "segment.jitter.ms": "5",
            "message.timestamp.after.max.ms": "86400000", "cleanup.policy": "",
        }
        a.create_topics([NewTopic("py-k4", 1, 1, topic_configs=kafka4)])
        configs = describe(a, ConfigResourceType.TOPIC, "py-k4")
        for name, value in kafka4.items():
            assert configs[name]["value"] == value, name
            assert configs[name]["config_source"] == "DYNAMIC_TOPIC_CONFIG", name
        assert configs["message.timestamp.before.max.ms"]["value"] == "9223372036854775807"
        for name, bad in [("remote.storage.enable", "true"), ("max.compaction.lag.ms", "0"),
                          ("cleanup.policy", "shred"), ("flush.messages", "ten")]:
            result = a.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "py-k4",
                                                     configs={name: ("SET", bad)})],
                                     incremental=True)
            assert result["topic"]["py-k4"] != "OK", (name, result)
        with pytest.raises(InvalidConfigurationError):
            a.create_topics([NewTopic("py-k4-bad", 1, 1,
                                      topic_configs={"local.retention.ms": "-3"})])

        node = describe(a, ConfigResourceType.BROKER, "1")
        assert node["process.roles"]["value"] == "broker,controller"
        # As configured (the harness binds port 0), as Kafka reports its listeners.
        assert node["listeners"]["value"].startswith(f"PLAINTEXT://{broker.host}:")
        assert node["log.dirs"]["value"]
        assert node["listeners"]["read_only"] is True
        assert node["num.io.threads"]["value"] == "8"
        assert node["sasl.jaas.config"]["value"] is None
        assert node["sasl.jaas.config"]["is_sensitive"] is True
        result = a.alter_configs([ConfigResource(ConfigResourceType.BROKER, "1", configs={
            "background.threads": ("SET", "4")})], incremental=True)
        assert result["broker"]["1"] == "OK", result
        assert describe(a, ConfigResourceType.BROKER, "1")["background.threads"]["value"] == "4"

        group = describe(a, ConfigResourceType.GROUP, "py-group")
        assert group["consumer.session.timeout.ms"]["value"] == "45000"
        assert group["share.record.lock.duration.ms"]["value"] == "30000"
        result = a.alter_configs([ConfigResource(ConfigResourceType.GROUP, "py-group", configs={
            "consumer.session.timeout.ms": ("SET", "50000"),
            "consumer.heartbeat.interval.ms": ("SET", "6000")})], incremental=True)
        assert result["group"]["py-group"] == "OK", result
        group = describe(a, ConfigResourceType.GROUP, "py-group")
        assert group["consumer.session.timeout.ms"]["value"] == "50000"
        assert group["consumer.session.timeout.ms"]["config_source"] == "DYNAMIC_GROUP_CONFIG"
        result = a.alter_configs([ConfigResource(ConfigResourceType.GROUP, "py-group", configs={
            "consumer.session.timeout.ms": ("SET", "1000")})], incremental=True)
        assert result["group"]["py-group"] != "OK", result
    finally:
        a.close()


def test_timestamps_outside_the_topic_bounds_are_refused(broker):
    """message.timestamp.after.max.ms / before.max.ms: a record stamped outside them is
    refused with INVALID_TIMESTAMP naming the record; in-range records are written."""
    import time

    from kafka.errors import InvalidTimestampError

    a = admin(broker)
    try:
        a.create_topics([NewTopic("py-ts", 1, 1, topic_configs={
            "message.timestamp.before.max.ms": "60000"})])
    finally:
        a.close()
    p = producer(broker, retries=0)
    try:
        now = int(time.time() * 1000)
        with pytest.raises(InvalidTimestampError, match="is out of range"):
            p.send("py-ts", value=b"future", timestamp_ms=now + 2 * 3600 * 1000).get(timeout=20)
        with pytest.raises(InvalidTimestampError, match="is out of range"):
            p.send("py-ts", value=b"past", timestamp_ms=now - 3600 * 1000).get(timeout=20)
        kept = p.send("py-ts", value=b"now", timestamp_ms=now).get(timeout=20)
        assert kept.offset == 0, "a refused batch took offsets"
    finally:
        p.close()
