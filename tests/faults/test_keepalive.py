"""A kept-alive connection idle for 95 s, longer than the apiserver's 90 s idle pool,
is still served when reused: the same socket, no reconnect."""

from __future__ import annotations

from tests.faults.harness import IDLE_SECONDS, IdleReuse


def test_connection_idle_past_the_apiservers_pool_is_reused(idle_connection: IdleReuse) -> None:
    # Started with the package (conftest.idle_connection) and collected last, so the
    # wait overlaps the other fault tests; alone, this test takes the full 95 s.
    assert idle_connection.done.wait(IDLE_SECONDS + 60), "the idle connection never finished"
    result = idle_connection
    print(
        f"\nkeep-alive: idle {result.idle_seconds:.0f}s, local {result.local_before} -> "
        f"{result.local_after}, same socket {result.same_socket}, error {result.error!r}"
    )
    assert result.error == ""
    assert result.first_status == 200 and result.first_connection_header != "close"
    assert not result.eof_seen_before_reuse  # the server had not closed it meanwhile
    assert result.second_status == 200
    assert result.same_socket and result.local_after == result.local_before
