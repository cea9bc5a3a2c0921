"""Serving certificate rotated under load (a new leaf from the same CA, written over the
same files by ``heartbeat-webhook certs``): no call fails, and new handshakes get it."""

from __future__ import annotations

import ssl
import threading
import time

from kubernetes import client

from tests.faults.harness import CreateLoad, FaultWebhook, fail_open_count
from tests.integration.cluster import ControlPlane

ROTATIONS = 3


def test_rotation_under_load_fails_nothing_and_serves_the_new_leaf(
    control_plane: ControlPlane, core: client.CoreV1Api, webhook: FaultWebhook, namespace: str
) -> None:
    initial = webhook.served_serial()
    assert initial == webhook.file_serial()
    reloads_before = webhook.metrics().get("heartbeat_webhook_certificate_reloads", 0.0)
    opened_before = fail_open_count(control_plane)

    # New connections all along, as an apiserver (re)dialing would make: each is a fresh
    # handshake verified against the registered CA, so a half-rotated pair would show.
    handshakes: list[int] = []
    handshake_errors: list[str] = []
    stop = threading.Event()

    def handshake_loop() -> None:
        while not stop.wait(0.05):
            try:
                handshakes.append(webhook.served_serial())
            except (OSError, ssl.SSLError) as error:
                handshake_errors.append(f"{type(error).__name__}: {error}")

    prober = threading.Thread(target=handshake_loop, name="handshakes")
    rotated: list[int] = []
    load = CreateLoad(control_plane.kubeconfig, namespace, threads=4, rate=30, prefix="rot")
    load.start()
    prober.start()
    try:
        for _ in range(ROTATIONS):
            # Spaced by more than the once-a-second reload check, so each leaf is served.
            spaced = time.monotonic() + 1.5
            load.go_on(0, 20)
            time.sleep(max(0.0, spaced - time.monotonic()))
            webhook.rotate()
            rotated.append(webhook.file_serial())
        load.go_on(1.5, 20)
    finally:
        stop.set()
        prober.join(10)
        report = load.stop()
    opened = fail_open_count(control_plane) - opened_before
    time.sleep(1.1)  # the reload check runs at most once a second
    served = webhook.served_serial()
    reloads = webhook.metrics()["heartbeat_webhook_certificate_reloads"] - reloads_before
    print(
        f"\nrotation under load: {report.summary()}\napiserver fail-open count +{opened:g}; "
        f"{ROTATIONS} rotations, {reloads:g} reloads, {len(handshakes)} probe handshakes "
        f"({len(handshake_errors)} failed), serials seen {len(set(handshakes))}"
    )

    assert report.failures == [], [f"{r.name}: {r.error}" for r in report.failures]
    assert report.duplicated == [] and report.partial == []
    assert (opened, report.missed) == (0, [])
    assert handshake_errors == []
    assert len(set(rotated)) == ROTATIONS and initial not in rotated
    assert served == rotated[-1]
    # Every rotated leaf was served for a while under load (none skipped or stuck).
    assert set(rotated) <= set(handshakes)
    assert set(handshakes) <= {initial, *rotated}
    assert reloads >= ROTATIONS
