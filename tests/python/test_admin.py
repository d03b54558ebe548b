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


def test_cluster_admin_apis_answer_as_a_one_broker_kraft_cluster(broker):
    """DescribeLogDirs, AlterReplicaLogDirs, ElectLeaders, Alter/ListPartitionReassignments,
    DescribeQuorum, DescribeTopicPartitions and the features in ApiVersions, through
    kafka-python's admin client, answered as a one-broker KRaft cluster would."""
    from kafka.structs import TopicPartition, TopicPartitionReplica

    a = admin(broker)
    try:
        a.create_topics({"py-ops": {"num_partitions": 3, "replication_factor": 1}})
        p = producer(broker)
        try:
            for i in range(50):
                p.send("py-ops", value=b"x" * 100, partition=1)
            p.flush()
        finally:
            p.close()

        # One log dir holding every partition, with partition 1's bytes counted.
        [entry] = a.describe_log_dirs({"py-ops": [0, 1, 2]})
        [log_dir] = entry["log_dirs"]
        assert log_dir["error_code"] == 0
        sizes = {p["partition_index"]: p["partition_size"]
                 for t in log_dir["topics"] if t["name"] == "py-ops" for p in t["partitions"]}
        assert set(sizes) == {0, 1, 2}, log_dir
        assert sizes[1] > 5000 and sizes[0] == 0, sizes
        assert log_dir["total_bytes"] >= log_dir["usable_bytes"] > 0
        path = log_dir["log_dir"]

        # Moving a replica into the one dir is a no-op; another dir is not ours.
        moved = a.alter_replica_log_dirs({
            TopicPartitionReplica("py-ops", 0, 1): path,
            TopicPartitionReplica("py-ops", 1, 1): "/nonexistent",
        })
        assert moved[TopicPartitionReplica("py-ops", 0, 1)] is Errors.NoError
        assert moved[TopicPartitionReplica("py-ops", 1, 1)].errno == 57  # LOG_DIR_NOT_FOUND

        # Elections are never needed (the client ignores ELECTION_NOT_NEEDED).
        response = a.elect_leaders(0, {"py-ops": [0, 1]})
        codes = {pr.partition_id: pr.error_code
                 for r in response.replica_election_results for pr in r.partition_result}
        assert codes == {0: 84, 1: 84}, response

        # The only valid assignment is this broker; nothing is ever in progress.
        done = a.alter_partition_reassignments({
            TopicPartition("py-ops", 0): [1],
            TopicPartition("py-ops", 1): [1, 2],
            TopicPartition("py-ops", 2): None,
        })
        assert done[TopicPartition("py-ops", 0)] is None, done
        assert done[TopicPartition("py-ops", 1)].errno == 39  # INVALID_REPLICA_ASSIGNMENT
        assert done[TopicPartition("py-ops", 2)].errno == 85  # NO_REASSIGNMENT_IN_PROGRESS
        assert a.list_partition_reassignments() == {}

        quorum = a.describe_metadata_quorum()
        [partition] = quorum["topics"][0]["partitions"]
        assert partition["leader_id"] == 1 and partition["error"] is None
        assert [v["replica_id"] for v in partition["current_voters"]] == [1]
        assert partition["observers"] == []

        # Pagination: two partitions a page, resuming from the cursor.
        page = a.describe_topic_partitions(["py-ops"], response_partition_limit=2)
        assert [p["partition_index"] for p in page["topics"][0]["partitions"]] == [0, 1]
        assert page["next_cursor"] == {"topic_name": "py-ops", "partition_index": 2}
        page = a.describe_topic_partitions(["py-ops"], cursor=page["next_cursor"])
        [topic] = page["topics"]
        assert [p["partition_index"] for p in topic["partitions"]] == [2]
        assert topic["partitions"][0]["isr_nodes"] == [1] and page["next_cursor"] is None
        missing = a.describe_topic_partitions(["py-no-such-topic"])["topics"][0]
        assert missing["error_code"] == 3

        features = a.describe_features()
        assert features["metadata.version"]["finalized"] == (25, 25)
        assert "finalized" not in features["transaction.version"]
    finally:
        a.close()


def test_confluent_kafka_admin_elect_leaders_and_describe_topics(broker):
    """confluent-kafka 2.16 (librdkafka): ElectLeaders answers ELECTION_NOT_NEEDED per
    partition; describe_topics and describe_cluster see this broker as the only replica,
    leader and controller."""
    from confluent_kafka import ElectionType, TopicCollection, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    a = AdminClient({"bootstrap.servers": broker.bootstrap})
    a.create_topics([NewTopic("ck-ops", 2, 1)])["ck-ops"].result(timeout=20)
    result = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition("ck-ops", 0),
                                                      TopicPartition("ck-ops", 1)]).result(timeout=20)
    assert sorted(tp.partition for tp in result) == [0, 1]
    assert all(err is not None and err.code() == 84 for err in result.values()), result
    [described] = a.describe_topics(TopicCollection(["ck-ops"])).values()
    topic = described.result(timeout=20)
    assert [p.leader.id for p in topic.partitions] == [1, 1]
    assert all([r.id for r in p.replicas] == [1] for p in topic.partitions)
    cluster = a.describe_cluster().result(timeout=20)
    assert cluster.controller.id == 1 and [n.id for n in cluster.nodes] == [1]
