"""Every rendered kustomize tree (base, overlays, monitoring, audit) and the demo,
through a real kube-apiserver: server-side apply, dry-run except Namespaces, with
the cert-manager and prometheus-operator CRDs installed from tests/envtest/tools.sh."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from tests.manifests import (
    ROOT,
    TREES,
    WEBHOOK_KINDS,
    Object,
    crd_files,
    kustomize,
    render_all,
    tools_dir,
)

FIELD_MANAGER = "heartbeat-overlay-test"
# The suite registers manifests/base's MutatingWebhookConfiguration under its
# own name (pointed at the test server); an apply under the same name would
# merge the two clientConfigs, so webhook configurations get this suffix.
RENAME_SUFFIX = "-overlay-check"


@pytest.fixture(scope="module")
def tools() -> Path:
    return tools_dir()


@pytest.fixture(scope="module")
def crds(api: client.ApiClient, tools: Path) -> list[str]:
    """Install the third-party CRDs for real and wait until each is Established."""
    extensions = client.ApiextensionsV1Api(api)
    names = []
    for path in crd_files(tools):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            try:
                extensions.create_custom_resource_definition(crd)
            except ApiException as error:
                if error.status != 409:  # already there from an earlier module
                    pytest.fail(f"{path.name}: CRD rejected: {error.body}")
            names.append(crd["metadata"]["name"])
    assert names, f"no CRDs under {tools / 'crds'}"
    deadline = time.monotonic() + 60
    pending = set(names)
    while pending and time.monotonic() < deadline:
        for name in sorted(pending):
            raw = extensions.read_custom_resource_definition(name, _preload_content=False)
            conditions = json.loads(raw.data).get("status", {}).get("conditions", [])
            if any(c["type"] == "Established" and c["status"] == "True" for c in conditions):
                pending.discard(name)
        time.sleep(0.2)
    assert not pending, f"CRDs not Established after 60s: {sorted(pending)}"
    return names


@pytest.fixture(scope="module")
def rendered(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Object]]:
    trees = render_all(tools, tmp_path_factory.mktemp("overlays"))
    trees["examples"] = kustomize(tools, ROOT / "examples")
    return trees


def resource_for(api: client.ApiClient, obj: Object) -> Any:
    """The dynamic resource for obj's kind; discovery lags a new CRD for a moment."""
    deadline = time.monotonic() + 30
    while True:
        try:
            return DynamicClient(api).resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        except ResourceNotFoundError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def apply(api: client.ApiClient, obj: Object, dry_run: bool) -> Object:
    resource = resource_for(api, obj)
    result = resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=obj["metadata"].get("namespace"),
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
        dry_run="All" if dry_run else None,
    )
    applied: Object = result.to_dict()
    return applied


@pytest.fixture(scope="module")
def namespaces(api: client.ApiClient, rendered: dict[str, list[Object]]) -> list[str]:
    """Every Namespace any tree renders, applied for real: namespaced dry-runs need
    them, and a tree such as manifests/audit uses the base's heartbeat-system."""
    names = []
    for objects in rendered.values():
        for obj in objects:
            if obj["kind"] == "Namespace":
                apply(api, copy.deepcopy(obj), dry_run=False)
                names.append(obj["metadata"]["name"])
    return names


@pytest.mark.parametrize("tree", [*TREES, "examples"])
def test_the_apiserver_accepts_every_rendered_object(
    api: client.ApiClient,
    crds: list[str],
    namespaces: list[str],
    rendered: dict[str, list[Object]],
    tree: str,
) -> None:
    objects = [copy.deepcopy(obj) for obj in rendered[tree]]
    assert objects
    for obj in objects:
        if obj["kind"] in WEBHOOK_KINDS:
            obj["metadata"]["name"] += RENAME_SUFFIX
        label = f"{tree}: {obj['kind']} {obj['metadata']['name']}"
        try:
            stored = apply(api, obj, dry_run=True)
        except ApiException as error:
            pytest.fail(f"{label} rejected: {error.body}")
        assert stored["metadata"]["name"] == obj["metadata"]["name"], label
        if obj["kind"] in WEBHOOK_KINDS:
            # What was rendered is what the apiserver would store: caBundle in
            # the kind overlay, the cainjector annotation with cert-manager.
            for sent, kept in zip(obj["webhooks"], stored["webhooks"], strict=True):
                assert kept["clientConfig"].get("caBundle", "").replace("\n", "") == sent[
                    "clientConfig"
                ].get("caBundle", "").replace("\n", ""), label
            assert stored["metadata"].get("annotations") == obj["metadata"].get("annotations")


def test_the_crd_schemas_are_enforced(
    api: client.ApiClient, crds: list[str], rendered: dict[str, list[Object]]
) -> None:
    """A broken Certificate is rejected, so the acceptance above means something."""
    certificate = copy.deepcopy(
        next(o for o in rendered["overlays/cert-manager"] if o["kind"] == "Certificate")
    )
    certificate["spec"]["privateKey"]["rotationPolicy"] = "Sometimes"
    with pytest.raises(ApiException) as caught:
        apply(api, certificate, dry_run=True)
    assert caught.value.status == 422
    assert "rotationPolicy" in str(caught.value.body)
