"""The HTTP layer, in process through httpx.ASGITransport: exact JSON bodies, no sockets."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import jsonpatch
import pytest
from fastapi import FastAPI

from webhook.app import AdmissionEndpoint, Readiness, create_app
from webhook.handler import FAIL_OPEN_WARNING, AdmissionHandler
from webhook.heartbeat import ENV_VAR
from webhook.logs import DECISIONS, BufferedStreamHandler, JsonFormatter
from webhook.metrics import Metrics
from webhook.mutate import Mutation
from webhook.review import Review

V1 = "admission.k8s.io/v1"
V1BETA1 = "admission.k8s.io/v1beta1"
JSON = {"content-type": "application/json"}
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
ENABLED = {"heartbeat/enabled": "true"}

# ---------------------------------------------------------------- helpers


def call(
    app: Any,
    method: str,
    path: str,
    content: bytes | AsyncIterator[bytes] | Callable[[], AsyncIterator[bytes]] | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """One request through the ASGI app, no sockets; a callable content is a streamed body."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as client:
            body = content() if callable(content) else content
            return await client.request(method, path, content=body, headers=headers)

    return asyncio.run(go())


def post(app: Any, document: object, api_headers: dict[str, str] = JSON) -> httpx.Response:
    return call(app, "POST", "/mutate", json.dumps(document).encode(), api_headers)


def pod(
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **metadata: Any,
) -> dict[str, Any]:
    meta = {key: value for key, value in {"name": "worker-0", **metadata}.items() if value}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {**meta, "annotations": annotations or {}},
        "spec": {
            "containers": [{"name": "worker", "image": "busybox"}]
            if containers is None
            else containers
        },
    }


def review(
    obj: dict[str, Any] | None,
    *,
    uid: str = "3f1c-uid",
    api_version: str = V1,
    operation: str = "CREATE",
    kind: dict[str, str] = POD_KIND,
    **extra: Any,
) -> dict[str, Any]:
    request = {
        "uid": uid,
        "kind": kind,
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "team",
        "operation": operation,
        "object": obj,
        **extra,
    }
    return {"apiVersion": api_version, "kind": "AdmissionReview", "request": request}


def allowed(uid: str = "3f1c-uid", api_version: str = V1) -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": True},
    }


