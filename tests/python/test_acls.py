"""ACLs with real clients: kafka-python and confluent-kafka admin calls (CreateAcls,
DescribeAcls, DeleteAcls) over SASL_PLAINTEXT as a super user; a non-super user refused
(produce, consume, group, transactional id, ACL changes) then allowed once ACLs say so;
ACLs surviving a restart; SECURITY_DISABLED with the authorizer off."""
import subprocess

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AclBinding, AclBindingFilter, AclOperation
from confluent_kafka.admin import AclPermissionType as CkPermission
from confluent_kafka.admin import AdminClient, ResourcePatternType
from confluent_kafka.admin import ResourceType as CkResourceType
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                         ACLResourcePatternType, KafkaAdminClient, NewTopic,
                         ResourcePattern, ResourcePatternFilter, ResourceType)
from kafka.errors import (ClusterAuthorizationFailedError, GroupAuthorizationFailedError,
                          InvalidRequestError,
                          SecurityDisabledError, TopicAuthorizationFailedError)

from agentlog_harness import Broker, agentlog_bin

SETTINGS = {
    "listeners": "SASL_PLAINTEXT://127.0.0.1:0",
    "authorizer.enable": "true",
    # The loopback PLAINTEXT listener (--listen) is the admin door `agentlog users` uses.
    "super.users": "User:admin;User:ANONYMOUS",
    "num.partitions": 1,
    "group.initial.rebalance.delay.ms": 0,
}


def _add_user(broker, name, password):
    subprocess.run([agentlog_bin(), "users", "add", name, "-b", broker.bootstrap],
                   input=f"{password}\n".encode(), check=True, capture_output=True)


def _sasl(user):
    return dict(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256",
                sasl_plain_username=user, sasl_plain_password=f"{user}-pw")


def _admin(address, user="admin"):
    return KafkaAdminClient(bootstrap_servers=address, **_sasl(user))


def _acl(principal, op, kind, name, pattern=ACLResourcePatternType.LITERAL,
         permission=ACLPermissionType.ALLOW):
    return ACL(principal=principal, host="*", operation=op, permission_type=permission,
               resource_pattern=ResourcePattern(kind, name, pattern))


EVERYTHING = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                       permission_type=ACLPermissionType.ANY,
                       resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                              ACLResourcePatternType.ANY))


@pytest.fixture
def secured():
    b = Broker(SETTINGS)
    for user in ("admin", "bob"):
        _add_user(b, user, f"{user}-pw")
    yield b
    assert b.stop() == 0, b.stderr_tail()
    b.cleanup()


def _consume(address, topic, group):
    consumer = KafkaConsumer(topic, bootstrap_servers=address, group_id=group,
                             auto_offset_reset="earliest", consumer_timeout_ms=8000,
                             **_sasl("bob"))
    try:
        return [m.value for m in consumer]
    finally:
        consumer.close()


