"""End to end on a real kube-apiserver: what the webhook adds to a pod create.

Starts etcd, kube-apiserver and ``heartbeat-webhook serve`` with
tests/integration/cluster.py, registers manifests/base's
MutatingWebhookConfiguration pointed at the webhook (as the integration suite
does), and creates the typical two-container pod (bench/payloads.py) one at a
time with the kubernetes client, timing each create. Blocks alternate with and
without the configuration (with, without, with, without, ...), so drift on a
noisy machine hits both sides; between blocks the configuration is created or
deleted and a dry-run create confirms the change took effect.

Then, with ``profile_seconds``, three more conditions: no webhook, a no-op
webhook (bench/baseline.py, registered the same way: it answers allowed with
no patch) and ours. Each creates pods back to back while kube-apiserver records
its CPU profile (bench/apiserver_profile.py), which shows where the added time
goes: into calling any webhook, and into applying a patch.

``python -m bench.e2e [--pods 300] [--blocks 4] [--profile-seconds 15]`` prints
the summary as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

from bench import apiserver_profile
from bench.load import percentile
from bench.payloads import submitted_pod
from tests.integration.cluster import (
    ASSETS_SCRIPT,
    ControlPlane,
    Process,
    Webhook,
    envtest_dir,
    free_port,
    https_ok,
    spawn,
    wait_until,
)
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
class Profiled:
    """One condition of the profile phase: creates back to back under the profiler."""

    condition: str  # none, noop or webhook
    creates: int
    median_ms: float
    apiserver_webhook_ms: float | None  # the apiserver's mean time per webhook call
    cpu_us: dict[str, float]  # apiserver CPU per create, by apiserver_profile stage
    handler_ms: float | None = None  # ours only: its own mean time to decide a review


@dataclass
class E2EResult:
    pods_per_condition: int
    blocks: list[Block] = field(default_factory=list)
    setup_seconds: float = 0.0
    profiled: list[Profiled] = field(default_factory=list)
    profile_note: str | None = None  # why there is no profile, if there is none

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
            "profiled": [asdict(p) for p in self.profiled],
            "profile_note": self.profile_note,
        }


class Cluster:
    def __init__(self, plane: ControlPlane, hook: Webhook) -> None:
        self.plane = plane
        self.hook = hook
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        self.core = client.CoreV1Api(api)
        self.admission = client.AdmissionregistrationV1Api(api)
        self.namespace = make_namespace(self.core, "bench")
        self.body = registration(hook)

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

    def register(self, body: dict[str, Any] | None, expect: str, timeout: float = 60) -> None:
        """Replace the configuration with ``body`` (None: none), then wait until a
        dry-run create shows ``expect``: "mutated", "called" (a webhook answered
        without a patch) or "none" (no webhook call)."""
        with contextlib.suppress(ApiException):
            self.admission.delete_mutating_webhook_configuration(MWC_NAME)
        if body is not None:
            self.admission.create_mutating_webhook_configuration(body)
        deadline = time.monotonic() + timeout
        seen = ""
        while time.monotonic() < deadline:
            calls = self.webhook_call_totals()[1]
            mutated = self.create("probe", dry_run=True)[1]
            called = self.webhook_call_totals()[1] > calls
            seen = "mutated" if mutated else "called" if called else "none"
            if seen == expect:
                return
            time.sleep(0.1)
        raise TimeoutError(f"webhook registration never showed {expect!r} (last: {seen!r})")

    def handler_totals(self) -> tuple[float, float]:
        """(sum seconds, count) of our webhook's own admission duration histogram."""
        samples = self.hook.metrics()
        name = "heartbeat_webhook_admission_duration_seconds"
        return samples[f"{name}_sum"], samples[f"{name}_count"]

    def webhook_call_totals(self) -> tuple[float, float]:
        """(sum seconds, count) of the apiserver's calls to our mutating webhook."""
        name = "apiserver_admission_webhook_admission_duration_seconds"
        total = count = 0.0
        for sample, value in self.plane.metrics(name).items():
            if f'name="{WEBHOOK_NAME}"' not in sample or 'type="admit"' not in sample:
                continue
            if sample.startswith(f"{name}_sum"):
                total += value
            elif sample.startswith(f"{name}_count"):
                count += value
        return total, count


