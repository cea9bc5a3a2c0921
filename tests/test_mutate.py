"""The mutation rules, as table tests on the pod *after* the patch is applied.

Every successful case also checks the invariants that matter to the apiserver:
the patch applies cleanly, the input is not modified, names and mount paths
stay unique, and a second review of the result yields no operations.
"""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import jsonpatch
import pytest

from webhook import __version__
from webhook.heartbeat import MAX_FUTURE_SECONDS
from webhook.mutate import BEAT_DIR, VOLUME_NAME, MalformedObject, Mutation, mutate_pod
from webhook.probe import SHELL_CHECK

Pod = dict[str, Any]


def make_pod(
    annotations: dict[str, str] | None = None,
    containers: list[dict[str, Any]] | None = None,
    **spec: Any,
) -> Pod:
    metadata: dict[str, Any] = {"name": "worker-pod", "namespace": "jobs"}
    if annotations is not None:
        metadata["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": containers or [container("worker")], **spec},
    }


def container(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "image": "python:3.12", **fields}


ON = {"heartbeat/enabled": "true"}


def inject(pod: Pod) -> tuple[Pod, Mutation]:
    """Mutate, apply, and check the invariants every patch must keep."""
    before = copy.deepcopy(pod)
    mutation = mutate_pod(pod)
    assert mutation.denial is None, mutation.denial
    assert pod == before, "mutate_pod must not modify its input"
    patched: Pod = jsonpatch.apply_patch(pod, mutation.patch)
    assert_valid(patched)
    again = mutate_pod(patched)
    assert again.patch == [], f"second review must be a no-op, got {again.patch}"
    assert again.denial is None
    return patched, mutation


def assert_valid(pod: Pod) -> None:
    volumes = [v["name"] for v in pod["spec"].get("volumes", [])]
    assert len(volumes) == len(set(volumes)), f"duplicate volume names {volumes}"
    for item in pod["spec"]["containers"]:
        paths = [m["mountPath"] for m in item.get("volumeMounts", [])]
        assert len(paths) == len(set(paths)), f"duplicate mountPath {paths}"
        for mount in item.get("volumeMounts", []):
            assert mount["name"] in volumes, f"mount of missing volume {mount}"
        names = [e["name"] for e in item.get("env", [])]
        assert names.count("HEARTBEAT_PATH") <= 1


def denial(pod: Pod) -> str:
    mutation = mutate_pod(pod)
    assert mutation.denial is not None, f"expected a denial, got {mutation}"
    assert mutation.patch == []
    return mutation.denial


def by_name(pod: Pod, name: str) -> dict[str, Any]:
    return next(c for c in pod["spec"]["containers"] if c["name"] == name)


def env(item: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in item.get("env", [])}


def marker(pod: Pod) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(pod["metadata"]["annotations"]["heartbeat/injected"])
    return value


def command(item: dict[str, Any], probe: str = "livenessProbe") -> list[str]:
    result: list[str] = item[probe]["exec"]["command"]
    return result


# --- opt-in -----------------------------------------------------------------


@pytest.mark.parametrize(
    "annotations",
    [None, {}, {"heartbeat/enabled": "false"}, {"heartbeat/enabled": "FALSE"}, {"x": "true"}],
    ids=["no-annotations", "empty", "false", "FALSE", "other-key"],
)
def test_not_opted_in_is_untouched(annotations: dict[str, str] | None) -> None:
    assert mutate_pod(make_pod(annotations)) == Mutation()


def test_not_opted_in_ignores_even_bad_settings() -> None:
    pod = make_pod({"heartbeat/enabled": "false", "heartbeat/max-age": "nonsense"})
    assert mutate_pod(pod) == Mutation()


