"""pytest fixtures: one fresh agentlog broker per test (shared by tests/python and tests/kcat)."""
import pytest

from agentlog_harness import Broker


def _start(settings):
    broker = Broker(settings)
    yield broker
    code = broker.stop()
    if code != 0:
        pytest.fail(f"broker exited with {code!r} after SIGTERM (expected 0); stderr tail:\n"
                    f"{broker.stderr_tail()}")
    broker.cleanup()


@pytest.fixture
def broker():
    """A fresh broker (num.partitions=3) per test, stopped with SIGTERM afterwards."""
    yield from _start({"num.partitions": 3})


@pytest.fixture
def broker_factory():
    """Start brokers with custom --set settings; all are stopped with SIGTERM at teardown."""
    started = []

    def start(settings):
        b = Broker(settings)
        started.append(b)
        return b

    yield start
    failures = []
    for b in started:
        code = b.stop()
        if code != 0:
            failures.append(f"broker {b.bootstrap} exited with {code!r}; stderr:\n{b.stderr_tail()}")
        else:
            b.cleanup()
    if failures:
        pytest.fail("\n".join(failures))
