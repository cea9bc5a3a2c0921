"""The webhook through a real kube-apiserver: TLS, caBundle, matchConditions,
reinvocation, failurePolicy and the apiserver's own Pod validation."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from tests.integration.cluster import ControlPlane, Webhook
from tests.integration.conftest import (
    ROOT,
    annotated_pod,
    create_pod,
    make_namespace,
    read_pod,
)
from webhook.mutate import BEAT_DIR, VOLUME_NAME


def container(pod: dict[str, Any], name: str = "worker") -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in pod["spec"]["containers"] if c["name"] == name)
    return found


def env(item: dict[str, Any]) -> list[str]:
    return [entry["name"] for entry in item.get("env", [])]


def marker(pod: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(pod["metadata"]["annotations"]["heartbeat/injected"])
    return value


def test_annotated_pod_is_injected_and_stored(core: client.CoreV1Api, namespace: str) -> None:
    create_pod(core, namespace, annotated_pod("w1"))
    stored = read_pod(core, namespace, "w1")
    worker = container(stored)
    assert worker["livenessProbe"]["exec"]["command"][:2] == ["/bin/sh", "-c"]
    assert worker["livenessProbe"]["exec"]["command"][4] == "/tmp/heartbeat"
    assert {"name": "HEARTBEAT_PATH", "value": "/tmp/heartbeat"} in worker["env"]
    assert marker(stored)["containers"] == ["worker"]
    # The ServiceAccount plugin ran too: the pod carries the projected token.
    assert any(v["name"].startswith("kube-api-access-") for v in stored["spec"]["volumes"])


def test_controller_style_pod_with_generate_name(core: client.CoreV1Api, namespace: str) -> None:
    pod = annotated_pod("unused")
    del pod["metadata"]["name"]
    pod["metadata"]["generateName"] = "worker-7d9c-"
    pod["metadata"]["ownerReferences"] = [
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": "worker-7d9c",
            "uid": "3c7c1c5e-2a47-4c41-9d0b-5d1b2f0c6a11",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    created, _ = create_pod(core, namespace, pod)
    assert created["metadata"]["name"].startswith("worker-7d9c-")
    assert "livenessProbe" in container(created)
    assert "heartbeat/injected" in created["metadata"]["annotations"]


def test_plain_pod_never_reaches_the_webhook(
    core: client.CoreV1Api, namespace: str, webhook: Webhook
) -> None:
    before = webhook.reviews()
    plain = annotated_pod("plain")
    plain["metadata"]["annotations"] = {"team": "data"}
    created, _ = create_pod(core, namespace, plain)
    assert "livenessProbe" not in container(created)
    # matchConditions filtered it inside the apiserver: no review arrived.
    assert webhook.reviews() == before


def test_invalid_annotation_is_denied_with_our_message(
    core: client.CoreV1Api, namespace: str
) -> None:
    with pytest.raises(ApiException) as caught:
        create_pod(core, namespace, annotated_pod("bad", {"heartbeat/max-age": "soon"}))
    assert caught.value.status == 400
    status = json.loads(caught.value.body)
    assert 'annotation heartbeat/max-age="soon" is invalid' in status["message"]
    assert "from 2 to 86400" in status["message"]
    with pytest.raises(ApiException) as missing:
        read_pod(core, namespace, "bad")
    assert missing.value.status == 404


def test_own_liveness_probe_kept_and_warning_header(core: client.CoreV1Api, namespace: str) -> None:
    theirs = {"tcpSocket": {"port": 8080}, "periodSeconds": 7}
    pod = annotated_pod("own")
    pod["spec"]["containers"][0]["livenessProbe"] = theirs
    created, headers = create_pod(core, namespace, pod)
    probe = container(created)["livenessProbe"]
    assert probe["tcpSocket"] == {"port": 8080} and probe["periodSeconds"] == 7
    assert "HEARTBEAT_PATH" in env(container(created))
    warning = headers.get("Warning") or headers.get("warning") or ""
    assert 'container \\"worker\\" already has a livenessProbe; kept it' in warning or (
        'container "worker" already has a livenessProbe; kept it' in warning
    ), headers


def test_dry_run_shows_the_mutation_and_stores_nothing(
    core: client.CoreV1Api, namespace: str
) -> None:
    created, _ = create_pod(core, namespace, annotated_pod("dry"), dry_run=True)
    assert "livenessProbe" in container(created)
    with pytest.raises(ApiException) as missing:
        read_pod(core, namespace, "dry")
    assert missing.value.status == 404


def test_read_only_root_gets_its_emptydir(core: client.CoreV1Api, namespace: str) -> None:
    pod = annotated_pod("ro")
    pod["spec"]["containers"][0]["securityContext"] = {"readOnlyRootFilesystem": True}
    created, _ = create_pod(core, namespace, pod)
    volumes = {v["name"]: v for v in created["spec"]["volumes"]}
    assert volumes[VOLUME_NAME]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Mi"}
    worker = container(created)
    assert {"name": VOLUME_NAME, "mountPath": BEAT_DIR} in worker["volumeMounts"]
    assert {"name": "HEARTBEAT_PATH", "value": f"{BEAT_DIR}/worker"} in worker["env"]


def test_named_containers_only(core: client.CoreV1Api, namespace: str) -> None:
    pod = annotated_pod("multi", {"heartbeat/containers": "b,c", "heartbeat/startup-grace": "60"})
    pod["spec"]["containers"] = [{"name": name, "image": "python:3.12"} for name in ("a", "b", "c")]
    created, _ = create_pod(core, namespace, pod)
    injected = [("livenessProbe" in c) for c in created["spec"]["containers"]]
    assert injected == [False, True, True]
    assert "startupProbe" in container(created, "b")
    assert marker(created)["containers"] == ["b", "c"]


@pytest.mark.parametrize("system", ["kube-system", "heartbeat-system"])
def test_system_namespaces_are_never_sent(
    core: client.CoreV1Api, registered: dict[str, Any], webhook: Webhook, system: str
) -> None:
    make_namespace(core, "", name=system)
    before = webhook.reviews()
    name = f"sys-{int(time.time() * 1000)}"
    created, _ = create_pod(core, system, annotated_pod(name))
    assert "livenessProbe" not in container(created)
    assert webhook.reviews() == before


# --- reinvocation -------------------------------------------------------------


class _SecondMutator(BaseHTTPRequestHandler):
    """A tiny webhook that runs after ours and adds an env var to every container."""

    def do_POST(self) -> None:
        review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        request = review["request"]
        pod = request["object"]
        ops = []
        for index, item in enumerate(pod["spec"]["containers"]):
            if "SECOND" in [e["name"] for e in item.get("env", [])]:
                continue
            if "env" in item:
                ops.append(
                    {"op": "add", "path": f"/spec/containers/{index}/env/-",
                     "value": {"name": "SECOND", "value": "1"}}
                )  # fmt: skip
            else:
                ops.append(
                    {"op": "add", "path": f"/spec/containers/{index}/env",
                     "value": [{"name": "SECOND", "value": "1"}]}
                )  # fmt: skip
        answer: dict[str, Any] = {"uid": request["uid"], "allowed": True}
        if ops:
            answer["patchType"] = "JSONPatch"
            answer["patch"] = base64.b64encode(json.dumps(ops).encode()).decode()
        body = json.dumps(
            {"apiVersion": review["apiVersion"], "kind": "AdmissionReview", "response": answer}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def second_mutator(api: client.ApiClient, webhook: Webhook, namespace: str) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SecondMutator)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(webhook.cert_dir / "tls.crt", webhook.cert_dir / "tls.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    admission = client.AdmissionregistrationV1Api(api)
    name = "zz-second-mutator"  # sorts after ours, so it runs after ours
    admission.create_mutating_webhook_configuration(
        {
            "metadata": {"name": name},
            "webhooks": [
                {
                    "name": "second.heartbeat-test.svc",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{server.server_address[1]}/",
                        "caBundle": webhook.ca_bundle,
                    },
                    "rules": [
                        {
                            "operations": ["CREATE"],
                            "apiGroups": [""],
                            "apiVersions": ["v1"],
                            "resources": ["pods"],
                        }
                    ],
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": namespace}
                    },
                }
            ],
        }
    )
    try:
        yield name
    finally:
        admission.delete_mutating_webhook_configuration(name)
        server.shutdown()
        server.server_close()


def test_reinvocation_adds_nothing_twice(
    core: client.CoreV1Api, namespace: str, webhook: Webhook, second_mutator: str
) -> None:
    deadline = time.monotonic() + 30
    while True:  # the new configuration takes a moment to apply
        probe, _ = create_pod(core, namespace, annotated_pod("probe"), dry_run=True)
        if "SECOND" in env(container(probe)) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    before = webhook.metrics()
    created, _ = create_pod(core, namespace, annotated_pod("again"))
    after = webhook.metrics()
    worker = container(created)
    assert env(worker) == ["HEARTBEAT_PATH", "SECOND"]
    assert "livenessProbe" in worker
    assert created["metadata"]["annotations"]["heartbeat/injected"]

    def delta(outcome: str) -> float:
        key = f'heartbeat_webhook_admission_requests_total{{outcome="{outcome}",webhook="mutate"}}'
        return after[key] - before[key]

    # Called twice: first it injected, then (reinvoked) it found nothing to do.
    assert (delta("injected"), delta("unchanged")) == (1, 1)


# --- failure policy -------------------------------------------------------------


def test_webhook_down_fails_open(
    core: client.CoreV1Api,
    namespace: str,
    webhook: Webhook,
    control_plane: ControlPlane,
) -> None:
    webhook.stop()
    try:
        created, _ = create_pod(core, namespace, annotated_pod("down"))
        annotations = created["metadata"]["annotations"]
        assert annotations["heartbeat/enabled"] == "true"
        assert "heartbeat/injected" not in annotations  # how an operator finds it
        assert "livenessProbe" not in container(created)
        assert _apiserver_fail_open_count(control_plane) >= 1
    finally:
        webhook.start()


def _apiserver_fail_open_count(plane: ControlPlane) -> float:
    samples = plane.metrics("apiserver_admission_webhook_fail_open_count")
    return sum(value for name, value in samples.items() if "inject.heartbeat-webhook" in name)


# --- the manifests ----------------------------------------------------------------


def _manifest_documents() -> list[tuple[Path, dict[str, Any]]]:
    found = []
    for kustomization in sorted((ROOT / "manifests").rglob("kustomization.yaml")):
        spec = yaml.safe_load(kustomization.read_text())
        for resource in spec.get("resources", []):
            path = kustomization.parent / resource
            if path.is_file():
                found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


def test_every_manifest_is_accepted_by_the_apiserver(api: client.ApiClient) -> None:
    from kubernetes.dynamic import DynamicClient
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    dynamic = DynamicClient(api)
    documents = _manifest_documents()
    assert documents, "no manifests found"
    # Namespaces for real (namespaced dry-runs need them), everything else dry-run.
    for path, doc in sorted(documents, key=lambda item: item[1]["kind"] != "Namespace"):
        try:
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        except ResourceNotFoundError:
            continue  # cert-manager and prometheus-operator kinds: see test_overlays.py
        if doc["kind"].endswith("WebhookConfiguration"):
            # The suite registered this very object (url instead of service) under
            # the same name; an apply would merge the two clientConfigs.
            doc["metadata"]["name"] += "-manifest-check"
        dry_run = None if doc["kind"] == "Namespace" else "All"
        try:
            resource.server_side_apply(
                body=doc,
                name=doc["metadata"]["name"],
                namespace=doc["metadata"].get("namespace"),
                field_manager="heartbeat-test",
                dry_run=dry_run,
            )
        except ApiException as error:
            pytest.fail(f"{path.relative_to(ROOT)} ({doc['kind']}) rejected: {error.body}")


# --- pod templates at apply time ----------------------------------------------------


def deployment(name: str, template_annotations: dict[str, str], **own: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "annotations": dict(own)},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": template_annotations},
                "spec": {"containers": [{"name": "worker", "image": "python:3.12"}]},
            },
        },
    }


def _wait_for_validation(apps: client.AppsV1Api, namespace: str) -> None:
    """The validating configuration may take a moment to apply after registration."""
    bad = deployment("probe", {"heartbeat/enabled": "yes"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            apps.create_namespaced_deployment(namespace, bad, dry_run="All")
        except ApiException as error:
            if error.status == 400:
                return
            raise
        time.sleep(0.25)
    pytest.fail("the validating webhook never took effect")


def test_bad_template_annotation_is_rejected_at_apply(
    api: client.ApiClient, namespace: str
) -> None:
    apps = client.AppsV1Api(api)
    _wait_for_validation(apps, namespace)
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(
            namespace, deployment("bad", {"heartbeat/enabled": "true", "heartbeat/period": "-1"})
        )
    message = json.loads(caught.value.body)["message"]
    assert "Deployment pod template: annotation heartbeat/period=" in message
    good = deployment("good", {"heartbeat/enabled": "true"})
    created = apps.create_namespaced_deployment(namespace, good, _preload_content=False)
    stored = json.loads(created.data)
    # Never mutated: the template is exactly what was applied.
    assert "livenessProbe" not in stored["spec"]["template"]["spec"]["containers"][0]
    assert "heartbeat/injected" not in stored["spec"]["template"]["metadata"]["annotations"]


def test_misplaced_annotation_warns_at_apply(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    _wait_for_validation(apps, namespace)
    misplaced = deployment("misplaced", {}, **{"heartbeat/enabled": "true"})
    response = apps.create_namespaced_deployment(namespace, misplaced, _preload_content=False)
    warning = response.headers.get("Warning", "")
    assert "is on the Deployment's own metadata" in warning, response.headers


# --- audit and explain against the real cluster -------------------------------------


def test_audit_lists_missed_and_outdated_pods(
    core: client.CoreV1Api,
    namespace: str,
    webhook: Webhook,
    control_plane: ControlPlane,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import jsonpatch

    from webhook.cli import main
    from webhook.mutate import mutate_pod

    create_pod(core, namespace, annotated_pod("fine"))
    old = annotated_pod("old")
    old = jsonpatch.apply_patch(old, mutate_pod(old).patch)
    mark = json.loads(old["metadata"]["annotations"]["heartbeat/injected"])
    old["metadata"]["annotations"]["heartbeat/injected"] = json.dumps({**mark, "version": "0.0.1"})
    webhook.stop()
    try:
        create_pod(core, namespace, annotated_pod("missed"))
        create_pod(core, namespace, old)  # stored as given: nothing rewrote the marker
    finally:
        webhook.start()
    kubeconfig = str(control_plane.kubeconfig)

    capsys.readouterr()
    assert main(["audit", "-n", namespace, "--kubeconfig", kubeconfig, "-o", "json"]) == 1
    report = {entry["target"]: entry for entry in json.loads(capsys.readouterr().out)}
    assert sorted(report) == [f"Pod {namespace}/missed", f"Pod {namespace}/old"]
    assert report[f"Pod {namespace}/missed"]["verdict"] == "missed"
    assert report[f"Pod {namespace}/old"]["verdict"] == "outdated"
    assert "version 0.0.1" in report[f"Pod {namespace}/old"]["reasons"][0]

    assert main(["explain", "pod/fine", "-n", namespace, "--kubeconfig", kubeconfig]) == 0
    assert f"Pod {namespace}/fine: up-to-date" in capsys.readouterr().out