@pytest.mark.parametrize("value", ["True", "TRUE", "true"])
def test_opt_in_injects_probe_env_and_marker(value: str) -> None:
    patched, mutation = inject(make_pod({"heartbeat/enabled": value}))
    worker = by_name(patched, "worker")
    assert command(worker) == [
        "/bin/sh", "-c", SHELL_CHECK, "heartbeat-probe",
        "/tmp/heartbeat", "90", str(MAX_FUTURE_SECONDS),
    ]  # fmt: skip
    assert worker["livenessProbe"] | {"exec": None} == {
        "exec": None,
        "initialDelaySeconds": 10,
        "periodSeconds": 30,
        "timeoutSeconds": 5,
        "successThreshold": 1,
        "failureThreshold": 3,
    }
    assert "startupProbe" not in worker
    assert env(worker) == {"HEARTBEAT_PATH": "/tmp/heartbeat"}
    mark = marker(patched)
    assert mark["containers"] == ["worker"]
    assert mark["version"] == __version__
    assert len(mark["settings"]) == 10
    assert patched["metadata"]["annotations"]["heartbeat/enabled"] == value
    assert mutation.injected == ("worker",)
    assert mutation.warnings == []


def test_invalid_enabled_is_denied() -> None:
    message = denial(make_pod({"heartbeat/enabled": "yes"}))
    assert message.startswith('annotation heartbeat/enabled="yes" is invalid')


def test_bad_setting_is_denied() -> None:
    message = denial(make_pod({**ON, "heartbeat/period": "0"}))
    assert 'heartbeat/period="0"' in message and "from 1 to 3600" in message


def test_settings_reach_the_probe() -> None:
    pod = make_pod(
        {
            **ON,
            "heartbeat/path": "/var/beat/w",
            "heartbeat/max-age": "300",
            "heartbeat/period": "20",
            "heartbeat/initial-delay": "0",
            "heartbeat/failure-threshold": "2",
            "heartbeat/timeout": "9",
            "heartbeat/termination-grace": "3",
        }
    )
    patched, _ = inject(pod)
    probe = by_name(patched, "worker")["livenessProbe"]
    assert probe["exec"]["command"][-3:] == ["/var/beat/w", "300", str(MAX_FUTURE_SECONDS)]
    assert probe["initialDelaySeconds"] == 0
    assert probe["periodSeconds"] == 20
    assert probe["failureThreshold"] == 2
    assert probe["timeoutSeconds"] == 9
    assert probe["terminationGracePeriodSeconds"] == 3
    assert env(by_name(patched, "worker")) == {"HEARTBEAT_PATH": "/var/beat/w"}


def test_python_probe_command() -> None:
    patched, _ = inject(make_pod({**ON, "heartbeat/probe": "python", "heartbeat/max-age": "60"}))
    assert command(by_name(patched, "worker")) == [
        "python3", "-m", "webhook.heartbeat", "check", "--max-age", "60", "--", "/tmp/heartbeat",
    ]  # fmt: skip


def test_unknown_key_warns_but_injects() -> None:
    patched, mutation = inject(make_pod({**ON, "heartbeat/max_age": "10"}))
    assert "livenessProbe" in by_name(patched, "worker")
    assert len(mutation.warnings) == 1 and "heartbeat/max-age" in mutation.warnings[0]


# --- startup and termination --------------------------------------------------


@pytest.mark.parametrize("grace", [1, 3, 5, 7, 60, 301, 86400])
def test_startup_probe_gives_the_worker_its_grace(grace: int) -> None:
    patched, _ = inject(
        make_pod({**ON, "heartbeat/startup-grace": str(grace), "heartbeat/termination-grace": "4"})
    )
    worker = by_name(patched, "worker")
    startup = worker["startupProbe"]
    assert command(worker, "startupProbe") == command(worker)
    assert startup["initialDelaySeconds"] == 0
    period, threshold = startup["periodSeconds"], startup["failureThreshold"]
    # Ticks are not aligned to container start: the kill can come one period
    # early, so the worker is only guaranteed (threshold - 1) * period seconds.
    assert (threshold - 1) * period >= grace
    assert threshold == math.ceil(grace / period) + 1
    assert startup["terminationGracePeriodSeconds"] == 4
    assert worker["livenessProbe"]["terminationGracePeriodSeconds"] == 4


# --- conflicts --------------------------------------------------------------


def test_existing_env_is_kept_and_appended_to() -> None:
    existing = [
        {"name": "A", "value": "1"},
        {"name": "B", "valueFrom": {"fieldRef": {"fieldPath": "x"}}},
    ]
    patched, _ = inject(make_pod(ON, [container("worker", env=copy.deepcopy(existing))]))
    assert by_name(patched, "worker")["env"] == [
        *existing,
        {"name": "HEARTBEAT_PATH", "value": "/tmp/heartbeat"},
    ]


