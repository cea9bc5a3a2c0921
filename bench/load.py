"""Load generators: wrk (closed loop, throughput) and vegeta (open loop, fixed rate)."""

from __future__ import annotations

import json
import math
import os
import resource
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from tests.integration.cluster import _die_with_parent

HERE = Path(__file__).resolve().parent
LUA = HERE / "post.lua"


@dataclass(frozen=True)
class Sample:
    """One load run against one server: throughput, latency percentiles, errors."""

    rps: float  # completed 2xx responses per second
    p50_ms: float
    p99_ms: float
    p999_ms: float
    requests: int
    errors: int
    offered: float = 0.0  # vegeta only: the requested rate
    success: float = 1.0  # vegeta only: fraction of 200s
    # From CpuMeter, when the server's pid was given:
    cpu_us_per_review: float = math.nan  # server CPU time (user + system) per 2xx answer
    server_cores: float = math.nan  # server CPU seconds per wall second
    generator_cores: float = math.nan  # wrk's or vegeta's
    foreign_cores: float = math.nan  # every other process on the machine (the noise)


_TICK = os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds used during a run: by the server, by the load generator, by the rest.

    The server's from /proc/PID/stat, the generator's from RUSAGE_CHILDREN (it is
    our waited-for child), the whole machine's from /proc/stat; "foreign" is what
    is left: other processes competing for the 2 cores, which is what makes
    absolute numbers noisy. Only one measured run at a time.
    """

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self._start = self._now()
        self._end: tuple[float, float, float, float] | None = None

    def stop(self) -> None:
        self._end = self._now()

    def _now(self) -> tuple[float, float, float, float]:
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = (int(x) for x in fields[:8])
        # Interrupt time is left out: on loopback most of it is the benchmark's own
        # network traffic (softirq), not a neighbour's.
        busy = (user + nice + system + steal) / _TICK
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        return time.monotonic(), busy, self._server(), children.ru_utime + children.ru_stime

    def _server(self) -> float:
        if self.pid is None:
            return math.nan
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return math.nan
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime

    def finish(self, sample: Sample) -> Sample:
        """The sample with the CPU fields filled in (stops the meter if still running)."""
        if self._end is None:
            self.stop()
        assert self._end is not None  # noqa: S101 (for the type checker)
        wall0, busy0, server0, gen0 = self._start
        wall1, busy1, server1, gen1 = self._end
        wall = max(wall1 - wall0, 1e-9)
        server, generator = server1 - server0, gen1 - gen0
        good = sample.requests - sample.errors
        return replace(
            sample,
            cpu_us_per_review=server / good * 1e6 if good > 0 else math.nan,
            server_cores=server / wall,
            generator_cores=generator / wall,
            foreign_cores=max(0.0, (busy1 - busy0 - server - generator) / wall),
        )


def _run(argv: list[str], timeout: float, stdout: int | None = subprocess.PIPE) -> str:
    result = subprocess.run(
        argv,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
        preexec_fn=_die_with_parent,
    )
    if result.returncode != 0:
        raise RuntimeError(f"{argv[0]} exited {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout or ""


def wrk(
    wrk_bin: str,
    url: str,
    body: Path,
    seconds: float,
    *,
    connections: int = 16,
    threads: int = 1,
    raw: Path | None = None,
    pid: int | None = None,
) -> Sample:
    """Closed loop: ``connections`` keep-alive TLS connections, each POSTing back to back."""
    argv = [
        wrk_bin, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
        "--timeout", "5s", "--latency", "-s", str(LUA), f"{url}/mutate", "--", str(body),
    ]  # fmt: skip
    meter = CpuMeter(pid)
    out = _run(argv, timeout=seconds + 30)
    if raw is not None:
        with raw.open("a") as handle:
            handle.write(f"$ {' '.join(argv)}\n{out}\n")
    line = next((x for x in out.splitlines() if x.startswith("BENCH-RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no BENCH-RESULT line:\n{out[-2000:]}")
    result = json.loads(line.removeprefix("BENCH-RESULT "))
    errors = sum(result["errors"].values())
    latency = result["latency_us"]
    good = result["requests"] - result["errors"]["status"]
    sample = Sample(
        rps=good / (result["duration_us"] / 1e6),
        p50_ms=latency["p50"] / 1000,
        p99_ms=latency["p99"] / 1000,
        p999_ms=latency["p99.9"] / 1000,
        requests=result["requests"],
        errors=errors,
    )
    return meter.finish(sample)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of unsorted values; nan when empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def vegeta(
    vegeta_bin: str,
    url: str,
    body: Path,
    *,
    ca_file: Path,
    rate: int,
    seconds: float,
    workdir: Path,
    tag: str,
    max_workers: int = 256,
    pid: int | None = None,
) -> Sample:
    """Open loop: ``rate`` requests/s whatever the latency (no coordinated omission).

    vegeta adds a worker (and a connection) whenever all are busy; ``max_workers``
    caps that, as kube-apiserver's own in-flight limits cap its webhook calls.
    Past the cap vegeta cannot keep the rate: the achieved rate then drops.
    """
    targets = workdir / f"targets-{tag}.txt"
    targets.write_text(
        f"POST {url}/mutate\nContent-Type: application/json\n@{body}\n",
    )
    results = workdir / f"vegeta-{tag}.bin"
    attack = [
        vegeta_bin, "attack", f"-targets={targets}", "-format=http", f"-rate={rate}/s",
        f"-duration={seconds}s", "-timeout=5s", f"-root-certs={ca_file}", "-max-body=0",
        f"-max-workers={max_workers}",
        f"-output={results}",
    ]  # fmt: skip
    meter = CpuMeter(pid)
    _run(attack, timeout=seconds + 30)
    meter.stop()
    encoded = _run([vegeta_bin, "encode", "-to=json", str(results)], timeout=60)
    latencies: list[float] = []
    first = math.inf
    last = 0.0
    total = 0
    for line in encoded.splitlines():
        if not line.strip():
            continue
        hit = json.loads(line)
        total += 1
        start = _epoch_ns(hit["timestamp"])
        first = min(first, start)
        last = max(last, start + hit["latency"])
        if hit["code"] == 200 and not hit.get("error"):
            latencies.append(hit["latency"] / 1e6)
    results.unlink(missing_ok=True)
    span = (last - first) / 1e9 if total else math.nan
    sample = Sample(
        rps=len(latencies) / span if span and span > 0 else 0.0,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        p999_ms=percentile(latencies, 99.9),
        requests=total,
        errors=total - len(latencies),
        offered=rate,
        success=len(latencies) / total if total else 0.0,
    )
    return meter.finish(sample)


def _epoch_ns(stamp: str) -> float:
    """vegeta's RFC 3339 timestamp with nanoseconds -> epoch ns (float, enough for spans)."""
    date, _, rest = stamp.partition(".")
    if not rest:  # no fractional part
        return datetime.fromisoformat(stamp).timestamp() * 1e9
    digits = ""
    for char in rest:
        if not char.isdigit():
            break
        digits += char
    zone = rest[len(digits) :]
    whole = datetime.fromisoformat(date + (zone if zone != "Z" else "+00:00"))
    return whole.timestamp() * 1e9 + int(digits.ljust(9, "0")[:9])
