"""Prometheus metrics, one registry per app so tests and workers never share state.

Counting is plain integer arithmetic on the hot path; prometheus-client only
renders the numbers, at scrape time, through a custom collector. The bench
measured prometheus-client's own Counter/Histogram updates (locks, label
lookups, per-bucket work) at a visible share of each review's CPU.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from webhook.tls import CertReloader

# The apiserver's own webhook latency buckets start at 5 ms and 25 ms; finer
# buckets below them show whether we are far from that budget.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
OUTCOMES = ("injected", "unchanged", "allowed", "denied", "skipped", "error", "bad_request")
WEBHOOKS = ("mutate", "validate")  # /mutate injects pods; /validate checks pod templates


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        # Every label pair exists from the start, so dashboards see zeros, not gaps.
        self.requests = {(w, o): 0 for w in WEBHOOKS for o in OUTCOMES}
        self.buckets = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf only
        self.latency_sum = 0.0
        self.pods_injected = 0
        self.internal_errors = 0
        self.certificate: CertReloader | None = None
        self.registry.register(_Collector(self))

    def count(self, webhook: str, outcome: str, seconds: float) -> None:
        self.requests[webhook, outcome] += 1
        self.buckets[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds
        if outcome == "injected":
            self.pods_injected += 1
        elif outcome == "error":
            self.internal_errors += 1

    def watch_certificate(self, certificate: CertReloader) -> None:
        """Expose the serving certificate's expiry; each scrape also checks for rotation."""
        self.certificate = certificate


class _Collector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.metrics
        requests = CounterMetricFamily(
            "heartbeat_webhook_admission_requests",
            "Admission reviews answered, by webhook and outcome.",
            labels=["webhook", "outcome"],
        )
        for (webhook, outcome), value in m.requests.items():
            requests.add_metric([webhook, outcome], value)
        yield requests
        cumulative, buckets = 0, []
        for bound, value in zip((*LATENCY_BUCKETS, float("inf")), m.buckets, strict=True):
            cumulative += value
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily(
            "heartbeat_webhook_admission_duration_seconds",
            "Time to decide and encode one admission review.",
            buckets=buckets,
            sum_value=m.latency_sum,
        )
        yield CounterMetricFamily(
            "heartbeat_webhook_pods_injected",
            "Pods that were patched with the heartbeat probe or env.",
            value=m.pods_injected,
        )
        yield CounterMetricFamily(
            "heartbeat_webhook_internal_errors",
            "Reviews our own code failed on; each was allowed unchanged (fail open).",
            value=m.internal_errors,
        )
        if m.certificate is not None:
            m.certificate.maybe_reload()
            yield GaugeMetricFamily(
                "heartbeat_webhook_certificate_expiry_timestamp_seconds",
                "notAfter of the serving certificate now loaded, in epoch seconds.",
                value=m.certificate.not_after,
            )
            yield GaugeMetricFamily(
                "heartbeat_webhook_certificate_reloads",
                "Times a rotated serving certificate was loaded without a restart.",
                value=m.certificate.reloads,
            )
