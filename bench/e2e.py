"""End to end on a real kube-apiserver: what the webhook adds to a pod create.

Starts etcd, kube-apiserver and ``heartbeat-webhook serve`` with
tests/integration/cluster.py, registers manifests/base's
MutatingWebhookConfiguration pointed at the webhook (as the integration suite
does), and creates the typical two-container pod (bench/payloads.py) one at a
time with the kubernetes client, timing each create. Blocks alternate with and
without the configuration (with, without, with, without, ...), so drift on a
noisy machine hits both sides; between blocks the configuration is created or
deleted and a dry-run create confirms the change took effect.

``python -m bench.e2e [--pods 300] [--blocks 4]`` prints the summary as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench.load import percentile
from bench.payloads import submitted_pod
from tests.integration.cluster import ControlPlane, Webhook
from tests.integration.conftest import make_namespace, registration

ROOT = Path(__file__).resolve().parents[1]
MWC_NAME = "heartbeat-webhook"
WEBHOOK_NAME = "inject.heartbeat-webhook.heartbeat-system.svc"
WARMUP = 10  # creates per block that are not measured


@dataclass
class Block:
    webhook: bool
    latencies_ms: list[float]
    mutated: int  # creates whose stored pod carries heartbeat/injected
    apiserver_webhook_ms: float | None = None  # the apiserver's own mean webhook call time

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latencies_ms)


@dataclass
class E2EResult:
    pods_per_condition: int
    blocks: list[Block] = field(default_factory=list)
    setup_seconds: float = 0.0

    def pooled(self, webhook: bool) -> list[float]:
        return [x for b in self.blocks if b.webhook == webhook for x in b.latencies_ms]

    def summary(self) -> dict[str, Any]:
        with_, without = self.pooled(True), self.pooled(False)
        pairs = [
            a.median_ms / b.median_ms
            for a, b in zip(self.blocks[::2], self.blocks[1::2], strict=False)
            if a.webhook and not b.webhook
        ]
        calls = [b.apiserver_webhook_ms for b in self.blocks if b.apiserver_webhook_ms is not None]
        return {
            "pods_per_condition": self.pods_per_condition,
            "with_median_ms": statistics.median(with_),
            "with_p99_ms": percentile(with_, 99),
            "without_median_ms": statistics.median(without),
            "without_p99_ms": percentile(without, 99),
            "ratio_of_medians": statistics.median(with_) / statistics.median(without),
            "added_median_ms": statistics.median(with_) - statistics.median(without),
            "pair_ratios": pairs,
            "apiserver_webhook_call_ms": statistics.median(calls) if calls else None,
            "mutated_with": sum(b.mutated for b in self.blocks if b.webhook),
            "mutated_without": sum(b.mutated for b in self.blocks if not b.webhook),
            "setup_seconds": self.setup_seconds,
        }


def assets_dir() -> Path:
    given = os.environ.get("KUBEBUILDER_ASSETS")
    if given and (Path(given) / "kube-apiserver").exists() and (Path(given) / "etcd").exists():
        return Path(given)
    result = subprocess.run(
        ["bash", str(ROOT / "tests" / "envtest" / "assets.sh")],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(
            f"tests/envtest/assets.sh could not provide kube-apiserver and etcd "
            f"(exit {result.returncode}); set KUBEBUILDER_ASSETS"
        )
    return Path(lines[-1])


class Cluster:
    def __init__(self, plane: ControlPlane, hook: Webhook) -> None:
        self.plane = plane
        self.hook = hook
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.namespace = make_namespace(self.core, "bench")
        self.body = registration(hook)
        self._context = ssl.create_default_context(cafile=str(plane.ca_file))

    def create(self, name: str, dry_run: bool = False) -> tuple[float, bool]:
        """Create one pod; (seconds the call took, whether the webhook mutated it)."""
        kwargs: dict[str, Any] = {"_preload_content": False}
        if dry_run:
            kwargs["dry_run"] = "All"
        pod = submitted_pod(name)
        started = time.perf_counter()
        response = self.core.create_namespaced_pod(self.namespace, pod, **kwargs)
        data = response.data
        elapsed = time.perf_counter() - started
        stored = json.loads(data)
        return elapsed, "heartbeat/injected" in stored["metadata"].get("annotations", {})

    def set_webhook(self, enabled: bool, timeout: float = 60) -> None:
        if enabled:
            with contextlib.suppress(ApiException):
                self.admission.create_mutating_webhook_configuration(self.body)
        else:
            with contextlib.suppress(ApiException):
                self.admission.delete_mutating_webhook_configuration(MWC_NAME)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.create("probe", dry_run=True)[1] == enabled:
                return
            time.sleep(0.1)
        raise TimeoutError(f"webhook registration never became {enabled} (dry-run creates)")

    def webhook_call_totals(self) -> tuple[float, float]:
        """(sum seconds, count) of the apiserver's calls to our mutating webhook."""
        request = urllib.request.Request(f"{self.plane.url}/metrics")  # noqa: S310 (loopback)
        request.add_header("Authorization", f"Bearer {self.plane.token}")
        with urllib.request.urlopen(request, context=self._context, timeout=10) as response:  # noqa: S310
            text = response.read().decode()
        total = count = 0.0
        for line in text.splitlines():
            if f'name="{WEBHOOK_NAME}"' not in line or 'type="admit"' not in line:
                continue
            name, _, value = line.rpartition(" ")
            if name.startswith("apiserver_admission_webhook_admission_duration_seconds_sum"):
                total += float(value)
            elif name.startswith("apiserver_admission_webhook_admission_duration_seconds_count"):
                count += float(value)
        return total, count


