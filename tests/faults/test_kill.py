"""SIGKILL under load: every create still succeeds (fails open), nothing is injected
twice, and ``audit`` lists exactly the pods that missed injection."""

from __future__ import annotations

import signal
import time

from kubernetes import client

from tests.faults.harness import (
    CreateLoad,
    FaultWebhook,
    audit_missed,
    fail_open_count,
    stored_pod_names,
)
from tests.integration.cluster import ControlPlane


def test_sigkill_under_load_fails_open_and_audit_finds_every_miss(
    control_plane: ControlPlane, core: client.CoreV1Api, webhook: FaultWebhook, namespace: str
) -> None:
    opened_before = fail_open_count(control_plane)
    load = CreateLoad(control_plane.kubeconfig, namespace, threads=4, rate=30, prefix="kill")
    load.start()
    try:
        load.go_on(2.5, 20)  # served for a while
        webhook.stop(signal.SIGKILL)  # the whole process group, no drain
        killed = time.monotonic()
        load.go_on(2.5, 20)  # creates go on while nothing listens
        webhook.start()  # same port: the registration stays valid
        load.go_on(2.5, 20)
    finally:
        report = load.stop()
    print(f"\nSIGKILL under load: {report.summary()}")
    opened = fail_open_count(control_plane) - opened_before
    print(f"apiserver fail-open count +{opened:g}; not injected: {len(report.missed)}")

    assert report.failures == [], [f"{r.name}: {r.error}" for r in report.failures]
    assert report.duplicated == [] and report.partial == []
    # The fault really happened, and the webhook really served before and after it.
    assert report.missed, "no create ran while the webhook was down"
    assert any(r.injected and r.start < killed for r in report.ok)
    assert sum(r.injected and r.start > killed for r in report.ok) >= 10
    # Each uninjected pod is one call the apiserver failed open on; no other call failed.
    assert opened == len(report.missed)
    assert {r.name for r in report.ok} <= stored_pod_names(core, namespace)

    code, findings = audit_missed(control_plane.kubeconfig, namespace)
    assert code == 1
    assert {f["verdict"] for f in findings} == {"missed"}
    assert sorted(f["target"] for f in findings) == [
        f"Pod {namespace}/{name}" for name in report.missed
    ]
