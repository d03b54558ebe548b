"""Consumer groups with kafka-python against the real binary: two consumers share a
topic, commit, and the admin client lists, describes and deletes the group.

Part of the kafka-python suite (scripts/test.sh runs it with AGENTLOG_BIN set).
"""

import os
import subprocess
import threading
import time

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

BIN = os.environ.get(
    "AGENTLOG_BIN",
    os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "agentlog"),
)


@pytest.fixture
def broker(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")}
    proc = subprocess.Popen(
        [
            BIN, "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path),
            "--set", "group.initial.rebalance.delay.ms=300",
            "--set", "group.min.session.timeout.ms=1000",
            "--set", "group.consumer.heartbeat.interval.ms=200",
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    addr = None
    for line in proc.stdout:
        if line.startswith("agentlog listening on "):
            addr = line.split()[-1]
            break
    assert addr, "broker did not start"
    yield addr
    proc.terminate()
    proc.wait(30)


class Member(threading.Thread):
    def __init__(self, addr, group, topic):
        super().__init__(daemon=True)
        self.consumer = KafkaConsumer(
            topic,
            bootstrap_servers=addr,
            group_id=group,
            client_id="py-member",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=6000,
            heartbeat_interval_ms=500,
        )
        self.values = []
        self.assignment = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=100).values():
                self.values.extend(r.value for r in records)
            self.assignment = {tp.partition for tp in self.consumer.assignment()}
        self.consumer.commit()
        self.consumer.close()


def wait_for(check, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_two_members_share_commit_and_the_group_is_administered(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic("py-groups", 4, 1)])
    producer = KafkaProducer(bootstrap_servers=broker, enable_idempotence=False)
    for i in range(200):
        producer.send("py-groups", f"v{i}".encode(), partition=i % 4)
    producer.flush()

    members = [Member(broker, "py-g", "py-groups") for _ in range(2)]
    for m in members:
        m.start()
    wait_for(
        lambda: members[0].assignment and members[1].assignment
        and members[0].assignment.isdisjoint(members[1].assignment)
        and members[0].assignment | members[1].assignment == {0, 1, 2, 3},
        "a disjoint cover",
    )
    wait_for(lambda: sum(len(m.values) for m in members) >= 200, "all records")
    assert {v for m in members for v in m.values} == {f"v{i}".encode() for i in range(200)}

    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed["py-g"]["protocol_type"] == "consumer"
    stable = admin.list_groups(states_filter=["Stable"])
    assert [g["group_id"] for g in stable] == ["py-g"]
    described = admin.describe_groups(["py-g"])["py-g"]
    assert described["error"] is None
    assert described["group_state"] == "Stable"
    assert described["protocol_type"] == "consumer"
    assert len(described["members"]) == 2
    assert all(m["client_id"] == "py-member" for m in described["members"])

    for m in members:
        m.stop.set()
    for m in members:
        m.join(30)
    offsets = admin.list_group_offsets("py-g")["py-g"]
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {p: 50 for p in range(4)}
    assert admin.delete_groups(["py-g"]) == {"py-g": "OK"}
    assert "py-g" not in {g["group_id"] for g in admin.list_groups()}
    admin.close()


class ConfluentMember(threading.Thread):
    """A librdkafka consumer (confluent-kafka) in the same group as kafka-python ones."""

    def __init__(self, addr, group, topic, consumer_protocol=False):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer

        config = {
            "bootstrap.servers": addr,
            "group.id": group,
            "client.id": "librdkafka-member",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        if consumer_protocol:
            # KIP-848: the broker assigns; timeouts and heartbeats are set broker side.
            config.update({"group.protocol": "consumer", "group.remote.assignor": "range"})
        else:
            config.update({
                "session.timeout.ms": 6000,
                "heartbeat.interval.ms": 500,
                # kafka-python offers range and roundrobin too: the broker picks by vote.
                "partition.assignment.strategy": "range,roundrobin",
            })
        self.consumer = Consumer(config)
        self.consumer.subscribe([topic])
        self.values = []
        self.assignment = set()
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            message = self.consumer.poll(0.1)
            if message is not None and message.error() is None:
                self.values.append(message.value())
            self.assignment = {tp.partition for tp in self.consumer.assignment()}
        self.consumer.commit(asynchronous=False)
        self.consumer.close()


def test_kafka_python_and_librdkafka_consumers_share_one_group(broker):
    topic, group = "mixed-clients", "mixed-group"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker)
    sent = {f"v{i}".encode() for i in range(600)}
    for i in range(600):
        producer.send(topic, value=f"v{i}".encode(), partition=i % 6)
    producer.flush()
    producer.close()

    members = [Member(broker, group, topic), ConfluentMember(broker, group, topic)]
    for member in members:
        member.start()
    try:
        wait_for(
            lambda: all(m.assignment for m in members)
            and not (members[0].assignment & members[1].assignment)
            and members[0].assignment | members[1].assignment == set(range(6)),
            "both clients to hold a disjoint share of the six partitions",
        )
        wait_for(lambda: sum(len(m.values) for m in members) >= 600, "every record consumed")
        time.sleep(0.5)
        consumed = members[0].values + members[1].values
        assert set(consumed) == sent
        duplicates = len(consumed) - len(set(consumed))
        # Only a rebalance can redeliver, and the two joined before anything was committed.
        assert duplicates <= 600 - min(len(m.values) for m in members), duplicates
        assert members[0].values and members[1].values
    finally:
        for member in members:
            member.stop.set()
        for member in members:
            member.join(30)


def test_confluent_kafka_consumer_protocol_group(broker):
    """KIP-848 with confluent-kafka: the broker's range assignor splits the topic, every
    record arrives once per commit cycle, and the admin client sees a consumer group."""
    from confluent_kafka.admin import AdminClient, NewTopic as CNewTopic

    topic, group = "py-kip848", "py-kip848-group"
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([CNewTopic(topic, num_partitions=4)]).values():
        future.result(30)
    producer = KafkaProducer(bootstrap_servers=broker)
    for i in range(400):
        producer.send(topic, value=f"v{i}".encode(), partition=i % 4)
    producer.flush()
    producer.close()

    members = [ConfluentMember(broker, group, topic, consumer_protocol=True) for _ in range(2)]
    for member in members:
        member.start()
    try:
        wait_for(
            lambda: all(len(m.assignment) == 2 for m in members)
            and not (members[0].assignment & members[1].assignment),
            "two consumer-protocol members with two partitions each",
        )
        wait_for(lambda: len({v for m in members for v in m.values}) == 400, "every record")
        listed = admin.list_consumer_groups().result(30)
        mine = [g for g in listed.valid if g.group_id == group]
        assert mine and mine[0].type.name == "CONSUMER", listed.valid
        described = admin.describe_consumer_groups([group])[group].result(30)
        assert len(described.members) == 2
    finally:
        for member in members:
            member.stop.set()
        for member in members:
            member.join(30)


def test_kafka_python_classic_member_through_an_upgrade_and_a_downgrade(broker):
    """Kafka 4's online migration with two client implementations: a kafka-python
    (classic, eager) consumer's group is upgraded when a confluent-kafka consumer joins
    with group.protocol=consumer, both then split the partitions (the broker assigns
    the classic member too), and the group turns classic again when that one leaves."""
    from confluent_kafka.admin import AdminClient

    topic, group = "py-migration", "py-migration-group"
    admin = KafkaAdminClient(bootstrap_servers=broker)
    admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(bootstrap_servers=broker)
    sent = {f"v{i}".encode() for i in range(600)}
    for i in range(600):
        producer.send(topic, value=f"v{i}".encode(), partition=i % 6)
    producer.flush()
    producer.close()
    cadmin = AdminClient({"bootstrap.servers": broker})

    def group_type():
        listed = cadmin.list_consumer_groups().result(30)
        mine = [g for g in listed.valid if g.group_id == group]
        return mine[0].type.name if mine else None

    classic = Member(broker, group, topic)
    classic.start()
    modern = None
    try:
        wait_for(lambda: len(classic.assignment) == 6, "the classic member owning all six")
        assert group_type() == "CLASSIC"
        # Subscribing joins: the consumer-protocol member exists only from here.
        modern = ConfluentMember(broker, group, topic, consumer_protocol=True)
        modern.start()
        wait_for(
            lambda: len(classic.assignment) == 3 and len(modern.assignment) == 3
            and not (classic.assignment & modern.assignment),
            "kafka-python and confluent-kafka splitting the partitions",
        )
        assert group_type() == "CONSUMER"
        wait_for(lambda: {v for m in (classic, modern) for v in m.values} == sent, "every record")
        assert modern.values, "the consumer-protocol member consumed"
        modern.stop.set()
        modern.join(30)
        wait_for(lambda: len(classic.assignment) == 6 and group_type() == "CLASSIC",
                 "the classic member owning all six in a classic group again")
    finally:
        members = [m for m in (classic, modern) if m is not None]
        for member in members:
            member.stop.set()
        for member in members:
            if member.is_alive():
                member.join(30)
