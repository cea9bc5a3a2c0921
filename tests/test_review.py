"""webhook.review: parse_review's checks and the shape of response(). Pure, no HTTP."""

from __future__ import annotations

import base64
import json
from typing import Any

import jsonpatch
import pytest

from webhook.mutate import Mutation
from webhook.review import BadReview, Review, decide, parse_review, response

V1 = "admission.k8s.io/v1"
V1BETA1 = "admission.k8s.io/v1beta1"
POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}


def encode(document: object) -> bytes:
    return json.dumps(document).encode()


def review_doc(request: object = None, **top: object) -> dict[str, Any]:
    document: dict[str, Any] = {"apiVersion": V1, "kind": "AdmissionReview"}
    document["request"] = {"uid": "u-1"} if request is None else request
    document.update(top)
    return document


def pod(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "w", "annotations": annotations or {}},
        "spec": {"containers": [{"name": "worker", "image": "busybox"}]},
    }


# ---------------------------------------------------------------- parse_review


@pytest.mark.parametrize(
    ("body", "message"),
    [
        pytest.param(b"", "request body is not valid JSON", id="empty"),
        pytest.param(b"{not json", "request body is not valid JSON", id="not-json"),
        pytest.param(b"[" * 100_000, "request body nests JSON too deeply", id="deep-nesting"),
        pytest.param(
            b'{"apiVersion": "\xff\xfe"}', "request body is not UTF-8 encoded JSON", id="bad-utf8"
        ),
        pytest.param(
            encode([review_doc()]),
            "request body must be a JSON object (an AdmissionReview)",
            id="array",
        ),
        pytest.param(
            b'"AdmissionReview"',
            "request body must be a JSON object (an AdmissionReview)",
            id="string",
        ),
        pytest.param(
            encode({"kind": "AdmissionReview", "request": {"uid": "u"}}),
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got null",
            id="no-apiVersion",
        ),
        pytest.param(
            encode(review_doc(apiVersion="admission.k8s.io/v2")),
            "apiVersion must be admission.k8s.io/v1 or admission.k8s.io/v1beta1, got "
            '"admission.k8s.io/v2"',
            id="wrong-apiVersion",
        ),
        pytest.param(
            encode(review_doc(kind="AdmissionRequest")),
            'kind must be AdmissionReview, got "AdmissionRequest"',
            id="wrong-kind",
        ),
        pytest.param(
            encode({"apiVersion": V1, "kind": "AdmissionReview"}),
            "AdmissionReview has no request object",
            id="no-request",
        ),
        pytest.param(
            encode(review_doc(request=["uid"])),
            "AdmissionReview has no request object",
            id="request-array",
        ),
        pytest.param(
            encode(review_doc(request={"operation": "CREATE"})),
            "request.uid must be a non-empty string",
            id="no-uid",
        ),
        pytest.param(
            encode(review_doc(request={"uid": 7})),
            "request.uid must be a non-empty string",
            id="uid-number",
        ),
        pytest.param(
            encode(review_doc(request={"uid": ""})),
            "request.uid must be a non-empty string",
            id="uid-empty",
        ),
        pytest.param(
            encode(review_doc(request={"uid": "u", "kind": "Pod"})),
            "request.kind must be an object",
            id="kind-string",
        ),
        pytest.param(
            encode(review_doc(request={"uid": "u", "object": [pod()]})),
            "request.object must be an object",
            id="object-array",
        ),
        pytest.param(
            encode(review_doc(request={"uid": "u", "oldObject": "pod"})),
            "request.oldObject must be an object",
            id="oldObject-string",
        ),
        pytest.param(
            encode(review_doc(request={"uid": "u", "operation": 1})),
            "request.operation must be a string",
            id="operation-number",
        ),
    ],
)
def test_parse_review_rejects(body: bytes, message: str) -> None:
    with pytest.raises(BadReview) as caught:
        parse_review(body)
    assert str(caught.value).startswith(message)


