"""Render the kustomize trees (base, overlays, monitoring) for the manifest tests.

The tools (kustomize and third-party CRDs) come from ``tests/envtest/tools.sh``
or ``$HEARTBEAT_TOOLS``. The kind overlay needs certificates first: they are
made by ``hack/kind.sh certs`` in a copy of ``manifests/``, so the repository's
own ``generated/`` directory is never read or written.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TOOLS_SCRIPT = ROOT / "tests" / "envtest" / "tools.sh"
KIND_SCRIPT = ROOT / "hack" / "kind.sh"
# Every kustomize tree under manifests/ (base, overlays/kind, overlays/cert-manager,
# monitoring, audit, ...), so a new one is checked without listing it here.
TREES = tuple(
    sorted(
        path.parent.relative_to(ROOT / "manifests").as_posix()
        for path in (ROOT / "manifests").rglob("kustomization.yaml")
        if "generated" not in path.parts
    )
)
NAMESPACE = "heartbeat-system"
SERVICE = "heartbeat-webhook"
SECRET = "heartbeat-webhook-tls"
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")

Object = dict[str, Any]


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def missing(reason: str) -> NoReturn:
    """Fail under CI (a missing tool must not pass as a skip), skip locally."""
    if in_ci():
        pytest.fail(reason)
    pytest.skip(reason)


def tools_dir() -> Path:
    """The directory from tools.sh: kustomize, promtool, crds/cert-manager,
    crds/prometheus-operator."""
    given = os.environ.get("HEARTBEAT_TOOLS")
    if given and all((Path(given) / tool).is_file() for tool in ("kustomize", "promtool")):
        return Path(given)
    if shutil.which("go") is None:
        missing("go is not installed: tests/envtest/tools.sh cannot build kustomize")
    result = subprocess.run(
        ["bash", str(TOOLS_SCRIPT)], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        pytest.fail(f"{TOOLS_SCRIPT} failed (exit {result.returncode}); see its output above")
    return Path(lines[-1])


def crd_files(tools: Path) -> list[Path]:
    return sorted((tools / "crds").rglob("*.yaml"))


def heartbeat_cli() -> str:
    beside = Path(sys.executable).with_name("heartbeat-webhook")
    found = str(beside) if beside.is_file() else shutil.which("heartbeat-webhook")
    if found is None:
        pytest.fail("no heartbeat-webhook command: install the package (pip install -e .)")
    return found


def copy_manifests(workdir: Path) -> Path:
    """A copy of manifests/ without any generated/ directory, with fresh kind certs."""
    copy = workdir / "manifests"
    shutil.copytree(ROOT / "manifests", copy, ignore=shutil.ignore_patterns("generated"))
    env = {
        **os.environ,
        "HEARTBEAT_CLI": heartbeat_cli(),
        "HEARTBEAT_KIND_GENERATED": str(copy / "overlays" / "kind" / "generated"),
    }
    subprocess.run(["bash", str(KIND_SCRIPT), "certs"], env=env, check=True)
    return copy


def kustomize(tools: Path, directory: Path) -> list[Object]:
    result = subprocess.run(
        [str(tools / "kustomize"), "build", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kustomize build {directory} failed:\n{result.stderr}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_all(tools: Path, workdir: Path) -> dict[str, list[Object]]:
    """Every tree in TREES, rendered from a copy of manifests/ (kind certs included)."""
    copy = copy_manifests(workdir)
    return {tree: kustomize(tools, copy / tree) for tree in TREES}


def find(objects: list[Object], kind: str, name: str | None = None) -> list[Object]:
    return [
        obj
        for obj in objects
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]


def one(objects: list[Object], kind: str, name: str | None = None) -> Object:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
