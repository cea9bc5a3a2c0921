"""A demo batch worker that beats from its loop, then hangs like the story's.

Run by ``make demo`` in a kind cluster (mounted from a ConfigMap into the
heartbeat-webhook image, which has the package), or locally:

    HEARTBEAT_PATH=/tmp/hb WORKER_HANG_AFTER=5 python examples/worker.py

Environment:
    WORKER_INTERVAL    seconds between iterations (default 3)
    WORKER_HANG_AFTER  iterations before the loop hangs for good; 0 never hangs
                       (default 10)
    HEARTBEAT_PATH     the file to beat into; the webhook injects it
"""

from __future__ import annotations

import os
import sys
import threading
import time

from webhook.heartbeat import resolve_path, write_heartbeat


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        sys.exit(f"worker: {name}={raw!r} is not a number")


def run_job(iteration: int, hang_after: int) -> None:
    """One unit of work. At ``hang_after`` it deadlocks, the way a real job
    hangs: a lock that is never released, no error, no log, the process up."""
    if hang_after and iteration >= hang_after:
        print(f"worker: iteration {iteration}: hanging now (deadlock)", flush=True)
        lock = threading.Lock()
        lock.acquire()
        lock.acquire()  # never returns
    print(f"worker: iteration {iteration}: job done", flush=True)


def main() -> None:
    interval = _number("WORKER_INTERVAL", 3)
    hang_after = int(_number("WORKER_HANG_AFTER", 10))
    print(
        f"worker: beating into {resolve_path()} every {interval:g}s"
        + (f", hanging after {hang_after} iterations" if hang_after else ""),
        flush=True,
    )
    iteration = 0
    while True:
        run_job(iteration, hang_after)
        write_heartbeat()  # from the loop itself, never from a thread
        iteration += 1
        time.sleep(interval)


if __name__ == "__main__":
    main()
