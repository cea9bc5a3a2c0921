"""One admission call, body in and (status, body) out: decide, fail open, log, count.

Kept apart from the ASGI plumbing so the three error channels are visible in
one place:
1. a malformed review -> HTTP 400 (the apiserver's failurePolicy decides);
2. a policy rejection -> 200 with ``allowed: false`` (from the mutation rules);
3. a bug of ours -> 200, allowed without a patch, with a warning; logged with
   the uid and counted. A bug must never block someone's pod.
"""

from __future__ import annotations

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
            _log_internal_error(review)
            mutation = Mutation(warnings=[FAIL_OPEN_WARNING])
            outcome = "error"
            payload = _encode(response(review, mutation))
        elapsed = time.perf_counter() - started
        self.metrics.count(self.name, outcome, elapsed)
        if DECISIONS.isEnabledFor(logging.INFO):
            fields = _fields(review)  # one key at a time: update(**) builds a second dict
            fields["webhook"] = self.name
            fields["decision"] = outcome
            fields["containers"] = list(mutation.injected)
            fields["warnings"] = len(mutation.warnings)
            fields["duration_ms"] = round(elapsed * 1000, 3)
            if mutation.denial is not None:
                fields["reason"] = mutation.denial
            self.decision_log(fields)
        return 200, payload

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


def _fields(review: Review) -> dict[str, Any]:
    return {
        "uid": review.uid,
        "namespace": review.namespace,
        "name": review.pod_name,
        "operation": review.request.get("operation"),
        "dry_run": review.request.get("dryRun") is True,
    }


def _log_internal_error(review: Review) -> None:
    fields = {"decision": "error"}
    try:
        fields.update(_fields(review))
    finally:
        DECISIONS.exception("internal error; admitted unchanged", extra={"fields": fields})
