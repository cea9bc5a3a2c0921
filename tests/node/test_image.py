"""The Dockerfile, built and run by a real Docker engine, with no registry.

The base image is made here from the Debian rootfs of node-assets.sh (python3
and python3-venv) plus this machine's CA bundle, and passed as BASE_IMAGE.
The image then runs as its hardened Deployment would: read-only root
filesystem, its own non-root user, no capabilities, certificates mounted
read-only, and must serve /healthz over TLS with them.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.cluster import free_port
from tests.integration.conftest import ROOT
from tests.node.conftest import record_timing, run_script, unavailable
from tests.node.dockerd import Dockerd
from tests.node.node import WORKDIR_PREFIX

pytestmark = pytest.mark.node

BASE_IMAGE = "heartbeat.test/python-base:bookworm"
IMAGE = "heartbeat-webhook:node-test"
TLS_DIR = "/etc/heartbeat-webhook/tls"  # where the Dockerfile's CMD looks
USER = "65532:65532"


def host_ca_bundle() -> Path:
    """This machine's trust store; pip in the build reaches PyPI through it."""
    for candidate in (os.environ.get("SSL_CERT_FILE"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    raise FileNotFoundError("no CA bundle on this machine")


@pytest.fixture(scope="module")
def docker(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dockerd]:
    if not (ROOT / "Dockerfile").is_file():
        unavailable("a Dockerfile at the repository root")
    if os.geteuid() != 0:
        unavailable("root (dockerd)")
    missing = [tool for tool in ("dockerd", "docker") if shutil.which(tool) is None]
    if missing:
        unavailable(f"{', '.join(missing)} on PATH (apt-get install docker.io)")
    assets = run_script(pytestconfig, ROOT / "tests/envtest/node-assets.sh", "the base rootfs")
    base = tmp_path_factory.getbasetemp()
    workdir = base / f"{WORKDIR_PREFIX}{os.getpid()}-docker"
    engine = Dockerd(workdir)
    problems: list[str] = []
    try:
        engine.start()
        started = time.monotonic()
        context = workdir / "base-context"
        context.mkdir()
        rootfs = (assets / "worker-base.tar").resolve()
        if rootfs.stat().st_dev == context.stat().st_dev:
            os.link(rootfs, context / "rootfs.tar")  # 130 MB: no copy when it can be avoided
        else:
            shutil.copyfile(rootfs, context / "rootfs.tar")
        shutil.copyfile(host_ca_bundle(), context / "ca-certificates.crt")
        (context / "Dockerfile").write_text(
            "FROM scratch\n"
            "ADD rootfs.tar /\n"
            "COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt\n"
            # Debian's pip 23 trusts its own bundle, not the system's.
            "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt"
            " SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n"
            'CMD ["python3"]\n'
        )
        engine.docker("build", "-t", BASE_IMAGE, str(context), timeout=300, check=True)
        shutil.rmtree(context)
        record_timing("docker: local base image (s)", round(time.monotonic() - started, 1))
        yield engine
    finally:
        problems = engine.stop()
    if problems:
        pytest.fail("docker teardown left state behind:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture(scope="module")
def image(docker: Dockerd) -> str:
    started = time.monotonic()
    docker.docker(
        "build",
        "--network=host",  # no bridge: pip reaches PyPI through the host's network
        f"--build-arg=BASE_IMAGE={BASE_IMAGE}",
        "-t",
        IMAGE,
        str(ROOT),
        timeout=1200,
        check=True,
    )
    record_timing("docker: Dockerfile build (s)", round(time.monotonic() - started, 1))
    return IMAGE


def test_image_metadata(docker: Dockerd, image: str) -> None:
    inspected = json.loads(docker.docker("image", "inspect", image, check=True).stdout)[0]
    config = inspected["Config"]
    assert config["User"] == USER
    assert config["Entrypoint"] == ["heartbeat-webhook"]
    assert config["Cmd"][0] == "serve"
    assert f"--cert-file={TLS_DIR}/tls.crt" in config["Cmd"]
    size_mb = inspected["Size"] / 1e6
    record_timing("docker: image size (MB)", round(size_mb))
    history = docker.docker("history", "--no-trunc", "--format", "{{json .}}", image, check=True)
    for line in history.stdout.splitlines():
        layer = json.loads(line)
        if "COPY" in layer["CreatedBy"] and "/opt/heartbeat-webhook" in layer["CreatedBy"]:
            record_timing("docker: the venv layer", layer["Size"])


def test_image_serves_healthz_over_tls_read_only_and_non_root(
    docker: Dockerd, image: str, tmp_path: Path
) -> None:
    certs = tmp_path / "generated"
    subprocess.run(
        [
            sys.executable, "-m", "webhook", "certs",
            "--service", "heartbeat-webhook", "--namespace", "heartbeat-system",
            "--out", str(certs), "--san", "127.0.0.1",
        ],
        check=True, capture_output=True, cwd=ROOT,
    )  # fmt: skip
    # As a Secret volume mounts them: tls.crt and tls.key, mode 0644 (defaultMode).
    mounted = tmp_path / "tls"
    mounted.mkdir()
    for name in ("tls.crt", "tls.key"):
        shutil.copyfile(certs / name, mounted / name)
        (mounted / name).chmod(0o644)
    mounted.chmod(0o755)

    port = free_port()
    docker.docker(
        "run", "-d", "--name", "webhook",
        "--network=host",
        "--read-only",
        "--cap-drop=ALL",
        "--security-opt=no-new-privileges",
        "--mount", f"type=bind,source={mounted},target={TLS_DIR},readonly",
        image,
        # The image's own command, on a free loopback port (host network).
        "serve", "--host=127.0.0.1", f"--port={port}",
        f"--cert-file={TLS_DIR}/tls.crt", f"--key-file={TLS_DIR}/tls.key",
        check=True,
    )  # fmt: skip
    context = ssl.create_default_context(cafile=str(certs / "ca.crt"))  # verifies the IP SAN
    deadline = time.monotonic() + 60
    body, last_error = b"", ""
    while time.monotonic() < deadline:
        running = docker.docker("inspect", "-f", "{{.State.Running}}", "webhook").stdout.strip()
        if running != "true":
            break
        try:
            url = f"https://127.0.0.1:{port}/healthz"
            with urllib.request.urlopen(url, context=context, timeout=3) as response:
                assert response.status == 200
                body = response.read()
                break
        except OSError as error:
            last_error = str(error)
            time.sleep(0.5)
    logs = docker.docker("logs", "webhook")
    assert body, f"no /healthz over TLS ({last_error});\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"

    # It runs as the image's non-root user and wrote nothing to its filesystem.
    pid = docker.docker("inspect", "-f", "{{.State.Pid}}", "webhook", check=True).stdout.strip()
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["65532"] * 4, uid_line
    # (docker itself adds the bind mount's target directories.)
    mount_points = {"C /etc", "A /etc/heartbeat-webhook", f"A {TLS_DIR}"}
    changes = set(docker.docker("diff", "webhook", check=True).stdout.split("\n")) - {""}
    assert changes <= mount_points, changes - mount_points

    # And it does its job: an annotated pod gets the probe.
    review = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "image-test",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "operation": "CREATE",
            "object": {
                "metadata": {"annotations": {"heartbeat/enabled": "true"}},
                "spec": {"containers": [{"name": "worker", "image": "python:3.12"}]},
            },
        },
    }
    request = urllib.request.Request(
        f"https://127.0.0.1:{port}/mutate",
        data=json.dumps(review).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, context=context, timeout=5) as response:  # noqa: S310
        answer = json.loads(response.read())["response"]
    assert answer["uid"] == "image-test" and answer["allowed"] is True
    assert answer["patchType"] == "JSONPatch"
