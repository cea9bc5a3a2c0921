"""App variants for the overhead measurements, built with webhook.app.create_app.

- ``webhook``: the app as served (real Metrics);
- ``nometrics``: the same app with a Metrics whose ``count`` does nothing, so
  the per-review prometheus work (counter, histogram) is gone;
- ``nofastapi``: the same app, but POST /mutate goes straight to the app's own
  /mutate endpoint (a raw ASGI callable) before FastAPI's middleware stack and
  router; everything else still goes through FastAPI. What the framework
  layers cost per review;
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


APPS = ("webhook", "nometrics", "nofastapi", "baseline")


def mutate_first(app: Any) -> Any:
    """Wrap a create_app() app: POST /mutate skips FastAPI, to the endpoint itself."""
    endpoint = next(
        route.endpoint for route in app.router.routes if getattr(route, "path", None) == "/mutate"
    )

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/mutate" and scope["method"] == "POST":
            await endpoint(scope, receive, send)
        else:
            await app(scope, receive, send)

    return asgi


def build(name: str, **create_app_kwargs: Any) -> Any:
    """The ASGI app ``name``; keyword arguments go to create_app (certificate, readiness)."""
    if name == "webhook":
        return create_app(**create_app_kwargs)
    if name == "nometrics":
        return create_app(**{**create_app_kwargs, "metrics": NoopMetrics()})
    if name == "nofastapi":
        return mutate_first(create_app(**create_app_kwargs))
    if name == "baseline":
        return baseline.app
    raise ValueError(f"unknown app {name!r}; choose from {', '.join(APPS)}")
