"""kafka-python: auto topic creation, CreateTopics/DeleteTopics via KafkaAdminClient, errors."""

import pytest
from kafka import errors as Errors
from kafka.admin import ConfigResource, ConfigResourceType

from clients import admin, producer


def partitions_of(a, topic):
    md = a.describe_topics([topic])
    assert len(md) == 1
    t = md[0]
    assert t["error_code"] == 0, t
    return sorted(p["partition_index"] for p in t["partitions"])


def test_auto_create_on_produce(broker):
    p = producer(broker)
    try:
        md = p.send("auto-created-by-produce", key=b"k", value=b"v").get(timeout=30)
        assert md.topic == "auto-created-by-produce"
        assert md.partition in (0, 1, 2)
        assert md.offset == 0
        assert p.partitions_for("auto-created-by-produce") == {0, 1, 2}
    finally:
        p.close()
    a = admin(broker)
    try:
        assert "auto-created-by-produce" in a.list_topics()
        assert partitions_of(a, "auto-created-by-produce") == [0, 1, 2]
    finally:
        a.close()


def test_auto_create_on_metadata(broker):
    # KafkaProducer.partitions_for() sends only a Metadata request for that one topic
    # (allow_auto_topic_creation=true); no record is produced.
    p = producer(broker)
    try:
        assert p.partitions_for("auto-created-by-metadata") == {0, 1, 2}
    finally:
        p.close()
    a = admin(broker)
    try:
        assert partitions_of(a, "auto-created-by-metadata") == [0, 1, 2]
    finally:
        a.close()


def test_auto_create_disabled(broker_factory):
    b = broker_factory({"auto.create.topics.enable": "false", "num.partitions": 3})
    p = producer(b, max_block_ms=3000)
    try:
        with pytest.raises(Errors.KafkaTimeoutError):
            p.send("must-not-exist", value=b"v").get(timeout=10)
    finally:
        p.close()
    a = admin(b)
    try:
        assert "must-not-exist" not in a.list_topics()
    finally:
        a.close()


def test_create_and_delete_topics(broker):
    a = admin(broker)
    try:
        res = a.create_topics({
            "created-1": {"num_partitions": 5, "replication_factor": 1},
            "created-2": {"num_partitions": 1, "replication_factor": 1,
                          "configs": {"retention.ms": "3600000"}},
            "created-default": {},  # -1/-1: broker defaults (num.partitions=3)
        })
        assert sorted(t["name"] for t in res["topics"]) == ["created-1", "created-2", "created-default"]
        assert all(t["error_code"] == 0 for t in res["topics"]), res
        by_name = {t["name"]: t for t in res["topics"]}
        # CreateTopics v5+ reports the partition count / replication factor it chose
        assert by_name["created-default"]["num_partitions"] == 3
        assert by_name["created-default"]["replication_factor"] == 1
        assert by_name["created-1"]["num_partitions"] == 5

        topics = set(a.list_topics())
        assert {"created-1", "created-2", "created-default"} <= topics
        assert partitions_of(a, "created-1") == [0, 1, 2, 3, 4]
        assert partitions_of(a, "created-2") == [0]
        assert partitions_of(a, "created-default") == [0, 1, 2]

        # error: topic already exists
        with pytest.raises(Errors.TopicAlreadyExistsError):
            a.create_topics({"created-1": {"num_partitions": 1, "replication_factor": 1}})
        # error: replication factor larger than the (single-broker) cluster
        with pytest.raises(Errors.InvalidReplicationFactorError):
            a.create_topics({"bad-rf": {"num_partitions": 1, "replication_factor": 3}})
        assert "bad-rf" not in a.list_topics()
        # error: invalid partition count
        with pytest.raises(Errors.InvalidPartitionsError):
            a.create_topics({"bad-partitions": {"num_partitions": 0, "replication_factor": 1}})
        # error: invalid topic name
        with pytest.raises(Errors.InvalidTopicError):
            a.create_topics({"bad/name": {"num_partitions": 1, "replication_factor": 1}})
        # validate_only creates nothing
        a.create_topics({"validate-only": {"num_partitions": 1, "replication_factor": 1}},
                        validate_only=True)
        assert "validate-only" not in a.list_topics()

        res = a.delete_topics(["created-1", "created-2"])
        assert sorted(t["name"] for t in res["topics"]) == ["created-1", "created-2"]
        assert all(t["error_code"] == 0 for t in res["topics"]), res
        topics = set(a.list_topics())
        assert "created-1" not in topics and "created-2" not in topics
        assert "created-default" in topics

        # error: deleting a missing topic
        with pytest.raises(Errors.UnknownTopicOrPartitionError):
            a.delete_topics(["created-1"])
    finally:
        a.close()