def run(
    workdir: Path, pods: int = 300, blocks: int = 4, log: Any = print, assets: Path | None = None
) -> E2EResult:
    """``pods`` creates per condition, split over ``blocks`` alternating blocks (even)."""
    blocks = max(2, blocks - blocks % 2)
    per_block = max(1, pods // (blocks // 2))
    started = time.monotonic()
    plane = ControlPlane(assets or assets_dir(), workdir / "control-plane")
    hook = Webhook(workdir / "webhook")
    hook.workdir.mkdir(parents=True, exist_ok=True)
    result = E2EResult(pods_per_condition=per_block * (blocks // 2))
    try:
        plane.start()
        hook.start()
        cluster = Cluster(plane, hook)
        result.setup_seconds = time.monotonic() - started
        log(f"e2e: control plane and webhook up in {result.setup_seconds:.1f}s")
        serial = 0
        for index in range(blocks):
            enabled = index % 2 == 0
            cluster.set_webhook(enabled)
            for _ in range(WARMUP):
                serial += 1
                cluster.create(f"warm-{serial}")
            before = cluster.webhook_call_totals()
            latencies, mutated = [], 0
            for _ in range(per_block):
                serial += 1
                seconds, was_mutated = cluster.create(f"pod-{serial}")
                latencies.append(seconds * 1000)
                mutated += was_mutated
            after = cluster.webhook_call_totals()
            calls = after[1] - before[1]
            block = Block(enabled, latencies, mutated)
            if enabled and calls > 0:
                block.apiserver_webhook_ms = (after[0] - before[0]) / calls * 1000
            result.blocks.append(block)
            log(
                f"e2e: block {index + 1}/{blocks} webhook={'on' if enabled else 'off'}: "
                f"median {block.median_ms:.2f} ms, {mutated}/{per_block} mutated"
            )
    finally:
        hook.stop(signal.SIGKILL)  # measured already; skip its 5 s drain
        plane.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.e2e")
    parser.add_argument("--pods", type=int, default=300, help="creates per condition")
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks (even)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        result = run(Path(tmp), args.pods, args.blocks, log=lambda m: print(m, file=sys.stderr))
    print(json.dumps({**result.summary(), "blocks": [asdict(b) for b in result.blocks]}))


if __name__ == "__main__":
    main()
