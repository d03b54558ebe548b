#!/usr/bin/env python3
"""The broker's memory after many topics come and go (issue 18's target: RSS after
creating and deleting 500 topics of 4 partitions with 10k records each stays under
64 MB + the configured cache budget).

usage: .venv/bin/python scripts/rss-topics.py [--binary target/release/agentlog]
           [--topics 500] [--partitions 4] [--records 10000] [--size 100] [--set KEY=VALUE]

Starts the broker on 127.0.0.1:0 with a fresh data directory, reads its RSS from
/proc/<pid>/status when idle, after producing every topic (confluent-kafka, acks=1,
linger 5 ms), after deleting them all, and again after a quiet minute, and prints one
line per stage (and JSON with --json). Nothing here is timed.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time

from broker_process import rss_kib, start_broker

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic






def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/agentlog")
    parser.add_argument("--topics", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--quiet", type=int, default=60, help="seconds idle after deleting")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--trim",
        action="store_true",
        help="at the end, call malloc_trim(0) in the broker with gdb (diagnosis)",
    )
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], help="a broker setting key=value"
    )
    args = parser.parse_args()

    stages = []
    with tempfile.TemporaryDirectory() as data_dir:
        proc, bootstrap = start_broker(args.binary, data_dir, args.settings)
        try:
            time.sleep(1)
            stages.append(("idle", rss_kib(proc.pid)))
            admin = AdminClient({"bootstrap.servers": bootstrap})
            names = [f"rss-{i}" for i in range(args.topics)]
            for chunk in range(0, len(names), 50):
                futures = admin.create_topics(
                    [NewTopic(n, args.partitions, 1) for n in names[chunk : chunk + 50]]
                )
                for future in futures.values():
                    future.result()
            stages.append(("topics created", rss_kib(proc.pid)))
            producer = Producer(
                {"bootstrap.servers": bootstrap, "acks": 1, "linger.ms": 5}
            )
            value = b"v" * args.size
            peak = 0
            for n, name in enumerate(names):
                for i in range(args.records):
                    while True:
                        try:
                            producer.produce(name, value, partition=i % args.partitions)
                            break
                        except BufferError:
                            producer.poll(0.05)
                    if i % 1000 == 0:
                        producer.poll(0)
                if n % 25 == 0:
                    peak = max(peak, rss_kib(proc.pid))
            if producer.flush(120) != 0:
                raise RuntimeError("records left unsent")
            stages.append(("all produced", rss_kib(proc.pid)))
            stages.append(("peak while producing", max(peak, stages[-1][1])))
            for chunk in range(0, len(names), 50):
                futures = admin.delete_topics(names[chunk : chunk + 50])
                for future in futures.values():
                    future.result()
            time.sleep(5)
            stages.append(("deleted, +5 s", rss_kib(proc.pid)))
            time.sleep(args.quiet)
            stages.append((f"deleted, +{5 + args.quiet} s", rss_kib(proc.pid)))
            if args.trim:
                # Diagnosis: what the allocator holds free but not returned to the OS.
                subprocess.run(
                    ["gdb", "-p", str(proc.pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    check=False,
                )
                stages.append(("after malloc_trim(0)", rss_kib(proc.pid)))
        finally:
            proc.terminate()
            proc.wait(30)
    if args.json:
        print(json.dumps({name: kib for name, kib in stages}))
    else:
        for name, kib in stages:
            print(f"{name:24} {kib / 1024:8.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
