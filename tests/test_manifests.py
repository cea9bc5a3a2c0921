"""The rendered manifests: schema-valid for Kubernetes, and the properties the
deployment promises (hardened Deployment, a webhook that cannot block the
cluster, certificates wired end to end, alerts on metrics that exist)."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from kubernetes_validate import utils as kv

from tests.manifests import (
    NAMESPACE,
    SECRET,
    SERVICE,
    TOOLS_SCRIPT,
    TREES,
    WEBHOOK_KINDS,
    Object,
    crd_files,
    find,
    one,
    render_all,
    tools_dir,
)
from webhook.metrics import OUTCOMES, Metrics

SYSTEM_NAMESPACES = {"kube-system", "kube-public", "kube-node-lease", NAMESPACE}
WITH_DEPLOYMENT = ("base", "overlays/kind", "overlays/cert-manager")


def k8s_version() -> str:
    """The newest Kubernetes kubernetes-validate has schemas for, at most 1.37."""
    versions = [v for v in kv.all_versions() if kv.major_minor(v) <= kv.major_minor("1.37")]
    return str(max(versions, key=kv.major_minor))


@pytest.fixture(scope="module")
def tools() -> Path:
    return tools_dir()


@pytest.fixture(scope="module")
def rendered(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Object]]:
    return render_all(tools, tmp_path_factory.mktemp("render"))


@pytest.fixture(scope="module")
def crd_schemas(tools: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema, from the third-party CRDs."""
    schemas = {}
    for path in crd_files(tools):
        for crd in yaml.safe_load_all(path.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for version in crd["spec"]["versions"]:
                key = (f"{group}/{version['name']}", kind)
                schemas[key] = version["schema"]["openAPIV3Schema"]
    return schemas


def webhook_configurations(objects: list[Object]) -> list[Object]:
    return [obj for obj in objects if obj["kind"] in WEBHOOK_KINDS]


# --- the tools ----------------------------------------------------------------


def test_tools_script_prints_the_cached_directory_last(tools: Path) -> None:
    result = subprocess.run(
        ["bash", str(TOOLS_SCRIPT)], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.splitlines() == [str(tools)] or result.stdout.splitlines()[-1] == str(
        tools
    )
    assert (tools / "kustomize").is_file()
    names = {path.name for path in crd_files(tools)}
    assert "cert-manager.io_certificates.yaml" in names
    assert "monitoring.coreos.com_prometheusrules.yaml" in names


# --- schemas --------------------------------------------------------------------


@pytest.mark.parametrize("tree", TREES)
def test_every_object_is_schema_valid(
    tree: str,
    rendered: dict[str, list[Object]],
    crd_schemas: dict[tuple[str, str], dict[str, Any]],
) -> None:
    version = k8s_version()
    objects = rendered[tree]
    assert objects, f"{tree} rendered nothing"
    for obj in objects:
        label = f"{tree}: {obj['kind']} {obj['metadata'].get('name')}"
        custom = crd_schemas.get((obj["apiVersion"], obj["kind"]))
        if custom is not None:
            # CRD schemas are OpenAPI v3 (a JSON-schema dialect close to draft 4).
            try:
                jsonschema.Draft4Validator(custom).validate(obj)
            except jsonschema.ValidationError as error:
                pytest.fail(f"{label}: {error.message} at {list(error.absolute_path)}")
            continue
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as error:
            path = ".".join(str(part) for part in error.path)
            pytest.fail(f"{label} is invalid for Kubernetes {version}: {path}: {error.message}")
        except kv.SchemaNotFoundError:
            pytest.fail(f"{label}: no schema for {obj['apiVersion']} in Kubernetes {version}")


def test_validation_catches_a_typo(rendered: dict[str, list[Object]]) -> None:
    deployment = one(rendered["base"], "Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, k8s_version(), strict=True)


# --- the Deployment -------------------------------------------------------------


@pytest.mark.parametrize("tree", WITH_DEPLOYMENT)
def test_deployment_is_hardened_and_highly_available(
    tree: str, rendered: dict[str, list[Object]]
) -> None:
    deployment = one(rendered[tree], "Deployment", SERVICE)
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    spreads = pod["topologySpreadConstraints"]
    assert spreads and all(s["whenUnsatisfiable"] == "ScheduleAnyway" for s in spreads)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert "memory" in container["resources"]["limits"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert "preStop" in container["lifecycle"]
    # Serves the pair mounted from the TLS Secret, never one it makes itself.
    args = container["args"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    tls_volume = next(n for n, v in volumes.items() if v.get("secret", {}).get("secretName"))
    assert volumes[tls_volume]["secret"]["secretName"] == SECRET
    assert f"--cert-file={mounts[tls_volume]}/tls.crt" in args
    assert f"--key-file={mounts[tls_volume]}/tls.key" in args


def test_dockerfile_default_command_matches_the_deployment(
    rendered: dict[str, list[Object]],
) -> None:
    deployment = one(rendered["base"], "Deployment", SERVICE)
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    dockerfile = (Path(__file__).resolve().parents[1] / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*?\])$", dockerfile, re.MULTILINE | re.DOTALL)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1).replace("\\\n", "")) == args


# --- the webhook configurations ---------------------------------------------------


@pytest.mark.parametrize("tree", WITH_DEPLOYMENT)
def test_mutating_webhook_cannot_block_the_cluster(
    tree: str, rendered: dict[str, list[Object]]
) -> None:
    mwc = one(rendered[tree], "MutatingWebhookConfiguration")
    (hook,) = mwc["webhooks"]
    assert hook["rules"] == [
        {
            "operations": ["CREATE"],
            "apiGroups": [""],
            "apiVersions": ["v1"],
            "resources": ["pods"],
            "scope": "Namespaced",
        }
    ]
    assert hook["reinvocationPolicy"] == "IfNeeded"
    conditions = hook["matchConditions"]
    assert any("'heartbeat/enabled' in object.metadata.annotations" in c["expression"]
               for c in conditions)  # fmt: skip


@pytest.mark.parametrize("tree", WITH_DEPLOYMENT)
def test_every_webhook_is_safe_and_points_at_the_service(
    tree: str, rendered: dict[str, list[Object]]
) -> None:
    configurations = webhook_configurations(rendered[tree])
    assert configurations
    for configuration in configurations:
        for hook in configuration["webhooks"]:
            assert hook["failurePolicy"] == "Ignore", hook["name"]
            assert hook["sideEffects"] == "None"
            assert hook["timeoutSeconds"] <= 5
            assert hook["admissionReviewVersions"] == ["v1"]
            assert hook["matchConditions"], hook["name"]
            service = hook["clientConfig"]["service"]
            assert (service["name"], service["namespace"], service["port"]) == (
                SERVICE,
                NAMESPACE,
                443,
            )
            excluded = {
                value
                for expression in hook["namespaceSelector"]["matchExpressions"]
                if expression["key"] == "kubernetes.io/metadata.name"
                and expression["operator"] == "NotIn"
                for value in expression["values"]
            }
            assert excluded >= SYSTEM_NAMESPACES, hook["name"]


# --- kind: certificates from `heartbeat-webhook certs` ---------------------------


def test_kind_overlay_loads_the_generated_pair(rendered: dict[str, list[Object]]) -> None:
    objects = rendered["overlays/kind"]
    secret = one(objects, "Secret", SECRET)
    assert secret["metadata"]["namespace"] == NAMESPACE
    assert secret["type"] == "kubernetes.io/tls"
    # The CA's certificate, never its key.
    assert set(secret["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    data = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    ca = x509.load_pem_x509_certificate(data["ca.crt"])
    served = x509.load_pem_x509_certificate(data["tls.crt"])
    served.verify_directly_issued_by(ca)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{SERVICE}.{NAMESPACE}.svc" in names.get_values_for_type(x509.DNSName)
    key = serialization.load_pem_private_key(data["tls.key"], password=None)
    assert key.public_key() == served.public_key()

    hooks = [h for c in webhook_configurations(objects) for h in c["webhooks"]]
    assert hooks
    for hook in hooks:
        assert base64.b64decode(hook["clientConfig"]["caBundle"]) == data["ca.crt"], hook["name"]


def test_only_the_kind_overlay_carries_key_material(rendered: dict[str, list[Object]]) -> None:
    assert {"base", "overlays/kind", "overlays/cert-manager", "monitoring"} <= set(TREES)
    for tree in set(TREES) - {"overlays/kind"}:
        assert not find(rendered[tree], "Secret"), tree
        for configuration in webhook_configurations(rendered[tree]):
            for hook in configuration["webhooks"]:
                assert "caBundle" not in hook["clientConfig"], (tree, hook["name"])


def test_kind_overlay_never_generates_certificates(tools: Path, tmp_path: Path) -> None:
    """Rendered without the generated files, the overlay fails instead of inventing any."""
    import shutil

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / "manifests", tmp_path / "m", ignore=shutil.ignore_patterns("generated"))
    result = subprocess.run(
        [str(tools / "kustomize"), "build", str(tmp_path / "m" / "overlays" / "kind")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "generated/tls.crt" in result.stderr


# --- cert-manager ------------------------------------------------------------------


def test_cert_manager_chain_serves_the_secret_the_deployment_mounts(
    rendered: dict[str, list[Object]],
) -> None:
    objects = rendered["overlays/cert-manager"]
    issuers = {i["metadata"]["name"]: i for i in find(objects, "Issuer")}
    certificates = {c["metadata"]["name"]: c for c in find(objects, "Certificate")}
    for obj in [*issuers.values(), *certificates.values()]:
        assert obj["metadata"]["namespace"] == NAMESPACE

    configurations = webhook_configurations(objects)
    annotations = {
        c["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] for c in configurations
    }
    assert len(annotations) == 1, annotations
    namespace, name = annotations.pop().split("/")
    assert namespace == NAMESPACE
    serving = certificates[name]["spec"]
    assert serving["secretName"] == SECRET
    assert f"{SERVICE}.{NAMESPACE}.svc" in serving["dnsNames"]
    assert "server auth" in serving["usages"]

    ca_issuer = issuers[serving["issuerRef"]["name"]]["spec"]
    (ca_certificate,) = [
        c["spec"]
        for c in certificates.values()
        if c["spec"]["secretName"] == ca_issuer["ca"]["secretName"]
    ]
    assert ca_certificate["isCA"] is True
    assert "selfSigned" in issuers[ca_certificate["issuerRef"]["name"]]["spec"]


# --- monitoring --------------------------------------------------------------------


def exported_metric_names() -> set[str]:
    """Every sample name webhook/metrics.py exports, certificate gauges included."""

    class Certificate:
        not_after = 2_000_000_000.0
        reloads = 0

        def maybe_reload(self) -> bool:
            return False

    metrics = Metrics()
    metrics.watch_certificate(Certificate())  # type: ignore[arg-type]
    return {sample.name for family in metrics.registry.collect() for sample in family.samples}


def test_alerts_use_metrics_the_webhook_exports(rendered: dict[str, list[Object]]) -> None:
    rule = one(rendered["monitoring"], "PrometheusRule")
    rules = [r for group in rule["spec"]["groups"] for r in group["rules"]]
    exported = exported_metric_names()
    used: set[str] = set()
    for entry in rules:
        assert entry["labels"]["severity"] in {"info", "warning", "critical"}
        assert entry["annotations"]["summary"]
        names = set(re.findall(r"\bheartbeat_webhook_[a-z_]+", entry["expr"]))
        assert names <= exported, f"{entry['alert']}: unknown {names - exported}"
        used |= names
        for outcome in re.findall(r'outcome="([^"]+)"', entry["expr"]):
            assert outcome in OUTCOMES, f"{entry['alert']}: no outcome {outcome!r}"
    assert {
        "heartbeat_webhook_internal_errors_total",
        "heartbeat_webhook_admission_requests_total",
        "heartbeat_webhook_certificate_expiry_timestamp_seconds",
    } <= used
    alerts = {r["alert"]: r["expr"] for r in rules}
    assert "kube_pod_container_status_restarts_total" in alerts["HeartbeatWorkerRestarted"]
    assert "annotation_heartbeat_enabled" in alerts["HeartbeatWorkerRestarted"]
    assert "14 * 86400" in alerts["HeartbeatWebhookCertificateExpiresSoon"]


def test_service_monitor_scrapes_the_service_over_verified_tls(
    rendered: dict[str, list[Object]],
) -> None:
    monitor = one(rendered["monitoring"], "ServiceMonitor")
    service = one(rendered["base"], "Service", SERVICE)
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["scheme"] == "https"
    tls = endpoint["tlsConfig"]
    assert tls["ca"]["secret"] == {"name": SECRET, "key": "ca.crt"}
    assert tls["serverName"] == f"{SERVICE}.{NAMESPACE}.svc"
    assert not tls.get("insecureSkipVerify")
