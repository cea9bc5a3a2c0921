"""Property-based fuzzing of the review parser and the mutation core (hypothesis).

Invariants, for every generated review:
- the handler never raises and never answers 5xx;
- a patch applies cleanly with jsonpatch to the pod we were given;
- the patched pod passes the Kubernetes schema (kubernetes-validate, strict);
- re-reviewing the patched pod yields no operations;
- warnings and messages are printable ASCII and bounded, whatever the input.

HEARTBEAT_FUZZ_EXAMPLES sets the number of pods (default 10,000, which CI runs);
`make fuzz` runs a larger batch on demand.
"""

from __future__ import annotations

import base64
import json
import os
import string
from functools import cache
from typing import Any

import jsonpatch
import jsonschema
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from webhook.config import KNOWN
from webhook.handler import AdmissionHandler
from webhook.metrics import Metrics
from webhook.mutate import VOLUME_NAME, mutate_pod

EXAMPLES = int(os.environ.get("HEARTBEAT_FUZZ_EXAMPLES", "10000"))
K8S_VERSION = "1.37"
MESSAGE_LIMIT = 2048
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,  # no example database written into the checkout
)

HOSTILE = st.sampled_from(
    [
        "", " ", "true", "TRUE", "false", "yes", "0", "08", "-1", "1e3", "99999999999",
        "/tmp/x; rm -rf /", "$(touch /tmp/canary)", "`id`", "a[$(id)]", "x\ny", "x\0y",
        "\x1b[31mred", "é", "/run/heartbeat/w", "/data/beat", "../../etc/passwd", "w,w",
        "shell", "python", "a" * 5000, "worker", "worker,side", "nope",
    ]
)  # fmt: skip
NUMBERS = st.integers(min_value=-5, max_value=200_000).map(str)
VALUES = st.one_of(HOSTILE, NUMBERS, st.text(max_size=40))
SECONDS = st.integers(min_value=2, max_value=60).map(str)
PLAUSIBLE = {
    "heartbeat/max-age": SECONDS,
    "heartbeat/period": SECONDS,
    "heartbeat/initial-delay": SECONDS,
    "heartbeat/failure-threshold": SECONDS,
    "heartbeat/timeout": SECONDS,
    "heartbeat/startup-grace": SECONDS,
    "heartbeat/termination-grace": SECONDS,
    "heartbeat/path": st.sampled_from(["/tmp/beat", "/data/beat", "/run/x/y", "/cfg/beat"]),
    "heartbeat/probe": st.sampled_from(["shell", "python"]),
    "heartbeat/perod": SECONDS,
}
KEYS = st.one_of(
    st.sampled_from(sorted(KNOWN - {"heartbeat/enabled"})),
    st.sampled_from(["heartbeat/perod", "heartbeat/", "heartbeat/x/y", "other/key"]),
)
NAMES = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8).filter(
    lambda s: s[0].isalpha()
)


@st.composite
def containers(draw: st.DrawFn, volume_names: list[str]) -> list[dict[str, Any]]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique=True))
    result = []
    for name in names:
        item: dict[str, Any] = {"name": name, "image": "python:3.12"}
        if draw(st.booleans()):
            item["env"] = draw(
                st.lists(
                    st.one_of(
                        st.fixed_dictionaries(
                            {"name": st.sampled_from(["A", "B"]), "value": VALUES}
                        ),
                        st.fixed_dictionaries(
                            {"name": st.just("HEARTBEAT_PATH"),
                             "value": st.sampled_from(["/tmp/heartbeat", "/other"])}
                        ),
                    ),
                    max_size=3,
                    unique_by=lambda e: e["name"],
                )
            )  # fmt: skip
        if draw(st.booleans()):
            item["securityContext"] = {"readOnlyRootFilesystem": draw(st.booleans())}
        if draw(st.integers(0, 4)) == 0:
            item["livenessProbe"] = {"tcpSocket": {"port": 8080}}
        if draw(st.integers(0, 4)) == 0:
            item["startupProbe"] = {"tcpSocket": {"port": 8080}}
        if volume_names and draw(st.booleans()):
            paths = draw(
                st.lists(st.sampled_from(["/data", "/run", "/run/heartbeat", "/tmp", "/cfg"]),
                         max_size=2, unique=True)
            )  # fmt: skip
            item["volumeMounts"] = [
                {"name": draw(st.sampled_from(volume_names)), "mountPath": path} for path in paths
            ]
        result.append(item)
    return result


