"""Pod annotations -> a typed, validated HeartbeatConfig. Pure: no I/O."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

PREFIX = "heartbeat/"
ENABLED = "heartbeat/enabled"
PATH = "heartbeat/path"
MAX_AGE = "heartbeat/max-age"
PERIOD = "heartbeat/period"
INITIAL_DELAY = "heartbeat/initial-delay"
FAILURE_THRESHOLD = "heartbeat/failure-threshold"
TIMEOUT = "heartbeat/timeout"
CONTAINERS = "heartbeat/containers"
STARTUP_GRACE = "heartbeat/startup-grace"
TERMINATION_GRACE = "heartbeat/termination-grace"
PROBE = "heartbeat/probe"
INJECTED = "heartbeat/injected"  # written by us, never read as a setting
DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"

# (annotation, low, high); the bounds keep a probe that Kubernetes accepts and
# that still means something (a 0 s max-age would fail every probe).
_INTEGERS: dict[str, tuple[int, int]] = {
    MAX_AGE: (2, 86400),
    PERIOD: (1, 3600),
    INITIAL_DELAY: (0, 3600),
    FAILURE_THRESHOLD: (1, 100),
    TIMEOUT: (1, 60),
    STARTUP_GRACE: (1, 86400),
    TERMINATION_GRACE: (1, 3600),
}
KNOWN = frozenset({ENABLED, PATH, CONTAINERS, PROBE, INJECTED, *_INTEGERS})

_PATH_RE = re.compile(r"/[A-Za-z0-9._-]+(?:/[A-Za-z0-9._-]+)*")
_PATH_MAX = 200
_LABEL_RE = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")
_QUOTE_MAX = 64

ProbeKind = Literal["shell", "python"]


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """Effective settings for one pod; ``path=None`` means "choose per container"."""

    path: str | None = None
    max_age: int = 90
    period: int = 30
    initial_delay: int = 10
    failure_threshold: int = 3
    # Kubernetes defaults timeoutSeconds to 1 s. An exec probe goes through the
    # container runtime (runc exec, cgroup join) and on a loaded node that alone
    # can take over a second; a timeout counts as a failure, so 1 s restarts
    # healthy workers. The check itself takes milliseconds, so 5 s is headroom.
    timeout: int = 5
    containers: tuple[str, ...] | None = None
    startup_grace: int | None = None
    termination_grace: int | None = None
    probe: ProbeKind = "shell"


DEFAULTS = HeartbeatConfig()


class AnnotationError(ValueError):
    """A heartbeat annotation with a value we cannot accept; becomes a denial."""

    def __init__(self, annotation: str, value: object, accepted: str) -> None:
        self.annotation = annotation
        self.value = value
        self.accepted = accepted
        if isinstance(value, str):
            message = f"annotation {annotation}={quote(value)} is invalid; accepted: {accepted}"
        else:
            # Only offline manifests get here: YAML reads unquoted true or 30 as
            # a boolean or a number, and the API only takes strings.
            message = (
                f"annotation {annotation} has the non-string value {quote(value)}; annotation "
                f"values must be strings, so quote it in YAML; accepted: {accepted}"
            )
        super().__init__(message)


def quote(value: object) -> str:
    """Quote a user value for a message: ASCII only, no control characters, bounded.

    The apiserver drops warnings holding control characters, and a hostile
    value must not be able to forge log lines or flood a terminal.
    """
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _QUOTE_MAX:
        return json.dumps(text[:_QUOTE_MAX]) + f"...({len(text)} chars)"
    return json.dumps(text)


def is_enabled(annotations: Mapping[str, object]) -> bool:
    """True to inject, False to leave alone; raises AnnotationError otherwise."""
    value = annotations.get(ENABLED)
    if value is None:
        return False
    if isinstance(value, str):
        lowered = value.lower()
        if lowered == "true":
            return True
        if lowered == "false":
            return False
    raise AnnotationError(ENABLED, value, '"true" or "false" (any case)')


def parse_config(annotations: Mapping[str, object]) -> tuple[HeartbeatConfig, list[str]]:
    """Validate every heartbeat setting; return the config and warnings.

    Raises AnnotationError for the first bad value, in a stable order.
    """
    settings = tuple(
        sorted(
            (key, value)
            for key, value in annotations.items()
            if isinstance(key, str) and key.startswith(PREFIX)
        )
    )
    if all(isinstance(value, str) for _, value in settings):
        config, warnings = _parse_cached(settings)
        return config, list(warnings)
    return _parse(annotations)


@lru_cache(maxsize=256)  # most pods carry one of a few annotation sets
def _parse_cached(settings: tuple[tuple[str, str], ...]) -> tuple[HeartbeatConfig, tuple[str, ...]]:
    config, warnings = _parse(dict(settings))
    return config, tuple(warnings)


def _parse(annotations: Mapping[str, object]) -> tuple[HeartbeatConfig, list[str]]:
    warnings = [_unknown_warning(key) for key in sorted(annotations) if _is_unknown(key)]
    numbers = {key: _integer(annotations, key) for key in _INTEGERS}

    def number(key: str, default: int) -> int:
        value = numbers[key]
        return default if value is None else value

    config = HeartbeatConfig(
        path=_path(annotations.get(PATH)),
        max_age=number(MAX_AGE, DEFAULTS.max_age),
        period=number(PERIOD, DEFAULTS.period),
        initial_delay=number(INITIAL_DELAY, DEFAULTS.initial_delay),
        failure_threshold=number(FAILURE_THRESHOLD, DEFAULTS.failure_threshold),
        timeout=number(TIMEOUT, DEFAULTS.timeout),
        containers=_containers(annotations.get(CONTAINERS)),
        startup_grace=numbers[STARTUP_GRACE],
        termination_grace=numbers[TERMINATION_GRACE],
        probe=_probe(annotations.get(PROBE)),
    )
    return config, warnings


def _is_unknown(key: object) -> bool:
    return isinstance(key, str) and key.startswith(PREFIX) and key not in KNOWN


def _unknown_warning(key: str) -> str:
    close = difflib.get_close_matches(key, sorted(KNOWN - {INJECTED}), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    return f"annotation {quote(key)} is not a heartbeat setting and is ignored{hint}"


def _integer(annotations: Mapping[str, object], key: str) -> int | None:
    value = annotations.get(key)
    if value is None:
        return None
    low, high = _INTEGERS[key]
    accepted = f"a whole number of seconds from {low} to {high}"
    if key == FAILURE_THRESHOLD:
        accepted = f"a whole number from {low} to {high}"
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6):
        raise AnnotationError(key, value, accepted)
    number = int(value)
    if not low <= number <= high:
        raise AnnotationError(key, value, accepted)
    return number


def _path(value: object) -> str | None:
    if value is None:
        return None
    accepted = (
        "an absolute file path of letters, digits, '.', '_', '-' and '/', "
        f"with no '.' or '..' segments, at most {_PATH_MAX} characters"
    )
    if not (isinstance(value, str) and len(value) <= _PATH_MAX and _PATH_RE.fullmatch(value)):
        raise AnnotationError(PATH, value, accepted)
    if any(part in {".", ".."} for part in value.split("/")):
        raise AnnotationError(PATH, value, accepted)
    return value


def _containers(value: object) -> tuple[str, ...] | None:
    if value is None:
        return None
    accepted = 'comma-separated container names, such as "worker" or "worker,uploader"'
    if not isinstance(value, str):
        raise AnnotationError(CONTAINERS, value, accepted)
    names = [name.strip() for name in value.split(",")]
    if not all(_LABEL_RE.fullmatch(name) for name in names):
        raise AnnotationError(CONTAINERS, value, accepted)
    return tuple(dict.fromkeys(names))  # drop repeats, keep order


def _probe(value: object) -> ProbeKind:
    if value is None or value == "shell":
        return "shell"
    if value == "python":
        return "python"
    raise AnnotationError(
        PROBE, value, '"shell" (needs /bin/sh) or "python" (needs python3 and this package)'
    )