def test_same_heartbeat_path_is_not_duplicated() -> None:
    mine = [{"name": "HEARTBEAT_PATH", "value": "/tmp/heartbeat"}]
    patched, _ = inject(make_pod(ON, [container("worker", env=copy.deepcopy(mine))]))
    assert by_name(patched, "worker")["env"] == mine


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ({"name": "HEARTBEAT_PATH", "value": "/other"}, 'to "/other"'),
        (
            {"name": "HEARTBEAT_PATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}},
            "from valueFrom",
        ),
    ],
    ids=["other-value", "valueFrom"],
)
def test_conflicting_heartbeat_path_is_denied(entry: dict[str, Any], fragment: str) -> None:
    message = denial(make_pod(ON, [container("worker", env=[entry])]))
    assert '"worker"' in message and fragment in message and '"/tmp/heartbeat"' in message
    assert "heartbeat/path" in message


def test_own_liveness_probe_is_kept_with_warning() -> None:
    theirs = {"httpGet": {"path": "/health", "port": 8080}}
    patched, mutation = inject(make_pod(ON, [container("worker", livenessProbe=theirs)]))
    worker = by_name(patched, "worker")
    assert worker["livenessProbe"] == theirs
    assert env(worker) == {"HEARTBEAT_PATH": "/tmp/heartbeat"}
    assert marker(patched)["containers"] == []
    assert mutation.injected == ()
    assert len(mutation.warnings) == 1
    assert '"worker" already has a livenessProbe; kept it' in mutation.warnings[0]


def test_own_startup_probe_is_kept_with_warning() -> None:
    theirs = {"tcpSocket": {"port": 80}}
    pod = make_pod(
        {**ON, "heartbeat/startup-grace": "60"}, [container("worker", startupProbe=theirs)]
    )
    patched, mutation = inject(pod)
    worker = by_name(patched, "worker")
    assert worker["startupProbe"] == theirs
    assert "livenessProbe" in worker
    assert any("already has a startupProbe" in w for w in mutation.warnings)


# --- which containers ---------------------------------------------------------


def test_default_is_first_container_only() -> None:
    pod = make_pod(
        ON,
        [container("worker"), container("sidecar")],
        initContainers=[container("init")],
        ephemeralContainers=[container("debug")],
    )
    patched, _ = inject(pod)
    assert "livenessProbe" in by_name(patched, "worker")
    assert patched["spec"]["containers"][1] == pod["spec"]["containers"][1]
    assert patched["spec"]["initContainers"] == pod["spec"]["initContainers"]
    assert patched["spec"]["ephemeralContainers"] == pod["spec"]["ephemeralContainers"]


def test_default_container_annotation_chooses() -> None:
    pod = make_pod(
        {**ON, "kubectl.kubernetes.io/default-container": "worker"},
        [container("proxy"), container("worker")],
    )
    patched, _ = inject(pod)
    assert "livenessProbe" in by_name(patched, "worker")
    assert "livenessProbe" not in by_name(patched, "proxy")


def test_default_container_annotation_naming_nothing_is_denied() -> None:
    pod = make_pod({**ON, "kubectl.kubernetes.io/default-container": "gone"})
    message = denial(pod)
    assert "kubectl.kubernetes.io/default-container" in message and '"gone"' in message


def test_containers_annotation_injects_exactly_those() -> None:
    pod = make_pod(
        {**ON, "heartbeat/containers": "b,c"}, [container("a"), container("b"), container("c")]
    )
    patched, mutation = inject(pod)
    assert [("livenessProbe" in c) for c in patched["spec"]["containers"]] == [False, True, True]
    assert "env" not in by_name(patched, "a")
    assert marker(patched)["containers"] == ["b", "c"]
    assert mutation.injected == ("b", "c")


def test_containers_annotation_wins_over_default_container() -> None:
    pod = make_pod(
        {**ON, "heartbeat/containers": "b", "kubectl.kubernetes.io/default-container": "a"},
        [container("a"), container("b")],
    )
    patched, _ = inject(pod)
    assert "livenessProbe" in by_name(patched, "b")
    assert "livenessProbe" not in by_name(patched, "a")


