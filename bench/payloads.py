"""Deterministic AdmissionReview bodies for the benchmark.

Three payloads, shaped like what kube-apiserver sends a mutating webhook for a
pod CREATE (compact JSON, the object already defaulted, the ServiceAccount
token volume projected, the ReplicaSet controller as the requester):

- ``typical``: an opted-in two-container pod (worker + log shipper), ~4.3 KB;
- ``plain``: the same pod without ``heartbeat/enabled``; the webhook allows it
  without a patch (in a cluster the MutatingWebhookConfiguration's
  matchConditions keep these away from the webhook; measured anyway);
- ``large``: an opted-in pod with 20 containers and long env lists.

``python -m bench.payloads OUT_DIR`` writes them as ``<name>.json``.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

NAMESPACE = "batch-jobs"
UID = "7b7c1a6e-4f0e-4a51-9c55-3f1d2a9e0c41"


def _env(prefix: str, count: int) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    for i in range(count):
        if i % 7 == 3:
            env.append(
                {
                    "name": f"{prefix}_SECRET_{i}",
                    "valueFrom": {"secretKeyRef": {"name": "worker-secrets", "key": f"key-{i}"}},
                }
            )
        elif i % 7 == 5:
            env.append(
                {
                    "name": f"{prefix}_POD_{i}",
                    "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
                }
            )
        else:
            env.append(
                {"name": f"{prefix}_SETTING_{i}", "value": f"value-{i:04d}-" + "x" * (i % 9)}
            )
    return env


def _token_mount() -> dict[str, Any]:
    return {
        "name": "kube-api-access-9xk2p",
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }


def _container(name: str, image: str, env: list[dict[str, Any]], cpu: str) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "args": ["--queue", "reports", "--concurrency", "4"],
        "ports": [{"name": "metrics", "containerPort": 9100, "protocol": "TCP"}],
        "env": env,
        "resources": {
            "limits": {"memory": "512Mi"},
            "requests": {"cpu": cpu, "memory": "256Mi"},
        },
        "volumeMounts": [{"name": "work", "mountPath": "/work"}, _token_mount()],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "runAsNonRoot": True,
        },
    }


def pod(containers: list[dict[str, Any]], annotated: bool = True) -> dict[str, Any]:
    """A defaulted pod as the apiserver hands it to a mutating webhook."""
    annotations = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
    if annotated:
        annotations["heartbeat/enabled"] = "true"
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": "report-worker-6d9f7c8b5-",
            "namespace": NAMESPACE,
            "creationTimestamp": None,
            "labels": {
                "app.kubernetes.io/name": "report-worker",
                "app.kubernetes.io/part-of": "reporting",
                "pod-template-hash": "6d9f7c8b5",
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "report-worker-6d9f7c8b5",
                    "uid": "0d5c9a52-8d0e-4d8b-a0a9-2c1a44b1f1c7",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
            "managedFields": [
                {
                    "manager": "kube-controller-manager",
                    "operation": "Update",
                    "apiVersion": "v1",
                    "time": "2025-01-01T00:00:00Z",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}}},
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "work", "emptyDir": {}},
                {
                    "name": "kube-api-access-9xk2p",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                            {
                                "downwardAPI": {
                                    "items": [
                                        {
                                            "path": "namespace",
                                            "fieldRef": {
                                                "apiVersion": "v1",
                                                "fieldPath": "metadata.namespace",
                                            },
                                        }
                                    ]
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "report-worker",
            "serviceAccount": "report-worker",
            "securityContext": {"fsGroup": 2000},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {},
    }


def review(obj: dict[str, Any]) -> dict[str, Any]:
    """Wrap a pod in an admission.k8s.io/v1 AdmissionReview for a CREATE."""
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": UID,
            "kind": gvk,
            "resource": gvr,
            "requestKind": gvk,
            "requestResource": gvr,
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": "system:serviceaccount:kube-system:replicaset-controller",
                "uid": "5d5e6f7a-1b2c-4d3e-8f9a-0b1c2d3e4f5a",
                "groups": [
                    "system:serviceaccounts",
                    "system:serviceaccounts:kube-system",
                    "system:authenticated",
                ],
            },
            "object": obj,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


def typical_containers() -> list[dict[str, Any]]:
    worker = _container(
        "worker", "registry.example.com/reporting/report-worker:1.14.2", _env("WORKER", 8), "500m"
    )
    shipper = _container(
        "log-shipper", "registry.example.com/infra/fluent-bit:3.2.4", _env("SHIP", 3), "50m"
    )
    shipper["args"] = ["--config", "/fluent-bit/etc/fluent-bit.conf"]
    shipper["ports"] = []
    return [worker, shipper]


def large_containers(count: int = 20, env: int = 60) -> list[dict[str, Any]]:
    return [
        _container(
            f"stage-{i:02d}",
            f"registry.example.com/reporting/stage-{i:02d}:1.14.2",
            _env(f"STAGE{i:02d}", env),
            "100m",
        )
        for i in range(count)
    ]


def encode(document: dict[str, Any]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode()


def payloads() -> dict[str, bytes]:
    """name -> AdmissionReview body, in report order."""
    typical = typical_containers()
    return {
        "typical": encode(review(pod(copy.deepcopy(typical)))),
        "plain": encode(review(pod(copy.deepcopy(typical), annotated=False))),
        "large": encode(review(pod(large_containers()))),
    }


# What each payload must get back from the webhook (checked before loading it).
EXPECTED_PATCH = {"typical": True, "plain": False, "large": True}


def submitted_pod(name: str) -> dict[str, Any]:
    """The typical pod as a client submits it (for the end-to-end run): no defaults."""
    containers = []
    for container in typical_containers():
        containers.append(
            {
                key: value
                for key, value in container.items()
                if key
                not in {"terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy"}
            }
        )
        containers[-1]["volumeMounts"] = [{"name": "work", "mountPath": "/work"}]
        # No Secrets exist in the test namespace; admission does not resolve them anyway.
    full = pod(containers)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": full["metadata"]["labels"],
            "annotations": full["metadata"]["annotations"],
        },
        "spec": {
            "containers": containers,
            "volumes": [{"name": "work", "emptyDir": {}}],
            "securityContext": {"fsGroup": 2000},
        },
    }


def write(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, body in payloads().items():
        path = out / f"{name}.json"
        path.write_bytes(body)
        paths[name] = path
    return paths


if __name__ == "__main__":
    for name, path in write(Path(sys.argv[1] if len(sys.argv) > 1 else ".")).items():
        print(f"{name}: {path} ({path.stat().st_size} bytes)")