def test_recreate_after_delete_starts_empty(broker):
    a = admin(broker)
    p = producer(broker)
    try:
        a.create_topics({"recreate": {"num_partitions": 1, "replication_factor": 1}})
        for i in range(10):
            p.send("recreate", value=b"old-%d" % i, partition=0)
        p.flush(timeout=30)
        a.delete_topics(["recreate"])
        a.create_topics({"recreate": {"num_partitions": 1, "replication_factor": 1}})
        md = p.send("recreate", value=b"new", partition=0).get(timeout=30)
        assert md.offset == 0, "a re-created topic must start from offset 0"
    finally:
        p.close()
        a.close()


def test_describe_configs_topic(broker):
    a = admin(broker)
    try:
        a.create_topics({"cfg-topic": {"num_partitions": 1, "replication_factor": 1,
                                       "configs": {"retention.ms": "123456",
                                                   "cleanup.policy": "delete"}}})
        a.create_topics({"cfg-plain": {"num_partitions": 1, "replication_factor": 1}})
        res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "cfg-topic"),
                                  ConfigResource(ConfigResourceType.TOPIC, "cfg-plain")],
                                 config_filter="all")
        cfg = res["topic"]["cfg-topic"]
        assert cfg["retention.ms"]["value"] == "123456"
        assert cfg["retention.ms"]["config_source"] == "DYNAMIC_TOPIC_CONFIG"
        assert cfg["cleanup.policy"]["value"] == "delete"
        plain = res["topic"]["cfg-plain"]
        assert plain["cleanup.policy"]["value"] == "delete"
        assert plain["retention.ms"]["value"] == "604800000"  # Kafka default: 7 days
        assert plain["retention.ms"]["config_source"] != "DYNAMIC_TOPIC_CONFIG"
        assert "segment.bytes" in plain and int(plain["segment.bytes"]["value"]) > 0

        # default filter ('modified') only shows the overrides
        res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "cfg-topic")])
        assert set(res["topic"]["cfg-topic"]) >= {"retention.ms"}
        assert "segment.bytes" not in res["topic"]["cfg-topic"]

        # only selected keys
        res = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, "cfg-topic",
                                                 configs={"retention.ms": None})],
                                 config_filter="all")
        assert set(res["topic"]["cfg-topic"]) == {"retention.ms"}
    finally:
        a.close()


def test_create_topic_with_invalid_config(broker):
    a = admin(broker)
    try:
        with pytest.raises(Errors.InvalidConfigurationError):
            a.create_topics({"bad-config": {"num_partitions": 1, "replication_factor": 1,
                                            "configs": {"no.such.config": "1"}}})
        assert "bad-config" not in a.list_topics()
    finally:
        a.close()


def test_describe_cluster(broker):
    a = admin(broker)
    try:
        info = a.describe_cluster()  # DescribeCluster API
    finally:
        a.close()
    assert info["cluster_id"]
    assert len(info["brokers"]) == 1
    b = info["brokers"][0]
    assert (b["host"], b["port"]) == (broker.host, broker.port)
    assert info["controller_id"] == b["broker_id"]
    assert not b.get("is_fenced")
