"""The user's story on real components: an annotated worker is created through
the real apiserver, our webhook injects the probe, the worker beats and then
hangs, and the real kubelet (with containerd and runc) runs the injected exec
probe inside the container and restarts it.

Every scenario's pods are created at once when the module starts, so the
scenarios run concurrently and the module takes about as long as its slowest
one (well under two minutes). Probe settings are short: a beat older than 6 s
fails, checked every 3 s, two failures restart, and the kill comes 2 s after
SIGTERM (a hung Python PID 1 ignores SIGTERM; the pod-level default grace of
30 s is deliberately left in place, so a fast restart proves the probe-level
grace is honoured).

What the real kubelet showed that no earlier suite could: in an image without
/bin/sh the default shell probe does not fail, it *errors*, and the kubelet
throws errored probe results away, so a hung worker there is never restarted
(only "Liveness probe errored" Warning events); see the no-shell test.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes.client.rest import ApiException

from tests.integration.conftest import create_pod, read_pod
from tests.node import images
from tests.node.conftest import NODE_NAME, Cluster, record_timing
from webhook.mutate import BEAT_DIR, VOLUME_NAME

pytestmark = pytest.mark.node

T = TypeVar("T")

MAX_AGE = 6
FAST = {
    "heartbeat/max-age": str(MAX_AGE),
    "heartbeat/period": "3",
    # Covers the interpreter's start before the first beat, even on a loaded
    # 2-core machine (2 s did not: "no file at /tmp/heartbeat").
    "heartbeat/initial-delay": "5",
    "heartbeat/failure-threshold": "2",
    "heartbeat/termination-grace": "2",
}
HANG_AFTER = 4  # iterations of 1 s before the worker deadlocks
SLOW_START = 15  # seconds before a slow worker's first beat
OBSERVE = 30  # seconds a healthy worker is watched for
OUR_REASON = re.compile(rf"heartbeat: last beat (\d+)s ago, limit {MAX_AGE}s")
KILLING = "Container worker failed liveness probe, will be restarted"


def worker_pod(
    name: str,
    *,
    hang_after: int,
    annotations: dict[str, str] | None = None,
    image: str = images.WORKER_IMAGE,
    command: list[str] | None = None,
    security: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "worker",
        "image": image,
        # Local images only: never pull (there is no registry).
        "imagePullPolicy": "Never",
        "env": [
            {"name": "WORKER_INTERVAL", "value": "1"},
            {"name": "WORKER_HANG_AFTER", "value": str(hang_after)},
        ],
    }
    if command:
        container["command"] = command
    if security:
        container["securityContext"] = security
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {"heartbeat/enabled": "true", **FAST, **(annotations or {})},
        },
        "spec": {
            # No scheduler and no CNI: bind to the node, use its network.
            "nodeName": NODE_NAME,
            "hostNetwork": True,
            "containers": [container],
        },
    }


# A worker whose first iteration is slow (loading a model, warming a cache):
# no beat for SLOW_START seconds, then the demo worker's loop.
SLOW_COMMAND = [
    "python3",
    "-c",
    f"import runpy, time; time.sleep({SLOW_START}); "
    f"runpy.run_path({images.WORKER_SCRIPT!r}, run_name='__main__')",
]
READ_ONLY = {
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "runAsGroup": 65532,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}

PODS = [
    worker_pod("hung", hang_after=HANG_AFTER),
    worker_pod("healthy", hang_after=0),
    worker_pod(
        "slow-grace",
        hang_after=0,
        command=SLOW_COMMAND,
        annotations={"heartbeat/startup-grace": "30"},
    ),
    worker_pod("slow-no-grace", hang_after=0, command=SLOW_COMMAND),
    worker_pod("read-only", hang_after=0, security=READ_ONLY),
    worker_pod(
        "no-shell",
        hang_after=HANG_AFTER,
        image=images.NOSHELL_IMAGE,
        annotations={"heartbeat/probe": "python"},
    ),
    # The control for no-shell: the same hung worker with the default (shell)
    # probe. The probe cannot start in an image without /bin/sh.
    worker_pod("no-shell-shell-probe", hang_after=HANG_AFTER, image=images.NOSHELL_IMAGE),
]


@dataclass
class Pods:
    cluster: Cluster
    namespace: str
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    # name -> (container status, log of the first container) seen right
    # after the first restart: the kubelet keeps only the current and the
    # previous container's log, and the tests run one after the other.
    first_restart: dict[str, tuple[dict[str, Any], list[tuple[datetime, str]]]] = field(
        default_factory=dict
    )
    _stop: threading.Event = field(default_factory=threading.Event)

    def watch(self) -> threading.Thread:
        def loop() -> None:
            while not self._stop.wait(0.5):
                for name in self.created:
                    seen = self.first_restart.get(name)
                    if seen and "running" in seen[0].get("state", {}):
                        continue  # complete: killed, and restarted
                    with contextlib.suppress(ApiException, OSError, KeyError):
                        status = self.status(name)
                        restarts = status.get("restartCount", 0)
                        if restarts >= 1 and not seen:
                            self.first_restart[name] = (status, self.log(name, 0))
                        elif seen and restarts == 1:
                            self.first_restart[name] = (status, seen[1])

        thread = threading.Thread(target=loop, name="restart-watcher", daemon=True)
        thread.start()
        return thread

    def get(self, name: str) -> dict[str, Any]:
        return read_pod(self.cluster.core, self.namespace, name)

    def status(self, name: str) -> dict[str, Any]:
        pod = self.get(name)
        statuses = pod.get("status", {}).get("containerStatuses") or [{}]
        found: dict[str, Any] = statuses[0]
        return found

    def restarts(self, name: str) -> int:
        return int(self.status(name).get("restartCount", 0))

    def events(self, name: str) -> list[tuple[str, str, int]]:
        """(reason, message, count) of the events about pod ``name``."""
        listed = self.cluster.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return [(e.reason or "", (e.message or "").strip(), e.count or 1) for e in listed.items]

    def probes(self, name: str) -> dict[tuple[str, str], int]:
        """(probe type, result) -> count, from the kubelet's /metrics/probes."""
        node = self.cluster.node
        assert node.kubelet is not None
        text = node.kubelet.get("/metrics/probes", self.cluster.plane.token)
        counts: dict[tuple[str, str], int] = {}
        pattern = re.compile(r"^prober_probe_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$")
        for line in text.splitlines():
            match = pattern.match(line)
            if not match:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            if labels.get("pod") == name and labels.get("namespace") == self.namespace:
                key = (labels["probe_type"], labels["result"])
                counts[key] = counts.get(key, 0) + int(float(match["value"]))
        return counts

    def probe_seconds(self, name: str) -> float:
        """Mean duration of the liveness probes of pod ``name`` (kubelet histogram)."""
        node = self.cluster.node
        assert node.kubelet is not None
        text = node.kubelet.get("/metrics/probes", self.cluster.plane.token)
        values = {}
        for part in ("sum", "count"):
            pattern = re.compile(
                rf'^prober_probe_duration_seconds_{part}\{{[^}}]*pod="{re.escape(name)}"'
                rf'[^}}]*probe_type="Liveness"[^}}]*\}} (\S+)$',
                re.MULTILINE,
            )
            match = pattern.search(text)
            values[part] = float(match[1]) if match else 0.0
        return values["sum"] / values["count"] if values["count"] else float("nan")

    def log(self, name: str, attempt: int) -> list[tuple[datetime, str]]:
        """The container's CRI log for restart ``attempt``: (timestamp, line)."""
        node = self.cluster.node
        assert node.kubelet is not None
        uid = self.created[name]["metadata"]["uid"]
        path = (
            node.kubelet.pod_logs_dir
            / f"{self.namespace}_{name}_{uid}"
            / "worker"
            / f"{attempt}.log"
        )
        lines = []
        for raw in path.read_text(errors="replace").splitlines():
            stamp, _, rest = raw.partition(" ")
            message = rest.split(" ", 2)[-1]
            lines.append((_parse_time(stamp), message))
        return lines

    def diagnose(self, name: str) -> str:
        node = self.cluster.node
        try:
            status = json.dumps(self.get(name).get("status", {}), indent=1)[:3000]
            events = "\n".join(f"  {r}: {m} (x{c})" for r, m, c in self.events(name))
        except ApiException as error:
            status, events = f"<{error.status}>", ""
        kubelet = node.kubelet.process.tail(40) if node.kubelet and node.kubelet.process else ""
        return f"pod {name} status:\n{status}\nevents:\n{events}\nkubelet log tail:\n{kubelet}"

    def wait(self, name: str, check: Callable[[], T | None], what: str, timeout: float) -> T:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.5)
        pytest.fail(f"{name}: {what} not seen after {timeout:.0f}s\n{self.diagnose(name)}")


