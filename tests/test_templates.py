"""Pod templates of workloads: apply-time denials and warnings, never a patch."""

from __future__ import annotations

from typing import Any

import pytest

from webhook.review import Review
from webhook.templates import misplaced_annotation, template_of, validate_workload

GROUPS = {
    "Deployment": "apps",
    "StatefulSet": "apps",
    "DaemonSet": "apps",
    "ReplicaSet": "apps",
    "Job": "batch",
    "CronJob": "batch",
}


def workload(kind: str, template_annotations: dict[str, str] | None, **own: str) -> dict[str, Any]:
    template: dict[str, Any] = {
        "metadata": {"annotations": template_annotations} if template_annotations else {},
        "spec": {"containers": [{"name": "worker", "image": "python:3.12"}]},
    }
    spec: dict[str, Any] = {"template": template}
    if kind == "CronJob":
        spec = {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}
    metadata: dict[str, Any] = {"name": "w"}
    if own:
        metadata["annotations"] = dict(own)
    return {"kind": kind, "metadata": metadata, "spec": spec}


def review(obj: dict[str, Any], operation: str = "CREATE", old: Any = None) -> Review:
    kind = obj["kind"]
    request: dict[str, Any] = {
        "uid": "u",
        "kind": {"group": GROUPS.get(kind, ""), "version": "v1", "kind": kind},
        "operation": operation,
        "object": obj,
    }
    if old is not None:
        request["oldObject"] = old
    return Review("admission.k8s.io/v1", "u", request)


@pytest.mark.parametrize("kind", list(GROUPS))
def test_bad_template_annotation_is_denied_at_apply(kind: str) -> None:
    result = validate_workload(review(workload(kind, {"heartbeat/enabled": "yes"})))
    assert result.denial is not None
    assert result.denial.startswith(f"{kind} pod template: annotation heartbeat/enabled=")
    assert result.patch == []


@pytest.mark.parametrize("kind", list(GROUPS))
def test_good_template_is_allowed_without_a_patch(kind: str) -> None:
    result = validate_workload(review(workload(kind, {"heartbeat/enabled": "true"})))
    assert result.denial is None and result.patch == [] and result.warnings == []


def test_template_warnings_reach_apply() -> None:
    obj = workload("Deployment", {"heartbeat/enabled": "true", "heartbeat/perod": "5"})
    result = validate_workload(review(obj))
    assert result.denial is None
    assert len(result.warnings) == 1
    assert result.warnings[0].startswith("Deployment pod template: annotation ")


@pytest.mark.parametrize("kind", list(GROUPS))
def test_annotation_on_the_workload_instead_of_the_template_warns(kind: str) -> None:
    obj = workload(kind, None, **{"heartbeat/enabled": "true"})
    result = validate_workload(review(obj))
    assert result.denial is None
    assert len(result.warnings) == 1
    assert f"is on the {kind}'s own metadata" in result.warnings[0]
    assert ".template.metadata.annotations" in result.warnings[0]


def test_annotation_in_both_places_is_fine() -> None:
    obj = workload("Deployment", {"heartbeat/enabled": "true"}, **{"heartbeat/enabled": "true"})
    assert misplaced_annotation("Deployment", obj) is None


def test_update_that_introduces_a_bad_value_is_denied() -> None:
    old = workload("Deployment", {"heartbeat/enabled": "true"})
    new = workload("Deployment", {"heartbeat/enabled": "true", "heartbeat/max-age": "0"})
    result = validate_workload(review(new, "UPDATE", old))
    assert result.denial is not None and "heartbeat/max-age" in result.denial


def test_update_that_keeps_an_old_bad_value_only_warns() -> None:
    old = workload("Deployment", {"heartbeat/enabled": "yes"})
    new = workload("Deployment", {"heartbeat/enabled": "yes"})
    new["spec"]["replicas"] = 5
    result = validate_workload(review(new, "UPDATE", old))
    assert result.denial is None
    assert any("its pods will be denied" in w for w in result.warnings)


@pytest.mark.parametrize("operation", ["DELETE", "CONNECT"])
def test_other_operations_are_allowed(operation: str) -> None:
    obj = workload("Deployment", {"heartbeat/enabled": "yes"})
    assert validate_workload(review(obj, operation)).denial is None


def test_other_kinds_are_allowed() -> None:
    obj = {"kind": "ConfigMap", "metadata": {"annotations": {"heartbeat/enabled": "yes"}}}
    assert validate_workload(review(obj)).denial is None


def test_template_of_tolerates_odd_shapes() -> None:
    assert template_of("Deployment", {"spec": []}) is None
    assert template_of("CronJob", {"spec": {"jobTemplate": None}}) is None
    assert template_of("Service", {"spec": {"template": {}}}) is None