def patched(answer: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    """Apply the response's patch to ``obj`` exactly as the apiserver would."""
    assert answer["response"]["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(answer["response"]["patch"], validate=True))
    result: dict[str, Any] = jsonpatch.JsonPatch(ops).apply(obj)
    return result


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry.get("value") for entry in container.get("env", [])}


def inline_app(handler: AdmissionHandler, max_body: int | None = None) -> FastAPI:
    app = FastAPI()
    endpoint = AdmissionEndpoint(handler, *(() if max_body is None else (max_body,)))
    app.add_route("/mutate", endpoint, methods=["POST"])
    return app


def metric(app: FastAPI, name: str) -> float:
    """A sample's value from the /metrics text, e.g. 'x_total{outcome="injected"}'."""
    text = call(app, "GET", "/metrics").text
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def metric_of(metrics: Metrics, sample: str) -> float | None:
    name, _, labels = sample.partition("{")
    pairs = dict(re.findall(r'(\w+)="([^"]*)"', labels))
    return metrics.registry.get_sample_value(name, pairs)


def errors_total(metrics: Metrics) -> float | None:
    return metric_of(metrics, "heartbeat_webhook_internal_errors_total")


@pytest.fixture
def app() -> FastAPI:
    return create_app(Metrics(), Readiness())


# ---------------------------------------------------------------- injection


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_annotated_pod_create_is_patched(app: FastAPI, api_version: str) -> None:
    obj = pod(ENABLED, containers=[{"name": "worker", "image": "busybox"}])
    reply = post(app, review(obj, api_version=api_version))

    assert reply.status_code == 200
    assert reply.headers["content-type"] == "application/json"
    answer = reply.json()
    assert set(answer["response"]) == {"uid", "allowed", "patchType", "patch"}
    assert answer["apiVersion"] == api_version
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == "3f1c-uid"
    assert answer["response"]["allowed"] is True

    result = patched(answer, obj)
    worker = result["spec"]["containers"][0]
    assert worker["livenessProbe"]["exec"]["command"][0] == "/bin/sh"
    assert "/tmp/heartbeat" in worker["livenessProbe"]["exec"]["command"]
    assert worker["livenessProbe"]["periodSeconds"] == 30
    assert env_of(worker) == {ENV_VAR: "/tmp/heartbeat"}
    marker = json.loads(result["metadata"]["annotations"]["heartbeat/injected"])
    assert marker["containers"] == ["worker"]
    # Nothing else of the pod changed.
    worker.pop("livenessProbe")
    worker.pop("env")
    result["metadata"]["annotations"].pop("heartbeat/injected")
    assert result == obj


def test_probe_lands_on_the_chosen_container(app: FastAPI) -> None:
    sidecar = {"name": "proxy", "image": "envoy"}
    obj = pod(
        {**ENABLED, "heartbeat/containers": "worker"},
        containers=[sidecar, {"name": "worker", "image": "busybox", "env": [{"name": "A"}]}],
    )
    result = patched(post(app, review(obj)).json(), obj)
    proxy, worker = result["spec"]["containers"]
    assert proxy == sidecar
    assert "livenessProbe" in worker
    assert env_of(worker) == {"A": None, ENV_VAR: "/tmp/heartbeat"}


def test_pod_reviewed_twice_gets_no_second_patch(app: FastAPI) -> None:
    obj = pod(ENABLED)
    once = patched(post(app, review(obj)).json(), obj)
    assert post(app, review(once)).json() == allowed()


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "not-dry-run"])
def test_dry_run_is_handled_like_any_other(app: FastAPI, dry_run: bool) -> None:
    obj = pod(ENABLED)
    answer = post(app, review(obj, dryRun=dry_run)).json()
    assert "livenessProbe" in patched(answer, obj)["spec"]["containers"][0]


def test_keys_with_json_pointer_characters_apply(app: FastAPI) -> None:
    obj = pod({**ENABLED, "a/b~c": "x"})
    result = patched(post(app, review(obj)).json(), obj)
    assert result["metadata"]["annotations"]["a/b~c"] == "x"
    assert "heartbeat/injected" in result["metadata"]["annotations"]


# ---------------------------------------------------------------- allowed, no patch


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(review(pod()), id="no-annotation"),
        pytest.param(review(pod({"heartbeat/enabled": "false"})), id="enabled-false"),
        pytest.param(review(pod({"other": "true"})), id="unrelated-annotations"),
        pytest.param(
            review(
                {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"annotations": ENABLED},
                },
                kind={"group": "apps", "version": "v1", "kind": "Deployment"},
            ),
            id="deployment",
        ),
        pytest.param(review(pod(ENABLED), operation="UPDATE", oldObject=pod(ENABLED)), id="update"),
        pytest.param(review(None, operation="DELETE", oldObject=pod(ENABLED)), id="delete"),
        pytest.param(review(pod(ENABLED), subResource="ephemeralcontainers"), id="subresource"),
        pytest.param(review(pod(ENABLED), operation="CONNECT"), id="connect"),
        pytest.param(review(pod(ENABLED, containers=[])), id="no-containers"),
        pytest.param(review(None), id="create-without-object"),
    ],
)
def test_allowed_without_patch(app: FastAPI, document: dict[str, Any]) -> None:
    reply = post(app, document)
    assert reply.status_code == 200
    assert reply.json() == allowed()


def test_allowed_without_patch_echoes_v1beta1(app: FastAPI) -> None:
    reply = post(app, review(pod(), api_version=V1BETA1, uid="beta"))
    assert reply.json() == allowed("beta", V1BETA1)


# ---------------------------------------------------------------- denial and warnings