def test_kafka_python_acls_refuse_then_allow_and_survive_a_restart(secured):
    address = secured.listener("SASL_PLAINTEXT")
    admin = _admin(address)
    admin.create_topics([NewTopic("acl-orders", 1, 1), NewTopic("acl-other", 1, 1)])

    # No ACL yet: bob may not see or write the topic (Kafka: closed by default).
    producer = KafkaProducer(bootstrap_servers=address, enable_idempotence=False,
                             max_block_ms=5000, **_sasl("bob"))
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send("acl-orders", b"early").get(timeout=10)
    producer.close()
    # ... nor change ACLs.
    bob_admin = _admin(address, "bob")
    refused = bob_admin.create_acls([_acl("User:bob", ACLOperation.ALL, ResourceType.CLUSTER,
                                          "kafka-cluster")])
    assert refused["failed"] == [ClusterAuthorizationFailedError]
    with pytest.raises(ClusterAuthorizationFailedError):
        bob_admin.describe_acls(EVERYTHING)
    bob_admin.close()

    created = admin.create_acls([
        _acl("User:bob", ACLOperation.WRITE, ResourceType.TOPIC, "acl-",
             ACLResourcePatternType.PREFIXED),
        _acl("User:bob", ACLOperation.READ, ResourceType.TOPIC, "acl-orders"),
        # An invalid binding fails alone: groups have no WRITE.
        _acl("User:bob", ACLOperation.WRITE, ResourceType.GROUP, "g"),
    ])
    assert len(created["succeeded"]) == 2
    assert created["failed"] == [InvalidRequestError]

    # WRITE on a topic is enough for an idempotent producer (KIP-679).
    producer = KafkaProducer(bootstrap_servers=address, **_sasl("bob"))
    producer.send("acl-orders", b"one").get(timeout=30)
    producer.close()

    # WRITE (hence DESCRIBE) but no READ on acl-other: its fetches are refused.
    consumer = KafkaConsumer(bootstrap_servers=address, auto_offset_reset="earliest",
                             **_sasl("bob"))
    consumer.assign([TopicPartition("acl-other", 0)])
    with pytest.raises(TopicAuthorizationFailedError):
        for _ in range(40):
            consumer.poll(timeout_ms=250)
    consumer.close()

    # READ on the topic but not on the group: the consumer is refused.
    with pytest.raises(GroupAuthorizationFailedError):
        _consume(address, "acl-orders", "acl-group")
    admin.create_acls([_acl("User:bob", ACLOperation.READ, ResourceType.GROUP, "acl-",
                            ACLResourcePatternType.PREFIXED)])
    assert _consume(address, "acl-orders", "acl-group") == [b"one"]

    # DENY wins over the prefixed ALLOW.
    admin.create_acls([_acl("User:*", ACLOperation.WRITE, ResourceType.TOPIC, "acl-orders",
                            permission=ACLPermissionType.DENY)])
    producer = KafkaProducer(bootstrap_servers=address, enable_idempotence=False,
                             max_block_ms=5000, **_sasl("bob"))
    with pytest.raises(TopicAuthorizationFailedError):
        producer.send("acl-orders", b"denied").get(timeout=10)
    producer.close()

    bob_only = ACLFilter(principal="User:bob", host=None, operation=ACLOperation.ANY,
                         permission_type=ACLPermissionType.ANY,
                         resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                                ACLResourcePatternType.ANY))
    acls, _ = admin.describe_acls(bob_only)
    assert len(acls) == 3
    # MATCH: every binding that applies to the topic acl-orders (prefixed, literal, deny).
    matching, _ = admin.describe_acls(ACLFilter(
        principal=None, host=None, operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.ANY,
        resource_pattern=ResourcePatternFilter(ResourceType.TOPIC, "acl-orders",
                                               ACLResourcePatternType.MATCH)))
    assert len(matching) == 3
    deleted = admin.delete_acls([ACLFilter(
        principal=None, host=None, operation=ACLOperation.ANY,
        permission_type=ACLPermissionType.DENY,
        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                               ACLResourcePatternType.ANY))])
    assert len(deleted[0][1]) == 1
    admin.close()

    secured.stop()
    again = Broker(SETTINGS, data_dir=secured.data_dir)
    try:
        admin = _admin(again.listener("SASL_PLAINTEXT"))
        acls, _ = admin.describe_acls(EVERYTHING)
        admin.close()
        assert sorted((a.resource_pattern.resource_name, a.operation) for a in acls) == sorted([
            ("acl-", ACLOperation.WRITE), ("acl-orders", ACLOperation.READ),
            ("acl-", ACLOperation.READ)])
        # ... and they are enforced after the restart.
        producer = KafkaProducer(bootstrap_servers=again.listener("SASL_PLAINTEXT"),
                                 **_sasl("bob"))
        producer.send("acl-orders", b"two").get(timeout=30)
        producer.close()
    finally:
        assert again.stop() == 0, again.stderr_tail()
        again.cleanup()


def _ck(address, user, **extra):
    return {"bootstrap.servers": address, "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": user,
            "sasl.password": f"{user}-pw", **extra}