@st.composite
def pods(draw: st.DrawFn) -> dict[str, Any]:
    volume_names = draw(
        st.lists(st.sampled_from(["data", "cfg", VOLUME_NAME, f"{VOLUME_NAME}-1"]), unique=True)
    )
    volumes = [
        {"name": name, "configMap": {"name": "c"}}
        if draw(st.booleans())
        else {"name": name, "emptyDir": {}}
        for name in volume_names
    ]
    hostile = draw(st.integers(0, 3)) == 0  # a quarter hostile, the rest plausible
    if hostile:
        annotations = draw(st.dictionaries(KEYS, VALUES, max_size=5))
    else:
        keys = draw(st.lists(st.sampled_from(sorted(PLAUSIBLE)), max_size=4, unique=True))
        annotations = {key: draw(PLAUSIBLE[key]) for key in keys}
    enabled = draw(st.one_of(HOSTILE, st.none()) if hostile else st.sampled_from(["true", "True"]))
    if enabled is not None:
        annotations["heartbeat/enabled"] = enabled
    spec: dict[str, Any] = {"containers": draw(containers(volume_names))}
    if volumes:
        spec["volumes"] = volumes
    if draw(st.booleans()):
        spec["initContainers"] = [{"name": "init", "image": "busybox"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "fuzz", "namespace": "ns", "annotations": annotations},
        "spec": spec,
    }


@cache
def pod_validator() -> jsonschema.protocols.Validator:
    """kubernetes-validate's strict Pod schema, compiled once (it recompiles per call)."""
    directory = f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict"
    schema = kv.schema_contents(f"{directory}/pod-v1.json", K8S_VERSION)
    definitions = kv.schema_contents(f"{directory}/_definitions.json", K8S_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    validator: jsonschema.protocols.Validator = jsonschema.Draft202012Validator(
        schema, registry=registry
    )
    return validator


def printable_and_bounded(text: str) -> bool:
    return text.isascii() and text.isprintable() and len(text) <= MESSAGE_LIMIT


def review_bytes(pod: dict[str, Any]) -> bytes:
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "fuzz",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE",
                "object": pod,
            },
        }
    ).encode()


HANDLER = AdmissionHandler(Metrics())


@FUZZ
@given(pods())
def test_every_review_keeps_the_invariants(pod: dict[str, Any]) -> None:
    status, body = HANDLER(review_bytes(pod))
    assert status == 200, body
    answer = json.loads(body)["response"]
    assert answer["uid"] == "fuzz"
    for warning in answer.get("warnings", []):
        assert printable_and_bounded(warning), warning
    event("denied" if not answer["allowed"] else "patched" if "patch" in answer else "untouched")
    if not answer["allowed"]:
        assert printable_and_bounded(answer["status"]["message"])
        assert "patch" not in answer
        return
    if "patch" not in answer:
        return
    patch = json.loads(base64.b64decode(answer["patch"]))
    patched = jsonpatch.apply_patch(pod, patch)
    pod_validator().validate(patched)
    assert_unique(patched)
    assert mutate_pod(patched).patch == []


def assert_unique(pod: dict[str, Any]) -> None:
    volumes = [v["name"] for v in pod["spec"].get("volumes", [])]
    assert len(volumes) == len(set(volumes))
    for item in pod["spec"]["containers"]:
        paths = [m["mountPath"] for m in item.get("volumeMounts", [])]
        assert len(paths) == len(set(paths))
        assert [e["name"] for e in item.get("env", [])].count("HEARTBEAT_PATH") <= 1


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
ENVELOPES = st.fixed_dictionaries(
    {
        "apiVersion": st.sampled_from(["admission.k8s.io/v1", "admission.k8s.io/v1beta1", "v1"]),
        "kind": st.sampled_from(["AdmissionReview", "Pod"]),
        "request": st.one_of(
            JSON,
            st.fixed_dictionaries(
                {"uid": st.one_of(st.text(max_size=5), JSON), "kind": JSON,
                 "operation": JSON, "object": JSON}
            ),
        ),
    }
)  # fmt: skip


@settings(FUZZ, max_examples=max(EXAMPLES // 5, 100))
@given(
    st.one_of(
        st.binary(max_size=200),
        JSON.map(lambda v: json.dumps(v).encode()),
        ENVELOPES.map(lambda v: json.dumps(v).encode()),
    )
)
def test_hostile_bodies_get_200_or_400_never_an_exception(body: bytes) -> None:
    status, payload = HANDLER(body)
    assert status in (200, 400)
    document = json.loads(payload)
    if status == 400:
        assert printable_and_bounded(document["message"]) or len(document["message"]) < 4096
    else:
        assert document["kind"] == "AdmissionReview"


def test_the_schema_check_can_fail() -> None:
    """Guard against a validator that accepts anything."""
    probe = {"periodSeconds": "x"}
    bad = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": {"containers": [{"name": "w", "livenessProbe": probe}]},
    }
    with pytest.raises(jsonschema.ValidationError):
        pod_validator().validate(bad)
