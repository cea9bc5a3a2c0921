"""Run the real `heartbeat-webhook serve` on loopback for a test, and stop it after."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    # Racy by nature (another process may take it first); tests on loopback
    # only, and a lost race shows as a server that never starts.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def serving(
    cert_dir: Path, *extra: str, python: tuple[str, ...] = ("-m", "webhook")
) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`serve` with cert_dir's tls.crt/tls.key; yields (process, port) once it accepts.

    ``python``: how the interpreter runs the CLI (``-c CODE`` can set it up first)."""
    port = free_port()
    log = cert_dir / f"serve-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable, *python, "serve", "--host", "127.0.0.1",
                "--port", str(port), "--cert-file", str(cert_dir / "tls.crt"),
                "--key-file", str(cert_dir / "tls.key"), *extra,
            ],
            cwd=ROOT, stdout=output, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"serve did not start:\n{log.read_text()}") from None
                time.sleep(0.1)
        yield process, port
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