def _parse_time(stamp: str) -> datetime:
    # CRI logs carry nanoseconds; datetime takes microseconds.
    stamp = re.sub(r"(\.\d{6})\d*", r"\1", stamp.replace("Z", "+00:00"))
    return datetime.fromisoformat(stamp)


@pytest.fixture(scope="module")
def pods(cluster: Cluster) -> Iterator[Pods]:
    namespace = cluster.namespace("node")
    result = Pods(cluster, namespace)
    for pod in PODS:
        created, _ = create_pod(cluster.core, namespace, pod)
        result.created[pod["metadata"]["name"]] = created
    watcher = result.watch()
    try:
        yield result
    finally:
        result._stop.set()
        watcher.join(10)
        # Let the kubelet stop the containers and unmount the volumes as it
        # would in a cluster; the node's teardown kills whatever remains.
        for name in result.created:
            try:
                cluster.core.delete_namespaced_pod(name, namespace, grace_period_seconds=1)
            except ApiException as error:
                if error.status != 404:
                    raise
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if not cluster.core.list_namespaced_pod(namespace).items:
                break
            time.sleep(0.5)


def _running_for(pods: Pods, name: str, seconds: float) -> bool:
    state = pods.status(name).get("state", {}).get("running")
    if not state:
        return False
    started = datetime.fromisoformat(state["startedAt"].replace("Z", "+00:00"))
    return (datetime.now(started.tzinfo) - started).total_seconds() >= seconds