def test_invalid_annotation_is_denied(app: FastAPI) -> None:
    reply = post(app, review(pod({"heartbeat/enabled": "maybe"})))
    assert reply.status_code == 200
    answer = reply.json()
    message = answer["response"]["status"]["message"]
    assert answer == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {
            "uid": "3f1c-uid",
            "allowed": False,
            "status": {"code": 400, "message": message},
        },
    }
    for part in ("heartbeat/enabled", '"maybe"', '"true"', '"false"'):
        assert part in message


@pytest.mark.parametrize(
    ("annotations", "parts"),
    [
        pytest.param(
            {"heartbeat/period": "0"}, ["heartbeat/period", '"0"', "1 to 3600"], id="period"
        ),
        pytest.param({"heartbeat/path": "tmp/x"}, ["heartbeat/path", '"tmp/x"'], id="path"),
        pytest.param(
            {"heartbeat/containers": "ghost"}, ["heartbeat/containers", '"ghost"'], id="container"
        ),
    ],
)
def test_denial_names_the_annotation_and_value(
    app: FastAPI, annotations: dict[str, str], parts: list[str]
) -> None:
    answer = post(app, review(pod({**ENABLED, **annotations}))).json()
    assert answer["response"]["allowed"] is False
    assert answer["response"]["status"]["code"] == 400
    for part in parts:
        assert part in answer["response"]["status"]["message"]


def test_unknown_key_warns_and_still_injects(app: FastAPI) -> None:
    obj = pod({**ENABLED, "heartbeat/perod": "10"})
    answer = post(app, review(obj)).json()
    warnings = answer["response"]["warnings"]
    assert len(warnings) == 1
    assert "heartbeat/perod" in warnings[0]
    assert "heartbeat/period" in warnings[0]  # the suggestion
    assert "livenessProbe" in patched(answer, obj)["spec"]["containers"][0]


def test_own_liveness_probe_is_kept_with_a_warning(app: FastAPI) -> None:
    own = {"httpGet": {"path": "/health", "port": 8080}, "periodSeconds": 7}
    obj = pod(ENABLED, containers=[{"name": "worker", "image": "busybox", "livenessProbe": own}])
    answer = post(app, review(obj)).json()
    (warning,) = answer["response"]["warnings"]
    assert '"worker"' in warning
    assert "livenessProbe" in warning
    worker = patched(answer, obj)["spec"]["containers"][0]
    assert worker["livenessProbe"] == own
    assert env_of(worker) == {ENV_VAR: "/tmp/heartbeat"}


# ---------------------------------------------------------------- malformed calls


