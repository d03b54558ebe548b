"""agentlog as an MCP server: the official MCP Python SDK (`mcp`) as the client of `/mcp`
on a real `agentlog serve`, with kafka-python producing, consuming and committing beside
it. Covers every tool with real data, the topic resources, read-only mode, the server
being off by default, bad input, and the README's example run verbatim.

Part of the kafka-python suite (scripts/test.sh runs it with AGENTLOG_BIN set).
"""

import asyncio
import json
import re
import subprocess
import time
import uuid

import httpx2
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata
from mcp import Client
from mcp.shared.exceptions import MCPError

from agentlog_harness import REPO_ROOT, agentlog_bin, broker_env
from clients import admin

TOOLS = {"list_topics", "describe_topic", "produce", "read", "group_lag", "search_decisions"}


class Serve:
    """`agentlog serve` with a config file and an HTTP listener on a free port."""

    def __init__(self, tmp_path, config="", settings=None, env=None, cwd=None):
        path = tmp_path / "agentlog.toml"
        path.write_text(config)
        cmd = [agentlog_bin(), "serve", "--listen", "127.0.0.1:0", "--http", "127.0.0.1:0",
               "--data-dir", str(tmp_path / "data"), "--config", str(path)]
        for name, value in (settings or {}).items():
            cmd += ["--set", f"{name}={value}"]
        self.stderr = open(tmp_path / "stderr.log", "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.stderr,
                                     stdin=subprocess.DEVNULL, text=True, env=broker_env(env),
                                     cwd=cwd)
        self.bootstrap = self.http = None
        for line in self.proc.stdout:
            if m := re.match(r"agentlog listening on (\S+)$", line.strip()):
                self.bootstrap = m.group(1)
            if m := re.match(r"agentlog http on (\S+)$", line.strip()):
                self.http = m.group(1)
                break
        assert self.bootstrap and self.http, f"agentlog did not start: {self.proc.poll()}"
        self.url = f"http://{self.http}/mcp"

    def stop(self):
        self.proc.terminate()
        code = self.proc.wait(timeout=30)
        self.proc.stdout.close()
        self.stderr.close()
        assert code == 0, f"agentlog exited with {code}"


@pytest.fixture
def writable(tmp_path):
    server = Serve(tmp_path, settings={"mcp.server.enable": "true",
                                       "mcp.server.read.only": "false",
                                       "mcp.server.max.records": "50",
                                       "group.initial.rebalance.delay.ms": "0"})
    yield server
    server.stop()


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 60))


def payload(result):
    """A tool result's JSON text, checked to be a success."""
    assert not result.is_error, result.content[0].text
    return json.loads(result.content[0].text)


def error_text(result):
    assert result.is_error, result.content[0].text
    return result.content[0].text


def create_topic(server, name, partitions=3):
    client = admin(server)
    client.create_topics([NewTopic(name, partitions, 1)])
    client.close()


def decision_record(agent, trace_id, decision, timestamp_ms, details):
    """A decision exactly as `Context::decide` writes it: an envelope and `ce_*` headers."""
    envelope = {"event_type": "decision", "agent_id": agent, "timestamp": timestamp_ms,
                "trace_id": trace_id, "data": {"decision": decision, "details": details},
                "metadata": {}}
    headers = [("ce_specversion", b"1.0"), ("ce_id", str(uuid.uuid4()).encode()),
               ("ce_type", b"decision"), ("ce_source", agent.encode()),
               ("ce_traceid", trace_id.encode()), ("content-type", b"application/json")]
    return json.dumps(envelope).encode(), headers


