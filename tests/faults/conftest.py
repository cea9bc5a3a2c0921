"""Fixtures for the fault tests: the integration suite's, at package scope.

These tests kill, drain, restart and repoint the webhook, so they get a control
plane and a webhook of their own (the same ``ControlPlane``/``Webhook`` classes
and helpers as tests/integration), torn down when the package is done: a full
``pytest`` run never has both control planes up at once.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.faults.harness import IDLE_SECONDS, FaultWebhook, IdleReuse, idle_reuse, register
from tests.integration.cluster import ControlPlane
from tests.integration.conftest import assets, make_namespace

__all__ = ["assets"]  # the integration suite's fixture: binaries, never a skip in CI

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this package's tests, and run the keep-alive check last among them: its
    95 s idle wait starts with the package and overlaps the other tests."""
    ours = [i for i, item in enumerate(items) if HERE in Path(str(item.fspath)).parents]
    for index in ours:
        items[index].add_marker(pytest.mark.integration)
        items[index].add_marker(pytest.mark.faults)
    ordered = sorted((items[i] for i in ours), key=lambda item: "keepalive" in item.nodeid)
    for index, item in zip(ours, ordered, strict=True):
        items[index] = item


@pytest.fixture(scope="package")
def control_plane(assets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(assets, tmp_path_factory.mktemp("faults-control-plane"))
    try:
        plane.start()
        yield plane
    finally:
        # kube-apiserver's graceful shutdown sits out Process.stop's whole 10 s here;
        # the data is throwaway, so give it 3 s before the SIGKILL.
        for proc in reversed(plane.processes):
            proc.stop(timeout=3)
        plane.stop()


@pytest.fixture(scope="package")
def api(control_plane: ControlPlane) -> Iterator[client.ApiClient]:
    api_client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield api_client
    api_client.close()


@pytest.fixture(scope="package")
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture(scope="package")
def webhook(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultWebhook]:
    hook = FaultWebhook(tmp_path_factory.mktemp("faults-webhook"))
    try:
        hook.start()
        yield hook
    finally:
        hook.stop(signal.SIGKILL)  # its SIGTERM drain is tested; here it would only wait 5 s


@pytest.fixture(scope="package")
def registered(api: client.ApiClient, core: client.CoreV1Api, webhook: FaultWebhook) -> None:
    register(api, core, webhook, make_namespace(core, "probe"))


@pytest.fixture
def namespace(core: client.CoreV1Api, registered: None, webhook: FaultWebhook) -> Iterator[str]:
    yield make_namespace(core, "f")
    # A test that killed or stopped the webhook restarts it itself; if it failed
    # before doing so, bring it back here so the next test starts from a served cluster.
    if not webhook.alive():
        webhook.stop()
        webhook.start()


@pytest.fixture(scope="package", autouse=True)
def idle_connection(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdleReuse]:
    """A kept-alive connection to an instance of its own, left idle from the start of the
    package; test_keepalive.py reads the outcome."""
    hook = FaultWebhook(tmp_path_factory.mktemp("faults-idle"), name="idle")
    hook.start()
    result = IdleReuse(IDLE_SECONDS)
    thread = threading.Thread(
        target=idle_reuse, args=(hook, IDLE_SECONDS, result), name="idle", daemon=True
    )
    thread.start()
    try:
        yield result
    finally:
        hook.stop(signal.SIGKILL)  # a run that skipped the check just ends, without a drain