def body_for(request: object) -> bytes:
    return json.dumps({"apiVersion": V1, "kind": "AdmissionReview", "request": request}).encode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "request body is empty; send an AdmissionReview", id="empty"),
        pytest.param(
            b"not json",
            "request body is not valid JSON: "
            "invalid literal, expected 'null': line 1 column 1 (char 0)",
            id="not-json",
        ),
        pytest.param(
            b"[]", "request body must be a JSON object (an AdmissionReview)", id="json-array"
        ),
        pytest.param(
            b'{"kind": "AdmissionReview", "request": {"uid": "u"}}',
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got null",
            id="no-apiVersion",
        ),
        pytest.param(
            b'{"apiVersion": "v1", "kind": "AdmissionReview", "request": {"uid": "u"}}',
            'apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got "v1"',
            id="wrong-apiVersion",
        ),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "Pod", "request": {"uid": "u"}}',
            'kind must be AdmissionReview, got "Pod"',
            id="wrong-kind",
        ),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}',
            "AdmissionReview has no request object",
            id="no-request",
        ),
        pytest.param(body_for("u"), "AdmissionReview has no request object", id="request-string"),
        pytest.param(
            body_for({"operation": "CREATE"}),
            "request.uid must be a non-empty string",
            id="no-uid",
        ),
        pytest.param(body_for({"uid": 42}), "request.uid must be a non-empty string", id="uid-int"),
        pytest.param(
            body_for({"uid": ""}), "request.uid must be a non-empty string", id="uid-empty"
        ),
        pytest.param(
            body_for({"uid": "u", "object": "pod"}),
            "request.object must be an object",
            id="object-string",
        ),
        pytest.param(
            body_for({"uid": "u", "kind": ["Pod"]}),
            "request.kind must be an object",
            id="kind-array",
        ),
        pytest.param(b"[" * 100_000, "request body nests JSON too deeply", id="deep-array"),
        pytest.param(b'{"a":' * 100_000, "request body nests JSON too deeply", id="deep-object"),
        pytest.param(
            b'{"apiVersion": "admission.k8s.io/v1", "kind": "\xc3\x28"}',
            "request body is not UTF-8 encoded JSON",
            id="invalid-utf8",
        ),
        pytest.param(b"\xff\xff\xff\xff", "request body is not UTF-8 encoded JSON", id="binary"),
    ],
)
def test_malformed_review_is_400(app: FastAPI, content: bytes, message: str) -> None:
    reply = call(app, "POST", "/mutate", content, JSON)
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    assert reply.json() == {"code": 400, "message": message}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        pytest.param(
            {"metadata": {"annotations": ENABLED}, "spec": {"containers": {"name": "w"}}},
            "object.spec.containers must be a list of objects with a name",
            id="containers-object",
        ),
        pytest.param(
            {"metadata": {"annotations": ENABLED}, "spec": {"containers": [{"image": "x"}]}},
            "object.spec.containers must be a list of objects with a name",
            id="container-without-name",
        ),
        pytest.param(
            {"metadata": {"annotations": ENABLED}, "spec": []},
            "object.spec must be an object",
            id="spec-array",
        ),
        pytest.param(
            {"metadata": {"annotations": ["heartbeat/enabled"]}},
            "object.metadata.annotations must be an object",
            id="annotations-array",
        ),
    ],
)
def test_malformed_pod_is_400(app: FastAPI, obj: dict[str, Any], message: str) -> None:
    reply = post(app, review(obj))
    assert reply.status_code == 400
    assert reply.json() == {"code": 400, "message": message}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({"content-type": "text/plain"}, id="text-plain"),
        pytest.param({"content-type": "application/jsonx"}, id="jsonx"),
        pytest.param({"content-type": "application/yaml"}, id="yaml"),
        pytest.param({}, id="missing"),
    ],
)
def test_wrong_content_type_is_415(app: FastAPI, headers: dict[str, str]) -> None:
    reply = call(app, "POST", "/mutate", json.dumps(review(pod())).encode(), headers)
    assert reply.status_code == 415
    assert reply.json() == {"code": 415, "message": "Content-Type must be application/json"}


@pytest.mark.parametrize(
    "content_type",
    ["application/json; charset=utf-8", "Application/JSON", "application/json ;charset=UTF-8"],
)
def test_content_type_parameters_are_accepted(app: FastAPI, content_type: str) -> None:
    reply = post(app, review(pod()), {"content-type": content_type})
    assert reply.status_code == 200
    assert reply.json() == allowed()


def test_get_mutate_is_405_not_500(app: FastAPI) -> None:
    reply = call(app, "GET", "/mutate")
    assert reply.status_code == 405
    assert reply.headers["allow"] == "POST"


# ---------------------------------------------------------------- body cap


CAP = 1024
TOO_LARGE = {"code": 413, "message": f"request body is larger than {CAP} bytes"}


@pytest.fixture
def capped() -> FastAPI:
    return inline_app(AdmissionHandler(Metrics()), max_body=CAP)


def padded(size: int) -> bytes:
    """A valid review of exactly ``size`` bytes."""
    base = json.dumps(review(pod(), pad="")).encode()
    body = json.dumps(review(pod(), pad="x" * (size - len(base)))).encode()
    assert len(body) == size
    return body


def test_body_at_the_cap_is_read(capped: FastAPI) -> None:
    reply = call(capped, "POST", "/mutate", padded(CAP), JSON)
    assert reply.status_code == 200
    assert reply.json() == allowed()