def test_unknown_container_is_denied() -> None:
    message = denial(make_pod({**ON, "heartbeat/containers": "worker,typo"}))
    assert 'heartbeat/containers names "typo"' in message
    assert '(containers: "worker")' in message


def test_pod_without_containers_is_left_to_the_apiserver() -> None:
    assert mutate_pod({"metadata": {"annotations": ON}, "spec": {}}) == Mutation()


# --- read-only root filesystem ------------------------------------------------

READ_ONLY = {"readOnlyRootFilesystem": True}


def test_read_only_root_gets_an_emptydir_and_a_file_per_container() -> None:
    pod = make_pod(
        {**ON, "heartbeat/containers": "a,b"},
        [
            container("a", securityContext=dict(READ_ONLY)),
            container("b", securityContext=dict(READ_ONLY)),
            container("c", securityContext=dict(READ_ONLY)),
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    patched, _ = inject(pod)
    volumes = patched["spec"]["volumes"]
    assert volumes == [
        {"name": "data", "emptyDir": {}},
        {"name": VOLUME_NAME, "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
    ]
    for name in ("a", "b"):
        item = by_name(patched, name)
        assert item["volumeMounts"] == [{"name": VOLUME_NAME, "mountPath": BEAT_DIR}]
        assert env(item) == {"HEARTBEAT_PATH": f"{BEAT_DIR}/{name}"}
        assert command(item)[4] == f"{BEAT_DIR}/{name}"
    assert "volumeMounts" not in by_name(patched, "c")


def test_read_only_root_without_volumes_creates_the_list() -> None:
    patched, _ = inject(make_pod(ON, [container("worker", securityContext=dict(READ_ONLY))]))
    assert [v["name"] for v in patched["spec"]["volumes"]] == [VOLUME_NAME]


def test_volume_name_collision_picks_another_name() -> None:
    pod = make_pod(
        ON,
        [container("worker", securityContext=dict(READ_ONLY))],
        volumes=[{"name": VOLUME_NAME, "configMap": {"name": "mine"}}],
    )
    patched, _ = inject(pod)
    assert [v["name"] for v in patched["spec"]["volumes"]] == [VOLUME_NAME, f"{VOLUME_NAME}-1"]
    mounts = by_name(patched, "worker")["volumeMounts"]
    assert mounts == [{"name": f"{VOLUME_NAME}-1", "mountPath": BEAT_DIR}]


def test_explicit_path_on_writable_mount_is_used_as_is() -> None:
    pod = make_pod(
        {**ON, "heartbeat/path": "/state/beat/worker"},
        [
            container(
                "worker",
                securityContext=dict(READ_ONLY),
                volumeMounts=[
                    {"name": "cfg", "mountPath": "/state/beat/config", "readOnly": True},
                    {"name": "state", "mountPath": "/state/"},
                ],
            )
        ],
        volumes=[{"name": "state", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "x"}}],
    )
    patched, _ = inject(pod)
    assert [v["name"] for v in patched["spec"]["volumes"]] == ["state", "cfg"]
    assert env(by_name(patched, "worker")) == {"HEARTBEAT_PATH": "/state/beat/worker"}


@pytest.mark.parametrize(
    ("mounts", "volumes"),
    [
        ([], []),
        ([{"name": "cfg", "mountPath": "/app"}], [{"name": "cfg", "configMap": {"name": "x"}}]),
        ([{"name": "d", "mountPath": "/app", "readOnly": True}], [{"name": "d", "emptyDir": {}}]),
        (
            [{"name": "p", "mountPath": "/app"}],
            [{"name": "p", "persistentVolumeClaim": {"claimName": "c", "readOnly": True}}],
        ),
        ([{"name": "d", "mountPath": "/app/hb"}], [{"name": "d", "emptyDir": {}}]),
        ([{"name": "d", "mountPath": "/ap"}], [{"name": "d", "emptyDir": {}}]),
        (
            [{"name": "d", "mountPath": "/app"}, {"name": "s", "mountPath": "/app/hb-dir/x"}],
            [{"name": "d", "secret": {"secretName": "x"}}, {"name": "s", "emptyDir": {}}],
        ),
    ],
    ids=[
        "no-volume",
        "configmap",
        "readonly-mount",
        "readonly-pvc",
        "file-mount",
        "prefix-only",
        "deeper-mount-elsewhere",
    ],
)
def test_explicit_path_off_writable_volume_is_denied(
    mounts: list[dict[str, Any]], volumes: list[dict[str, Any]]
) -> None:
    pod = make_pod(
        {**ON, "heartbeat/path": "/app/hb"},
        [container("worker", securityContext=dict(READ_ONLY), volumeMounts=mounts)],
        volumes=volumes,
    )
    message = denial(pod)
    assert 'heartbeat/path="/app/hb" is not on a writable volume of container "worker"' in message
    assert "readOnlyRootFilesystem" in message and "emptyDir" in message


def test_foreign_mount_at_beat_dir_is_denied() -> None:
    pod = make_pod(
        ON,
        [
            container(
                "worker",
                securityContext=dict(READ_ONLY),
                volumeMounts=[{"name": "run", "mountPath": BEAT_DIR}],
            )
        ],
        volumes=[{"name": "run", "emptyDir": {}}],
    )
    assert '"run"' in denial(pod)


def test_shared_explicit_file_warns() -> None:
    mounts = [{"name": "shared", "mountPath": "/shared"}]
    pod = make_pod(
        {**ON, "heartbeat/path": "/shared/beat", "heartbeat/containers": "a,b"},
        [
            container("a", securityContext=dict(READ_ONLY), volumeMounts=copy.deepcopy(mounts)),
            container("b", securityContext=dict(READ_ONLY), volumeMounts=copy.deepcopy(mounts)),
        ],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )
    _, mutation = inject(pod)
    assert any("share the file" in w for w in mutation.warnings)


# --- idempotence and ownership ------------------------------------------------


def test_changed_settings_update_our_own_probe_and_env() -> None:
    first, _ = inject(make_pod(ON))
    first["metadata"]["annotations"].update(
        {"heartbeat/max-age": "300", "heartbeat/path": "/var/beat"}
    )
    second, mutation = inject(first)
    worker = by_name(second, "worker")
    assert command(worker)[4:6] == ["/var/beat", "300"]
    assert env(worker) == {"HEARTBEAT_PATH": "/var/beat"}
    assert marker(second)["settings"] != marker(first)["settings"]
    assert mutation.warnings == []


def test_marker_key_is_escaped_and_other_annotations_kept() -> None:
    patched, mutation = inject(make_pod({**ON, "a/b~c": "x"}))
    assert patched["metadata"]["annotations"]["a/b~c"] == "x"
    assert any(op["path"] == "/metadata/annotations/heartbeat~1injected" for op in mutation.patch)


def test_hostile_marker_is_overwritten() -> None:
    patched, _ = inject(make_pod({**ON, "heartbeat/injected": "not json"}))
    assert marker(patched)["containers"] == ["worker"]


# --- malformed objects ---------------------------------------------------------


@pytest.mark.parametrize(
    "pod",
    [
        {"metadata": "x"},
        {"metadata": {"annotations": ["heartbeat/enabled"]}},
        {"metadata": {"annotations": ON}, "spec": []},
        {"metadata": {"annotations": ON}, "spec": {"containers": {"name": "x"}}},
        {"metadata": {"annotations": ON}, "spec": {"containers": [{"image": "x"}]}},
        {"metadata": {"annotations": ON}, "spec": {"containers": [{"name": "w", "env": {}}]}},
    ],
    ids=["metadata", "annotations", "spec", "containers", "container-name", "env"],
)
def test_malformed_objects_raise(pod: Pod) -> None:
    with pytest.raises(MalformedObject):
        mutate_pod(pod)


def test_marker_never_claims_a_probe_the_user_wrote() -> None:
    first, _ = inject(make_pod(ON))
    theirs = {"httpGet": {"path": "/health", "port": 8080}}
    by_name(first, "worker")["livenessProbe"] = theirs
    second, mutation = inject(first)
    assert by_name(second, "worker")["livenessProbe"] == theirs
    assert marker(second)["containers"] == []
    assert any("already has a livenessProbe" in w for w in mutation.warnings)


def test_switching_probe_kind_replaces_our_probe() -> None:
    first, _ = inject(make_pod(ON))
    first["metadata"]["annotations"]["heartbeat/probe"] = "python"
    second, _ = inject(first)
    assert command(by_name(second, "worker"))[:2] == ["python3", "-m"]
