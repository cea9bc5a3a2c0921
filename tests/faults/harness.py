"""Building blocks for the fault and soak tests: webhook variants, a create load,
a loopback balancer, and readings of the apiserver's and the webhook's counters.

A plain module (not a conftest) so ``python -m tests.faults.soak`` can use it too.
Everything here is bounded in time and stops by itself; processes are started
through ``tests.integration.cluster.spawn`` (own process group, PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from kubernetes import client, config

from tests.integration.cluster import ControlPlane, Webhook
from tests.integration.conftest import MWC_FILE, VWC_FILE, annotated_pod, registration

INJECT_WEBHOOK = "inject.heartbeat-webhook.heartbeat-system.svc"
MWC_NAME = "heartbeat-webhook"
INJECTED = "heartbeat/injected"
IDLE_SECONDS = 95.0  # longer than the apiserver's 90 s idle connection pool


# --- the webhook -----------------------------------------------------------------


@dataclass
class FaultWebhook(Webhook):
    """``Webhook`` that can share the certificate directory of another instance
    (replicas share one Secret)."""

    shared_certs: Path | None = None

    @property
    def cert_dir(self) -> Path:
        return self.shared_certs or self.workdir / "webhook-certs"

    def replica(self, workdir: Path, name: str, *extra: str) -> FaultWebhook:
        """Another instance serving the same certificate files, on its own port."""
        return FaultWebhook(
            workdir, ca_bundle=self.ca_bundle, name=name, shared_certs=self.cert_dir,
            extra_args=list(extra),
        )  # fmt: skip

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.popen.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.alive()

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def decisions(self, since: float = 0.0) -> int:
        """Reviews this instance logged an answer for at or after wall-clock ``since``."""
        count = 0
        with (self.workdir / f"{self.name}.log").open() as log:
            for line in log:
                if '"decision"' in line:
                    with contextlib.suppress(ValueError, KeyError):
                        count += json.loads(line)["ts"] >= since
        return count

    def signal(self, sig: int) -> None:
        """Send ``sig`` without waiting (``stop`` waits for the exit)."""
        assert self.process is not None
        os.killpg(self.process.popen.pid, sig)

    def served_serial(self) -> int:
        """The serial of the certificate a new TLS handshake gets now."""
        with (
            socket.create_connection(("127.0.0.1", self.port), timeout=5) as raw,
            self.context().wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number

    def file_serial(self) -> int:
        pem = (self.cert_dir / "tls.crt").read_bytes()
        return x509.load_pem_x509_certificate(pem).serial_number

    def rotate(self) -> None:
        """A new leaf from the same CA into the same files: ``heartbeat-webhook certs``."""
        subprocess.run(
            [
                sys.executable, "-m", "webhook", "certs",
                "--service", "heartbeat-webhook", "--namespace", "heartbeat-system",
                "--out", str(self.cert_dir), "--san", "127.0.0.1",
            ],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def review(uid: str, name: str = "direct") -> bytes:
    """An AdmissionReview for one opted-in pod, as the apiserver would send it."""
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "namespace": "faults",
                "operation": "CREATE",
                "object": annotated_pod(name),
            },
        }
    ).encode()


# --- the apiserver side ------------------------------------------------------------


def fail_open_count(plane: ControlPlane) -> float:
    """Calls to our mutating webhook the apiserver gave up on and admitted anyway."""
    samples = plane.metrics("apiserver_admission_webhook_fail_open_count")
    return sum(v for k, v in samples.items() if f'name="{INJECT_WEBHOOK}"' in k)


def webhook_call_codes(plane: ControlPlane) -> dict[str, float]:
    """apiserver_admission_webhook_request_total for our webhook, summed by its code label."""
    samples = plane.metrics("apiserver_admission_webhook_request_total")
    codes: Counter[str] = Counter()
    for key, value in samples.items():
        if f'name="{INJECT_WEBHOOK}"' in key:
            code = key.partition('code="')[2].partition('"')[0]
            codes[code] += int(value)
    return dict(codes)


def create_options() -> dict[str, Any]:
    # Bounded: a create never waits more than 30 s, whatever the fault.
    return {"_preload_content": False, "_request_timeout": (5, 30)}


def register(api: client.ApiClient, core: client.CoreV1Api, webhook: Webhook, ns: str) -> None:
    """manifests/base's webhook configurations, pointed at ``webhook``; wait until in effect."""
    admission = client.AdmissionregistrationV1Api(api)
    admission.create_mutating_webhook_configuration(registration(webhook, MWC_FILE))
    admission.create_validating_webhook_configuration(registration(webhook, VWC_FILE))
    wait_for_calls(core, ns, [webhook])


