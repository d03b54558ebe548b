"""An in-process agent (a router declared in `agentlog serve`'s config) and a kafka-python
consumer in one consumer group: each gets a disjoint share of the partitions and every
record is processed once (no rebalance happens while records flow).

Part of the kafka-python suite (scripts/test.sh runs it with AGENTLOG_BIN set).
"""

import json
import os
import subprocess
import time

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

BIN = os.environ.get(
    "AGENTLOG_BIN",
    os.path.join(os.path.dirname(__file__), "..", "..", "target", "debug", "agentlog"),
)

CONFIG = """
num.partitions = 4
group.initial.rebalance.delay.ms = 100
group.min.session.timeout.ms = 1000

[[agents]]
name = "router"
kind = "router"
topics = ["mixed"]
group = "mixed"
[agents.options]
field = "type"
default = "mixed.by-agent"
"""


def test_in_process_agent_and_kafka_python_share_a_group(tmp_path):
    config = tmp_path / "agentlog.toml"
    config.write_text(CONFIG)
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "data"),
         "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("AGENTLOG_")},
    )
    try:
        addr = None
        for line in proc.stdout:
            if line.startswith("agentlog listening on "):
                addr = line.split()[-1]
                break
        assert addr, "broker did not start"

        consumer = KafkaConsumer(
            "mixed", group_id="mixed", bootstrap_servers=addr,
            auto_offset_reset="earliest", enable_auto_commit=False,
            session_timeout_ms=6000, heartbeat_interval_ms=300,
        )
        deadline = time.time() + 30
        while True:
            consumer.poll(timeout_ms=200)
            mine = {tp.partition for tp in consumer.assignment()}
            if 0 < len(mine) < 4:
                break
            assert time.time() < deadline, f"no shared assignment: {mine}"

        total = 200
        producer = KafkaProducer(bootstrap_servers=addr, enable_idempotence=False)
        for i in range(total):
            producer.send("mixed", key=f"key-{i}".encode(),
                          value=json.dumps({"type": "x", "i": i}).encode())
        producer.flush()

        reader = KafkaConsumer(bootstrap_servers=addr, auto_offset_reset="earliest",
                               enable_auto_commit=False)
        reader.assign([TopicPartition("mixed.by-agent", p) for p in range(4)])
        reader.seek_to_beginning()

        by_python, by_agent = [], []
        deadline = time.time() + 30
        while len(by_python) + len(by_agent) < total:
            assert time.time() < deadline, f"python {len(by_python)}, agent {len(by_agent)}"
            for tp, records in consumer.poll(timeout_ms=100).items():
                by_python += [(tp.partition, json.loads(r.value)["i"]) for r in records]
            for tp, records in reader.poll(timeout_ms=100).items():
                by_agent += [(tp.partition, json.loads(r.value)["i"]) for r in records]
        consumer.commit()

        python_ids = {i for _, i in by_python}
        agent_ids = {i for _, i in by_agent}
        assert python_ids | agent_ids == set(range(total)), "every record processed"
        assert not python_ids & agent_ids, "no record processed twice"
        assert len(by_python) + len(by_agent) == total
        # The router keeps keys (same murmur2 partitioner, same partition count), so the
        # partitions the agent wrote to are the partitions it was assigned.
        agent_partitions = {p for p, _ in by_agent}
        assert agent_partitions and agent_partitions.isdisjoint(mine)
        assert {p for p, _ in by_python} <= mine
        consumer.close()
        reader.close()
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