def test_every_tool_with_real_data(writable):
    create_topic(writable, "orders")

    async def scenario():
        async with Client(writable.url, mode="legacy") as mcp:
            assert mcp.protocol_version == "2025-11-25"
            tools = {tool.name for tool in (await mcp.list_tools()).tools}
            assert tools == TOOLS

            produced = payload(await mcp.call_tool("produce", {"topic": "orders", "records": [
                {"key": f"k{i}", "value": {"order": i}, "headers": {"source": "mcp"}}
                for i in range(20)] + [{"value": "plain text"}]}))
            assert produced == {"topic": "orders", "produced": 21}

            listed = payload(await mcp.call_tool("list_topics", {}))
            assert {"name": "orders", "partitions": 3, "records": 21} in listed["topics"]

            described = payload(await mcp.call_tool("describe_topic", {"topic": "orders"}))
            assert described["partition_count"] == 3
            assert sum(p["high_watermark"] for p in described["partitions"]) == 21

            read = payload(await mcp.call_tool("read", {"topic": "orders"}))
            values = [r["value"] for r in read["records"]]
            assert len(values) == 21 and not read["truncated"]
            assert sorted(v["order"] for v in values if isinstance(v, dict)) == list(range(20))
            assert "plain text" in values
            assert all(r["headers"].get("source") == "mcp" for r in read["records"]
                       if r["key"] is not None)

            bounded = payload(await mcp.call_tool("read", {"topic": "orders", "limit": 5}))
            assert len(bounded["records"]) == 5
            one = payload(await mcp.call_tool("read", {"topic": "orders", "partition": 1,
                                                       "offset": -2}))
            assert [r["partition"] for r in one["records"]] == [1, 1]
            return values

    values = run(scenario())

    # kafka-python sees what the MCP client wrote, and commits as a group.
    consumer = KafkaConsumer("orders", bootstrap_servers=writable.bootstrap, group_id="billing",
                             auto_offset_reset="earliest", enable_auto_commit=False)
    seen = []
    deadline = time.time() + 30
    while len(seen) < 21:
        assert time.time() < deadline, f"kafka-python read {len(seen)} of 21"
        for records in consumer.poll(timeout_ms=200).values():
            seen += [r.value for r in records]
    assert sorted(seen) == sorted(
        v.encode() if isinstance(v, str) else json.dumps(v, separators=(",", ":")).encode()
        for v in values)
    # Commit all but the last record of partition 0: a lag of exactly one there.
    tp0 = TopicPartition("orders", 0)
    positions = {tp: consumer.position(tp) for tp in consumer.assignment()}
    positions[tp0] -= 1
    consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in positions.items()})
    consumer.close()

    async def lag():
        async with Client(writable.url, mode="legacy") as mcp:
            groups = payload(await mcp.call_tool("group_lag", {"group": "billing"}))["groups"]
            assert [g["group"] for g in groups] == ["billing"]
            assert groups[0]["total_lag"] == 1
            by_partition = {p["partition"]: p for p in groups[0]["partitions"]}
            assert by_partition[0]["lag"] == 1
            assert by_partition[0]["high_watermark"] == positions[tp0] + 1
            missing = await mcp.call_tool("group_lag", {"group": "nobody"})
            assert "nobody" in error_text(missing)

    run(lag())


def test_search_decisions_by_agent_trace_and_time(writable):
    producer = KafkaProducer(bootstrap_servers=writable.bootstrap, enable_idempotence=False)
    trace = uuid.uuid4().hex
    base = 1_714_564_800_000  # 2024-05-01T12:00:00Z
    for i, (agent, decision) in enumerate([("fraud", "allow"), ("fraud", "block"),
                                           ("pricing", "discount"), ("fraud", "review")]):
        value, headers = decision_record(agent, trace if i in (1, 2) else uuid.uuid4().hex,
                                         decision, base + i * 60_000, {"step": i})
        producer.send(f"agent.decisions.{agent}", value=value, headers=headers)
    producer.send("agent.decisions.fraud", value=b"not an envelope")
    producer.flush()
    producer.close()

    async def scenario():
        async with Client(writable.url, mode="legacy") as mcp:
            search = lambda **args: mcp.call_tool("search_decisions", args)  # noqa: E731
            fraud = payload(await search(agent="fraud"))["decisions"]
            assert [d["decision"] for d in fraud] == ["allow", "block", "review"]
            by_trace = payload(await search(trace_id=trace))["decisions"]
            assert sorted((d["agent"], d["decision"]) for d in by_trace) == [
                ("fraud", "block"), ("pricing", "discount")]
            assert by_trace[0]["trace_id"] == trace
            window = payload(await search(agent="fraud", from_time="2024-05-01T12:01:00Z",
                                          to_time=base + 60_000))["decisions"]
            assert [(d["decision"], d["details"]) for d in window] == [("block", {"step": 1})]
            assert window[0]["time"] == "2024-05-01T12:01:00.000Z"
            limited = payload(await search(limit=1))
            assert len(limited["decisions"]) == 1
            assert "nobody" in error_text(await search(agent="nobody"))
            assert "from_time" in error_text(await search(from_time="yesterday"))

    run(scenario())


def test_topic_resources(writable):
    create_topic(writable, "events", partitions=2)
    producer = KafkaProducer(bootstrap_servers=writable.bootstrap, enable_idempotence=False)
    for i in range(30):
        producer.send("events", key=f"k{i}".encode(), value=json.dumps({"n": i}).encode())
    producer.flush()
    producer.close()

    async def scenario():
        async with Client(writable.url, mode="legacy") as mcp:
            resources = (await mcp.list_resources()).resources
            uris = {str(r.uri) for r in resources}
            assert "agentlog://topics/events" in uris
            read = await mcp.read_resource("agentlog://topics/events")
            body = json.loads(read.contents[0].text)
            assert body["topic"]["name"] == "events"
            latest = body["latest"]["records"]
            # The last 10 of each partition: the newest records, not the oldest.
            assert len(latest) == 20
            for partition in (0, 1):
                offsets = [r["offset"] for r in latest if r["partition"] == partition]
                hw = next(p["high_watermark"] for p in body["topic"]["partitions"]
                          if p["partition"] == partition)
                assert offsets == list(range(hw - 10, hw))
            with pytest.raises(MCPError, match="does not exist"):
                await mcp.read_resource("agentlog://topics/missing")
            with pytest.raises(MCPError, match="unknown resource"):
                await mcp.read_resource("file:///etc/passwd")

    run(scenario())


