"""Aggregate the rounds (medians, per-round ratios) into report.md, results.json and a plot."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.load import Sample


def median(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def paired(a: list[Sample], b: list[Sample], attr: str) -> float:
    """Median over rounds of a's ``attr`` over b's, round by round."""
    ratios = []
    for x, y in zip(a, b, strict=False):
        top, bottom = getattr(x, attr), getattr(y, attr)
        if bottom > 0 and not math.isnan(top):
            ratios.append(top / bottom)
    return median(ratios)


@dataclass
class Results:
    command: str
    settings: dict[str, Any]
    environment: dict[str, Any]
    payload_bytes: dict[str, int]
    # (server, payload) -> one Sample per round, in round order
    throughput: dict[tuple[str, str], list[Sample]] = field(default_factory=dict)
    # (server, rate) -> one Sample per round
    rates: dict[tuple[str, int], list[Sample]] = field(default_factory=dict)
    rss_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    e2e: dict[str, Any] | None = None
    profile_markdown: str | None = None
    plot: str | None = None  # the latency plot's file name, once written
    notes: list[str] = field(default_factory=list)

    def ratio(self, a: tuple[str, str], b: tuple[str, str], attr: str = "rps") -> float:
        """Median over rounds of a's ``attr`` divided by b's in the same round."""
        return paired(self.throughput.get(a, []), self.throughput.get(b, []), attr)

    def rate_ratio(self, a: tuple[str, int], b: tuple[str, int], attr: str) -> float:
        return paired(self.rates.get(a, []), self.rates.get(b, []), attr)

    def stat(self, key: tuple[str, str], attr: str) -> float:
        return median([getattr(s, attr) for s in self.throughput.get(key, [])])

    def rate_stat(self, key: tuple[str, int], attr: str) -> float:
        return median([getattr(s, attr) for s in self.rates.get(key, [])])

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "settings": self.settings,
            "environment": self.environment,
            "payload_bytes": self.payload_bytes,
            "throughput": [
                {"server": s, "payload": p, "rounds": [asdict(x) for x in samples]}
                for (s, p), samples in self.throughput.items()
            ],
            "rates": [
                {"server": s, "rate": r, "rounds": [asdict(x) for x in samples]}
                for (s, r), samples in self.rates.items()
            ],
            "rss_kib": self.rss_kib,
            "e2e": self.e2e,
            "notes": self.notes,
        }


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _lat(results: Results, key: tuple[str, str]) -> str:
    return " / ".join(_ms(results.stat(key, a)) for a in ("p50_ms", "p99_ms", "p999_ms"))


def _rate_lat(results: Results, key: tuple[str, int]) -> str:
    return " / ".join(_ms(results.rate_stat(key, a)) for a in ("p50_ms", "p99_ms", "p999_ms"))


def _us(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.0f}"


def _x(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def markdown(results: Results) -> str:
    s, env = results.settings, results.environment
    out = [
        "# heartbeat-webhook benchmark",
        "",
        f"Command: `{results.command}`; webhook source: {env.get('source')}  ",
        f"Date: {env.get('date')}; {env.get('cpus')} CPUs; load average before "
        f"{env.get('load_before')}, after {env.get('load_after')}  ",
        f"Python {env.get('python')}, uvicorn {env.get('uvicorn')} (HTTP: "
        f"{env.get('http_impl')}, loop: {env.get('loop')}), {env.get('wrk')}, "
        f"vegeta {env.get('vegeta')}",
        "",
        "Ratios are medians over rounds of per-round ratios (the two servers loaded back to "
        "back, A B A B ...). Absolute figures are medians too, and depend on this machine "
        "and its load: compare ratios. *CPU/review* is the server process's own CPU time "
        "(user + system, /proc/PID/stat) per answered review: it moves much less than "
        "throughput when other processes take CPU time, so it is the steadiest cost figure "
        "here.",
        "",
        f"## Throughput: wrk, closed loop, {s['connections']} keep-alive TLS connections, "
        f"{s['rounds']} rounds x {s['seconds']} s",
        "",
        "| payload | body | webhook reviews/s | baseline reviews/s | **throughput "
        "webhook/baseline** | CPU/review webhook / baseline µs | **CPU webhook/baseline** "
        "| webhook p50 / p99 / p99.9 ms | baseline p50 / p99 / p99.9 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for payload, size in results.payload_bytes.items():
        w, b = ("webhook", payload), ("baseline", payload)
        if w not in results.throughput:
            continue
        out.append(
            f"| {payload} | {size / 1024:.1f} KiB | {results.stat(w, 'rps'):.0f} | "
            f"{results.stat(b, 'rps'):.0f} | **{_x(results.ratio(w, b))}** | "
            f"{_us(results.stat(w, 'cpu_us_per_review'))} / "
            f"{_us(results.stat(b, 'cpu_us_per_review'))} | "
            f"**{_x(results.ratio(w, b, 'cpu_us_per_review'))}** | "
            f"{_lat(results, w)} | {_lat(results, b)} |"
        )
    for section in (_noise, _variants, _rates, _memory, _e2e, _profile):
        section(results, out)
    if results.notes:
        out += ["", "## Notes", "", *[f"- {n}" for n in results.notes]]
    return "\n".join(out) + "\n"


def _noise(results: Results, out: list[str]) -> None:
    env = results.environment
    wrk_samples = [x for samples in results.throughput.values() for x in samples]
    if wrk_samples:
        foreign = [x.foreign_cores for x in wrk_samples]
        out += [
            "",
            f"Noise: other processes used a median {median(foreign):.2f} cores (max "
            f"{max(foreign):.2f}) of the {env.get('cpus')} during the wrk runs; wrk itself "
            f"{median([x.generator_cores for x in wrk_samples]):.2f}, the server "
            f"{median([x.server_cores for x in wrk_samples]):.2f}.",
        ]


def _variants(results: Results, out: list[str]) -> None:
    variants = [
        name for (name, payload) in results.throughput if payload == "typical"
    ]  # insertion order
    extra = [v for v in variants if v not in {"webhook", "baseline"}]
    if extra:
        out += [
            "",
            "## Decision logging, metrics and HTTP parser (typical payload, wrk, same rounds)",
            "",
            "| server | what | reviews/s | **throughput ratio to webhook** | ratio to "
            "baseline | CPU/review µs | **CPU ratio to webhook** | p50 / p99 / p99.9 ms |",
            "|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name in ["webhook", *extra]:
            key, full = (name, "typical"), ("webhook", "typical")
            out.append(
                f"| {name} | {results.descriptions.get(name, '')} | "
                f"{results.stat(key, 'rps'):.0f} | "
                f"**{_x(results.ratio(key, full))}** | "
                f"{_x(results.ratio(key, ('baseline', 'typical')))} | "
                f"{_us(results.stat(key, 'cpu_us_per_review'))} | "
                f"**{_x(results.ratio(key, full, 'cpu_us_per_review'))}** | "
                f"{_lat(results, key)} |"
            )


def _rates(results: Results, out: list[str]) -> None:
    s = results.settings
    if results.rates:
        out += [
            "",
            f"## Latency against offered load: vegeta, open loop, typical payload, "
            f"{s['rate_rounds']} rounds x {s['rate_seconds']} s per rate, at most "
            f"{s.get('rate_max_workers')} connections",
            "",
            "| offered reviews/s | webhook achieved | webhook p50 / p99 / p99.9 ms "
            "| baseline p50 / p99 / p99.9 ms | **p99 webhook/baseline** | webhook 200s "
            "| server CPU busy webhook / baseline (cores) | vegeta (cores) |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for rate in sorted({r for (_, r) in results.rates}):
            w, b = ("webhook", rate), ("baseline", rate)
            out.append(
                f"| {rate} | {results.rate_stat(w, 'rps'):.0f} | {_rate_lat(results, w)} | "
                f"{_rate_lat(results, b)} | **{_x(results.rate_ratio(w, b, 'p99_ms'))}** | "
                f"{100 * results.rate_stat(w, 'success'):.1f}% | "
                f"{_x(results.rate_stat(w, 'server_cores'))} / "
                f"{_x(results.rate_stat(b, 'server_cores'))} | "
                f"{_x(results.rate_stat(w, 'generator_cores'))} |"
            )
        if results.plot:
            out += ["", f"![p50 and p99 latency against offered load]({results.plot})"]


def _memory(results: Results, out: list[str]) -> None:
    if results.rss_kib:
        out += [
            "",
            "## Server memory (VmRSS from /proc/PID/status)",
            "",
            "| server | after start MiB | after wrk MiB | after vegeta + profile MiB "
            "| peak (VmHWM) MiB |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, rss in results.rss_kib.items():
            cells = [rss.get(k, 0) / 1024 for k in ("start", "after_wrk", "end", "peak")]
            out.append(f"| {name} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")


def _e2e(results: Results, out: list[str]) -> None:
    if results.e2e:
        e = results.e2e
        pair = ", ".join(f"{x:.2f}" for x in e["pair_ratios"])
        call = e.get("apiserver_webhook_call_ms")
        out += [
            "",
            f"## End to end: pod creates through kube-apiserver ({e['pods_per_condition']} "
            "sequential creates per condition, alternating blocks)",
            "",
            "| | median ms | p99 ms |",
            "|---|---:|---:|",
            f"| webhook registered | {_ms(e['with_median_ms'])} | {_ms(e['with_p99_ms'])} |",
            f"| no webhook | {_ms(e['without_median_ms'])} | {_ms(e['without_p99_ms'])} |",
            "",
            f"**Ratio of medians: {e['ratio_of_medians']:.2f}** (+{e['added_median_ms']:.2f} ms "
            f"per create; per block pair: {pair}). "
            + (
                f"The apiserver's own mean time for the webhook call "
                f"(apiserver_admission_webhook_admission_duration_seconds): {call:.2f} ms. "
                if call is not None
                else ""
            )
            + f"Mutated: {e['mutated_with']} with, {e['mutated_without']} without.",
        ]
        _apiserver_profile(e.get("profiled") or [], out)


_CONDITIONS = {"none": "no webhook", "noop": "no-op webhook", "webhook": "heartbeat-webhook"}


def _apiserver_profile(profiled: list[dict[str, Any]], out: list[str]) -> None:
    """Where the added time goes: kube-apiserver's CPU per create, by stage."""
    if not profiled:
        return

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | " + " | ".join(cell(p) for p in profiled) + " |"

    def optional(key: str, text: Callable[[float], str]) -> Callable[[dict[str, Any]], str]:
        return lambda p: "-" if p.get(key) is None else text(p[key])

    out += [
        "",
        "### Inside kube-apiserver: its CPU profile per create (pprof)",
        "",
        "Creates back to back for the profile's length with no webhook, with a no-op webhook "
        "(bench/baseline.py registered the same way: allowed, no patch) and with "
        "heartbeat-webhook. Profiles: work/e2e/apiserver-*.pprof.gz "
        "(`go tool pprof -top -cum FILE`).",
        "",
        row("", lambda p: _CONDITIONS.get(p["condition"], p["condition"])),
        "|---|" + "---:|" * len(profiled),
        row("creates profiled", lambda p: str(p["creates"])),
        row("median create ms", lambda p: _ms(p["median_ms"])),
        row("apiserver's mean webhook call ms", optional("apiserver_webhook_ms", _ms)),
        row(
            "webhook's own mean time to decide a review ms (its duration histogram)",
            optional("handler_ms", "{:.3f}".format),
        ),
    ]
    for stage in profiled[0]["cpu_us"]:
        out.append(row(f"{stage}, µs CPU", lambda p, s=stage: f"{p['cpu_us'].get(s, 0.0):.0f}"))


