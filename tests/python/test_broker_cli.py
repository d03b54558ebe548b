"""The binary's process contract, as the client suites rely on it."""
import signal

import pytest

from agentlog_harness import Broker
from clients import producer


def _stop_ok(b, sig=signal.SIGTERM):
    code = b.stop(sig=sig)
    assert code == 0, f"exit {code!r} after {sig!r}; stderr:\n{b.stderr_tail()}"
    b.cleanup()


def test_bare_invocation_is_serve_and_sigint_exits_0():
    b = Broker({"num.partitions": 2}, serve=False)  # `agentlog --listen ... --data-dir ...`
    try:
        assert b.host == "127.0.0.1" and b.port > 0
        p = producer(b)
        try:
            assert p.partitions_for("cli-bare") == {0, 1}
        finally:
            p.close()
    finally:
        _stop_ok(b, signal.SIGINT)


def test_settings_from_agentlog_env_vars():
    b = Broker(env={"AGENTLOG_NUM_PARTITIONS": "4"})
    try:
        p = producer(b)
        try:
            assert p.partitions_for("cli-env") == {0, 1, 2, 3}
        finally:
            p.close()
    finally:
        _stop_ok(b)


def test_agentlog_bin_in_environment_does_not_stop_the_broker():
    """AGENTLOG_BIN is the variable the test suites (and scripts/test.sh) use to point at the
    binary, so it is routinely present in the environment of anything that spawns a broker
    (e.g. Rust integration tests run under scripts/test.sh). The broker must not treat it as
    an (unknown) setting and refuse to start."""
    try:
        b = Broker(env={"AGENTLOG_BIN": "/some/path/agentlog"}, startup_timeout=10)
    except RuntimeError as e:
        first = [ln for ln in str(e).splitlines() if ln.strip() and "backtrace" not in ln.lower()][:6]
        pytest.fail("broker refused to start with AGENTLOG_BIN set:\n" + "\n".join(first))
    _stop_ok(b)