def test_declared_length_over_the_cap_is_413(capped: FastAPI) -> None:
    reply = call(capped, "POST", "/mutate", padded(CAP + 1), JSON)
    assert reply.status_code == 413
    assert reply.json() == TOO_LARGE


def test_streamed_body_over_the_cap_is_413(capped: FastAPI) -> None:
    sent: list[int] = []

    async def endless() -> AsyncIterator[bytes]:
        yield b'{"apiVersion": "admission.k8s.io/v1", "pad": "'
        for _ in range(1000):  # far beyond the cap; the endpoint must stop reading early
            sent.append(1)
            yield b"x" * 100

    reply = call(capped, "POST", "/mutate", endless, JSON)
    assert "content-length" not in reply.request.headers
    assert reply.request.headers["transfer-encoding"] == "chunked"
    assert reply.status_code == 413
    assert reply.json() == TOO_LARGE
    assert len(sent) < 20


def test_streamed_body_under_the_cap_is_read(capped: FastAPI) -> None:
    body = json.dumps(review(pod())).encode()

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    reply = call(capped, "POST", "/mutate", chunks, JSON)
    assert reply.status_code == 200
    assert reply.json() == allowed()


def test_default_cap_is_above_etcd_object_limit() -> None:
    assert AdmissionEndpoint(AdmissionHandler(Metrics())).max_body >= 3 * 1024 * 1024


# ---------------------------------------------------------------- fail open


def boom(review: Review) -> Mutation:
    raise RuntimeError("secret internal detail")


def test_internal_error_fails_open(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    app = inline_app(AdmissionHandler(metrics, decide_fn=boom))
    caplog.set_level(logging.INFO, logger="webhook.admission")

    reply = post(app, review(pod(ENABLED), uid="fail-uid"))

    assert reply.status_code == 200
    assert reply.json() == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {"uid": "fail-uid", "allowed": True, "warnings": [FAIL_OPEN_WARNING]},
    }
    assert "Traceback" not in reply.text
    assert "secret internal detail" not in reply.text
    assert errors_total(metrics) == 1
    error_outcome = 'heartbeat_webhook_admission_requests_total{outcome="error",webhook="mutate"}'
    assert metric_of(metrics, error_outcome) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert errors[0].fields["uid"] == "fail-uid"  # type: ignore[attr-defined]
    assert errors[0].fields["decision"] == "error"  # type: ignore[attr-defined]
    assert errors[0].exc_info is not None
    assert "secret internal detail" in str(errors[0].exc_info[1])  # boom's own error
    assert "fail-uid" in JsonFormatter().format(errors[0])


def test_unencodable_mutation_fails_open_not_500() -> None:
    """A bug that yields a patch json cannot encode must still admit the pod, not 500.

    Known bug: AdmissionHandler.__call__ encodes the response outside its
    fail-open try block (webhook/handler.py), so this surfaces as HTTP 500.
    """

    def bad_patch(review: Review) -> Mutation:
        return Mutation(patch=[{"op": "add", "path": "/x", "value": {1, 2}}])

    metrics = Metrics()
    app = inline_app(AdmissionHandler(metrics, decide_fn=bad_patch))

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://webhook") as client:
            return await client.post("/mutate", json=review(pod(ENABLED), uid="enc"))

    reply = asyncio.run(go())
    assert reply.status_code == 200
    assert reply.json() == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {"uid": "enc", "allowed": True, "warnings": [FAIL_OPEN_WARNING]},
    }
    assert errors_total(metrics) == 1


# ---------------------------------------------------------------- health and metrics


def test_healthz(app: FastAPI) -> None:
    reply = call(app, "GET", "/healthz")
    assert (reply.status_code, reply.json()) == (200, {"status": "ok"})


def test_readyz_follows_readiness() -> None:
    readiness = Readiness()
    app = create_app(Metrics(), readiness)
    reply = call(app, "GET", "/readyz")
    assert (reply.status_code, reply.json()) == (200, {"status": "ready"})
    readiness.ready = False
    reply = call(app, "GET", "/readyz")
    assert (reply.status_code, reply.json()) == (503, {"status": "draining"})


