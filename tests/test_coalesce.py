"""CoalescingTransport: what one loop turn writes goes out as one write."""

from __future__ import annotations

import asyncio
from typing import Any

from webhook.coalesce import CoalescingTransport


class Recording:
    """Stands in for the socket transport: records writes and close."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closing = False
        self.extra = {"peername": ("127.0.0.1", 5555)}

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.writes.append(data)

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.extra.get(name, default)


def wrapped() -> tuple[CoalescingTransport, Recording]:
    inner = Recording()
    return CoalescingTransport(inner, asyncio.get_running_loop()), inner  # type: ignore[arg-type]


def test_head_and_body_of_one_turn_are_one_write() -> None:
    async def scenario() -> list[list[bytes]]:
        transport, inner = wrapped()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        seen = [list(inner.writes)]
        await asyncio.sleep(0)
        seen.append(list(inner.writes))
        transport.write(b"next")
        await asyncio.sleep(0)
        seen.append(list(inner.writes))
        return seen

    before, after, later = asyncio.run(scenario())
    assert before == []
    assert after == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
    assert later == [*after, b"next"]


def test_close_writes_what_is_held_first() -> None:
    async def scenario() -> Recording:
        transport, inner = wrapped()
        transport.write(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        transport.close()
        await asyncio.sleep(0)  # the scheduled flush finds nothing left
        return inner

    inner = asyncio.run(scenario())
    assert inner.writes == [b"HTTP/1.1 400 Bad Request\r\n\r\n"]
    assert inner.closing


def test_nothing_is_written_to_a_transport_closed_under_it() -> None:
    async def scenario() -> Recording:
        transport, inner = wrapped()
        transport.write(b"late")
        inner.close()  # e.g. the peer went away
        await asyncio.sleep(0)
        return inner

    assert asyncio.run(scenario()).writes == []


def test_other_calls_reach_the_transport() -> None:
    async def scenario() -> Any:
        transport, _ = wrapped()
        return transport.get_extra_info("peername")

    assert asyncio.run(scenario()) == ("127.0.0.1", 5555)
