"""One TLS record and one send() per HTTP response instead of two.

uvicorn writes a response's status line and headers to the transport when the
app sends ``http.response.start``, and the body when it sends
``http.response.body``. Over TLS each write is its own record, encrypted and
sent at once: two send() syscalls on every admission answer, each waking the
client. CoalescingTransport holds writes until the event loop's current turn
ends, then writes them as one.

Measured with bench/ (typical payload, wrk, TLS): the server's CPU per review
fell by ~20 us, about a sixth, for the webhook and for the bare baseline alike.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.auto import AutoHTTPProtocol


class CoalescingTransport:
    """Wraps a transport; ``write`` joins what one loop turn writes.

    Everything but write and close goes to the wrapped transport, which keeps
    flow control (pause_writing) and buffering. ``close`` writes what is held
    first; ``abort`` drops it, as abort drops the transport's own buffer.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._held:
            self._loop.call_soon(self._flush)
        self._held.append(bytes(data))

    def writelines(self, lines: list[bytes]) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def _flush(self) -> None:
        held = self._held
        if not held:
            return
        self._held = []
        if not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class CoalescingHTTPProtocol(AutoHTTPProtocol):  # type: ignore[misc,valid-type]
    """uvicorn's own HTTP protocol (httptools, else h11) over a CoalescingTransport."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        wrapped = CoalescingTransport(
            cast(asyncio.Transport, transport), asyncio.get_running_loop()
        )
        super().connection_made(wrapped)
