"""Every shell script in the repository passes shellcheck, and the kind
workflow script's parts that need no cluster behave."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.manifests import KIND_SCRIPT, ROOT, missing


def shell_scripts() -> list[Path]:
    """Tracked and new files ending in .sh or starting with a sh/bash shebang."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    found = []
    for name in listed:
        path = ROOT / name
        if not path.is_file():
            continue
        if path.suffix == ".sh":
            found.append(path)
            continue
        with path.open("rb") as handle:
            first = handle.readline(100)
        if first.startswith(b"#!") and first.rstrip().endswith((b"/sh", b"bash", b" sh")):
            found.append(path)
    return sorted(found)


def test_the_scripts_are_found() -> None:
    names = {path.relative_to(ROOT).as_posix() for path in shell_scripts()}
    assert {"hack/kind.sh", "tests/envtest/tools.sh", "tests/envtest/assets.sh", ".ci/run"} <= names


@pytest.mark.parametrize(
    "script", shell_scripts(), ids=lambda path: path.relative_to(ROOT).as_posix()
)
def test_shellcheck(script: Path) -> None:
    if shutil.which("shellcheck") is None:
        missing("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(
        ["shellcheck", "--severity=style", "--external-sources", str(script)],
        cwd=script.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_kind(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(KIND_SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_kind_script_usage() -> None:
    result = run_kind()
    assert result.returncode == 2
    for command in ("up", "demo", "down", "certs"):
        assert f"hack/kind.sh {command}" in result.stderr


def test_kind_certs_reuse_the_ca(tmp_path: Path) -> None:
    cli = str(Path(sys.executable).with_name("heartbeat-webhook"))
    generated = tmp_path / "generated"
    env = {"HEARTBEAT_CLI": cli, "HEARTBEAT_KIND_GENERATED": str(generated)}
    assert run_kind("certs", **env).returncode == 0
    first_ca, first_cert = (generated / "ca.crt").read_bytes(), (generated / "tls.crt").read_bytes()
    assert run_kind("certs", **env).returncode == 0
    assert (generated / "ca.crt").read_bytes() == first_ca  # the registered caBundle stays valid
    assert (generated / "tls.crt").read_bytes() != first_cert


def fake_tools(directory: Path, calls: Path, clusters: str) -> dict[str, str]:
    """docker, kind and kubectl stand-ins that log their arguments."""
    directory.mkdir()
    for tool in ("docker", "kind", "kubectl"):
        script = directory / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> "{calls}"\n'
            f'if [ "{tool} $1" = "kind get" ]; then printf "%s" "{clusters}"; fi\n'
            # `kubectl get deployment` finds nothing: a first install.
            f'if [ "{tool}" = kubectl ] && echo "$*" | grep -q " get "; then exit 1; fi\n'
        )
        script.chmod(0o755)
    return {"PATH": f"{directory}:{os.environ['PATH']}"}


@pytest.mark.parametrize("exists", [False, True])
def test_kind_up_creates_the_cluster_only_when_missing(tmp_path: Path, exists: bool) -> None:
    calls = tmp_path / "calls"
    clusters = "heartbeat-webhook\n" if exists else "other\n"
    env = fake_tools(tmp_path / "bin", calls, clusters)
    cli = str(Path(sys.executable).with_name("heartbeat-webhook"))
    result = run_kind(
        "up", HEARTBEAT_CLI=cli, HEARTBEAT_KIND_GENERATED=str(tmp_path / "generated"), **env
    )
    assert result.returncode == 0, result.stderr
    log = calls.read_text().splitlines()
    created = [line for line in log if line.startswith("kind create cluster")]
    assert created == (
        [] if exists else ["kind create cluster --name heartbeat-webhook --wait 120s"]
    )
    assert f"docker build -t heartbeat-webhook:dev {ROOT}" in log
    assert "kind load docker-image heartbeat-webhook:dev --name heartbeat-webhook" in log
    applied = f"kubectl --context kind-heartbeat-webhook apply -k {ROOT}/manifests/overlays/kind"
    assert applied in log
    # Every kubectl call names the kind context: no other cluster is touched.
    assert all(
        line.startswith("kubectl --context kind-heartbeat-webhook ")
        for line in log
        if line.startswith("kubectl")
    )
    assert (tmp_path / "generated" / "tls.crt").is_file()


def test_kind_down_is_a_no_op_without_the_cluster(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    env = fake_tools(tmp_path / "bin", calls, "other\n")
    result = run_kind("down", **env)
    assert result.returncode == 0, result.stderr
    assert "nothing to delete" in result.stderr
    assert not any(line.startswith("kind delete") for line in calls.read_text().splitlines())