def _restart_timing(pods: Pods, name: str) -> dict[str, float]:
    """Once restarted: seconds from the worker's hang to its kill and to the new start."""
    pods.wait(name, lambda: pods.first_restart.get(name), "a restart", 90)
    status, log = pods.wait(
        name,
        lambda: (s := pods.first_restart[name]) and "running" in s[0].get("state", {}) and s,
        "the restarted container running",
        30,
    )
    hung = [stamp for stamp, line in log if "hanging now" in line]
    assert hung, f"{name}: the first container never logged its hang: {log}"
    killed = datetime.fromisoformat(
        status["lastState"]["terminated"]["finishedAt"].replace("Z", "+00:00")
    )
    started = status["state"]["running"]["startedAt"]
    restarted = datetime.fromisoformat(started.replace("Z", "+00:00"))
    return {
        "hang_to_kill_s": round((killed - hung[0]).total_seconds(), 1),
        "hang_to_restart_s": round((restarted - hung[0]).total_seconds(), 1),
        "exit_code": status["lastState"]["terminated"].get("exitCode"),
    }


def _our_unhealthy(pods: Pods, name: str) -> list[str]:
    return [
        m
        for r, m, _ in pods.events(name)
        if r == "Unhealthy" and m.startswith("Liveness probe failed: ") and OUR_REASON.search(m)
    ]


def _only_startup_races(pods: Pods, name: str) -> None:
    """No kill, and no failed liveness probe except one that ran before the
    very first beat (a start slower than initial-delay on a loaded machine;
    one failure is below the threshold). A timeout or any other reason fails."""
    events = pods.events(name)
    assert not [e for e in events if e[0] == "Killing"], pods.diagnose(name)
    for reason, message, _ in events:
        if reason == "Unhealthy":
            assert message == "Liveness probe failed: heartbeat: no file at " + _path(pods, name), (
                pods.diagnose(name)
            )
    failed = pods.probes(name).get(("Liveness", "failed"), 0)
    assert failed <= 1, pods.diagnose(name)
    if failed:
        record_timing(f"{name}: liveness probes that ran before the first beat", failed)