def test_confluent_kafka_acl_admin_and_transactional_id(secured):
    address = secured.listener("SASL_PLAINTEXT")
    admin = AdminClient(_ck(address, "admin"))
    binding = AclBinding(CkResourceType.TRANSACTIONAL_ID, "tx-", ResourcePatternType.PREFIXED,
                         "User:bob", "*", AclOperation.WRITE, CkPermission.ALLOW)
    topic = AclBinding(CkResourceType.TOPIC, "tx-topic", ResourcePatternType.LITERAL,
                       "User:bob", "*", AclOperation.ALL, CkPermission.ALLOW)

    # Not allowed yet: init_transactions fails with the transactional-id error.
    producer = Producer(_ck(address, "bob", **{"transactional.id": "tx-1"}))
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(10)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED, \
        refused.value

    for future in admin.create_acls([binding, topic], request_timeout=10).values():
        assert future.result(timeout=10) is None
    described = admin.describe_acls(
        AclBindingFilter(CkResourceType.ANY, None, ResourcePatternType.ANY, "User:bob", None,
                         AclOperation.ANY, CkPermission.ANY), request_timeout=10).result()
    assert sorted(b.name for b in described) == ["tx-", "tx-topic"]

    producer = Producer(_ck(address, "bob", **{"transactional.id": "tx-2"}))
    producer.init_transactions(20)
    producer.begin_transaction()
    producer.produce("tx-topic", b"committed")
    producer.commit_transaction(20)

    deleted = admin.delete_acls([AclBindingFilter(
        CkResourceType.TOPIC, "tx-topic", ResourcePatternType.MATCH, None, None,
        AclOperation.ANY, CkPermission.ANY)], request_timeout=10)
    assert [len(f.result()) for f in deleted.values()] == [1]


def test_acl_apis_answer_security_disabled_without_an_authorizer(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    with pytest.raises(SecurityDisabledError):
        admin.describe_acls(EVERYTHING)
    admin.close()


def _readme_block(readme, opener):
    section = readme[readme.index("### ACLs"):]
    start = section.index(opener) + len(opener)
    return section[start:section.index("```", start)]


def test_the_readme_acl_example_runs_verbatim(tmp_path):
    """The README's ACL example as printed, on its fixed ports (9092 and 9094 must be
    free): the TOML file, `agentlog serve --config`, the users, then the Python script."""
    from agentlog_harness import REPO_ROOT, broker_env
    readme = (REPO_ROOT / "README.md").read_text()
    toml = _readme_block(readme, "```toml\n")
    shell = _readme_block(readme, "```sh\n").strip().splitlines()
    script = _readme_block(readme, "```python\n")
    (tmp_path / "agentlog-acl.toml").write_text(toml)
    (tmp_path / "acl_example.py").write_text(script)
    bin_dir = str(__import__("pathlib").Path(agentlog_bin()).parent)
    env = broker_env({"PATH": f"{bin_dir}:{__import__('os').environ['PATH']}"})
    env.pop("AGENTLOG_CONFIG", None)
    serve, *commands = shell
    assert serve == "agentlog serve --config agentlog-acl.toml"
    broker = subprocess.Popen(["bash", "-c", f"exec {serve}"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        lines = []
        while len(lines) < 2:
            line = broker.stdout.readline().decode()
            assert line, "broker exited early (ports 9092/9094 busy?)"
            if line.startswith("agentlog listening on "):
                lines.append(line.strip())
        assert lines[1] == "agentlog listening on SASL_PLAINTEXT://127.0.0.1:9094"
        python_dir = str(__import__("pathlib").Path(__import__("sys").executable).parent)
        env["PATH"] = f"{python_dir}:{env['PATH']}"
        for command in commands:
            done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env,
                                  capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, f"{command}: {done.stderr}"
        assert "orders-" in done.stdout and "User:bob" in done.stdout
    finally:
        broker.terminate()
        assert broker.wait(timeout=30) == 0