def test_metrics_count_outcomes(app: FastAPI) -> None:
    injected = 'heartbeat_webhook_admission_requests_total{outcome="injected",webhook="mutate"}'
    assert metric(app, injected) == 0
    assert metric(app, "heartbeat_webhook_pods_injected_total") == 0

    post(app, review(pod(ENABLED)))
    post(app, review(pod()))
    post(app, review(pod({"heartbeat/enabled": "maybe"})))
    post(app, review(pod(ENABLED), operation="UPDATE"))
    call(app, "POST", "/mutate", b"{", JSON)

    reply = call(app, "GET", "/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain; version=")
    assert "# TYPE heartbeat_webhook_admission_duration_seconds histogram" in reply.text
    assert metric(app, injected) == 1
    assert metric(app, "heartbeat_webhook_pods_injected_total") == 1
    for outcome in ("unchanged", "denied", "skipped", "bad_request"):
        assert (
            metric(
                app,
                f'heartbeat_webhook_admission_requests_total{{outcome="{outcome}",webhook="mutate"}}',
            )
            == 1
        )
    assert (
        metric(app, 'heartbeat_webhook_admission_requests_total{outcome="error",webhook="mutate"}')
        == 0
    )
    assert metric(app, "heartbeat_webhook_internal_errors_total") == 0
    assert metric(app, "heartbeat_webhook_admission_duration_seconds_count") == 5
    assert metric(app, 'heartbeat_webhook_admission_duration_seconds_bucket{le="+Inf"}') == 5
    assert metric(app, 'heartbeat_webhook_admission_duration_seconds_bucket{le="0.005"}') >= 0


def test_apps_do_not_share_metrics() -> None:
    first, second = create_app(), create_app()
    post(first, review(pod(ENABLED)))
    assert metric(first, "heartbeat_webhook_pods_injected_total") == 1
    assert metric(second, "heartbeat_webhook_pods_injected_total") == 0


# ---------------------------------------------------------------- decision log


