"""HTTP-level abuse against the real `serve` on loopback: the server stays up and keeps
answering other clients. Every test is bounded in time and stops by itself."""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serving import serving
from webhook.certs import write_bundle

ROOT = Path(__file__).resolve().parents[1]


def review(uid: str = "abuse") -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "object": {
                    "metadata": {"annotations": {"heartbeat/enabled": "true"}},
                    "spec": {"containers": [{"name": "w", "image": "x"}]},
                },
            },
        }
    ).encode()


class Server:
    def __init__(self, port: int, context: ssl.SSLContext, process: subprocess.Popen[bytes]):
        self.port, self.context, self.process = port, context, process

    async def request(
        self, body: bytes, content_type: bytes = b"application/json", timeout: float = 5
    ) -> tuple[int, bytes]:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", self.port, ssl=self.context, server_hostname="localhost"
            ),
            timeout,
        )
        head = (
            b"POST /mutate HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            b"Content-Type: " + content_type + b"\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        writer.write(head + body)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
        writer.close()
        status = int(raw.split(b" ", 2)[1])
        return status, raw.split(b"\r\n\r\n", 1)[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    certs = tmp_path_factory.mktemp("abuse-certs")
    write_bundle(certs, ["localhost", "127.0.0.1"])
    with serving(certs, "--log-level", "warning") as (process, port):
        yield Server(port, ssl.create_default_context(cafile=str(certs / "ca.crt")), process)


def healthy(server: Server) -> None:
    status, body = asyncio.run(server.request(review("after")))
    assert status == 200 and json.loads(body)["response"]["uid"] == "after"
    assert server.process.poll() is None


def test_huge_body_is_413_and_the_server_stays_up(server: Server) -> None:
    status, body = asyncio.run(server.request(b"x" * (8 * 1024 * 1024)))
    assert status == 413 and json.loads(body)["code"] == 413
    healthy(server)


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b"[" * 200_000 + b"]" * 200_000, b"application/json", 400),
        (b"\xff\xfe\x00garbage", b"application/json", 400),
        (review(), b"text/plain", 415),
        (review(), b"application/json; charset=utf-8", 200),
    ],
    ids=["deep-nesting", "non-utf8", "wrong-type", "charset"],
)
def test_malformed_requests(server: Server, body: bytes, content_type: bytes, status: int) -> None:
    got, payload = asyncio.run(server.request(body, content_type))
    assert got == status
    json.loads(payload)
    healthy(server)


def test_duplicate_keys_take_the_last_value(server: Server) -> None:
    # JSON leaves duplicates undefined; Python (like Go's encoding/json) keeps the last.
    first = b'{"uid": "first", "kind": {"group": "", "kind": "Pod"}, "operation": "CREATE"}'
    body = review("second")[:-1] + b', "request": ' + first + b"}"
    status, payload = asyncio.run(server.request(body))
    assert status == 200 and json.loads(payload)["response"]["uid"] == "first"


def test_slow_clients_do_not_starve_others(server: Server) -> None:
    async def trickle() -> None:
        _reader, writer = await asyncio.open_connection(
            "127.0.0.1", server.port, ssl=server.context, server_hostname="localhost"
        )
        body = review("slow")
        writer.write(
            b"POST /mutate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for byte in body[:20]:  # a byte every 0.1 s: never finishes within the test
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()

    async def scenario() -> list[float]:
        slow = [asyncio.create_task(trickle()) for _ in range(50)]
        await asyncio.sleep(0.5)
        timings = []
        for index in range(10):
            started = time.perf_counter()
            status, _ = await server.request(review(f"fast-{index}"), timeout=3)
            assert status == 200
            timings.append(time.perf_counter() - started)
        await asyncio.gather(*slow)
        return timings

    timings = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert len(timings) == 10  # every fast request answered within its 3 s bound
    healthy(server)


def test_many_concurrent_connections(server: Server) -> None:
    async def scenario() -> list[int]:
        results = await asyncio.gather(
            *(server.request(review(f"c{i}"), timeout=20) for i in range(200))
        )
        return [status for status, _ in results]

    assert asyncio.run(asyncio.wait_for(scenario(), 60)) == [200] * 200
    healthy(server)
