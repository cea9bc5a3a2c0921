"""Fixtures for the real-apiserver suite: binaries, control plane, webhook, registration."""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.integration.cluster import ASSETS_SCRIPT, ControlPlane, Webhook, envtest_dir

ROOT = Path(__file__).resolve().parents[2]
MWC_FILE = ROOT / "manifests" / "base" / "mutatingwebhookconfiguration.yaml"
VWC_FILE = ROOT / "manifests" / "base" / "validatingwebhookconfiguration.yaml"
TEST_LABEL = "heartbeat-test"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def assets() -> Path:
    """The directory holding kube-apiserver and etcd; never a skip (CI must fail)."""
    try:
        return envtest_dir(
            ASSETS_SCRIPT,
            "kube-apiserver and etcd",
            "set KUBEBUILDER_ASSETS to a directory holding both, or see its output above",
        )
    except RuntimeError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def control_plane(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(assets, tmp_path_factory.mktemp("control-plane"))
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(control_plane.kubeconfig))


@pytest.fixture(scope="session")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="session")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Webhook]:
    hook = Webhook(tmp_path_factory.mktemp("webhook"))
    try:
        hook.start()
        yield hook
    finally:
        hook.stop()


def registration(webhook: Webhook, source: Path = MWC_FILE) -> dict[str, Any]:
    """manifests/base's object, with only clientConfig pointed at the test server."""
    body: dict[str, Any] = yaml.safe_load(source.read_text())
    for entry in body["webhooks"]:
        path = entry["clientConfig"]["service"]["path"]
        entry["clientConfig"] = {"url": f"{webhook.url}{path}", "caBundle": webhook.ca_bundle}
    return body


@pytest.fixture(scope="session")
def registered(api: client.ApiClient, core: client.CoreV1Api, webhook: Webhook) -> dict[str, Any]:
    body = registration(webhook)
    admission = client.AdmissionregistrationV1Api(api)
    admission.create_mutating_webhook_configuration(body)
    admission.create_validating_webhook_configuration(registration(webhook, VWC_FILE))
    probe_ns = make_namespace(core, "probe")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        pod, _ = create_pod(core, probe_ns, annotated_pod("probe"), dry_run=True)
        if "heartbeat/injected" in pod["metadata"].get("annotations", {}):
            return body
        time.sleep(0.25)
    pytest.fail("the webhook configuration never took effect (dry-run pods stayed unmutated)")


@pytest.fixture
def namespace(core: client.CoreV1Api, registered: dict[str, Any]) -> str:
    return make_namespace(core, "t")


def make_namespace(core: client.CoreV1Api, prefix: str, name: str | None = None) -> str:
    name = name or f"{prefix}-{secrets.token_hex(4)}"
    try:
        core.create_namespace({"metadata": {"name": name, "labels": {TEST_LABEL: "true"}}})
    except ApiException as error:
        if error.status != 409:
            raise
    # No controller-manager runs, so create the `default` ServiceAccount that
    # its controller would; the ServiceAccount admission plugin then projects
    # the token volume into pods, as in a real cluster.
    try:
        core.create_namespaced_service_account(name, {"metadata": {"name": "default"}})
    except ApiException as error:
        if error.status != 409:
            raise
    return name


def annotated_pod(
    name: str, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"heartbeat/enabled": "true", **(annotations or {})},
        },
        "spec": {"containers": [{"name": "worker", "image": "python:3.12"}], **spec},
    }


def create_pod(
    core: client.CoreV1Api, namespace: str, pod: dict[str, Any], dry_run: bool = False
) -> tuple[dict[str, Any], dict[str, str]]:
    """Create through the real apiserver; return the stored pod's JSON and the headers."""
    kwargs: dict[str, Any] = {"_preload_content": False}
    if dry_run:
        kwargs["dry_run"] = "All"
    # Unparsed, so the test sees the JSON the apiserver stored and its headers.
    response = core.create_namespaced_pod(namespace, copy.deepcopy(pod), **kwargs)
    return json.loads(response.data), dict(response.headers)


def read_pod(core: client.CoreV1Api, namespace: str, name: str) -> dict[str, Any]:
    response = core.read_namespaced_pod(name, namespace, _preload_content=False)
    result: dict[str, Any] = json.loads(response.data)
    return result