def decisions(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [r.fields for r in caplog.records if r.name == "webhook.admission"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        pytest.param(
            review(pod(ENABLED, name="web-1"), uid="a"),
            {"uid": "a", "name": "web-1", "decision": "injected", "containers": ["worker"]},
            id="injected",
        ),
        pytest.param(
            review(pod(ENABLED, name=None, generateName="job-x-"), uid="b"),
            {"uid": "b", "name": "job-x-", "decision": "injected", "containers": ["worker"]},
            id="generateName",
        ),
        pytest.param(
            review(pod(name="plain"), uid="c"),
            {"uid": "c", "name": "plain", "decision": "unchanged", "containers": []},
            id="unchanged",
        ),
        pytest.param(
            review(pod({"heartbeat/enabled": "maybe"}), uid="d"),
            {"uid": "d", "name": "worker-0", "decision": "denied", "containers": []},
            id="denied",
        ),
        pytest.param(
            review(pod(ENABLED), uid="e", operation="UPDATE"),
            {"uid": "e", "name": "worker-0", "decision": "skipped", "containers": []},
            id="skipped",
        ),
    ],
)
def test_one_structured_log_line_per_decision(
    app: FastAPI,
    caplog: pytest.LogCaptureFixture,
    document: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    caplog.set_level(logging.INFO, logger="webhook.admission")
    post(app, document)
    (fields,) = decisions(caplog)
    assert fields["namespace"] == "team"
    assert {key: fields[key] for key in expected} == expected
    assert isinstance(fields["duration_ms"], float)
    assert 0 <= fields["duration_ms"] < 1000
    assert ("reason" in fields) is (expected["decision"] == "denied")


def test_bad_request_is_not_a_decision(app: FastAPI, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="webhook.admission")
    call(app, "POST", "/mutate", b"{", JSON)
    assert decisions(caplog) == []


def test_json_formatter_writes_one_line() -> None:
    fields = {
        "uid": "u-1",
        "namespace": "team",
        "name": "w\nforged",
        "decision": "injected",
        "containers": ["worker"],
        "duration_ms": 0.25,
    }
    record = logging.LogRecord(
        "webhook.admission", logging.INFO, __file__, 1, "admission", (), None
    )
    record.fields = fields
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed.pop("ts") == pytest.approx(record.created, abs=0.001)
    assert parsed == {"level": "info", "logger": "webhook.admission", "msg": "admission", **fields}


@pytest.fixture
def buffered() -> Iterator[tuple[BufferedStreamHandler, io.BytesIO]]:
    handler = BufferedStreamHandler(interval=3600)  # the test flushes, not the timer
    stream = io.BytesIO()
    handler.setStream(stream).close()  # type: ignore[union-attr]  # the dup of stderr
    yield handler, stream
    handler.close()


def test_write_decision_writes_what_the_logging_path_writes(
    buffered: tuple[BufferedStreamHandler, io.BytesIO],
) -> None:
    """serve's direct decision lines must not drift from JsonFormatter's."""
    handler, stream = buffered
    fields = {"uid": "u-1", "name": "w\nforged", "containers": ["worker"], "duration_ms": 0.25}
    record = logging.LogRecord(
        "webhook.admission", logging.INFO, __file__, 1, "admission", (), None
    )
    record.fields = fields
    via_logging = json.loads(JsonFormatter().format(record))

    handler.write_decision(dict(fields))
    handler.flush()
    (line,) = stream.getvalue().splitlines()
    direct = json.loads(line)
    assert direct.pop("ts") == pytest.approx(via_logging.pop("ts"), abs=1)
    assert direct == via_logging


def test_served_app_logs_decisions_through_the_direct_writer(
    buffered: tuple[BufferedStreamHandler, io.BytesIO],
) -> None:
    handler, stream = buffered
    app = create_app(Metrics(), Readiness(), decision_log=handler.write_decision)
    previous = DECISIONS.level
    try:
        DECISIONS.setLevel(logging.INFO)
        post(app, review(pod(ENABLED, name="web-1"), uid="direct-1"))
        DECISIONS.setLevel(logging.WARNING)  # --log-level warning: no decision lines
        post(app, review(pod(ENABLED, name="web-2"), uid="direct-2"))
    finally:
        DECISIONS.setLevel(previous)
    handler.flush()
    (line,) = stream.getvalue().splitlines()
    logged = json.loads(line)
    assert (logged["uid"], logged["name"], logged["decision"]) == ("direct-1", "web-1", "injected")
    assert logged["containers"] == ["worker"]


def test_queued_decisions_keep_their_place_before_later_lines(
    buffered: tuple[BufferedStreamHandler, io.BytesIO],
) -> None:
    handler, stream = buffered
    handler.setFormatter(JsonFormatter())
    handler.write_decision({"uid": "first"})
    handler.handle(logging.makeLogRecord({"name": "webhook.tls", "msg": "later", "levelno": 30}))
    handler.write_decision({"uid": "second"})
    assert stream.getvalue().count(b"\n") == 2  # the warning was flushed, with what came before
    handler.flush()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line.get("uid", line["msg"]) for line in lines] == ["first", "later", "second"]


def test_decisions_are_written_a_batch_at_a_time(
    buffered: tuple[BufferedStreamHandler, io.BytesIO],
) -> None:
    handler, stream = buffered
    handler.batch = 3
    for uid in "ab":
        handler.write_decision({"uid": uid})
    assert stream.getvalue() == b""
    handler.write_decision({"uid": "c"})  # no handler.flush(): the batch is full
    assert [json.loads(line)["uid"] for line in stream.getvalue().splitlines()] == ["a", "b", "c"]


def test_json_formatter_keeps_tracebacks_in_one_line() -> None:
    try:
        raise ValueError("inner")
    except ValueError:
        import sys

        record = logging.LogRecord(
            "webhook.admission", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: inner" in json.loads(line)["exc"]