def _path(pods: Pods, name: str) -> str:
    env = pods.created[name]["spec"]["containers"][0]["env"]
    return str(next(e["value"] for e in env if e["name"] == "HEARTBEAT_PATH"))


def test_hung_worker_is_restarted_by_the_kubelet(pods: Pods) -> None:
    timing = _restart_timing(pods, "hung")
    record_timing("hung worker: hang -> kill (s)", timing["hang_to_kill_s"])
    record_timing("hung worker: hang -> restart (s)", timing["hang_to_restart_s"])
    # The beat ages from the last iteration (about 1 s before the hang); the
    # probe fails from MAX_AGE, twice 3 s apart, then 2 s of grace. Far below
    # the pod's 30 s termination grace: the probe-level grace was used.
    assert timing["hang_to_restart_s"] < MAX_AGE + 2 * 3 + 2 + 10, timing
    assert timing["exit_code"] == 137, "a hung PID 1 ignores SIGTERM: SIGKILL after the grace"

    unhealthy = pods.wait("hung", lambda: _our_unhealthy(pods, "hung"), "our Unhealthy event", 30)
    assert all(int(OUR_REASON.search(m)[1]) >= MAX_AGE for m in unhealthy)  # type: ignore[index]
    killing = pods.wait(
        "hung",
        lambda: [m for r, m, _ in pods.events("hung") if r == "Killing"],
        "a Killing event",
        30,
    )
    assert KILLING in killing

    # The injected env reached the worker, and it beat where the probe looks.
    first = [line for _, line in pods.first_restart["hung"][1]]
    assert first[0].startswith("worker: beating into /tmp/heartbeat"), first


def test_healthy_worker_is_never_restarted(pods: Pods) -> None:
    pods.wait("healthy", lambda: _running_for(pods, "healthy", OBSERVE), f"{OBSERVE}s up", 90)
    probes = pods.probes("healthy")
    assert pods.restarts("healthy") == 0, pods.diagnose("healthy")
    # The probe really ran, inside the container, and passed.
    assert probes.get(("Liveness", "successful"), 0) >= OBSERVE // 3 - 3, probes
    _only_startup_races(pods, "healthy")
    record_timing("shell probe, mean duration (s)", round(pods.probe_seconds("healthy"), 3))


def test_startup_grace_lets_a_slow_worker_start(pods: Pods) -> None:
    # Without the grace the liveness probe finds no beat and kills the worker
    # long before its first beat, with our probe's reason.
    pods.wait("slow-no-grace", lambda: pods.restarts("slow-no-grace") >= 1, "a restart", 60)
    pods.wait(
        "slow-no-grace",
        lambda: [
            m
            for r, m, _ in pods.events("slow-no-grace")
            if r == "Unhealthy" and "heartbeat: no file at /tmp/heartbeat" in m
        ],
        "an Unhealthy event saying there is no beat yet",
        30,
    )

    # With it, the startup probe holds the liveness probe back until the first
    # beat, and the worker then runs on without a restart.
    pods.wait(
        "slow-grace",
        lambda: pods.status("slow-grace").get("started") is True,
        "the startup probe passing",
        60,
    )
    pods.wait("slow-grace", lambda: _running_for(pods, "slow-grace", SLOW_START + 12), "uptime", 60)
    probes = pods.probes("slow-grace")
    assert pods.restarts("slow-grace") == 0, pods.diagnose("slow-grace")
    # While it waits, each failed startup check is a Warning event with our reason.
    startup = [m for r, m, _ in pods.events("slow-grace") if r == "Unhealthy"]
    assert startup, "no startup probe failure was reported during the grace"
    assert set(startup) == {"Startup probe failed: heartbeat: no file at /tmp/heartbeat"}, startup
    assert probes.get(("Startup", "successful"), 0) == 1, probes
    assert probes.get(("Liveness", "successful"), 0) >= 2, probes
    assert probes.get(("Liveness", "failed"), 0) == 0, probes
    assert not [e for e in pods.events("slow-grace") if e[0] == "Killing"]


