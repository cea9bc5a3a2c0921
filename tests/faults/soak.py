"""Sustained pod-create load through the real apiserver with the webhook registered.

``make soak`` runs ``python -m tests.faults.soak`` (60 s by default; see --help): it
starts etcd, kube-apiserver and ``heartbeat-webhook serve`` on loopback, registers
manifests/base's webhook configuration, creates pods at a steady rate, prints pods
created, failures, p99 create latency and the webhook's RSS at the start and the
end, stops everything, and exits 1 when any create failed or was not injected.
tests/faults/test_soak.py runs the same for 10 s in CI, with no timing assertions.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kubernetes import client, config

from tests.faults.harness import (
    CreateLoad,
    FaultWebhook,
    LoadReport,
    fail_open_count,
    register,
    sample_rss,
)
from tests.integration.cluster import ASSETS_SCRIPT, ControlPlane, envtest_dir, running
from tests.integration.conftest import make_namespace


@dataclass
class SoakResult:
    report: LoadReport
    fail_open: float
    reviews: float
    rss_start_kib: int
    rss_warm_kib: int  # after the first tenth of the run
    rss_end_kib: int
    rss_max_kib: int

    @property
    def ok(self) -> bool:
        report = self.report
        return not (report.failures or report.missed or report.duplicated or self.fail_open)

    def text(self) -> str:
        report = self.report
        lines = [
            f"soak: {report.summary()}",
            f"soak: pods created {len(report.ok)}, failures {len(report.failures)}, "
            f"not injected {len(report.missed)}, apiserver fail-open +{self.fail_open:g}, "
            f"webhook reviews {self.reviews:g}",
            f"soak: create latency p50 {report.latency(0.5) * 1000:.0f} ms, "
            f"p99 {report.latency(0.99) * 1000:.0f} ms",
            f"soak: webhook RSS start {self.rss_start_kib / 1024:.1f} MiB, "
            f"warm {self.rss_warm_kib / 1024:.1f} MiB, end {self.rss_end_kib / 1024:.1f} MiB, "
            f"max {self.rss_max_kib / 1024:.1f} MiB",
        ]
        lines += [f"soak: failed {r.name}: {r.error}" for r in report.failures[:10]]
        return "\n".join(lines)


def soak(
    plane: ControlPlane,
    hook: FaultWebhook,
    namespace: str,
    *,
    seconds: float,
    rate: float = 20.0,
    threads: int = 4,
) -> SoakResult:
    """Create pods at ``rate``/s for ``seconds`` (bounded), then report."""
    opened_before = fail_open_count(plane)
    reviews_before = hook.reviews()
    rss_start = hook.rss_kib()
    stop = threading.Event()
    samples = sample_rss(hook, 0.5, stop)
    load = CreateLoad(plane.kubeconfig, namespace, threads=threads, rate=rate, prefix="soak")
    load.start()
    try:
        time.sleep(seconds)
    finally:
        report = load.stop()
        stop.set()
    rss_end = hook.rss_kib()
    sampled = samples() or [rss_end]
    return SoakResult(
        report=report,
        fail_open=fail_open_count(plane) - opened_before,
        reviews=hook.reviews() - reviews_before,
        rss_start_kib=rss_start,
        rss_warm_kib=sampled[len(sampled) // 10],
        rss_end_kib=rss_end,
        rss_max_kib=max([*sampled, rss_end]),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.faults.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (60)")
    parser.add_argument("--rate", type=float, default=20.0, help="pod creates per second (20)")
    parser.add_argument("--threads", type=int, default=4, help="concurrent creators (4)")
    args = parser.parse_args(argv)
    assets = envtest_dir(ASSETS_SCRIPT, "kube-apiserver and etcd")
    with tempfile.TemporaryDirectory(prefix="heartbeat-soak-") as tmp:
        plane = ControlPlane(assets, Path(tmp) / "control-plane")
        hook = FaultWebhook(Path(tmp) / "webhook")
        with running(plane, hook):
            print("soak: starting etcd, kube-apiserver and the webhook", flush=True)
            plane.start()
            hook.start()
            api = config.new_client_from_config(config_file=str(plane.kubeconfig))
            core = client.CoreV1Api(api)
            register(api, core, hook, make_namespace(core, "probe"))
            namespace = make_namespace(core, "soak")
            print(
                f"soak: {args.seconds:g}s at {args.rate:g} creates/s from {args.threads} "
                f"threads; webhook pid {hook.pid}",
                flush=True,
            )
            result = soak(
                plane, hook, namespace, seconds=args.seconds, rate=args.rate, threads=args.threads
            )
            api.close()
            print(result.text(), flush=True)
            print("soak: stopping", flush=True)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
