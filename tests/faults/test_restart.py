"""A restart under load (stop, then start on the same port) recovers by itself:
creates after the restart are injected again, and only the down window failed open."""

from __future__ import annotations

import time

from kubernetes import client

from tests.faults.harness import CreateLoad, FaultWebhook, fail_open_count
from tests.integration.cluster import ControlPlane

DRAIN = 5.0  # serve's default --drain-seconds: calls during it are still injected


def test_restart_under_load_recovers_without_manual_action(
    control_plane: ControlPlane, core: client.CoreV1Api, webhook: FaultWebhook, namespace: str
) -> None:
    port = webhook.port
    opened_before = fail_open_count(control_plane)
    load = CreateLoad(control_plane.kubeconfig, namespace, threads=4, rate=30, prefix="restart")
    load.start()
    try:
        load.go_on(2, 20)
        stopping = time.monotonic()
        webhook.stop()  # SIGTERM: drains, then exits
        stopped = time.monotonic()
        webhook.start()  # the same port, no change to the registration
        ready = time.monotonic()
        load.go_on(2.5, 40)
    finally:
        report = load.stop()
    opened = fail_open_count(control_plane) - opened_before
    after = [r for r in report.ok if r.start > ready]
    print(
        f"\nrestart under load: {report.summary()}\napiserver fail-open count +{opened:g}; "
        f"stop took {stopped - stopping:.1f}s, start {ready - stopped:.1f}s; "
        f"{len(after)} creates after the restart"
    )

    assert webhook.port == port
    assert report.failures == [], [f"{r.name}: {r.error}" for r in report.failures]
    assert report.duplicated == [] and report.partial == []
    assert len(after) >= 20 and all(r.injected for r in after)
    # Misses only while no process listened: between the end of the drain and the restart.
    assert all(stopping + DRAIN - 0.5 < r.start < ready for r in report.ok if not r.injected)
    assert opened == len(report.missed)
