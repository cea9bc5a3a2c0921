"""The ``heartbeat/injected`` annotation: written by mutate, read by mutate and
diagnostics. One place for its format. Pure.

The value is compact JSON: ``{"containers":[...],"settings":"<10 hex>","version":"..."}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from webhook import __version__
from webhook.config import HeartbeatConfig


@dataclass(frozen=True, slots=True)
class Marker:
    containers: tuple[str, ...] = ()  # containers that carry our liveness probe
    settings: str = ""  # short hash of the effective settings and paths
    version: str = ""  # the webhook version that injected


def marker_value(config: HeartbeatConfig, paths: Mapping[str, str], injected: Sequence[str]) -> str:
    """The annotation's value for a pod injected with ``config``."""
    return _value(config, tuple(sorted(paths.items())), tuple(injected))


@lru_cache(maxsize=256)  # pods of one workload share settings: hash them once
def _value(
    config: HeartbeatConfig, paths: tuple[tuple[str, str], ...], injected: tuple[str, ...]
) -> str:
    settings = json.dumps(
        [
            config.max_age, config.period, config.initial_delay, config.failure_threshold,
            config.timeout, config.startup_grace, config.termination_grace, config.probe,
            [list(item) for item in paths],
        ],
        separators=(",", ":"),
    )  # fmt: skip
    digest = hashlib.sha256(settings.encode()).hexdigest()[:10]
    return json.dumps(
        {"containers": list(injected), "settings": digest, "version": __version__},
        separators=(",", ":"),
    )


def read_marker(value: object) -> Marker:
    """Parse an annotation value; anything malformed reads as an empty marker.

    The annotation is user-writable, so every field is checked for its type.
    """
    if not isinstance(value, str):
        return Marker()
    try:
        parsed = json.loads(value)
    except ValueError:
        return Marker()
    if not isinstance(parsed, dict):
        return Marker()
    names = parsed.get("containers")
    settings, version = parsed.get("settings"), parsed.get("version")
    return Marker(
        containers=tuple(n for n in names if isinstance(n, str)) if isinstance(names, list) else (),
        settings=settings if isinstance(settings, str) else "",
        version=version if isinstance(version, str) else "",
    )
