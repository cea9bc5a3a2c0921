"""One admission call, body in and (status, body) out: decide, fail open, log, count.

Kept apart from the ASGI plumbing so the three error channels are visible in
one place:
1. a malformed review -> HTTP 400 (the apiserver's failurePolicy decides);
2. a policy rejection -> 200 with ``allowed: false`` (from the mutation rules);
3. a bug of ours -> 200, allowed without a patch, with a warning; logged with
   the uid and counted. A bug must never block someone's pod.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from webhook.logs import DECISIONS, DecisionLog, log_decision
from webhook.metrics import Metrics
from webhook.mutate import MalformedObject, Mutation
from webhook.review import BadReview, Review, decide, parse_review, response

Decide = Callable[[Review], Mutation]
FAIL_OPEN_WARNING = (
    "heartbeat-webhook hit an internal error and admitted this pod without the "
    "heartbeat probe; see the webhook's log for this request's uid"
)


def error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


class AdmissionHandler:
    def __init__(
        self,
        metrics: Metrics,
        decide_fn: Decide = decide,
        name: str = "mutate",
        decision_log: DecisionLog = log_decision,
    ) -> None:
        self.metrics = metrics
        self.decide = decide_fn
        self.name = name  # the metrics' webhook label
        self.decision_log = decision_log

    def __call__(self, body: bytes) -> tuple[int, bytes]:
        started = time.perf_counter()
        try:
            review = parse_review(body)
        except BadReview as error:
            self.metrics.count(self.name, "bad_request", time.perf_counter() - started)
            return 400, error_body(400, str(error))
        try:
            mutation = self.decide(review)
            outcome = self._outcome(review, mutation)
            payload = _encode(response(review, mutation))
        except MalformedObject as error:
            self.metrics.count(self.name, "bad_request", time.perf_counter() - started)
            return 400, error_body(400, str(error))
        except Exception:
            mutation = Mutation(warnings=[FAIL_OPEN_WARNING])
            outcome = "error"
            self._log_internal_error(review, mutation, time.perf_counter() - started)
            payload = _encode(response(review, mutation))
        elapsed = time.perf_counter() - started
        self.metrics.count(self.name, outcome, elapsed)
        if DECISIONS.isEnabledFor(logging.INFO):
            self.decision_log(self._decision(review, mutation, outcome, elapsed))
        return 200, payload

    def _decision(
        self, review: Review, mutation: Mutation, outcome: str, elapsed: float
    ) -> dict[str, Any]:
        """The fields of the decision line, and of the error line for an internal error."""
        request = review.request
        fields = {
            "uid": review.uid,
            "namespace": review.namespace,
            "name": review.pod_name,
            "operation": request.get("operation"),
            "dry_run": request.get("dryRun") is True,
            "webhook": self.name,
            "decision": outcome,
            "containers": list(mutation.injected),
            "warnings": len(mutation.warnings),
            "duration_ms": round(elapsed * 1000, 3),
        }
        if mutation.denial is not None:
            fields["reason"] = mutation.denial
        return fields

    def _log_internal_error(self, review: Review, mutation: Mutation, elapsed: float) -> None:
        fields: dict[str, Any] = {"decision": "error"}
        # The traceback is logged even if the fields cannot be read, and reading
        # them must not raise a second error that would reach the caller.
        with contextlib.suppress(Exception):
            fields = self._decision(review, mutation, "error", elapsed)
        DECISIONS.exception("internal error; admitted unchanged", extra={"fields": fields})

    def _outcome(self, review: Review, mutation: Mutation) -> str:
        if mutation.denial is not None:
            return "denied"
        if mutation.patch:
            return "injected"
        if self.name == "validate":
            return "allowed"
        return "unchanged" if review.is_pod_create else "skipped"


def _encode(document: dict[str, Any]) -> bytes:
    return orjson.dumps(document)
