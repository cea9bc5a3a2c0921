"""Offline injection (``inject``): the webhook's rules applied to manifests.

Same code path as the webhook: mutate_pod decides, jsonpatch applies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jsonpatch

from webhook.mutate import mutate_pod
from webhook.templates import TEMPLATE_PATHS, misplaced_annotation


@dataclass
class Report:
    warnings: list[str] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)


def inject_documents(documents: list[Any]) -> tuple[list[Any], Report]:
    """Return the documents with every pod and pod template injected."""
    report = Report()
    result = [
        _inject(document, f"document {index + 1}", report)
        for index, document in enumerate(documents)
    ]
    return result, report


def _inject(document: Any, where: str, report: Report) -> Any:
    if not isinstance(document, dict):
        return document
    kind = document.get("kind")
    if kind == "List" and isinstance(document.get("items"), list):
        document["items"] = [
            _inject(item, f"{where} item {position + 1}", report)
            for position, item in enumerate(document["items"])
        ]
        return document
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    label = f"{where} ({kind} {name or '<unnamed>'})"
    if kind == "Pod":
        return _apply(document, label, report)
    path = TEMPLATE_PATHS.get(str(kind))
    if path is None:
        return document  # Services, ConfigMaps, ...: passed through untouched
    misplaced = misplaced_annotation(str(kind), document)
    if misplaced is not None:
        report.warnings.append(f"{label}: {misplaced}")
    parent: Any = document
    for step in path[:-1]:
        parent = parent.get(step) if isinstance(parent, dict) else None
    if isinstance(parent, dict) and isinstance(parent.get(path[-1]), dict):
        parent[path[-1]] = _apply(parent[path[-1]], label, report)
    return document


def _apply(pod: dict[str, Any], label: str, report: Report) -> Any:
    mutation = mutate_pod(pod)
    if mutation.denial is not None:
        report.denials.append(f"{label}: {mutation.denial}")
        return pod
    report.warnings.extend(f"{label}: {warning}" for warning in mutation.warnings)
    if not mutation.patch:
        return pod
    return jsonpatch.apply_patch(pod, mutation.patch)