def test_parse_review_caps_the_echoed_apiversion() -> None:
    with pytest.raises(BadReview) as caught:
        parse_review(encode(review_doc(apiVersion="x" * 10_000)))
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_parse_review_accepts(api_version: str) -> None:
    request = {"uid": "u-1", "kind": POD_KIND, "operation": "CREATE", "object": pod()}
    review = parse_review(encode(review_doc(request=request, apiVersion=api_version)))
    assert review == Review(api_version, "u-1", request)
    assert review.is_pod_create


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param({"operation": "CREATE", "kind": POD_KIND}, True, id="pod-create"),
        pytest.param({"operation": "UPDATE", "kind": POD_KIND}, False, id="pod-update"),
        pytest.param({"operation": "DELETE", "kind": POD_KIND}, False, id="pod-delete"),
        pytest.param(
            {"operation": "CREATE", "kind": POD_KIND, "subResource": "ephemeralcontainers"},
            False,
            id="subresource",
        ),
        pytest.param(
            {"operation": "CREATE", "kind": {"group": "apps", "version": "v1", "kind": "Pod"}},
            False,
            id="other-group",
        ),
        pytest.param(
            {"operation": "CREATE", "kind": {"group": "apps", "kind": "Deployment"}},
            False,
            id="deployment",
        ),
        pytest.param({"operation": "CREATE"}, False, id="no-kind"),
    ],
)
def test_is_pod_create(request_: dict[str, Any], expected: bool) -> None:
    assert Review(V1, "u", {"uid": "u", **request_}).is_pod_create is expected


@pytest.mark.parametrize(
    ("request_", "expected"),
    [
        pytest.param({"object": {"metadata": {"name": "a"}}}, "a", id="name"),
        pytest.param({"object": {"metadata": {"generateName": "job-"}}}, "job-", id="generateName"),
        pytest.param({"name": "old", "object": None}, "old", id="request-name"),
        pytest.param({}, "", id="none"),
    ],
)
def test_pod_name(request_: dict[str, Any], expected: str) -> None:
    assert Review(V1, "u", request_).pod_name == expected


def test_namespace() -> None:
    assert Review(V1, "u", {"namespace": "team"}).namespace == "team"
    assert Review(V1, "u", {"namespace": 3}).namespace == ""


# ---------------------------------------------------------------- decide


def test_decide_leaves_everything_but_pod_creates_alone() -> None:
    annotated = pod({"heartbeat/enabled": "true"})
    update = Review(V1, "u", {"operation": "UPDATE", "kind": POD_KIND, "object": annotated})
    assert decide(update) == Mutation()
    create = Review(V1, "u", {"operation": "CREATE", "kind": POD_KIND, "object": annotated})
    assert decide(create).patch


# ---------------------------------------------------------------- response


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_response_allowed(api_version: str) -> None:
    assert response(Review(api_version, "u-9", {}), Mutation()) == {
        "apiVersion": api_version,
        "kind": "AdmissionReview",
        "response": {"uid": "u-9", "allowed": True},
    }


def test_response_denied_has_status_and_no_patch() -> None:
    mutation = Mutation(patch=[{"op": "add", "path": "/x", "value": 1}], denial="no")
    assert response(Review(V1, "u", {}), mutation) == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": False, "status": {"code": 400, "message": "no"}},
    }


def test_response_patched_is_base64_json_patch() -> None:
    ops = [{"op": "add", "path": "/metadata/labels", "value": {"a/b": "c"}}]
    answer = response(Review(V1, "u", {}), Mutation(patch=ops))
    patch = answer["response"].pop("patch")
    assert answer == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True, "patchType": "JSONPatch"},
    }
    decoded = json.loads(base64.b64decode(patch, validate=True))
    assert decoded == ops
    assert jsonpatch.apply_patch({"metadata": {}}, decoded) == {
        "metadata": {"labels": {"a/b": "c"}}
    }


def test_response_warnings() -> None:
    answer = response(Review(V1, "u", {}), Mutation(warnings=["one", "two"]))
    assert answer == {
        "apiVersion": V1,
        "kind": "AdmissionReview",
        "response": {"uid": "u", "allowed": True, "warnings": ["one", "two"]},
    }


def test_response_denied_keeps_warnings() -> None:
    answer = response(Review(V1, "u", {}), Mutation(warnings=["w"], denial="d"))
    assert answer["response"] == {
        "uid": "u",
        "allowed": False,
        "status": {"code": 400, "message": "d"},
        "warnings": ["w"],
    }