def _profile(results: Results, out: list[str]) -> None:
    if results.profile_markdown:
        out += [
            "",
            "## Profile: py-spy on the served webhook under wrk (typical payload)",
            "",
            "Flamegraph (Python frames): [profile.svg](profile.svg); native collapsed stacks: "
            "profile-native.txt.",
            "",
            results.profile_markdown,
        ]


def plot(results: Results, png: Path) -> str | None:
    """p50/p99 against offered load, webhook vs baseline; None, or why there is no plot."""
    try:
        import matplotlib  # noqa: PLC0415 (optional: the bench extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
        from matplotlib import ticker  # noqa: PLC0415
    except ImportError:
        return "matplotlib is not installed (pip install -e '.[bench]'); no latency.png"
    rates = sorted({r for (_, r) in results.rates})
    if not rates:
        return "no rate measurements; no latency.png"
    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=110)
    for server, color in (("webhook", "tab:red"), ("baseline", "tab:blue")):
        for attr, style, label in (("p99_ms", "-", "p99"), ("p50_ms", "--", "p50")):
            values = [results.rate_stat((server, r), attr) for r in rates]
            axes.plot(rates, values, style, marker="o", color=color, label=f"{server} {label}")
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xticks(rates, [str(r) for r in rates])
    axes.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    axes.yaxis.set_minor_formatter(ticker.NullFormatter())
    axes.set_xlabel("offered load (AdmissionReviews/s, open loop, vegeta)")
    axes.set_ylabel("latency (ms, log scale)")
    axes.set_title("heartbeat-webhook vs bare ASGI baseline (typical pod, TLS)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(png)
    plt.close(figure)
    return None


def write(results: Results, out: Path) -> str:
    text = markdown(results)
    (out / "report.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results.to_json(), indent=1, default=str))
    return text
