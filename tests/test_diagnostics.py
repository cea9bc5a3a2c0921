"""explain and audit: why a pod was or was not injected, as table tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonpatch
import pytest

from webhook import __version__
from webhook.cli import main
from webhook.diagnostics import explain_live, explain_manifest
from webhook.mutate import mutate_pod


def pod(annotations: dict[str, str] | None = None, namespace: str = "jobs") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": "w", "namespace": namespace}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": [{"name": "worker", "image": "python:3.12"}]},
    }


def injected(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    original = pod({"heartbeat/enabled": "true", **(annotations or {})})
    patched: dict[str, Any] = jsonpatch.apply_patch(original, mutate_pod(original).patch)
    return patched


ON = {"heartbeat/enabled": "true"}


@pytest.mark.parametrize(
    ("document", "verdict", "fragment", "finding"),
    [
        (pod(), "not-opted-in", "no heartbeat/enabled annotation", False),
        (pod({"heartbeat/enabled": "false"}), "not-opted-in", "opts out", False),
        (pod(ON), "would-inject", "containers: worker", False),
        (pod({"heartbeat/enabled": "maybe"}), "denied", 'heartbeat/enabled="maybe"', True),
        (pod({**ON, "heartbeat/containers": "nope"}), "denied", '"nope"', True),
        (pod(ON, namespace="kube-system"), "not-opted-in", "kube-system is excluded", False),
        (injected(), "unchanged", "already injected", False),
    ],
    ids=["absent", "false", "opted-in", "bad-value", "bad-container", "excluded", "injected"],
)
def test_explain_pod_manifests(
    document: dict[str, Any], verdict: str, fragment: str, finding: bool
) -> None:
    [explanation] = explain_manifest(document)
    assert explanation.verdict == verdict
    assert any(fragment in reason for reason in explanation.reasons), explanation.reasons
    assert explanation.finding is finding


def test_explain_catches_annotation_on_the_deployment_metadata() -> None:
    deployment = {
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": ON},
        "spec": {"template": pod()},
    }
    [explanation] = explain_manifest(deployment)
    assert explanation.target == "Deployment web pod template"
    assert explanation.verdict == "not-opted-in"
    assert explanation.reasons[0].startswith("misplaced: annotation heartbeat/enabled")
    assert explanation.finding


def test_explain_walks_lists_and_skips_other_kinds() -> None:
    listing = {"kind": "List", "items": [pod(ON), {"kind": "Service", "metadata": {}}]}
    assert [e.verdict for e in explain_manifest(listing)] == ["would-inject"]


@pytest.mark.parametrize(
    ("stored", "verdict", "fragment"),
    [
        (pod(), "not-opted-in", "no heartbeat/enabled"),
        (pod(ON), "missed", "admitted while the webhook was down"),
        (pod(ON, namespace="kube-system"), "missed", "kube-system is excluded"),
        (pod({"heartbeat/enabled": "maybe"}), "missed", "admitted without the webhook"),
        (injected(), "up-to-date", "probe in containers: worker"),
    ],
    ids=["not-opted-in", "missed", "excluded", "invalid", "up-to-date"],
)
def test_explain_live_pods(stored: dict[str, Any], verdict: str, fragment: str) -> None:
    explanation = explain_live(stored)
    assert explanation.verdict == verdict
    assert any(fragment in reason for reason in explanation.reasons), explanation.reasons


def test_old_webhook_version_is_outdated() -> None:
    stored = injected()
    marker = json.loads(stored["metadata"]["annotations"]["heartbeat/injected"])
    marker["version"] = "0.0.1"
    stored["metadata"]["annotations"]["heartbeat/injected"] = json.dumps(marker)
    explanation = explain_live(stored)
    assert explanation.verdict == "outdated" and explanation.finding
    assert f"version 0.0.1, now {__version__}" in explanation.reasons[0]


def test_annotations_changed_after_injection_is_outdated() -> None:
    stored = injected()
    stored["metadata"]["annotations"]["heartbeat/max-age"] = "300"
    explanation = explain_live(stored)
    assert explanation.verdict == "outdated"
    assert "annotations changed since injection" in explanation.reasons[0]


# --- the command ------------------------------------------------------------------


def test_explain_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(json.dumps(pod(ON)))
    assert main(["explain", "-f", str(good)]) == 0
    assert "Pod w: would-inject" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text(json.dumps(pod({"heartbeat/enabled": "maybe"})))
    assert main(["explain", "-f", str(bad), "-o", "json"]) == 1
    [entry] = json.loads(capsys.readouterr().out)
    assert entry["verdict"] == "denied"
    assert main(["explain", "-f", str(tmp_path / "missing.yaml")]) == 2


def test_explain_without_a_cluster_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n")
    assert main(["explain", "pod/w", "--kubeconfig", str(config)]) == 2
    assert "explain: cannot load a kubeconfig" in capsys.readouterr().err