def test_read_only_root_filesystem_beats_into_the_injected_empty_dir(pods: Pods) -> None:
    name = "read-only"
    stored = pods.created[name]
    worker = stored["spec"]["containers"][0]
    assert {"name": "HEARTBEAT_PATH", "value": f"{BEAT_DIR}/worker"} in worker["env"]
    pods.wait(name, lambda: _running_for(pods, name, OBSERVE), f"{OBSERVE}s up", 90)
    probes = pods.probes(name)
    assert pods.restarts(name) == 0, pods.diagnose(name)
    assert probes.get(("Liveness", "successful"), 0) >= OBSERVE // 3 - 3, probes
    _only_startup_races(pods, name)
    lines = [line for _, line in pods.log(name, 0)]
    assert lines[0].startswith(f"worker: beating into {BEAT_DIR}/worker"), lines

    # The kubelet made the emptyDir a 1 MiB tmpfs; it holds the beat alone
    # (no temp files left by the atomic writes), owned by the worker's user.
    node = pods.cluster.node
    assert node.kubelet is not None
    volume = (
        node.kubelet.root_dir
        / "pods"
        / stored["metadata"]["uid"]
        / "volumes"
        / "kubernetes.io~empty-dir"
        / VOLUME_NAME
    )
    mount = _mount_of(volume)
    assert mount is not None, f"{volume} is not a mount"
    assert mount[0] == "tmpfs" and "size=1024k" in mount[1], mount
    assert sorted(p.name for p in volume.iterdir()) == ["worker"]
    beat = volume / "worker"
    assert beat.stat().st_uid == 65532
    assert abs(int(beat.read_text()) - time.time()) < MAX_AGE


def _mount_of(path: Path) -> tuple[str, str] | None:
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if fields[4] == str(path):
                sep = fields.index("-")
                return fields[sep + 1], fields[sep + 3]
    return None


def test_image_without_shell_uses_the_python_probe(pods: Pods) -> None:
    stored = pods.created["no-shell"]
    command = stored["spec"]["containers"][0]["livenessProbe"]["exec"]["command"]
    assert command[:4] == ["python3", "-m", "webhook.heartbeat", "check"]
    timing = _restart_timing(pods, "no-shell")
    record_timing(
        "no-shell worker (python probe): hang -> restart (s)", timing["hang_to_restart_s"]
    )
    assert timing["hang_to_restart_s"] < MAX_AGE + 2 * 3 + 2 + 10, timing
    pods.wait(
        "no-shell", lambda: _our_unhealthy(pods, "no-shell"), "our Unhealthy event (python)", 30
    )
    record_timing("python probe, mean duration (s)", round(pods.probe_seconds("no-shell"), 3))

    # The image really has no shell: the default probe cannot even start. The
    # kubelet counts a probe that errors as neither success nor failure (it
    # throws the result away), so the same hung worker is NEVER restarted:
    # only Warning events tell. Hence `heartbeat/probe: python` is required.
    control = "no-shell-shell-probe"
    events = pods.wait(
        control,
        lambda: [m for r, m, _ in pods.events(control) if r == "Unhealthy"],
        "the shell probe erroring",
        60,
    )
    assert all(m.startswith("Liveness probe errored") for m in events), events
    assert any('exec: "/bin/sh": stat /bin/sh: no such file or directory' in m for m in events)
    record_timing("shell probe without /bin/sh, the kubelet says", events[0][:120] + "...")
    pods.wait(control, lambda: _running_for(pods, control, 25), "25 s up", 60)
    hung = [line for _, line in pods.log(control, 0) if "hanging now" in line]
    assert hung, "the control worker never hung"
    assert pods.restarts(control) == 0, pods.diagnose(control)
    assert pods.probes(control).get(("Liveness", "failed"), 0) == 0
    assert not [e for e in pods.events(control) if e[0] == "Killing"]
