"""examples/: the demo worker against the real probe, and the demo manifests.

The worker runs locally as a subprocess; the probe is the exact command the
webhook injects (webhook.probe.command) run under /bin/sh. No network.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.manifests import ROOT, Object, kustomize, one, tools_dir
from webhook.config import HeartbeatConfig, parse_config
from webhook.offline import inject_documents
from webhook.probe import command

WORKER = ROOT / "examples" / "worker.py"
MAX_AGE = 2


def probe(path: Path) -> subprocess.CompletedProcess[str]:
    argv = command(HeartbeatConfig(max_age=MAX_AGE), str(path))
    assert argv[0] == "/bin/sh"
    return subprocess.run(argv, capture_output=True, text=True, timeout=5, check=False)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    beat = tmp_path / "beats" / "worker"
    env = {
        **os.environ,
        "HEARTBEAT_PATH": str(beat),
        "WORKER_INTERVAL": "0.2",
        "WORKER_HANG_AFTER": "5",
        "PYTHONPATH": str(ROOT),
    }
    process = subprocess.Popen(
        [sys.executable, str(WORKER)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield process, beat
    finally:
        process.kill()
        process.wait(5)


def wait_for(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {timeout}s")


def test_probe_passes_while_the_worker_beats_and_fails_once_it_hangs(
    worker: tuple[subprocess.Popen[str], Path],
) -> None:
    process, beat = worker
    wait_for(beat.exists, 5, "no first beat")
    fresh = probe(beat)
    assert fresh.returncode == 0, fresh.stdout
    assert process.stdout is not None
    for line in process.stdout:  # the worker announces the hang, then goes silent
        if "hanging now" in line:
            break
    hung_at = time.monotonic()
    last_beat = beat.read_text()
    # The probe fails once the last beat is MAX_AGE seconds old (whole seconds).
    wait_for(lambda: probe(beat).returncode != 0, MAX_AGE + 3, "the probe never failed")
    assert time.monotonic() - hung_at <= MAX_AGE + 2
    failed = probe(beat)
    assert f"limit {MAX_AGE}s" in failed.stdout, failed.stdout
    # Hung, not crashed: the process is still up and the file no longer changes,
    # which is exactly what default health checks cannot see.
    assert process.poll() is None
    assert beat.read_text() == last_beat


def test_worker_rejects_a_bad_setting(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(WORKER)],
        env={**os.environ, "WORKER_INTERVAL": "soon", "HEARTBEAT_PATH": str(tmp_path / "b")},
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 1
    assert "WORKER_INTERVAL='soon' is not a number" in result.stderr


# --- the demo manifests -----------------------------------------------------------


@pytest.fixture(scope="module")
def demo() -> list[Object]:
    return kustomize(tools_dir(), ROOT / "examples")


def test_demo_runs_this_worker_from_the_webhook_image(demo: list[Object]) -> None:
    deployment = one(demo, "Deployment", "heartbeat-demo")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    base = (ROOT / "manifests" / "base" / "deployment.yaml").read_text()
    assert f"image: {container['image']}\n" in base  # the same image, another command
    config_map = one(demo, "ConfigMap")
    assert config_map["data"]["worker.py"] == WORKER.read_text()
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    assert volume["configMap"]["name"] == config_map["metadata"]["name"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
    assert container["command"] == ["python", f"{mount['mountPath']}/worker.py"]
    assert all(obj["metadata"].get("namespace", "heartbeat-demo") == "heartbeat-demo"
               for obj in demo)  # fmt: skip


def test_demo_is_injected_and_restarts_within_a_minute(demo: list[Object]) -> None:
    deployment = one(demo, "Deployment", "heartbeat-demo")
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    config, warnings = parse_config(annotations)
    assert warnings == []
    injected, report = inject_documents([deployment])
    assert report.denials == []
    (container,) = injected[0]["spec"]["template"]["spec"]["containers"]
    assert container["livenessProbe"]["exec"]["command"][0] == "/bin/sh"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HEARTBEAT_PATH"].startswith("/run/heartbeat/")  # read-only root: an emptyDir
    # Beating, then the hang, then detection, then the kill: under a minute.
    beating = int(env["WORKER_HANG_AFTER"]) * float(env["WORKER_INTERVAL"])
    detection = config.max_age + config.period * config.failure_threshold
    assert config.termination_grace is not None
    assert config.initial_delay + beating + detection + config.termination_grace <= 60
