"""Why a pod was or was not injected, and which live pods need attention. Pure.

Used by ``explain`` (a manifest, or a live pod) and ``audit`` (live pods).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from webhook import __version__
from webhook.config import ENABLED, INJECTED, AnnotationError, is_enabled, quote
from webhook.marker import read_marker
from webhook.mutate import MalformedObject, mutate_pod
from webhook.templates import annotations_of, misplaced_annotation, template_of

# Namespaces the shipped webhook configurations never send to the webhook.
EXCLUDED_NAMESPACES = frozenset(
    {"kube-system", "kube-public", "kube-node-lease", "heartbeat-system"}
)

Verdict = Literal[
    "not-opted-in", "would-inject", "up-to-date", "unchanged", "denied", "missed", "outdated"
]
FINDINGS: frozenset[Verdict] = frozenset({"denied", "missed", "outdated"})


@dataclass(frozen=True)
class Explanation:
    target: str  # "Pod jobs/worker", "Deployment web pod template"
    verdict: Verdict
    reasons: list[str] = field(default_factory=list)

    @property
    def finding(self) -> bool:
        return self.verdict in FINDINGS or any(r.startswith("misplaced:") for r in self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {"target": self.target, "verdict": self.verdict, "reasons": self.reasons}


def explain_manifest(document: Mapping[str, Any]) -> Iterator[Explanation]:
    """What admission would do to each pod (or pod template) of a document."""
    kind = str(document.get("kind"))
    name = _name(document)
    if kind == "List" and isinstance(document.get("items"), list):
        for item in document["items"]:
            if isinstance(item, dict):
                yield from explain_manifest(item)
        return
    if kind == "Pod":
        yield _explain_new(f"Pod {name}", document, _namespace(document))
        return
    template = template_of(kind, document)
    if template is None:
        return
    explanation = _explain_new(f"{kind} {name} pod template", template, _namespace(document))
    misplaced = misplaced_annotation(kind, document)
    if misplaced is not None:
        explanation.reasons.insert(0, f"misplaced: {misplaced}")
    yield explanation


def explain_live(pod: Mapping[str, Any]) -> Explanation:
    """Whether a stored pod carries the injection the current rules would give it."""
    target = f"Pod {_namespace(pod) or 'default'}/{_name(pod)}"
    annotations = annotations_of(pod)
    try:
        if not is_enabled(annotations):
            return Explanation(target, "not-opted-in", [_why_not_opted_in(annotations)])
    except AnnotationError as error:
        return Explanation(target, "missed", [f"{error}; it was admitted without the webhook"])
    if INJECTED not in annotations:
        return Explanation(target, "missed", [_why_missed(_namespace(pod))])
    try:
        result = mutate_pod(pod)
    except MalformedObject as error:
        return Explanation(target, "outdated", [str(error)])
    marker = read_marker(annotations[INJECTED])
    if result.denial is not None:
        return Explanation(
            target, "outdated", [f"its annotations changed since injection: {result.denial}"]
        )
    if result.patch:
        version = marker.version or "unknown"
        why = (
            f"injected by webhook version {version}, now {__version__}"
            if version != __version__
            else "its heartbeat annotations changed since injection"
        )
        return Explanation(
            target, "outdated", [f"{why}; recreate the pod to get the current probe"]
        )
    containers = ", ".join(marker.containers) or "none"
    return Explanation(
        target,
        "up-to-date",
        [
            f"probe in containers: {containers}; settings {marker.settings or 'unknown'}",
            *result.warnings,
        ],
    )


def _explain_new(target: str, pod: Mapping[str, Any], namespace: str) -> Explanation:
    annotations = annotations_of(pod)
    try:
        if not is_enabled(annotations):
            return Explanation(target, "not-opted-in", [_why_not_opted_in(annotations)])
        if namespace in EXCLUDED_NAMESPACES:
            reason = f"namespace {namespace} is excluded by the webhook configuration"
            return Explanation(target, "not-opted-in", [f"{reason}; nothing is sent"])
        result = mutate_pod(pod)
    except AnnotationError as error:
        return Explanation(target, "denied", [str(error)])
    except MalformedObject as error:
        return Explanation(target, "denied", [f"not a valid pod: {error}"])
    if result.denial is not None:
        return Explanation(target, "denied", [result.denial])
    if not result.patch:
        return Explanation(target, "unchanged", ["already injected; a review changes nothing"])
    containers = ", ".join(result.injected) or "none (see warnings)"
    return Explanation(
        target, "would-inject", [f"liveness probe into containers: {containers}", *result.warnings]
    )


def _why_not_opted_in(annotations: Mapping[str, Any]) -> str:
    if ENABLED in annotations:
        return f"annotation {ENABLED}={quote(annotations[ENABLED])} opts out"
    return f'no {ENABLED} annotation; add {ENABLED}: "true" to the pod (template) metadata'


def _why_missed(namespace: str) -> str:
    if namespace in EXCLUDED_NAMESPACES:
        return f"opted in, but namespace {namespace} is excluded by the webhook configuration"
    return (
        "opted in but never injected: it was admitted while the webhook was down or "
        "unreachable (failurePolicy: Ignore), or before the webhook was installed; "
        "recreate the pod (delete it and let its controller make a new one)"
    )


def _name(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        return str(metadata.get("name") or metadata.get("generateName") or "<unnamed>")
    return "<unnamed>"


def _namespace(obj: Mapping[str, Any]) -> str:
    metadata = obj.get("metadata")
    namespace = metadata.get("namespace") if isinstance(metadata, dict) else None
    return namespace if isinstance(namespace, str) else ""
