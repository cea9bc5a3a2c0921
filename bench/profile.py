"""Where the webhook's time goes under load: py-spy samples, summarized.

Two py-spy recordings of the served webhook while wrk loads it:

1. ``profile.svg``: Python frames only, ``--nonblocking`` (the process is not
   paused, so the profile barely slows it); a flamegraph for people.
2. ``profile-native.txt``: ``--native`` collapsed stacks (C frames too, so
   OpenSSL, the json C scanner, httptools, libc write() show up), at a low rate
   because native unwinding pauses the process. This file is summarized.

Helper threads' samples count only when not blocked in a wait (so a log
flusher's writes count, anyio's idle workers do not). Each sample gets one
category: the first of OWNERS that any frame of its stack matches (so
json.dumps inside the log formatter counts as logging, a write() under the
TLS layer as socket I/O); else the LAYERS category of the frame nearest the
leaf that matches one (so uvicorn's response writing under our endpoint's
send() counts as HTTP protocol, a Py_DECREF in our handler as ours); else
"event loop, asyncio, other".
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.cluster import _die_with_parent

Stack = list[str]  # frames "function (file:line)", root first


def _anywhere(pattern: str) -> Callable[[Stack], bool]:
    compiled = re.compile(pattern)
    return lambda frames: any(compiled.search(f) for f in frames)


# json or orjson (whose native frames are bare addresses in its .so).
_json = _anywhere(r"\(json/|_json\.c|orjson")
_parsing = _anywhere(r"^parse_review ")

# (category, test on the whole stack), highest priority first.
OWNERS: list[tuple[str, Callable[[Stack], bool]]] = [
    (
        "decision logging (logging + JSON formatter + write)",
        _anywhere(r"\(logging/|webhook/logs\.py"),
    ),
    ("prometheus metrics", _anywhere(r"prometheus_client/|webhook/metrics\.py")),
    ("idle: waiting in epoll", _anywhere(r"^epoll_wait |^epoll_pwait ")),
    (
        "socket read/write syscalls (kernel, loopback)",
        _anywhere(r"^(write|writev|send|sendmsg|read|recv|recvmsg) \(libc"),
    ),
    (
        "TLS (OpenSSL, uvloop SSLProtocol)",
        _anywhere(r"libssl|libcrypto|_ssl\.c|SSLProtocol|sslproto"),
    ),
    ("JSON decode (request body; json/orjson)", lambda f: _json(f) and _parsing(f)),
    ("JSON encode (response, patch; json/orjson)", _json),
]
# Checked from the leaf up: the innermost matching frame decides.
LAYERS: list[tuple[str, re.Pattern[str]]] = [
    (c, re.compile(p))
    for c, p in [
        ("mutate_pod (rules, config, probe)", r"webhook/(mutate|config|probe|heartbeat)\.py"),
        ("handler/review/endpoint glue (ours)", r"webhook/(handler|review|app)\.py"),
        ("FastAPI/Starlette middleware + routing", r"starlette/|fastapi/|uvicorn/middleware/"),
        (
            "HTTP protocol (uvicorn httptools/h11)",
            r"uvicorn/protocols/http|httptools|h11/|parser\.c|webhook/coalesce\.py",
        ),
    ]
]
OTHER = "event loop, asyncio, other"
# Functions whose inclusive share is reported (pattern on the frame).
INCLUSIVE: list[tuple[str, str]] = [
    ("FastAPI app (FastAPI.__call__, all middleware + endpoint)", r"^FastAPI\.__call__ "),
    ("AdmissionEndpoint.__call__ (body read + handler + send)", r"^AdmissionEndpoint\.__call__ "),
    ("AdmissionHandler.__call__", r"^AdmissionHandler\.__call__ "),
    ("parse_review (JSON decode + checks)", r"^parse_review "),
    ("mutate_pod", r"^mutate_pod "),
    ("response + _encode", r"^(response|_encode) \(webhook/"),
    ("write_decision (decision line queued)", r"^BufferedStreamHandler\.write_decision "),
    ("↳ _write_decisions (a batch formatted)", r"\._write_decisions \(webhook/logs"),
    ("Logger.info (log lines through logging)", r"^Logger\.info "),
    ("Metrics.count", r"^Metrics\.count "),
    ("FastAPI NativeTelemetry.enabled (env lookups per request)", r"^NativeTelemetry\.enabled "),
    ("uvloop SSLProtocol (TLS record layer + its writes)", r"SSLProtocol"),
    ("HttpToolsProtocol/H11Protocol data_received (parsing)", r"Protocol\.data_received "),
]


@dataclass
class Summary:
    samples: int = 0  # main-thread samples (idle included) + busy helper-thread samples
    idle: int = 0
    categories: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)
    inclusive: Counter[str] = field(default_factory=Counter)

    @property
    def busy(self) -> int:
        return self.samples - self.idle

    def markdown(self, top: int = 15) -> str:
        busy = max(1, self.busy)
        lines = [
            f"{self.samples} samples (main thread, and helper threads when not waiting), "
            f"{100 * self.idle / max(1, self.samples):.1f}% "
            "idle in epoll; percentages below are of the busy samples.",
            "",
            "| category (highest-priority frame in the stack) | % busy |",
            "|---|---:|",
        ]
        for name, count in self.categories.most_common():
            if not name.startswith("idle"):
                lines.append(f"| {name} | {100 * count / busy:.1f} |")
        lines += ["", "| inclusive (anywhere in the stack) | % busy |", "|---|---:|"]
        for name, _ in INCLUSIVE:
            lines.append(f"| {name} | {100 * self.inclusive[name] / busy:.1f} |")
        lines += ["", f"| top {top} leaf frames (self time) | % busy |", "|---|---:|"]
        for frame, count in self.leaves.most_common(top):
            lines.append(f"| `{_short(frame)}` | {100 * count / busy:.1f} |")
        return "\n".join(lines)


def _short(frame: str) -> str:
    return frame.replace("|", "/")[:110]


# A helper thread blocked on a lock, a condition or a sleep: not CPU.
_THREAD_WAIT = re.compile(
    r"^(PyThread_acquire_lock\w*|pthread_cond_\w+|clock_nanosleep|time_sleep|sem_\w*wait) "
)


def categorize(frames: Stack) -> str:
    """One sample's category; ``frames`` run from the root to the leaf."""
    for name, test in OWNERS:
        if test(frames):
            return name
    for frame in reversed(frames):
        for name, pattern in LAYERS:
            if pattern.search(frame):
                return name
    return OTHER


