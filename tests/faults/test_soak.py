"""The short soak: 10 s of steady creates through the real apiserver. CI runs this one;
``make soak`` runs the 60 s version (tests/faults/soak.py). No timing assertions."""

from __future__ import annotations

from tests.faults.harness import FaultWebhook
from tests.faults.soak import soak
from tests.integration.cluster import ControlPlane


def test_short_soak_has_no_failures(
    control_plane: ControlPlane, webhook: FaultWebhook, namespace: str
) -> None:
    result = soak(control_plane, webhook, namespace, seconds=10, rate=20, threads=4)
    print("\n" + result.text())
    report = result.report
    assert report.failures == [], [f"{r.name}: {r.error}" for r in report.failures]
    assert len(report.ok) > 0
    assert report.missed == [] and report.duplicated == [] and report.partial == []
    assert result.fail_open == 0
