"""Certificate reload: rotated files are served to new handshakes, with no restart,
no dropped connection, and no failed handshake. Loopback only, bounded in time."""

from __future__ import annotations

import http.client
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509

from tests.serving import serving
from webhook.certs import write_bundle
from webhook.metrics import Metrics
from webhook.tls import CertReloader

ROOT = Path(__file__).resolve().parents[1]


def serial_of(der: bytes | None) -> int:
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def file_serial(path: Path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def client_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    return context


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    write_bundle(tmp_path, ["localhost", "127.0.0.1"])
    return tmp_path


def handshake_serial(server: ssl.SSLContext, client: ssl.SSLContext) -> int:
    """One in-memory TLS handshake; the serial of the certificate the server sent."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    from_client, from_server = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_side = client.wrap_bio(to_client, from_client, server_hostname="localhost")
    server_side = server.wrap_bio(to_server, from_server, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for name, side in (("client", client_side), ("server", server_side)):
            try:
                side.do_handshake()
                done[name] = True
            except ssl.SSLWantReadError:
                pass
        to_server.write(from_client.read())
        to_client.write(from_server.read())
        if all(done.values()):
            return serial_of(client_side.getpeercert(binary_form=True))
    raise AssertionError("handshake did not complete")


def test_new_handshakes_get_the_rotated_certificate(bundle: Path) -> None:
    reloader = CertReloader(bundle / "tls.crt", bundle / "tls.key", interval=0)
    server = reloader.server_context()
    client = client_context(bundle / "ca.crt")
    first = file_serial(bundle / "tls.crt")
    assert handshake_serial(server, client) == first
    write_bundle(bundle, ["localhost", "127.0.0.1"])  # new leaf, same CA
    second = file_serial(bundle / "tls.crt")
    assert second != first
    assert handshake_serial(server, client) == second
    assert reloader.reloads == 1


def test_half_written_pair_keeps_the_old_certificate(bundle: Path) -> None:
    reloader = CertReloader(bundle / "tls.crt", bundle / "tls.key", interval=0)
    server = reloader.server_context()
    client = client_context(bundle / "ca.crt")
    before = file_serial(bundle / "tls.crt")
    good = (bundle / "tls.crt").read_bytes()
    (bundle / "tls.crt").write_bytes(good[: len(good) // 2])  # mid-rotation
    assert handshake_serial(server, client) == before
    assert reloader.reloads == 0
    write_bundle(bundle, ["localhost"])
    assert handshake_serial(server, client) == file_serial(bundle / "tls.crt")


def test_checks_are_throttled(bundle: Path) -> None:
    reloader = CertReloader(bundle / "tls.crt", bundle / "tls.key", interval=3600)
    reloader.server_context()
    write_bundle(bundle, ["localhost"])
    assert reloader.maybe_reload() is False  # within the interval: not even a stat


def test_expiry_metric_and_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_bundle(tmp_path, ["localhost"], days=10)
    reloader = CertReloader(tmp_path / "tls.crt", tmp_path / "tls.key")
    with caplog.at_level("WARNING", logger="webhook.tls"):
        reloader.server_context()
    assert any("expires in" in r.getMessage() for r in caplog.records)
    metrics = Metrics()
    metrics.watch_certificate(reloader)
    value = metrics.registry.get_sample_value(
        "heartbeat_webhook_certificate_expiry_timestamp_seconds"
    )
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    assert value == cert.not_valid_after_utc.timestamp()


# --- through the real `serve` command -----------------------------------------


@pytest.fixture
def served(bundle: Path) -> Iterator[tuple[int, Path]]:
    with serving(bundle, "--log-level", "warning") as (_, port):
        yield port, bundle


def test_serve_rotates_without_dropping_a_kept_alive_connection(
    served: tuple[int, Path],
) -> None:
    port, bundle = served
    context = client_context(bundle / "ca.crt")
    kept = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    kept.request("GET", "/healthz")
    assert kept.getresponse().read() == b'{"status":"ok"}'
    assert kept.sock is not None
    old = serial_of(kept.sock.getpeercert(binary_form=True))  # type: ignore[attr-defined]

    write_bundle(bundle, ["localhost", "127.0.0.1"])
    new = file_serial(bundle / "tls.crt")
    time.sleep(1.1)  # the reload check runs at most once a second

    fresh = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    fresh.request("GET", "/healthz")
    assert fresh.getresponse().status == 200
    assert fresh.sock is not None
    assert serial_of(fresh.sock.getpeercert(binary_form=True)) == new != old  # type: ignore[attr-defined]

    kept.request("GET", "/healthz")  # the old connection is still served
    assert kept.getresponse().status == 200
    kept.close()
    fresh.close()
