"""``python -m bench``: the webhook against a bare ASGI baseline, on loopback, with TLS.

See bench/README.md. Phases, each bounded in time:

1. certificates (``python -m webhook certs --san 127.0.0.1``) and payloads;
2. servers: the baseline, ``heartbeat-webhook serve`` and its variants, one
   process each on 127.0.0.1, started once, checked with every payload;
3. throughput: wrk rounds; in each round every (payload, server) pair runs
   back to back (A B A B ...), the variants on the typical payload;
4. rates: vegeta at fixed offered loads, webhook and baseline alternating;
5. profile: py-spy on the webhook under wrk;
6. end to end: pod creates through a real kube-apiserver (bench/e2e.py), and
   kube-apiserver's CPU profile with no webhook, a no-op one and ours;
7. report: bench/results/report.md (printed), results.json, latency.png.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import shlex
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from bench import e2e, load, payloads, profile, report
from bench.servers import ROOT, VARIANTS, Server, make_certs, which

DEFAULT_OUT = ROOT / "bench" / "results"
PHASES = ("throughput", "variants", "rates", "profile", "e2e")


def log(message: str) -> None:
    stamp = datetime.datetime.now().strftime("%H:%M:%S")
    print(f"bench {stamp} {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="1 round, ~1 s steps, tiny rates")
    parser.add_argument("--out", type=Path, default=None, help="default bench/results")
    parser.add_argument("--rounds", type=int, default=5, help="wrk rounds (default 5)")
    parser.add_argument("--seconds", type=int, default=4, help="seconds per wrk run (default 4)")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument(
        "--rates", default="250,500,1000,1500,2000", help="offered loads, reviews/s"
    )
    parser.add_argument("--rate-rounds", type=int, default=2)
    parser.add_argument("--rate-seconds", type=int, default=4)
    parser.add_argument("--rate-max-workers", type=int, default=256, help="vegeta -max-workers")
    parser.add_argument("--profile-seconds", type=int, default=12)
    parser.add_argument("--e2e-pods", type=int, default=300, help="creates per condition")
    parser.add_argument("--e2e-blocks", type=int, default=6)
    parser.add_argument(
        "--e2e-profile-seconds",
        type=int,
        default=15,
        help="kube-apiserver CPU profile per condition (none, no-op, ours); 0 skips",
    )
    parser.add_argument("--skip", default="", help=f"comma list of {', '.join(PHASES)}")
    parser.add_argument("--max-minutes", type=float, default=20, help="hard stop for the run")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.seconds, args.rates = 1, 1, "50,100"
        args.rate_rounds, args.rate_seconds, args.profile_seconds = 1, 1, 2
        args.e2e_pods, args.e2e_blocks, args.e2e_profile_seconds = 10, 2, 2
        args.max_minutes = min(args.max_minutes, 4)
    args.out = args.out or (DEFAULT_OUT / "smoke" if args.smoke else DEFAULT_OUT)
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    unknown = args.skip - set(PHASES)
    if unknown:
        parser.error(f"--skip: unknown phase(s) {', '.join(sorted(unknown))}")
    return args


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def tool_version(argv: list[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        text = (out.stdout + out.stderr).strip().splitlines()
        return text[0] if text else "?"
    return "?"


def find_vegeta() -> str:
    result = subprocess.run(
        ["bash", str(ROOT / "bench" / "tools.sh")],
        stdout=subprocess.PIPE,
        text=True,
        timeout=900,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"bench/tools.sh could not provide vegeta (exit {result.returncode})")
    return lines[-1]


def check_answers(server: Server, bodies: dict[str, Path], ca: Path) -> None:
    """Every payload gets a 200 and the expected kind of answer before it is loaded."""
    context = ssl.create_default_context(cafile=str(ca))
    for name, path in bodies.items():
        request = urllib.request.Request(  # noqa: S310 (https on loopback)
            f"{server.url}/mutate",
            data=path.read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            answer = json.loads(response.read())["response"]
        if answer.get("allowed") is not True:
            raise RuntimeError(f"{server.name} did not allow payload {name}: {answer}")
        if (
            server.variant.app != "baseline"
            and ("patch" in answer) != payloads.EXPECTED_PATCH[name]
        ):
            raise RuntimeError(f"{server.name}: unexpected answer for payload {name}: {answer}")


def source_version() -> str:
    """The commit the servers run, and whether webhook/ has uncommitted changes."""
    git = ["git", "-C", str(ROOT)]
    head = tool_version([*git, "rev-parse", "--short", "HEAD"])
    dirty = subprocess.run(
        [*git, "status", "--porcelain", "--", "webhook", "pyproject.toml"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return head + (" + uncommitted changes in webhook/ or pyproject.toml" if dirty else "")


def environment(vegeta_bin: str | None) -> dict[str, Any]:
    import uvicorn  # noqa: PLC0415
    from uvicorn.protocols.http.auto import AutoHTTPProtocol  # noqa: PLC0415

    try:
        import uvloop  # noqa: F401, PLC0415

        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "source": source_version(),
        "cpus": os.cpu_count(),
        "load_before": loadavg(),
        "python": platform.python_version(),
        "uvicorn": uvicorn.__version__,
        "http_impl": f"{AutoHTTPProtocol.__name__} (uvicorn's auto choice)",
        "loop": f"{loop} (uvicorn's auto choice)",
        "wrk": tool_version(["wrk", "--version"]).split(" Copyright")[0],
        "vegeta": "v12.13.0" if vegeta_bin and "12.13.0" in vegeta_bin else vegeta_bin or "-",
    }


def run(args: argparse.Namespace) -> int:  # noqa: PLR0912, PLR0915 (the phases, in order)
    wrk_bin = which("wrk")
    if wrk_bin is None:
        log("wrk is not installed: apt-get install -y wrk")
        return 2
    out: Path = args.out
    work = out / "work"  # logs, certs, payloads, raw outputs of this run only
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    command = "python -m bench " + shlex.join(sys.argv[1:])
    vegeta_bin = None if "rates" in args.skip else find_vegeta()
    results = report.Results(
        command=command.strip(),
        settings={
            "rounds": args.rounds,
            "seconds": args.seconds,
            "connections": args.connections,
            "rate_rounds": args.rate_rounds,
            "rate_seconds": args.rate_seconds,
            "rate_max_workers": args.rate_max_workers,
        },
        environment=environment(vegeta_bin),
        payload_bytes={},
        descriptions={v.name: v.description for v in VARIANTS.values()},
    )
    log(f"load average {results.environment['load_before']}; results in {out}")
    certs = make_certs(work / "certs")
    bodies = payloads.write(work / "payloads")
    results.payload_bytes = {name: path.stat().st_size for name, path in bodies.items()}

    names = ["baseline", "webhook"]
    if "variants" not in args.skip:
        names += ["nolog", "fieldsonly", "devnull", "nometrics", "nolog+nometrics"]
        names += ["uncoalesced", "h11"]
        names += ["baseline-uncoalesced"]
    servers = {name: Server(VARIANTS[name], certs, work / "logs") for name in names}
    try:
        for server in servers.values():
            server.start()
            check_answers(server, bodies, certs / "ca.crt")
            log(f"{server.name}: pid {server.pid} on {server.url}")
        for server in servers.values():  # warm up: imports, caches, allocator
            load.wrk(wrk_bin, server.url, bodies["typical"], max(1, args.seconds // 2))
        raw = work / "wrk-output.txt"

        if "throughput" in args.skip:
            plan: list[tuple[str, str]] = []
        else:
            plan = [(p, s) for p in bodies for s in ("baseline", "webhook")]
            plan[2:2] = [("typical", s) for s in names[2:]]  # variants beside typical
        for round_index in range(args.rounds if plan else 0):
            for payload, name in plan:
                sample = load.wrk(
                    wrk_bin,
                    servers[name].url,
                    bodies[payload],
                    args.seconds,
                    connections=args.connections,
                    raw=raw,
                    pid=servers[name].pid,
                )
                results.throughput.setdefault((name, payload), []).append(sample)
                log(
                    f"wrk round {round_index + 1}/{args.rounds} {payload:8s} {name:16s} "
                    f"{sample.rps:7.0f}/s p50 {sample.p50_ms:.2f} p99 {sample.p99_ms:.2f} ms, "
                    f"{sample.cpu_us_per_review:4.0f} µs CPU/review, "
                    f"others {sample.foreign_cores:.2f} cores"
                    + (f" ERRORS {sample.errors}" if sample.errors else "")
                )
                if sample.errors:
                    results.notes.append(
                        f"wrk: {sample.errors} socket/status errors for {name}/{payload}"
                    )

        record_rss(servers.values(), "after_wrk")
        if vegeta_bin is not None:
            rates = [int(r) for r in args.rates.split(",") if r.strip()]
            for round_index in range(args.rate_rounds):
                for rate in rates:
                    for name in ("baseline", "webhook"):
                        sample = load.vegeta(
                            vegeta_bin,
                            servers[name].url,
                            bodies["typical"],
                            ca_file=certs / "ca.crt",
                            rate=rate,
                            seconds=args.rate_seconds,
                            workdir=work,
                            tag=name,
                            max_workers=args.rate_max_workers,
                            pid=servers[name].pid,
                        )
                        results.rates.setdefault((name, rate), []).append(sample)
                        log(
                            f"vegeta round {round_index + 1}/{args.rate_rounds} {rate:5d}/s "
                            f"{name:9s} p50 {sample.p50_ms:.2f} p99 {sample.p99_ms:.2f} "
                            f"p99.9 {sample.p999_ms:.2f} ms, {100 * sample.success:.1f}% 200s, "
                            f"server {sample.server_cores:.2f} / vegeta "
                            f"{sample.generator_cores:.2f} / others "
                            f"{sample.foreign_cores:.2f} cores"
                        )

        if "profile" not in args.skip:
            results.profile_markdown = profile_webhook(
                servers["webhook"], wrk_bin, bodies["typical"], args=args, out=out, results=results
            )

        record_rss(servers.values(), "end")
        for server in servers.values():
            server.rss_kib["peak"] = server.rss("VmHWM")
            results.rss_kib[server.name] = dict(server.rss_kib)
    finally:
        stop_all(list(servers.values()))
        trim_logs(work / "logs")

    failed = False
    if "e2e" not in args.skip:
        log("e2e: starting etcd, kube-apiserver and the webhook")
        try:
            outcome = e2e.run(
                work / "e2e",
                args.e2e_pods,
                args.e2e_blocks,
                log=log,
                profile_seconds=args.e2e_profile_seconds,
            )
        except Exception as error:  # report what did run, then exit 1
            log(f"e2e failed: {error}")
            results.notes.append(f"end to end step failed: {type(error).__name__}: {error}")
            failed = True
        else:
            results.e2e = outcome.summary()
            if outcome.profile_note:
                results.notes.append(outcome.profile_note)
            results.e2e["blocks"] = [
                {"webhook": b.webhook, "median_ms": b.median_ms, "n": len(b.latencies_ms)}
                for b in outcome.blocks
            ]
        finally:
            shutil.rmtree(work / "e2e" / "control-plane" / "etcd-data", ignore_errors=True)

    results.environment["load_after"] = loadavg()
    problem = report.plot(results, out / "latency.png")
    if problem:
        results.notes.append(problem)
    else:
        results.plot = "latency.png"
    text = report.write(results, out)
    print(text)
    written = ["report.md", "results.json"] + ([results.plot] if results.plot else [])
    log(f"wrote {', '.join(str(out / name) for name in written)}")
    return 1 if failed else 0


def profile_webhook(
    server: Server, wrk_bin: str, body: Path, *, args: argparse.Namespace, out: Path, results: Any
) -> str | None:
    seconds = args.profile_seconds
    errors: list[str] = []
    if profile.py_spy() is None:
        results.notes.append("no profile: py-spy is not installed (pip install -e '.[bench]')")
        return None

    def loaded(target: Path, native: bool) -> None:
        background = threading.Thread(
            target=load.wrk,
            args=(wrk_bin, server.url, body, seconds + 3),
            kwargs={"connections": args.connections},
            daemon=True,
        )
        background.start()
        time.sleep(1)
        try:
            profile.record(server.pid, target, seconds, native)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            errors.append(f"py-spy ({'native' if native else 'python'}): {error}")
        background.join()

    log(f"profile: py-spy on the webhook (pid {server.pid}) under wrk, {seconds} s x 2")
    loaded(out / "profile.svg", native=False)
    native = out / "profile-native.txt"
    loaded(native, native=True)
    results.notes.extend(errors)
    if not native.exists():
        return None
    return profile.summarize(native).markdown()


def stop_all(servers: list[Server]) -> None:
    """SIGTERM every server at once (each drains 5 s), then wait; SIGKILL stragglers."""
    for server in servers:
        if server.process is not None and server.process.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.popen.pid, signal.SIGTERM)
    for server in servers:
        server.stop()


def record_rss(servers: Any, when: str) -> None:
    for server in servers:
        server.rss_kib[when] = server.rss()


def trim_logs(directory: Path, keep: int = 200) -> None:
    """Keep the last lines of each server log (one decision line per review adds up)."""
    for path in directory.glob("*.log"):
        lines = path.read_text(errors="replace").splitlines()
        if len(lines) > keep:
            path.write_text(
                "\n".join([f"[{len(lines) - keep} earlier lines trimmed]", *lines[-keep:]]) + "\n"
            )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def timeout(*_: object) -> None:
        raise TimeoutError(f"bench: over --max-minutes {args.max_minutes}; stopping")

    signal.signal(signal.SIGALRM, timeout)
    signal.alarm(max(1, int(args.max_minutes * 60)))
    try:
        return run(args)
    finally:
        signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
