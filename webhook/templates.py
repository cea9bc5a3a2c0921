"""Pod templates of workloads: found, and checked with the pod rules. Pure.

A denial of a controller-created pod only shows as a FailedCreate event on the
ReplicaSet or Job, never to whoever ran ``kubectl apply``. Checking the pod
template when the workload itself is created or updated puts the same message
in front of that person. Templates are never mutated: a webhook that rewrites
them makes GitOps tools fight it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webhook.config import ENABLED, PREFIX, quote
from webhook.mutate import Mutation, mutate_pod
from webhook.review import Review

# Where each workload kind keeps its pod template.
TEMPLATE_PATHS: dict[str, tuple[str, ...]] = {
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


def template_of(kind: object, workload: Mapping[str, Any]) -> Mapping[str, Any] | None:
    path = TEMPLATE_PATHS.get(str(kind))
    node: Any = workload
    for step in path or ():
        node = node.get(step) if isinstance(node, dict) else None
    return node if path and isinstance(node, dict) else None


def misplaced_annotation(kind: str, workload: Mapping[str, Any]) -> str | None:
    """The classic mistake: heartbeat/enabled on the workload, not on its pods."""
    template = template_of(kind, workload)
    if template is None:
        return None
    own = annotations_of(workload)
    if ENABLED not in own or ENABLED in annotations_of(template):
        return None
    where = ".".join(TEMPLATE_PATHS[kind]) + ".metadata.annotations"
    return (
        f"annotation {ENABLED}={quote(own[ENABLED])} is on the {kind}'s own metadata, where "
        f"the webhook does not look, so its pods are not injected; move it to {where}"
    )


def validate_workload(review: Review) -> Mutation:
    """Check a workload's pod template on CREATE and UPDATE; never patch it."""
    request = review.request
    kind_info = request.get("kind")
    kind = kind_info.get("kind") if isinstance(kind_info, dict) else None
    workload = request.get("object")
    if request.get("operation") not in ("CREATE", "UPDATE") or not isinstance(workload, dict):
        return Mutation()
    template = template_of(kind, workload)
    if template is None:
        return Mutation()
    label = f"{kind} pod template"
    warnings = []
    misplaced = misplaced_annotation(str(kind), workload)
    if misplaced is not None:
        warnings.append(misplaced)
    result = mutate_pod(template)
    warnings += [f"{label}: {warning}" for warning in result.warnings]
    if result.denial is None:
        return Mutation(warnings=warnings)
    old = request.get("oldObject")
    old_template = template_of(kind, old) if isinstance(old, dict) else None
    if old_template is not None and _heartbeat(old_template) == _heartbeat(template):
        # The bad annotation predates this update (scaling, an image bump, a
        # controller's label): rejecting it now would block unrelated changes.
        warnings.append(f"{label}: its pods will be denied: {result.denial}")
        return Mutation(warnings=warnings)
    return Mutation(denial=f"{label}: {result.denial}", warnings=warnings)


def annotations_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object's metadata.annotations, or {} when absent or malformed."""
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    return annotations if isinstance(annotations, dict) else {}


def _heartbeat(template: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in annotations_of(template).items() if str(k).startswith(PREFIX)}
