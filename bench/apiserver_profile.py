"""Where a pod create's CPU goes inside kube-apiserver, from its own CPU profile.

The end-to-end ratio includes what the apiserver spends on calling a webhook
and applying its patch, which no change to the webhook's server can remove.
kube-apiserver serves Go's pprof (``--profiling``, on by default) at
``/debug/pprof/profile``; bench/e2e.py records one profile per condition
while creating pods back to back, and this module reads each with
``go tool pprof`` into CPU time per create for a few named stages.

Stages under the mutating webhook call are read with ``-focus`` on that
call, so, for instance, decoding counts only the decodes the call does.
"""

from __future__ import annotations

import re
import shutil
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

_HOOK = r"mutatingDispatcher\)\.callAttrMutatingHook$"


@dataclass(frozen=True)
class Stage:
    label: str
    function: str  # regex on pprof's function name
    focus: str | None = None  # pprof -focus: count only stacks through this


STAGES = (
    Stage("mutating admission webhooks, all", r"mutatingDispatcher\)\.Dispatch$"),
    Stage("↳ the call to the webhook", _HOOK),
    Stage("  ↳ encoding the AdmissionReview", r"rest\.\(\*Request\)\.Body$", _HOOK),
    Stage("  ↳ HTTP and TLS, request and answer", r"rest\.\(\*Request\)\.Do$", _HOOK),
    Stage("  ↳ applying the answer's JSON patch", r"json-patch.*\.Patch\.Apply$", _HOOK),
    Stage(
        "  ↳ decoding the answer and the patched pod",
        r"serializer/json\.\(\*Serializer\)\.Decode$",
        _HOOK,
    ),
    Stage("field management (managedFields)", r"internal\.\(\*FieldManager\)\.Update$"),
    Stage("storing the pod (etcd client)", r"etcd3\.\(\*store\)\.Create$"),
    # Allocation by any of the above is paid again here, off the request's stack.
    Stage("Go garbage collection (background marking)", r"^runtime\.gcBgMarkWorker$"),
)
TOTAL = "all of kube-apiserver's CPU"

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "mins": 60.0, "hrs": 3600.0}
_DURATION = re.compile(r"^([0-9.]+)(ns|us|µs|ms|s|mins|hrs)$")
_TOTAL = re.compile(r"Total samples = (\S+)")


def seconds(text: str) -> float:
    """A pprof duration such as ``80ms`` or ``1.25s`` in seconds (pprof writes none as 0)."""
    if text == "0":
        return 0.0
    match = _DURATION.match(text)
    if match is None:
        raise ValueError(f"not a pprof duration: {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def parse_top(text: str) -> tuple[float, dict[str, float]]:
    """``go tool pprof -top -cum`` output -> (total CPU seconds, {function: cumulative s})."""
    total = _TOTAL.search(text)
    if total is None:
        raise ValueError("no 'Total samples' line in pprof's output")
    functions: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split()
        # flat flat% sum% cum cum% name [(inline)]
        if len(fields) < 6 or not fields[1].endswith("%") or not fields[4].endswith("%"):
            continue
        try:
            cumulative = seconds(fields[3])
        except ValueError:
            continue
        name = " ".join(fields[5:]).removesuffix(" (inline)")
        functions[name] = max(cumulative, functions.get(name, 0.0))
    return seconds(total[1]), functions


def capture(url: str, token: str, context: ssl.SSLContext, seconds_: int, target: Path) -> None:
    """Record ``seconds_`` of kube-apiserver's CPU profile into ``target`` (blocks)."""
    request = urllib.request.Request(f"{url}/debug/pprof/profile?seconds={seconds_}")  # noqa: S310
    request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, context=context, timeout=seconds_ + 60) as response:  # noqa: S310 (loopback)
        target.write_bytes(response.read())


def go_tool() -> str | None:
    return shutil.which("go")


def per_create(profile: Path, creates: int, go: str) -> dict[str, float]:
    """CPU µs per create for TOTAL and each of STAGES (0 where a stage never ran)."""
    outputs: dict[str | None, tuple[float, dict[str, float]]] = {}
    for focus in {stage.focus for stage in STAGES}:
        argv = [go, "tool", "pprof", "-top", "-cum", "-nodecount=100000"]
        if focus is not None:
            argv.append(f"-focus={focus}")
        result = subprocess.run(
            [*argv, str(profile)], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            reason = result.stderr.strip()[-300:]
            raise RuntimeError(f"go tool pprof {profile.name} failed: {reason}")
        outputs[focus] = parse_top(result.stdout)
    scale = 1e6 / max(creates, 1)
    figures = {TOTAL: outputs[None][0] * scale}
    for stage in STAGES:
        functions = outputs[stage.focus][1]
        pattern = re.compile(stage.function)
        figures[stage.label] = scale * max(
            (cum for name, cum in functions.items() if pattern.search(name)), default=0.0
        )
    return figures
