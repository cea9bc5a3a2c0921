"""The real `serve` command on loopback: draining on SIGTERM, keep-alive past 90 s' worth."""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import serving
from webhook.certs import write_bundle

ROOT = Path(__file__).resolve().parents[1]
REVIEW = json.dumps(
    {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "drain-1",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "object": {
                "metadata": {"annotations": {"heartbeat/enabled": "true"}},
                "spec": {"containers": [{"name": "w", "image": "x"}]},
            },
        },
    }
)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, ssl.SSLContext]]:
    write_bundle(tmp_path, ["localhost", "127.0.0.1"])
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with serving(tmp_path, "--drain-seconds", "1.5") as (process, port):
        yield process, port, context


def post(connection: http.client.HTTPSConnection) -> http.client.HTTPResponse:
    connection.request("POST", "/mutate", REVIEW, {"Content-Type": "application/json"})
    return connection.getresponse()


def test_sigterm_drains_then_exits(
    server: tuple[subprocess.Popen[bytes], int, ssl.SSLContext], tmp_path: Path
) -> None:
    process, port, context = server
    kept = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    first = post(kept)
    assert first.status == 200 and first.getheader("connection") != "close"
    first.read()

    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    # Still answering, but not ready, and asking clients to reconnect elsewhere.
    probe = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    probe.request("GET", "/readyz")
    ready = probe.getresponse()
    assert ready.status == 503 and json.loads(ready.read()) == {"status": "draining"}
    during = post(kept)
    body = json.loads(during.read())
    assert during.status == 200 and body["response"]["uid"] == "drain-1"
    assert during.getheader("connection") == "close"

    assert process.wait(15) in (0, -signal.SIGTERM)
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1)
    # Both answers were logged as JSON decision lines, flushed on the way out.
    lines = [json.loads(line) for line in (tmp_path / f"serve-{port}.log").open()]
    decisions = [line for line in lines if line.get("msg") == "admission"]
    assert [(d["uid"], d["decision"], d["containers"]) for d in decisions] == [
        ("drain-1", "injected", ["w"])
    ] * 2
    assert {d["logger"] for d in decisions} == {"webhook.admission"}


def test_idle_keep_alive_connection_is_not_closed_early(
    server: tuple[subprocess.Popen[bytes], int, ssl.SSLContext],
) -> None:
    """uvicorn's default keep-alive is 5 s; ours must outlive the apiserver's 90 s pool.

    Waiting 95 s belongs to the fault suite; here 6 s proves the default is not in use.
    """
    _, port, context = server
    kept = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=5)
    post(kept).read()
    time.sleep(6)
    again = post(kept)  # http.client would raise RemoteDisconnected if it had been closed
    assert again.status == 200
    again.read()


def test_a_response_is_one_tls_record(
    server: tuple[subprocess.Popen[bytes], int, ssl.SSLContext],
) -> None:
    """serve writes status line, headers and body together (webhook/coalesce.py).

    OpenSSL returns at most one record per read, so with uvicorn's two writes
    the first read would hold the headers alone.
    """
    _, port, context = server
    _assert_first_read_is_the_whole_answer(port, context)


# uvicorn falls back to its h11 protocol when httptools is missing; the
# coalescing wrapper subclasses whichever it picked.
WITHOUT_HTTPTOOLS = (
    "import sys, runpy; sys.modules['httptools'] = None; "
    "from uvicorn.protocols.http.auto import AutoHTTPProtocol; "
    "print('HTTP protocol:', AutoHTTPProtocol.__name__, flush=True); "
    "runpy.run_module('webhook', run_name='__main__')"
)


def test_a_response_is_one_tls_record_on_h11_too(tmp_path: Path) -> None:
    write_bundle(tmp_path, ["localhost", "127.0.0.1"])
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    with serving(tmp_path, python=("-c", WITHOUT_HTTPTOOLS)) as (_, port):
        _assert_first_read_is_the_whole_answer(port, context)
    (log,) = tmp_path.glob("serve-*.log")
    assert "HTTP protocol: H11Protocol" in log.read_text()


def _assert_first_read_is_the_whole_answer(port: int, context: ssl.SSLContext) -> None:
    request = (
        f"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(REVIEW)}\r\n\r\n{REVIEW}"
    ).encode()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(request)
        first = tls.recv(65536)
    head, _, body = first.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    assert json.loads(body)["response"]["uid"] == "drain-1"
