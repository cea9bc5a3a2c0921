"""Fixtures for the real-node suite: the suite's control plane and webhook, plus
containerd and a kubelet on this machine, and locally built images.

Marked ``node``; run alone with ``pytest -m node``. Needs root, containerd and
runc (``apt-get install containerd runc debootstrap``), and builds the kubelet
and the images' base on first use (tests/envtest/node-assets.sh). Under
``CI=true`` anything missing fails the run; locally it skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration.cluster import ASSETS_SCRIPT, ControlPlane, Webhook, envtest_dir
from tests.integration.conftest import (
    MWC_FILE,
    ROOT,
    annotated_pod,
    create_pod,
    make_namespace,
    registration,
)
from tests.node import images
from tests.node.node import WORKDIR_PREFIX, Node

NODE_NAME = "heartbeat-node"
WORKER = ROOT / "examples" / "worker.py"
RUNTIME_TOOLS = ("containerd", "ctr", "runc", "containerd-shim-runc-v2")


# Measurements shown at the end of the run (pytest_terminal_summary).
TIMINGS: dict[str, object] = {}


def record_timing(name: str, value: object) -> None:
    TIMINGS[name] = value


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TIMINGS:
        terminalreporter.section("real node")
        for name, value in TIMINGS.items():
            terminalreporter.write_line(f"{name}: {value}")


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=10).stdout
    except OSError:
        return "?"
    return out.strip().splitlines()[0] if out.strip() else "?"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.node)


def unavailable(reason: str) -> None:
    """Fail under CI (the node must run there), skip with the reason elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"real-node tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"real-node tests need {reason}")


def run_script(pytestconfig: pytest.Config, script: Path, what: str) -> Path:
    """Run an assets script; its progress (stderr) shows live, a cold build takes minutes."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")
    live = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    try:
        with live:
            return envtest_dir(script, what)
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@dataclass
class Cluster:
    plane: ControlPlane
    webhook: Webhook
    node: Node
    api: client.ApiClient
    core: client.CoreV1Api
    build_seconds: float
    images_seconds: float
    start_seconds: float

    def namespace(self, prefix: str) -> str:
        """A namespace as a controller-manager would leave it: the `default`
        ServiceAccount and the `kube-root-ca.crt` ConfigMap the projected
        token volume needs (none of the controllers runs here)."""
        name = make_namespace(self.core, prefix)
        ca = self.plane.ca_file.read_text()
        try:
            self.core.create_namespaced_config_map(
                name, {"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": ca}}
            )
        except ApiException as error:
            if error.status != 409:
                raise
        return name


def base_python(node_assets: Path) -> str:
    """The Python version of the images' Debian base ("3.11.2"), from VERSIONS."""
    for line in (node_assets / "VERSIONS").read_text().splitlines():
        if line.startswith("worker-base "):
            return line.split()[-1].removeprefix("python")
    raise RuntimeError(f"{node_assets}/VERSIONS has no worker-base line")


def preflight() -> None:
    if os.geteuid() != 0:
        unavailable("root (containerd, the kubelet and mounts)")
    missing = [tool for tool in RUNTIME_TOOLS if shutil.which(tool) is None]
    if missing:
        unavailable(f"{', '.join(missing)} on PATH (apt-get install containerd runc)")
    if not WORKER.is_file():
        unavailable(f"{WORKER} (the demo worker)")


# Module scope: the node stops as soon as test_node.py is done, not at the
# end of the whole session (`make test` runs the other suites after it).
@pytest.fixture(scope="module")
def cluster(
    pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    preflight()
    started = time.monotonic()
    apiserver_assets = run_script(pytestconfig, ASSETS_SCRIPT, "kube-apiserver and etcd")
    node_assets = run_script(
        pytestconfig, ROOT / "tests/envtest/node-assets.sh", "the kubelet and images"
    )
    build_seconds = time.monotonic() - started

    base = tmp_path_factory.getbasetemp()
    # containerd's sockets live in the work dir: keep the path short (sun_path
    # is 108 bytes). The PID in the name lets a later run sweep what a killed
    # run left behind.
    parent = base if len(str(base)) < 48 else Path(tempfile.gettempdir())
    workdir = Path(tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{os.getpid()}-", dir=parent))

    plane = ControlPlane(apiserver_assets, workdir / "control-plane")
    hook = Webhook(workdir / "webhook")
    hook.workdir.mkdir(parents=True)
    node = Node(node_assets, workdir / "node", plane.kubeconfig, images.PAUSE_IMAGE, NODE_NAME)
    problems: list[str] = []
    try:
        plane.start()
        hook.start()
        node.start()
        assert node.containerd is not None
        t0 = time.monotonic()
        python = ".".join(base_python(node_assets).split(".")[:2])  # "3.11.2" -> "3.11"
        archive = images.write_archive(
            workdir / "images.tar",
            [
                images.pause_image(node_assets / "pause"),
                *images.worker_images(node_assets / "worker-base.tar", python, WORKER),
            ],
        )
        node.containerd.import_image(archive)
        archive.unlink()
        images_seconds = time.monotonic() - t0
        node.start_kubelet()
        api = config.new_client_from_config(config_file=str(plane.kubeconfig))
        core = client.CoreV1Api(api)
        wait_for_node(core, node)
        register(api, core, hook)
        start_seconds = time.monotonic() - started - build_seconds
        record_timing("kubelet", _version([str(node_assets / "kubelet"), "--version"]))
        record_timing("containerd", _version(["containerd", "--version"]))
        record_timing("runc", _version(["runc", "--version"]))
        record_timing("assets (build or cache check) (s)", round(build_seconds, 1))
        record_timing("images written + imported (s)", round(images_seconds, 1))
        record_timing("control plane + node up (s)", round(start_seconds, 1))
        if node.swept:
            kinds: dict[str, int] = {}
            for item in node.swept:
                kinds[item.split()[0]] = kinds.get(item.split()[0], 0) + 1
            record_timing("swept after an earlier killed run", kinds)
        yield Cluster(plane, hook, node, api, core, build_seconds, images_seconds, start_seconds)
    finally:
        problems = node.stop()
        hook.stop()
        plane.stop()
        shutil.rmtree(plane.workdir / "etcd-data", ignore_errors=True)
    if problems:
        pytest.fail("node teardown left state behind:\n" + "\n".join(problems), pytrace=False)


def wait_for_node(core: client.CoreV1Api, node: Node, timeout: float = 60) -> None:
    """Wait for the kubelet to register; remove the taints nothing else would."""
    assert node.kubelet is not None and node.kubelet.process is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not node.kubelet.process.alive():
            raise RuntimeError(f"the kubelet exited:\n{node.kubelet.process.tail(60)}")
        try:
            found = core.read_node(node.name)
        except ApiException as error:
            if error.status != 404:
                raise
        else:
            if found.spec.taints:
                # No node lifecycle controller runs to manage them.
                core.patch_node(node.name, {"spec": {"taints": None}})
            return
        time.sleep(0.5)
    raise TimeoutError(f"node {node.name} never registered:\n{node.kubelet.process.tail(60)}")


def register(api: client.ApiClient, core: client.CoreV1Api, hook: Webhook) -> None:
    """manifests/base's MutatingWebhookConfiguration, pointed at the test server."""
    client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration(
        registration(hook, MWC_FILE)
    )
    probe_ns = make_namespace(core, "probe")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pod, _ = create_pod(core, probe_ns, annotated_pod("probe"), dry_run=True)
        if "heartbeat/injected" in pod["metadata"].get("annotations", {}):
            return
        time.sleep(0.25)
    raise TimeoutError("the webhook configuration never took effect")