def test_bad_input_gets_clear_errors_and_the_server_stays_up(writable):
    create_topic(writable, "t", partitions=1)

    async def scenario():
        async with Client(writable.url, mode="legacy") as mcp:
            bad_type = await mcp.call_tool("read", {"topic": 5})
            assert "expected a string" in error_text(bad_type)
            unknown_field = await mcp.call_tool("read", {"topic": "t", "color": "red"})
            assert "color" in error_text(unknown_field)
            assert "does not exist" in error_text(await mcp.call_tool("read", {"topic": "nope"}))
            assert "partition" in error_text(
                await mcp.call_tool("read", {"topic": "t", "partition": 7}))
            assert "not both" in error_text(
                await mcp.call_tool("read", {"topic": "t", "offset": 0, "from_time": 0}))
            too_many = await mcp.call_tool(
                "produce", {"topic": "t", "records": [{"value": i} for i in range(51)]})
            assert "mcp.server.max.records" in error_text(too_many)
            assert "does not exist" in error_text(
                await mcp.call_tool("produce", {"topic": "nope", "records": [{"value": 1}]}))
            with pytest.raises(MCPError, match="tool not found"):
                await mcp.call_tool("drop_all_topics", {})

    run(scenario())

    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream",
               "mcp-protocol-version": "2025-11-25"}
    with httpx2.Client(timeout=10) as http:
        malformed = http.post(writable.url, content=b"{not json", headers=headers)
        assert malformed.status_code == 400, malformed.text
        assert malformed.json()["error"]["code"] == -32700
        unknown = http.post(writable.url, headers=headers,
                            json={"jsonrpc": "2.0", "id": 1, "method": "topics/drop"})
        assert unknown.json()["error"]["code"] == -32601
        oversized = http.post(writable.url, content=b"[" + b" " * (5 << 20) + b"]",
                              headers=headers)
        assert oversized.status_code == 413
        ping = http.post(writable.url, headers=headers,
                         json={"jsonrpc": "2.0", "id": 2, "method": "ping"})
        assert ping.json() == {"jsonrpc": "2.0", "id": 2, "result": {}}


def test_the_modern_protocol_is_served_too(writable):
    async def scenario():
        async with Client(writable.url) as mcp:  # "auto": server/discover first
            assert mcp.protocol_version == "2026-07-28"
            assert {t.name for t in (await mcp.list_tools()).tools} == TOOLS
            assert payload(await mcp.call_tool("list_topics", {}))["truncated"] is False

    run(scenario())


def test_read_only_mode_refuses_produce(tmp_path):
    server = Serve(tmp_path, settings={"mcp.server.enable": "true"})  # read-only by default
    try:
        create_topic(server, "t", partitions=1)

        async def scenario():
            async with Client(server.url, mode="legacy") as mcp:
                refused = await mcp.call_tool("produce", {"topic": "t", "records": [{"value": 1}]})
                assert "read-only" in error_text(refused)
                assert "mcp.server.read.only" in error_text(refused)
                assert payload(await mcp.call_tool("read", {"topic": "t"}))["records"] == []

        run(scenario())
    finally:
        server.stop()


def test_off_by_default(tmp_path):
    server = Serve(tmp_path)
    try:
        with httpx2.Client(timeout=10) as http:
            response = http.post(server.url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"},
                                 headers={"accept": "application/json, text/event-stream"})
            assert response.status_code == 404
            assert http.get(f"http://{server.http}/health").status_code == 200
    finally:
        server.stop()


def readme_mcp_server_example():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### agentlog as an MCP server", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_runs_verbatim(tmp_path):
    # The file as printed; only the HTTP port is replaced, by the --http flag
    # (documented to override http.listen), so the test never needs a fixed port.
    server = Serve(tmp_path, config=readme_mcp_server_example())
    try:
        create_topic(server, "orders", partitions=1)

        async def scenario():
            async with Client(server.url, mode="legacy") as mcp:
                assert {t.name for t in (await mcp.list_tools()).tools} == TOOLS
                listed = payload(await mcp.call_tool("list_topics", {}))
                assert [t["name"] for t in listed["topics"]] == ["orders"]
                refused = await mcp.call_tool("produce", {"topic": "orders",
                                                          "records": [{"value": 1}]})
                assert "read-only" in error_text(refused)

        run(scenario())
    finally:
        server.stop()