def start_noop(hook: Webhook, workdir: Path) -> tuple[Process, str]:
    """bench/baseline.py served like the webhook, with its certificate: (process, URL)."""
    port = free_port()
    process = spawn(
        "noop",
        [
            sys.executable, "-m", "bench.launch", "--app", "baseline", "--port", str(port),
            "--cert-file", str(hook.cert_dir / "tls.crt"),
            "--key-file", str(hook.cert_dir / "tls.key"),
        ],
        workdir,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    url = f"https://127.0.0.1:{port}"
    context = hook.context()
    wait_until(lambda: https_ok(f"{url}/readyz", context), "no-op webhook /readyz", 30, process)
    return process, url


def profile_conditions(
    cluster: Cluster, workdir: Path, seconds: int, log: Any = print
) -> list[Profiled]:
    """None, the no-op webhook and ours, each for ``seconds`` of creates under the profiler."""
    go = apiserver_profile.go_tool()
    if go is None:
        raise RuntimeError("go is not on PATH: `go tool pprof` reads the apiserver's profile")
    noop, noop_url = start_noop(cluster.hook, workdir)
    try:
        noop_body = copy.deepcopy(cluster.body)
        for entry in noop_body["webhooks"]:
            entry["clientConfig"]["url"] = noop_url + "/mutate"
        conditions = (
            ("none", None, "none"),
            ("noop", noop_body, "called"),
            ("webhook", cluster.body, "mutated"),
        )
        profiled = []
        for name, body, expect in conditions:
            cluster.register(body, expect)
            profiled.append(_profile_one(cluster, name, workdir, seconds, go))
            log(
                f"e2e: profiled {name}: {profiled[-1].creates} creates, median "
                f"{profiled[-1].median_ms:.2f} ms, apiserver CPU "
                f"{profiled[-1].cpu_us[apiserver_profile.TOTAL]:.0f} µs per create"
            )
        return profiled
    finally:
        noop.stop()


def _profile_one(cluster: Cluster, name: str, workdir: Path, seconds: int, go: str) -> Profiled:
    for index in range(WARMUP):
        cluster.create(f"warm-{name}-{index}")
    target = workdir / f"apiserver-{name}.pprof.gz"
    plane = cluster.plane
    errors: list[BaseException] = []

    def record() -> None:
        try:
            apiserver_profile.capture(plane.url, plane.token, plane.context(), seconds, target)
        except BaseException as error:  # re-raised below, on the caller's thread
            errors.append(error)

    recorder = threading.Thread(target=record, name=f"pprof-{name}")
    calls_before = cluster.webhook_call_totals()
    handler_before = cluster.handler_totals()
    recorder.start()
    # Creates stay inside the profile's window, which opens when the request arrives.
    time.sleep(0.3)
    latencies: list[float] = []
    deadline = time.monotonic() + seconds - 0.6
    while time.monotonic() < deadline:
        latencies.append(cluster.create(f"{name}-{len(latencies)}")[0] * 1000)
    recorder.join()
    if errors:
        raise RuntimeError(f"apiserver profile for {name}: {errors[0]}") from errors[0]
    calls_after = cluster.webhook_call_totals()
    calls = calls_after[1] - calls_before[1]
    handler_after = cluster.handler_totals()
    decided = handler_after[1] - handler_before[1]
    return Profiled(
        condition=name,
        creates=len(latencies),
        median_ms=statistics.median(latencies),
        apiserver_webhook_ms=(calls_after[0] - calls_before[0]) / calls * 1000 if calls else None,
        cpu_us=apiserver_profile.per_create(target, len(latencies), go),
        handler_ms=(handler_after[0] - handler_before[0]) / decided * 1000 if decided else None,
    )


def run(
    workdir: Path,
    pods: int = 300,
    blocks: int = 4,
    *,
    log: Any = print,
    assets: Path | None = None,
    profile_seconds: int = 0,
) -> E2EResult:
    """``pods`` creates per condition, split over ``blocks`` alternating blocks (even);
    then, if ``profile_seconds``, the profile phase (profile_conditions)."""
    blocks = max(2, blocks - blocks % 2)
    per_block = max(1, pods // (blocks // 2))
    started = time.monotonic()
    assets = assets or envtest_dir(
        ASSETS_SCRIPT, "kube-apiserver and etcd", "set KUBEBUILDER_ASSETS"
    )
    plane = ControlPlane(assets, workdir / "control-plane")
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
            cluster.register(cluster.body if enabled else None, "mutated" if enabled else "none")
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
        if profile_seconds > 0:
            try:
                result.profiled = profile_conditions(cluster, workdir, profile_seconds, log)
            except (RuntimeError, TimeoutError, OSError, ApiException) as error:
                result.profile_note = f"no apiserver profile: {error}"
                log(f"e2e: {result.profile_note}")
    finally:
        hook.stop(signal.SIGKILL)  # measured already; skip its 5 s drain
        plane.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.e2e")
    parser.add_argument("--pods", type=int, default=300, help="creates per condition")
    parser.add_argument("--blocks", type=int, default=4, help="alternating blocks (even)")
    parser.add_argument(
        "--profile-seconds", type=int, default=15, help="per condition; 0 skips the profiles"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        result = run(
            Path(tmp),
            args.pods,
            args.blocks,
            log=lambda m: print(m, file=sys.stderr),
            profile_seconds=args.profile_seconds,
        )
    print(json.dumps({**result.summary(), "blocks": [asdict(b) for b in result.blocks]}))


if __name__ == "__main__":
    main()
