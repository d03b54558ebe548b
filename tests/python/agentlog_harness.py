"""Start/stop a real agentlog broker process for client compatibility tests.

Shared by tests/python and tests/kcat.  The binary is located through the
AGENTLOG_BIN environment variable, defaulting to target/debug/agentlog
relative to the repository root.
"""
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LISTEN_RE = re.compile(r"^agentlog listening on (\S+):(\d+)$")
SECURED_LISTEN_RE = re.compile(r"^agentlog listening on ([A-Z_]+)://(\S+):(\d+)$")


def agentlog_bin():
    path = os.environ.get("AGENTLOG_BIN") or str(REPO_ROOT / "target" / "debug" / "agentlog")
    path = Path(path)
    if not path.is_absolute():
        path = REPO_ROOT / path
    if not path.exists():
        raise FileNotFoundError(f"agentlog binary not found at {path} (build it or set AGENTLOG_BIN)")
    return str(path)


def broker_env(extra=None):
    """The broker reads AGENTLOG_* variables as settings (AGENTLOG_NUM_PARTITIONS=3 ...), so
    tests must not leak the caller's AGENTLOG_* (AGENTLOG_BIN included) into it: only
    AGENTLOG_LOG (log filter) is kept, plus whatever the test passes explicitly."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AGENTLOG_") or k == "AGENTLOG_LOG"}
    env.update(extra or {})
    return env


class Broker:
    """One broker process on 127.0.0.1:<ephemeral> with a fresh data dir."""

    def __init__(self, settings=None, startup_timeout=30.0, args=None, env=None, serve=True,
                 data_dir=None):
        self.tmp = tempfile.mkdtemp(prefix="agentlog-test-")
        # pass data_dir to restart on an existing log directory
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.stderr_path = os.path.join(self.tmp, "broker.stderr.log")
        cmd = [agentlog_bin()] + (["serve"] if serve else [])
        cmd += ["--listen", "127.0.0.1:0", "--data-dir", self.data_dir]
        for k, v in (settings or {}).items():
            cmd += ["--set", f"{k}={v}"]
        cmd += list(args or [])
        self.cmd = cmd
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL, env=broker_env(env))
        self._stdout_buf = b""
        self._secured = {}
        self.host, self.port = self._await_listen_line(startup_timeout)
        self.bootstrap = f"{self.host}:{self.port}"
        self.exit_code = None

    def _await_listen_line(self, timeout):
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        buf = b""
        try:
            while time.monotonic() < deadline:
                if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
                    continue
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    text = line.decode(errors="replace").strip()
                    secured = SECURED_LISTEN_RE.match(text)
                    if secured:
                        self._secured[secured.group(1)] = f"{secured.group(2)}:{secured.group(3)}"
                        continue
                    m = LISTEN_RE.match(text)
                    if m:
                        self._stdout_buf = buf
                        return m.group(1), int(m.group(2))
        finally:
            sel.close()
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError(
            f"broker did not print 'agentlog listening on HOST:PORT' within {timeout}s; "
            f"stdout so far={buf!r}; stderr:\n{self.stderr_tail()}")

    def listener(self, protocol, timeout=10.0):
        """host:port of the listener with this security protocol ("SASL_SSL", ...), from
        its 'agentlog listening on PROTOCOL://host:port' line."""
        deadline = time.monotonic() + timeout
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        try:
            while protocol not in self._secured:
                while b"\n" in self._stdout_buf:
                    line, self._stdout_buf = self._stdout_buf.split(b"\n", 1)
                    m = SECURED_LISTEN_RE.match(line.decode(errors="replace").strip())
                    if m:
                        self._secured[m.group(1)] = f"{m.group(2)}:{m.group(3)}"
                if protocol in self._secured:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(f"no {protocol} listening line")
                if sel.select(timeout=left):
                    chunk = os.read(self.proc.stdout.fileno(), 4096)
                    if not chunk:
                        raise RuntimeError(f"broker closed stdout before a {protocol} line")
                    self._stdout_buf += chunk
        finally:
            sel.close()
        return self._secured[protocol]

    def stderr_tail(self, n=4000):
        try:
            with open(self.stderr_path, "rb") as f:
                return f.read().decode(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self, timeout=30.0, sig=signal.SIGTERM):
        """Send SIGTERM (or sig) to the broker and return its exit code."""
        if self.exit_code is not None:
            return self.exit_code
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.exit_code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                self.exit_code = "timeout (killed after SIGTERM)"
        else:
            self.exit_code = self.proc.returncode
        self.proc.stdout.close()
        self._stderr.close()
        return self.exit_code

    def cleanup(self):
        shutil.rmtree(self.tmp, ignore_errors=True)
