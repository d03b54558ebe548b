#!/usr/bin/env python3
"""The broker's memory with many idle client connections (issue 18's target: 10,000
idle connections held, broker RSS < 100 MB).

usage: .venv/bin/python scripts/idle-connections.py [--binary target/release/agentlog]
           [--connections 10000] [--set KEY=VALUE] [--tls CERT_DIR]

With --tls CERT_DIR (made by scripts/make-test-certs.sh) the connections go to an SSL
listener instead, each after its TLS handshake (issue 16: 1,000 TLS connections held).

Starts the broker on 127.0.0.1:0 with a fresh data directory, opens the connections,
each sending one ApiVersions request (v0, as a client's first request) and reading its
answer, then holds them all open and reads the broker's VmRSS and open descriptors.
Both processes need `ulimit -n` above the connection count (the script raises its own
soft limit to its hard limit; the broker inherits it).
"""
import argparse
import os
import resource
import socket
import ssl
import struct
import sys
import tempfile
import time

from broker_process import rss_kib, start_broker




def api_versions_request(correlation_id):
    client_id = b"idle"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def read_exact(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    return data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary", default="target/release/agentlog")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--set", dest="settings", action="append", default=[])
    parser.add_argument("--tls", metavar="CERT_DIR")
    args = parser.parse_args()
    context = None
    if args.tls:
        args.settings += [
            "listeners=PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
            f"ssl.keystore.location={os.path.join(args.tls, 'broker.pem')}",
        ]
        context = ssl.create_default_context(cafile=os.path.join(args.tls, "ca.crt"))
        context.check_hostname = False

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.connections + 100:
        sys.exit(f"ulimit -Hn is {hard}: too low for {args.connections} connections")

    with tempfile.TemporaryDirectory() as data_dir:
        proc, address = start_broker(args.binary, data_dir, args.settings)
        try:
            if context:
                # The SSL listener's line follows the PLAINTEXT one.
                address = proc.stdout.readline().strip().rsplit(" ", 1)[-1]
                address = address.removeprefix("SSL://")
            host, port = address.rsplit(":", 1)
            time.sleep(1)
            idle = rss_kib(proc.pid)
            sockets = []
            for i in range(args.connections):
                sock = socket.create_connection((host, int(port)))
                if context:
                    sock = context.wrap_socket(sock)
                sock.sendall(api_versions_request(i))
                (size,) = struct.unpack(">i", read_exact(sock, 4))
                read_exact(sock, size)
                sockets.append(sock)
            time.sleep(2)
            held = rss_kib(proc.pid)
            fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            print(f"idle broker                {idle / 1024:8.1f} MiB")
            print(f"{len(sockets)} connections held  {held / 1024:8.1f} MiB ({fds} fds)")
            print(
                f"per connection             {(held - idle) * 1024 / max(len(sockets), 1):8.0f} bytes"
            )
            for sock in sockets:
                sock.close()
            time.sleep(2)
            print(f"after closing them         {rss_kib(proc.pid) / 1024:8.1f} MiB")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
