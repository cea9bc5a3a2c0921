"""Pod-create latency through kube-apiserver: no webhook, a no-op webhook, ours.

The no-op webhook is bench/baseline.py (reads the review, answers allowed with
no patch) registered with the same configuration as ours. It separates what
any webhook costs the apiserver from what our patch costs.

    .venv/bin/python -m bench.e2e_noop [--rounds 3] [--pods 100]

Loopback only; every process stops with the run.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from kubernetes.client.rest import ApiException

from bench.e2e import MWC_NAME, Cluster, assets_dir
from tests.integration.cluster import ControlPlane, Webhook, free_port, spawn

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 10


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.e2e_noop")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pods", type=int, default=100, help="creates per condition per round")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="e2e-noop-"))
    plane = ControlPlane(assets_dir(), work / "control-plane")
    hook = Webhook(work / "webhook")
    hook.workdir.mkdir(parents=True)
    plane.start()
    hook.start()
    port = free_port()
    noop_server = spawn(
        "noop",
        [
            sys.executable, "-m", "bench.launch", "--app", "baseline", "--port", str(port),
            "--cert-file", str(hook.cert_dir / "tls.crt"),
            "--key-file", str(hook.cert_dir / "tls.key"),
        ],
        work,  # its log goes there, not into the checkout
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    time.sleep(3)
    try:
        cluster = Cluster(plane, hook)
        noop = copy.deepcopy(cluster.body)
        for entry in noop["webhooks"]:
            entry["clientConfig"]["url"] = f"https://127.0.0.1:{port}/mutate"
        conditions: dict[str, Any] = {"none": None, "noop": noop, "ours": cluster.body}
        latencies: dict[str, list[float]] = {name: [] for name in conditions}
        serial = 0
        for round_ in range(args.rounds):
            for name, body in conditions.items():
                with contextlib.suppress(ApiException):
                    cluster.admission.delete_mutating_webhook_configuration(MWC_NAME)
                if body is not None:
                    cluster.admission.create_mutating_webhook_configuration(body)
                time.sleep(2)  # a new configuration takes a moment to apply
                before = cluster.webhook_call_totals()[1]
                for _ in range(WARMUP):
                    serial += 1
                    cluster.create(f"warm-{serial}")
                for _ in range(args.pods):
                    serial += 1
                    seconds, _ = cluster.create(f"pod-{serial}")
                    latencies[name].append(seconds * 1000)
                calls = cluster.webhook_call_totals()[1] - before
                recent = statistics.median(latencies[name][-args.pods :])
                print(
                    f"round {round_ + 1} {name}: {calls:.0f} webhook calls, median {recent:.2f} ms"
                )
        none = statistics.median(latencies["none"])
        for name, values in latencies.items():
            values.sort()
            median = statistics.median(values)
            p99 = values[max(0, int(len(values) * 0.99) - 1)]
            print(f"{name}: median {median:.2f} ms, p99 {p99:.2f} ms, {median / none:.2f}x none")
    finally:
        noop_server.stop()
        hook.stop(signal.SIGKILL)
        plane.stop()


if __name__ == "__main__":
    main()
