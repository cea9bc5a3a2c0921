"""App variants for the overhead measurements, built with webhook.app.create_app.

- ``webhook``: the app as served (real Metrics);
- ``nometrics``: the same app with a Metrics whose ``count`` does nothing, so
  the per-review prometheus work (counter, histogram) is gone;
- ``fieldsonly``: the app with a decision log that drops what it is given, so
  each decision's fields are built and nothing is queued, formatted or written;
- ``baseline``: bench/baseline.py's bare ASGI app (the floor).

Decision logging is switched off with ``--log-level warning`` (the per-decision
line is INFO), the same flag ``heartbeat-webhook serve`` takes.
"""

from __future__ import annotations

from typing import Any

from bench import baseline
from webhook.app import create_app
from webhook.metrics import Metrics


class NoopMetrics(Metrics):
    """Registers the same collectors, counts nothing."""

    def count(self, webhook: str, outcome: str, seconds: float) -> None:
        pass


def _discard(fields: dict[str, Any]) -> None:
    pass


APPS = ("webhook", "nometrics", "fieldsonly", "baseline")


def build(name: str, **create_app_kwargs: Any) -> Any:
    """The ASGI app ``name``; keyword arguments go to create_app (certificate, readiness)."""
    if name == "webhook":
        return create_app(**create_app_kwargs)
    if name == "nometrics":
        return create_app(**{**create_app_kwargs, "metrics": NoopMetrics()})
    if name == "fieldsonly":
        return create_app(**{**create_app_kwargs, "decision_log": _discard})
    if name == "baseline":
        return baseline.app
    raise ValueError(f"unknown app {name!r}; choose from {', '.join(APPS)}")
