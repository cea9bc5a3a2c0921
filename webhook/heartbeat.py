"""The worker side: write a heartbeat from your loop, and check one.

This module imports the standard library only. Workers install the package for
this module alone (``pip install heartbeat-webhook``, no extras).

Call :func:`write_heartbeat` from the loop itself, once per iteration::

    from webhook.heartbeat import write_heartbeat

    while True:
        run_job()
        write_heartbeat()
        time.sleep(30)

Never call it from a background thread or timer. A thread keeps beating while
the loop it is meant to watch is stuck, so the probe would call a hung worker
healthy: exactly the failure this project exists to catch.

The file holds decimal epoch seconds, the same format as ``date +%s``, so a
shell worker can beat with::

    date +%s > "$HEARTBEAT_PATH.tmp" && mv "$HEARTBEAT_PATH.tmp" "$HEARTBEAT_PATH"

``python -m webhook.heartbeat check PATH --max-age N`` is the probe for images
without ``/bin/sh``; it follows the same rules as the shell probe.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence

ENV_VAR = "HEARTBEAT_PATH"
DEFAULT_PATH = "/tmp/heartbeat"  # noqa: S108 (per container: /tmp is not shared)
# The probe rejects a beat further in the future than this. A writer may claim
# up to this much extra time for one known-long step (``allow=``); anything
# beyond it is treated as a corrupt file, not as a promise.
MAX_FUTURE_SECONDS = 3600
# Digits only, no leading zero (shells read 08 as bad octal), at most 12 digits
# (no shell arithmetic overflows), then at most one trailing newline.
_BEAT = re.compile(rb"[1-9][0-9]{0,11}\n?")
_READ_LIMIT = 64

__all__ = [
    "DEFAULT_PATH",
    "ENV_VAR",
    "MAX_FUTURE_SECONDS",
    "check_heartbeat",
    "heartbeat_loop",
    "resolve_path",
    "write_heartbeat",
]


def resolve_path(path: str | os.PathLike[str] | None = None) -> str:
    """The argument, else ``$HEARTBEAT_PATH``, else ``/tmp/heartbeat``."""
    if path is not None:
        return os.fspath(path)
    return os.environ.get(ENV_VAR) or DEFAULT_PATH


def write_heartbeat(path: str | os.PathLike[str] | None = None, *, allow: int = 0) -> str:
    """Record that the loop is alive, atomically, and return the path written.

    ``allow`` claims that many extra seconds before the next beat is due, for
    one step you know is long (at most ``MAX_FUTURE_SECONDS``). It writes a
    timestamp in the future; the next plain beat cancels it.

    Call this from the loop itself, never from a thread: see the module doc.
    The write goes to a temporary file in the same directory and is renamed
    over the old one, so the probe never reads a half-written file.
    """
    if not 0 <= allow <= MAX_FUTURE_SECONDS:
        raise ValueError(f"allow={allow!r}: must be between 0 and {MAX_FUTURE_SECONDS} seconds")
    target = resolve_path(path)
    directory = os.path.dirname(target) or "."
    os.makedirs(directory, exist_ok=True)
    data = f"{int(time.time()) + allow}\n".encode("ascii")
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".heartbeat-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, target)
    except BaseException:
        # Never leave temp files behind to fill a small emptyDir.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return target


def heartbeat_loop(interval: float, path: str | os.PathLike[str] | None = None) -> Iterator[int]:
    """Yield 0, 1, 2, ... forever, beating before each iteration.

    The beat is written in the caller's own thread, when the ``for`` loop asks
    for the next item, so it stops the moment the body hangs::

        for _ in heartbeat_loop(30):
            run_job()
    """
    count = 0
    while True:
        write_heartbeat(path)
        yield count
        count += 1
        time.sleep(interval)


def check_heartbeat(
    path: str,
    max_age: int,
    *,
    max_future: int = MAX_FUTURE_SECONDS,
    now: int | None = None,
) -> str | None:
    """Return why the beat at ``path`` is not fresh, or None when it is.

    Fresh means: the file holds a decimal epoch timestamp ``ts`` (optionally
    newline-terminated) with ``now - ts < max_age`` and ``ts <= now + max_future``.
    """
    try:
        with open(path, "rb") as handle:
            content = handle.read(_READ_LIMIT)
    except FileNotFoundError:
        return f"heartbeat: no file at {path}"
    except OSError as error:
        return f"heartbeat: cannot read {path}: {error.strerror}"
    # Shells' `read` drops NUL bytes and builtins cannot see them; drop them
    # here too so both probes give the same answer for the same file.
    content = content.replace(b"\0", b"")
    if not _BEAT.fullmatch(content):
        return f"heartbeat: {path} does not hold an epoch timestamp"
    beat = int(content)
    current = int(time.time()) if now is None else now
    if beat > current + max_future:
        return f"heartbeat: beat {beat} is more than {max_future}s in the future"
    age = current - beat
    if age >= max_age:
        return f"heartbeat: last beat {age}s ago, limit {max_age}s"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m webhook.heartbeat {check,beat}``; exit 0 when fresh or written."""
    parser = argparse.ArgumentParser(prog="python -m webhook.heartbeat")
    commands = parser.add_subparsers(dest="command", required=True)
    check = commands.add_parser("check", help="exit 0 when the beat is fresh (the probe)")
    check.add_argument("path")
    check.add_argument("--max-age", type=int, required=True)
    check.add_argument("--max-future", type=int, default=MAX_FUTURE_SECONDS)
    beat = commands.add_parser("beat", help="write one beat now")
    beat.add_argument("path", nargs="?")
    args = parser.parse_args(argv)
    if args.command == "beat":
        print(write_heartbeat(args.path))
        return 0
    reason = check_heartbeat(args.path, args.max_age, max_future=args.max_future)
    if reason is not None:
        print(reason)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
