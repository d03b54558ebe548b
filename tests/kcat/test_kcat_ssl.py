"""kcat over SSL (TLS, no SASL) against the test CA, and kcat with a wrong CA: a clean
TLS failure, no data."""
import os
import shutil
import subprocess
import tempfile

import pytest

from agentlog_harness import REPO_ROOT

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
pytestmark = pytest.mark.skipif(KCAT is None, reason="kcat is not installed (scripts/test.sh installs it)")


def make_certs(d):
    subprocess.run([str(REPO_ROOT / "scripts" / "make-test-certs.sh"), d], check=True,
                   stdout=subprocess.DEVNULL)


def test_kcat_produces_and_consumes_over_ssl(broker_factory):
    with tempfile.TemporaryDirectory() as certs, tempfile.TemporaryDirectory() as other:
        make_certs(certs)
        make_certs(other)  # a different CA: must not be trusted
        b = broker_factory({"listeners": "SSL://127.0.0.1:0",
                            "ssl.keystore.location": os.path.join(certs, "broker.pem"),
                            "num.partitions": 1})
        address = b.listener("SSL")

        def kcat(ca, *args, input=None):
            cmd = [KCAT, "-b", address, "-X", "security.protocol=ssl",
                   "-X", f"ssl.ca.location={ca}", "-X", "socket.timeout.ms=10000", *args]
            return subprocess.run(cmd, input=input, capture_output=True, timeout=60)

        ca = os.path.join(certs, "ca.crt")
        r = kcat(ca, "-P", "-t", "kc-tls", input=b"one\ntwo\nthree\n")
        assert r.returncode == 0, r.stderr
        r = kcat(ca, "-C", "-t", "kc-tls", "-o", "beginning", "-e", "-q")
        assert r.returncode == 0, r.stderr
        assert r.stdout.decode().split() == ["one", "two", "three"]

        r = kcat(os.path.join(other, "ca.crt"), "-L", "-m", "5")
        assert r.returncode != 0
        assert b"certificate verify failed" in r.stderr or b"SSL handshake failed" in r.stderr, r.stderr
        assert "TLS handshake failed" in b.stderr_tail()


def test_kcat_with_a_client_certificate_when_ssl_client_auth_is_required(broker_factory):
    with tempfile.TemporaryDirectory() as certs:
        make_certs(certs)
        b = broker_factory({"listeners": "SSL://127.0.0.1:0",
                            "ssl.keystore.location": os.path.join(certs, "broker.pem"),
                            "ssl.truststore.location": os.path.join(certs, "ca.crt"),
                            "ssl.client.auth": "required"})
        address = b.listener("SSL")
        base = [KCAT, "-b", address, "-X", "security.protocol=ssl",
                "-X", f"ssl.ca.location={os.path.join(certs, 'ca.crt')}",
                "-X", "socket.timeout.ms=10000"]
        with_cert = base + ["-X", f"ssl.certificate.location={os.path.join(certs, 'client.crt')}",
                            "-X", f"ssl.key.location={os.path.join(certs, 'client.key')}"]
        r = subprocess.run(with_cert + ["-L", "-m", "10"], capture_output=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert f"broker 1 at {address}".encode() in r.stdout or address.encode() in r.stdout

        # Without a certificate the handshake fails and nothing is served.
        r = subprocess.run(base + ["-L", "-m", "5"], capture_output=True, timeout=60)
        assert r.returncode != 0
        assert "TLS handshake failed" in b.stderr_tail()


def test_untrusted_certificates_are_refused_both_ways(broker_factory):
    """A client certificate from another CA gets a TLS alert and nothing is served; a
    client that does not trust the broker's CA refuses the broker. The broker keeps
    serving trusted clients and logs why in one line."""
    with tempfile.TemporaryDirectory() as certs, tempfile.TemporaryDirectory() as other:
        make_certs(certs)
        make_certs(other)
        b = broker_factory({"listeners": "SSL://127.0.0.1:0",
                            "ssl.keystore.location": os.path.join(certs, "broker.pem"),
                            "ssl.truststore.location": os.path.join(certs, "ca.crt"),
                            "ssl.client.auth": "required"})
        address = b.listener("SSL")

        def kcat(ca_dir, cert_dir):
            command = [KCAT, "-b", address, "-X", "security.protocol=ssl",
                       "-X", f"ssl.ca.location={os.path.join(ca_dir, 'ca.crt')}",
                       "-X", f"ssl.certificate.location={os.path.join(cert_dir, 'client.crt')}",
                       "-X", f"ssl.key.location={os.path.join(cert_dir, 'client.key')}",
                       "-X", "socket.timeout.ms=10000", "-L", "-m", "5"]
            return subprocess.run(command, capture_output=True, timeout=60)

        untrusted_client = kcat(certs, other)
        assert untrusted_client.returncode != 0
        assert "TLS handshake failed" in b.stderr_tail()

        distrusting_client = kcat(other, certs)
        assert distrusting_client.returncode != 0

        trusted = kcat(certs, certs)
        assert trusted.returncode == 0, trusted.stderr