def summarize(collapsed: Path) -> Summary:
    summary = Summary()
    inclusive = [(name, re.compile(pattern)) for name, pattern in INCLUSIVE]
    for line in collapsed.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if any(f.startswith("Thread._bootstrap") for f in frames) and any(
            _THREAD_WAIT.search(f) for f in frames
        ):
            continue  # a helper thread waiting (anyio's workers, a log flusher asleep)
        count = int(count_text)
        summary.samples += count
        category = categorize(frames)
        summary.categories[category] += count
        if category.startswith("idle"):
            summary.idle += count
            continue
        summary.leaves[frames[-1]] += count
        for name, pattern in inclusive:
            if any(pattern.search(f) for f in frames):
                summary.inclusive[name] += count
    return summary


def py_spy() -> str | None:
    found = Path(sys.executable).with_name("py-spy")
    return str(found) if found.exists() else shutil.which("py-spy")


def record(pid: int, out: Path, seconds: int, native: bool) -> None:
    """Run one py-spy recording; raises RuntimeError with py-spy's message on failure."""
    binary = py_spy()
    if binary is None:
        raise RuntimeError("py-spy not installed (pip install -e '.[bench]')")
    argv = [binary, "record", "--pid", str(pid), "--duration", str(seconds), "-o", str(out)]
    if native:
        argv += ["--native", "--rate", "50", "--format", "raw"]
    else:
        argv += ["--nonblocking", "--rate", "100", "--format", "flamegraph"]
    result = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
        preexec_fn=_die_with_parent,
    )
    if result.returncode != 0 or not out.exists():
        raise RuntimeError(
            f"py-spy exited {result.returncode}: {(result.stderr or result.stdout).strip()[-800:]}"
        )
