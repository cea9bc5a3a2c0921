"""Least privilege, checked by the real apiserver's RBAC: the audit service account
from manifests/audit can list pods and do nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils

from tests.integration.cluster import ControlPlane
from tests.integration.conftest import ROOT, annotated_pod, create_pod, make_namespace
from webhook.cli import main


def token_kubeconfig(plane: ControlPlane, token: str, path: Path) -> Path:
    text = plane.kubeconfig.read_text().replace(f"token: {plane.token}", f"token: {token}")
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def audit_token(api: client.ApiClient, core: client.CoreV1Api) -> str:
    make_namespace(core, "", name="heartbeat-system")
    for document in yaml.safe_load_all((ROOT / "manifests/audit/rbac.yaml").read_text()):
        utils.create_from_dict(api, document)
    request = core.create_namespaced_service_account_token(
        "heartbeat-audit", "heartbeat-system", {"spec": {"expirationSeconds": 600}}
    )
    token: str = request.status.token
    return token


def allowed(api: client.ApiClient, token: str, verb: str, resource: str) -> bool:
    config = client.Configuration()
    config.host = api.configuration.host
    config.ssl_ca_cert = api.configuration.ssl_ca_cert
    config.api_key = {"authorization": f"Bearer {token}"}
    review = client.AuthorizationV1Api(client.ApiClient(config)).create_self_subject_access_review(
        {"spec": {"resourceAttributes": {"verb": verb, "resource": resource}}}
    )
    result: bool = review.status.allowed
    return result


def test_audit_runs_with_list_pods_only(
    core: client.CoreV1Api,
    namespace: str,
    control_plane: ControlPlane,
    audit_token: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    create_pod(core, namespace, annotated_pod("audited"))
    kubeconfig = str(token_kubeconfig(control_plane, audit_token, tmp_path / "audit.kubeconfig"))
    assert main(["audit", "--kubeconfig", kubeconfig, "-o", "json"]) in (0, 1)
    capsys.readouterr()
    # `explain pod/NAME` needs get, which the audit account deliberately lacks.
    assert main(["explain", "pod/audited", "-n", namespace, "--kubeconfig", kubeconfig]) == 2
    assert "Forbidden" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("verb", "resource", "expected"),
    [
        ("list", "pods", True),
        ("get", "pods", False),
        ("create", "pods", False),
        ("list", "secrets", False),
        ("get", "secrets", False),
        ("update", "mutatingwebhookconfigurations", False),
    ],
)
def test_audit_account_is_least_privilege(
    api: client.ApiClient, audit_token: str, verb: str, resource: str, expected: bool
) -> None:
    assert allowed(api, audit_token, verb, resource) is expected


def test_no_token_is_mounted_where_none_is_needed() -> None:
    documents: list[dict[str, Any]] = []
    for path in (ROOT / "manifests/base").glob("*.yaml"):
        documents += [d for d in yaml.safe_load_all(path.read_text()) if d]
    account = next(d for d in documents if d["kind"] == "ServiceAccount")
    deployment = next(d for d in documents if d["kind"] == "Deployment")
    assert account["automountServiceAccountToken"] is False
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert not any(d["kind"] in ("Role", "ClusterRole") for d in documents)