def point_mutating_webhook(api: client.ApiClient, url: str) -> None:
    """Repoint the registered mutating webhook (same caBundle) at ``url`` + /mutate."""
    admission = client.AdmissionregistrationV1Api(api)
    current = json.loads(
        admission.read_mutating_webhook_configuration(MWC_NAME, _preload_content=False).data
    )
    patch = [
        {"op": "replace", "path": f"/webhooks/{index}/clientConfig/url", "value": f"{url}/mutate"}
        for index in range(len(current["webhooks"]))
    ]
    admission.patch_mutating_webhook_configuration(MWC_NAME, patch)


def wait_for_calls(
    core: client.CoreV1Api, ns: str, hooks: Sequence[Webhook], timeout: float = 60
) -> None:
    """Until dry-run creates in ``ns`` are answered (injected) by one of ``hooks``, twice in
    a row: the apiserver applies a webhook configuration change a moment after it is stored."""
    deadline = time.monotonic() + timeout
    streak = 0
    while time.monotonic() < deadline:
        before = sum(hook.reviews() for hook in hooks)
        response = core.create_namespaced_pod(
            ns, annotated_pod("wait"), dry_run="All", **create_options()
        )
        pod = json.loads(response.data)
        after = sum(hook.reviews() for hook in hooks)
        if after > before and INJECTED in pod["metadata"].get("annotations", {}):
            streak += 1
            if streak == 2:
                return
        else:
            streak = 0
            time.sleep(0.2)
    raise TimeoutError(f"the apiserver did not call {[h.url for h in hooks]} within {timeout}s")


# --- a steady create load ------------------------------------------------------------


@dataclass
class Created:
    name: str
    start: float  # time.monotonic() when the create was sent
    latency: float = 0.0
    error: str = ""
    injected: bool = False  # carries the heartbeat/injected marker
    probe: bool = False  # the worker has our exec livenessProbe
    env: int = 0  # HEARTBEAT_PATH entries in the worker
    volumes: int = 0  # heartbeat-webhook emptyDir volumes
    mounts: int = 0  # mounts of them in the worker

    @property
    def duplicated(self) -> bool:
        return self.env > 1 or self.volumes > 1 or self.mounts > 1

    @property
    def partial(self) -> bool:
        """Some of the injection without the rest: never expected."""
        return len({self.injected, self.probe, self.env == 1}) != 1


def inspect(created: Created, pod: dict[str, Any], read_only: bool) -> None:
    worker = pod["spec"]["containers"][0]
    probe = worker.get("livenessProbe", {}).get("exec", {}).get("command", [])
    created.injected = INJECTED in pod["metadata"].get("annotations", {})
    created.probe = "heartbeat-probe" in probe
    created.env = sum(1 for e in worker.get("env", []) if e["name"] == "HEARTBEAT_PATH")
    volumes = [v for v in pod["spec"].get("volumes", []) if v["name"].startswith("heartbeat-")]
    created.volumes = len(volumes)
    created.mounts = sum(
        1 for m in worker.get("volumeMounts", []) if m["name"].startswith("heartbeat-")
    )
    if read_only and created.injected and created.volumes != 1:
        created.error = f"read-only pod injected with {created.volumes} heartbeat volumes"


@dataclass
class LoadReport:
    results: list[Created]
    seconds: float

    @property
    def ok(self) -> list[Created]:
        return [r for r in self.results if not r.error]

    @property
    def failures(self) -> list[Created]:
        return [r for r in self.results if r.error]

    @property
    def missed(self) -> list[str]:
        """Created without injection: the apiserver failed open for them."""
        return sorted(r.name for r in self.ok if not r.injected)

    @property
    def duplicated(self) -> list[str]:
        return sorted(r.name for r in self.ok if r.duplicated)

    @property
    def partial(self) -> list[str]:
        return sorted(r.name for r in self.ok if r.partial)

    def latency(self, quantile: float) -> float:
        values = sorted(r.latency for r in self.ok)
        if not values:
            return math.nan
        return values[max(0, math.ceil(quantile * len(values)) - 1)]

    def summary(self) -> str:
        return (
            f"{len(self.ok)} pods created in {self.seconds:.1f}s "
            f"({len(self.ok) / max(self.seconds, 1e-9):.1f}/s), {len(self.failures)} failed, "
            f"{len(self.missed)} not injected, {len(self.duplicated)} injected twice; "
            f"create latency p50 {self.latency(0.5) * 1000:.0f} ms, "
            f"p99 {self.latency(0.99) * 1000:.0f} ms, max {self.latency(1.0) * 1000:.0f} ms"
        )


