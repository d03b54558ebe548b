"""Calls the weather server's tools through agentlog's topics with kafka-python, as
docs/mcp-over-kafka.md specifies: one JSON-RPC request per record on
mcp.weather.requests, answers on our reply topic matched by correlation id.

    python3 call.py BOOTSTRAP [CITY ...]
"""

import json
import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer

REPLY_TOPIC = "example.mcp.replies"


def main():
    bootstrap, cities = sys.argv[1], sys.argv[2:] or ["Oslo", "Bergen", "Gotham"]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    sent = {}
    requests = [("tools/list", {})] + [
        ("tools/call", {"name": "forecast", "arguments": {"city": city}}) for city in cities]
    started = time.time()
    for method, params in requests:
        call_id = str(uuid.uuid4())
        message = {"jsonrpc": "2.0", "id": call_id, "method": method, "params": params}
        producer.send("mcp.weather.requests", json.dumps(message).encode(),
                      key=call_id.encode(),
                      headers=[("reply_to", REPLY_TOPIC.encode()),
                               ("correlation_id", call_id.encode())])
        sent[call_id] = (method, params)
    producer.flush()
    consumer = KafkaConsumer(REPLY_TOPIC, bootstrap_servers=bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=30000)
    for record in consumer:
        correlation = dict(record.headers).get("correlation_id", b"").decode()
        if correlation not in sent:
            continue
        method, params = sent.pop(correlation)
        result = json.loads(record.value).get("result", {})
        if method == "tools/list":
            print("tools:", ", ".join(tool["name"] for tool in result["tools"]))
        else:
            text = result["content"][0]["text"]
            print(f"{params['arguments']['city']}: {'error: ' if result.get('isError') else ''}{text}")
        if not sent:
            break
    print(f"{len(requests) - len(sent)} answers in {time.time() - started:.2f} s")
    sys.exit(1 if sent else 0)


if __name__ == "__main__":
    main()
