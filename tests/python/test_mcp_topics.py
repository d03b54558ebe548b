"""MCP over topics from Python: the README's `[[mcp_servers]]` example run verbatim by a
real `agentlog serve`, bridging the example's weather server (official MCP SDK, stdio),
and a tool call made with kafka-python through agentlog's topics to that server and
back, as docs/mcp-over-kafka.md specifies it.

Part of the kafka-python suite (scripts/test.sh runs it with AGENTLOG_BIN set).
"""

import json
import os
import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

from agentlog_harness import REPO_ROOT
from clients import admin
from test_mcp_server import Serve


def readme_topics_example():
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("### MCP servers on topics", 1)[1]
    return section.split("```toml\n", 1)[1].split("```", 1)[0]


def serve_readme_example(tmp_path):
    # `python3` in the example must be one with the MCP SDK: the suite's venv first.
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return Serve(tmp_path, config=readme_topics_example(), env={"PATH": path},
                 cwd=str(REPO_ROOT))


def request(producer, method, params, reply_to, headers=()):
    call_id = str(uuid.uuid4())
    message = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
    producer.send("mcp.weather.requests", json.dumps(message).encode(), key=call_id.encode(),
                  headers=[("reply_to", reply_to.encode()),
                           ("correlation_id", call_id.encode()), *headers])
    producer.flush()
    return call_id


def answers(server, topic, ids, timeout_s=60):
    """The JSON-RPC responses on `topic` for `ids`, by id."""
    consumer = KafkaConsumer(topic, bootstrap_servers=server.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    found = {}
    deadline = time.time() + timeout_s
    try:
        while len(found) < len(ids) and time.time() < deadline:
            for record in consumer:
                headers = dict(record.headers)
                correlation = headers.get("correlation_id", b"").decode()
                if correlation in ids and headers.get("mcp.message") == b"response":
                    found[correlation] = json.loads(record.value)
    finally:
        consumer.close()
    missing = set(ids) - set(found)
    assert not missing, f"no answer for {missing}"
    return found


def test_a_tool_call_from_python_through_topics_and_back(tmp_path):
    server = serve_readme_example(tmp_path)
    try:
        client = admin(server)
        client.create_topics([NewTopic("py.replies", 1, 1)])
        client.close()
        producer = KafkaProducer(bootstrap_servers=server.bootstrap)
        init = request(producer, "initialize", {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "pytest", "version": "1"}}, "py.replies")
        listed = request(producer, "tools/list", {}, "py.replies")
        forecast = request(producer, "tools/call",
                           {"name": "forecast", "arguments": {"city": "Oslo"}}, "py.replies")
        unknown = request(producer, "tools/call",
                          {"name": "forecast", "arguments": {"city": "Gotham"}}, "py.replies")
        producer.send("mcp.weather.requests", b"{broken", headers=[
            ("reply_to", b"py.replies"), ("correlation_id", b"broken-1")])
        producer.flush()
        producer.close()
        got = answers(server, "py.replies", {init, listed, forecast, unknown, "broken-1"})
        assert got[init]["result"]["serverInfo"]["name"] == "weather"
        names = {tool["name"] for tool in got[listed]["result"]["tools"]}
        assert {"forecast", "record_observation", "slow_forecast"} <= names
        content = got[forecast]["result"]["content"][0]["text"]
        assert json.loads(content) == {"city": "Oslo", "temp_c": 21, "conditions": "sunny"}
        assert got[unknown]["result"]["isError"] is True
        assert "Gotham" in got[unknown]["result"]["content"][0]["text"]
        assert got["broken-1"]["error"]["code"] == -32700
    finally:
        server.stop()