class CreateLoad:
    """``threads`` creators, each with its own API client, sending pod creates paced at
    ``rate`` per second in total (no catch-up bursts when the cluster is slow).

    Every other pod has a read-only root filesystem, so the injected volume is
    checked for duplicates too.
    """

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        *,
        threads: int = 4,
        rate: float = 30.0,
        prefix: str = "load",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.threads = threads
        self.rate = rate
        self.prefix = prefix
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers: list[threading.Thread] = []
        self._results: list[Created] = []
        self._started = 0.0

    def __enter__(self) -> CreateLoad:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started = time.monotonic()
        for index in range(self.threads):
            worker = threading.Thread(
                target=self._run, args=(index,), name=f"creator-{index}", daemon=True
            )
            worker.start()
            self._workers.append(worker)

    def count(self) -> int:
        with self._lock:
            return len(self._results)

    def wait_for(self, count: int, timeout: float) -> None:
        """Until ``count`` creates have completed since start (bounded)."""
        deadline = time.monotonic() + timeout
        while self.count() < count and time.monotonic() < deadline:
            time.sleep(0.05)

    def go_on(self, seconds: float, creates: int, timeout: float = 30) -> None:
        """Let the load run at least ``seconds`` and ``creates`` more creates (bounded)."""
        until = time.monotonic() + seconds
        self.wait_for(self.count() + creates, timeout)
        time.sleep(max(0.0, until - time.monotonic()))

    def stop(self) -> LoadReport:
        self._stop.set()
        for worker in self._workers:
            worker.join(60)  # a create is bounded by its 30 s request timeout
            if worker.is_alive():
                raise RuntimeError(f"{worker.name} did not stop")
        self._workers.clear()
        with self._lock:
            return LoadReport(list(self._results), time.monotonic() - self._started)

    def _run(self, index: int) -> None:
        api = config.new_client_from_config(config_file=str(self.kubeconfig))
        core = client.CoreV1Api(api)
        period = self.threads / self.rate
        next_at = time.monotonic() + index * period / self.threads
        number = 0
        try:
            while not self._stop.is_set():
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
                next_at = max(next_at + period, time.monotonic())
                number += 1
                self._record(core, f"{self.prefix}-{index}-{number}", read_only=number % 2 == 0)
        finally:
            api.close()

    def _record(self, core: client.CoreV1Api, name: str, read_only: bool) -> None:
        pod = annotated_pod(name)
        if read_only:
            pod["spec"]["containers"][0]["securityContext"] = {"readOnlyRootFilesystem": True}
        created = Created(name, time.monotonic())
        try:
            response = core.create_namespaced_pod(self.namespace, pod, **create_options())
            created.latency = time.monotonic() - created.start
            inspect(created, json.loads(response.data), read_only)
        except Exception as error:  # any failure is a finding, recorded with its pod
            created.latency = time.monotonic() - created.start
            created.error = f"{type(error).__name__}: {str(error)[:300]}"
        with self._lock:
            self._results.append(created)


