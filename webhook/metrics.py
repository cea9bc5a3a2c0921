"""Prometheus metrics, one registry per app so tests and workers never share state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from webhook.tls import CertReloader

# The apiserver's own webhook latency buckets start at 5 ms and 25 ms; finer
# buckets below them show whether we are far from that budget.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
OUTCOMES = ("injected", "unchanged", "allowed", "denied", "skipped", "error", "bad_request")
WEBHOOKS = ("mutate", "validate")  # /mutate injects pods; /validate checks pod templates


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        self.requests = Counter(
            "heartbeat_webhook_admission_requests",
            "Admission reviews answered, by webhook and outcome.",
            ["webhook", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "heartbeat_webhook_admission_duration_seconds",
            "Time to decide and encode one admission review.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.pods_injected = Counter(
            "heartbeat_webhook_pods_injected",
            "Pods that were patched with the heartbeat probe or env.",
            registry=self.registry,
        )
        self.internal_errors = Counter(
            "heartbeat_webhook_internal_errors",
            "Reviews our own code failed on; each was allowed unchanged (fail open).",
            registry=self.registry,
        )
        # Pre-create every label so dashboards see zeros instead of gaps.
        self._by_outcome = {
            (webhook, outcome): self.requests.labels(webhook, outcome)
            for webhook in WEBHOOKS
            for outcome in OUTCOMES
        }

    def watch_certificate(self, certificate: CertReloader) -> None:
        """Expose the serving certificate's expiry; each scrape also checks for rotation."""

        def expiry() -> float:
            certificate.maybe_reload()
            return certificate.not_after

        Gauge(
            "heartbeat_webhook_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate now loaded, in epoch seconds.",
            registry=self.registry,
        ).set_function(expiry)
        Gauge(
            "heartbeat_webhook_certificate_reloads",
            "Times a rotated serving certificate was loaded without a restart.",
            registry=self.registry,
        ).set_function(lambda: certificate.reloads)

    def count(self, webhook: str, outcome: str, seconds: float) -> None:
        self._by_outcome[webhook, outcome].inc()
        self.latency.observe(seconds)
        if outcome == "injected":
            self.pods_injected.inc()
        elif outcome == "error":
            self.internal_errors.inc()