class Burst:
    """``size`` creates sent at the same instant, each from its own client (so the
    apiserver makes that many concurrent webhook calls and pools that many connections)."""

    def __init__(self, kubeconfig: Path, namespace: str, size: int, prefix: str) -> None:
        self.namespace = namespace
        self.prefix = prefix
        self.apis = [
            config.new_client_from_config(config_file=str(kubeconfig)) for _ in range(size)
        ]
        self.results: list[Created] = []
        self._fired = 0

    def fire(self) -> list[Created]:
        self._fired += 1
        barrier = threading.Barrier(len(self.apis))
        fired: list[Created] = []
        lock = threading.Lock()

        def one(index: int, api: client.ApiClient) -> None:
            name = f"{self.prefix}-{self._fired}-{index}"
            barrier.wait(10)
            created = Created(name, time.monotonic())
            try:
                response = client.CoreV1Api(api).create_namespaced_pod(
                    self.namespace, annotated_pod(name), **create_options()
                )
                created.latency = time.monotonic() - created.start
                inspect(created, json.loads(response.data), read_only=False)
            except Exception as error:  # recorded, like CreateLoad's
                created.latency = time.monotonic() - created.start
                created.error = f"{type(error).__name__}: {str(error)[:300]}"
            with lock:
                fired.append(created)

        threads = [
            threading.Thread(target=one, args=(i, api), daemon=True)
            for i, api in enumerate(self.apis)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.results += fired
        return fired

    def close(self) -> None:
        for api in self.apis:
            api.close()


# --- a loopback load balancer over ready backends ------------------------------------------


class Balancer:
    """What a Service does for the apiserver in a cluster, on loopback.

    TCP passthrough (TLS ends at the webhook). Each NEW connection goes, round robin,
    to a backend whose /readyz answered 200 on the last poll; polls run every
    ``interval`` s, like the endpoints controller following readiness (a 503 or a
    refused connection removes a backend at once; a slow answer only after 3 in a
    row, as a readinessProbe's failureThreshold would). Established connections stay
    where they are, as with kube-proxy.
    """

    def __init__(self, backends: Sequence[FaultWebhook], interval: float = 0.1) -> None:
        self.backends = list(backends)
        self.interval = interval
        self.port = 0
        self.ready: set[int] = set()
        self.routed: list[tuple[float, int]] = []  # (monotonic, backend port) per connection
        self.refused = 0  # connections closed because no backend was ready or reachable
        self.events: list[tuple[float, int, bool]] = []  # (monotonic, port, ready)
        self._slow: Counter[int] = Counter()
        self._turn = 0
        self._stop = threading.Event()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._threads: list[threading.Thread] = []

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._poll_once()
        loop_thread = threading.Thread(target=self._loop.run_forever, name="lb-loop", daemon=True)
        loop_thread.start()
        self._threads.append(loop_thread)
        started = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._proxy, "127.0.0.1", 0), self._loop
        )
        self._server = started.result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        poller = threading.Thread(target=self._poll, name="lb-readiness", daemon=True)
        poller.start()
        self._threads.append(poller)

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:

            async def close(server: asyncio.Server) -> None:
                server.close()
                for transport in list(self._transports):
                    transport.abort()  # type: ignore[attr-defined]

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(self._server), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        for thread in self._threads:
            thread.join(10)
        with contextlib.suppress(RuntimeError):
            self._loop.close()

    def __enter__(self) -> Balancer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def add(self, backend: FaultWebhook, timeout: float = 10) -> None:
        """A new replica: polled from now on, and sent connections once ready."""
        self.backends.append(backend)
        deadline = time.monotonic() + timeout
        while backend.port not in self.ready:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{backend.name} never became ready at the balancer")
            time.sleep(0.05)

    def connections(self, port: int, since: float = 0.0) -> int:
        """New connections sent to ``port`` at or after ``since``."""
        return sum(1 for t, p in self.routed if p == port and t >= since)

    def became(self, port: int, ready: bool) -> float | None:
        """When ``port`` was first seen turning to ``ready``, if it was."""
        return next((t for t, p, r in self.events if p == port and r is ready), None)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._poll_once()

    def _poll_once(self) -> None:
        for backend in list(self.backends):
            port = backend.port
            try:
                ready = _readyz(port, backend.context(), timeout=1.0) == 200
                self._slow[port] = 0
            except TimeoutError:
                self._slow[port] += 1
                ready = port in self.ready and self._slow[port] < 3
            except (OSError, http.client.HTTPException):
                ready = False  # refused or reset: the process is gone
            if ready != (port in self.ready):
                (self.ready.add if ready else self.ready.discard)(port)
                # Stamped after the change: a connection picked later cannot have seen
                # the old set, so "none routed to it after it became unready" is exact.
                self.events.append((time.monotonic(), port, ready))

    def _pick(self) -> int | None:
        ready = sorted(self.ready)
        if not ready:
            return None
        self._turn += 1
        return ready[self._turn % len(ready)]

    async def _proxy(self, down_r: asyncio.StreamReader, down_w: asyncio.StreamWriter) -> None:
        self._transports.add(down_w.transport)
        try:
            picked = time.monotonic()  # before reading the ready set: see became()
            port = self._pick()
            if port is None:
                self.refused += 1
                down_w.transport.abort()
                return
            try:
                up_r, up_w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 3)
            except (OSError, TimeoutError):
                self.refused += 1
                down_w.transport.abort()
                return
            self.routed.append((picked, port))
            self._transports.add(up_w.transport)
            try:
                await asyncio.gather(_pipe(down_r, up_w), _pipe(up_r, down_w))
            finally:
                self._transports.discard(up_w.transport)
                up_w.close()
        finally:
            self._transports.discard(down_w.transport)
            down_w.close()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction; pass a clean close on as a half-close, a reset as a reset."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, RuntimeError):
        writer.transport.abort()


def _readyz(port: int, context: ssl.SSLContext, timeout: float) -> int:
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=timeout)
    try:
        connection.request("GET", "/readyz")
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


# --- watching one instance from outside -------------------------------------------------


@dataclass
class Lifecycle:
    """When an instance stopped being ready and when its listener closed."""

    unready: float | None = None
    closed: float | None = None
    exited: float | None = None


class LifecycleWatch:
    """Polls one instance's /readyz directly (every ``interval`` s) after a signal."""

    def __init__(self, hook: FaultWebhook, interval: float = 0.02) -> None:
        self.hook = hook
        self.interval = interval
        self.seen = Lifecycle()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lifecycle", daemon=True)

    def start(self) -> LifecycleWatch:
        self._thread.start()
        return self

    def join(self, timeout: float) -> Lifecycle:
        self._thread.join(timeout)
        self._stop.set()
        self._thread.join(5)
        return self.seen

    def _run(self) -> None:
        port, context = self.hook.port, self.hook.context()
        assert self.hook.process is not None
        popen = self.hook.process.popen
        while not self._stop.is_set():
            # Stamped when the answer (or the refusal) arrived, never before the request:
            # a 503 seen at t means the server was draining at t.
            try:
                status = _readyz(port, context, timeout=2.0)
                if status == 503 and self.seen.unready is None:
                    self.seen.unready = time.monotonic()
            except ConnectionRefusedError:
                if self.seen.closed is None:
                    self.seen.closed = time.monotonic()
            except (OSError, http.client.HTTPException):
                pass  # reset mid-request during shutdown: neither state for sure
            if popen.poll() is not None:
                self.seen.exited = time.monotonic()
                return
            time.sleep(self.interval)


# --- an idle keep-alive connection ---------------------------------------------------------


@dataclass
class IdleReuse:
    idle_seconds: float
    first_status: int = 0
    first_connection_header: str | None = None
    second_status: int = 0
    local_before: tuple[str, int] | None = None
    local_after: tuple[str, int] | None = None
    same_socket: bool = False
    eof_seen_before_reuse: bool = False
    error: str = ""
    done: threading.Event = field(default_factory=threading.Event)


def idle_reuse(hook: Webhook, idle: float, result: IdleReuse) -> None:
    """POST a review, leave the kept-alive connection idle ``idle`` s, POST again on it."""
    import select

    connection = http.client.HTTPSConnection(
        "127.0.0.1", hook.port, context=hook.context(), timeout=10
    )
    headers = {"Content-Type": "application/json"}
    try:
        connection.request("POST", "/mutate", review("idle-1"), headers)
        first = connection.getresponse()
        first.read()
        result.first_status = first.status
        result.first_connection_header = first.getheader("connection")
        sock = connection.sock
        assert sock is not None
        result.local_before = sock.getsockname()
        time.sleep(idle)
        # A server that closed the idle connection would have made it readable (EOF).
        result.eof_seen_before_reuse = bool(select.select([sock], [], [], 0)[0])
        connection.request("POST", "/mutate", review("idle-2"), headers)
        second = connection.getresponse()
        body = json.loads(second.read())
        assert body["response"]["uid"] == "idle-2"
        result.second_status = second.status
        result.same_socket = connection.sock is sock
        result.local_after = sock.getsockname()
    except Exception as error:  # reported by the test
        result.error = f"{type(error).__name__}: {error}"
    finally:
        connection.close()
        result.done.set()


# --- misc ---------------------------------------------------------------------------


def audit_missed(kubeconfig: Path, namespace: str) -> tuple[int, list[dict[str, Any]]]:
    """``heartbeat-webhook audit -n NS -o json``, in process; (exit code, findings)."""
    import io

    from webhook.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["audit", "-n", namespace, "-o", "json", "--kubeconfig", str(kubeconfig)])
    findings: list[dict[str, Any]] = json.loads(out.getvalue() or "[]")
    return code, findings


def stored_pod_names(core: client.CoreV1Api, namespace: str) -> set[str]:
    response = core.list_namespaced_pod(namespace, _preload_content=False, _request_timeout=60)
    return {item["metadata"]["name"] for item in json.loads(response.data)["items"]}


@contextlib.contextmanager
def stopping(*parts: FaultWebhook | Balancer) -> Iterator[None]:
    """Stop each part on the way out, whatever happened (processes: SIGKILL if stuck)."""
    try:
        yield
    finally:
        for part in reversed(parts):
            with contextlib.suppress(Exception):
                part.stop()


def sample_rss(hook: FaultWebhook, every: float, stop: threading.Event) -> Callable[[], list[int]]:
    """Sample the webhook's VmRSS every ``every`` s until ``stop``; returns a getter."""
    samples: list[int] = []

    def run() -> None:
        while not stop.wait(every):
            with contextlib.suppress(OSError, AssertionError, RuntimeError):
                samples.append(hook.rss_kib())

    threading.Thread(target=run, name="rss", daemon=True).start()
    return lambda: list(samples)
