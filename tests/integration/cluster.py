"""Start etcd, kube-apiserver and the webhook as real processes, envtest style.

Processes run in their own process group with PR_SET_PDEATHSIG, so a test run
leaves nothing behind even when pytest itself is killed.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import os
import secrets
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.serving import free_port

__all__ = [
    "ASSETS_SCRIPT", "ControlPlane", "Process", "Webhook", "envtest_dir", "free_port", "spawn",
    "wait_until",
]  # fmt: skip

# Prints the directory holding kube-apiserver and etcd: $KUBEBUILDER_ASSETS when
# it holds both, else PATH, else its cache, building them on first use.
ASSETS_SCRIPT = Path(__file__).resolve().parents[1] / "envtest" / "assets.sh"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def envtest_dir(script: Path, what: str, hint: str = "see its output above") -> Path:
    """Run a tests/envtest script and return the directory it prints last.

    The scripts resolve their own overrides (KUBEBUILDER_ASSETS, ...); their
    progress goes to stderr. RuntimeError, naming the script, when one fails.
    """
    result = subprocess.run(["bash", str(script)], stdout=subprocess.PIPE, text=True, check=False)
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"{script} could not provide {what} (exit {result.returncode}); {hint}")
    return Path(lines[-1])


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if not self.alive():
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Process:
    log = workdir / f"{name}.log"
    handle = log.open("ab")
    popen = subprocess.Popen(
        argv,
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=workdir,
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 (only async-signal-safe work)
    )
    handle.close()
    return Process(name, popen, log)


def wait_until(check: Callable[[], bool], what: str, timeout: float, proc: Process) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited while waiting for {what}:\n{proc.tail()}")
        with contextlib.suppress(OSError, ValueError):
            if check():
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} not ready after {timeout}s:\n{proc.tail()}")


def https_ok(url: str, context: ssl.SSLContext, token: str | None = None) -> bool:
    request = urllib.request.Request(url)  # noqa: S310 (https on loopback only)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, context=context, timeout=2) as response:  # noqa: S310
        return bool(response.status == 200)


@dataclass
class ControlPlane:
    assets: Path
    workdir: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    processes: list[Process] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "apiserver-certs" / "apiserver.crt"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        etcd_url = self._start_etcd()
        self._start_apiserver(etcd_url)
        self._write_kubeconfig()

    def stop(self) -> None:
        for proc in reversed(self.processes):
            proc.stop()
        self.processes.clear()

    def _start_etcd(self) -> str:
        for _ in range(5):
            client, peer = free_port(), free_port()
            url = f"http://127.0.0.1:{client}"
            proc = spawn(
                "etcd",
                [
                    str(self.assets / "etcd"),
                    f"--data-dir={self.workdir / 'etcd-data'}",
                    f"--listen-client-urls={url}",
                    f"--advertise-client-urls={url}",
                    f"--listen-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                    f"--initial-cluster=default=http://127.0.0.1:{peer}",
                    "--unsafe-no-fsync",  # test data; envtest does the same
                    "--log-level=warn",
                ],
                self.workdir,
            )
            try:
                wait_until(lambda u=url: _http_ok(f"{u}/health"), "etcd", 30, proc)
            except RuntimeError:
                continue  # most likely lost the port race; try new ports
            self.processes.append(proc)
            return url
        raise RuntimeError("etcd did not start after 5 attempts")

    def _start_apiserver(self, etcd_url: str) -> None:
        certs = self.workdir / "apiserver-certs"
        certs.mkdir(exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_key, sa_pub = self.workdir / "sa.key", self.workdir / "sa.pub"
        sa_key.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        sa_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        tokens = self.workdir / "tokens.csv"
        tokens.write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        for _ in range(5):
            self.port = free_port()
            proc = spawn(
                "kube-apiserver",
                [
                    str(self.assets / "kube-apiserver"),
                    f"--etcd-servers={etcd_url}",
                    f"--cert-dir={certs}",
                    "--bind-address=127.0.0.1",
                    f"--secure-port={self.port}",
                    f"--token-auth-file={tokens}",
                    "--authorization-mode=RBAC",
                    f"--service-account-key-file={sa_pub}",
                    f"--service-account-signing-key-file={sa_key}",
                    "--service-account-issuer=https://kubernetes.default.svc",
                    "--service-cluster-ip-range=10.0.0.0/24",
                    "--allow-privileged=true",
                    "--enable-priority-and-fairness=false",
                ],
                self.workdir,
            )
            try:
                wait_until(self._ready, "kube-apiserver /readyz", 90, proc)
            except RuntimeError:
                continue
            self.processes.append(proc)
            return
        raise RuntimeError("kube-apiserver did not start after 5 attempts")

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def metrics(self, prefix: str) -> dict[str, float]:
        """Sample name with labels -> value, for names starting with ``prefix``, from
        the apiserver's GET /metrics (as the admin token)."""
        request = urllib.request.Request(f"{self.url}/metrics")  # noqa: S310 (loopback)
        request.add_header("Authorization", f"Bearer {self.token}")
        with urllib.request.urlopen(request, context=self.context(), timeout=10) as response:  # noqa: S310
            text = response.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line.startswith(prefix):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def _ready(self) -> bool:
        if not self.ca_file.exists():
            return False
        return https_ok(f"{self.url}/readyz", self.context(), self.token)

    def _write_kubeconfig(self) -> None:
        ca = base64.b64encode(self.ca_file.read_bytes()).decode()
        self.kubeconfig.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: envtest
  cluster:
    server: {self.url}
    certificate-authority-data: {ca}
users:
- name: admin
  user:
    token: {self.token}
contexts:
- name: envtest
  context: {{cluster: envtest, user: admin}}
current-context: envtest
"""
        )


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 (loopback)
        return bool(response.status == 200)


@dataclass
class Webhook:
    """The real ``heartbeat-webhook serve``, on loopback, with certs from ``certs``."""

    workdir: Path
    port: int = 0
    process: Process | None = None
    ca_bundle: str = ""
    name: str = "webhook"  # of its log file, and in errors
    extra_args: list[str] = field(default_factory=list)  # more `serve` flags

    @property
    def cert_dir(self) -> Path:
        return self.workdir / "webhook-certs"

    def make_certs(self) -> None:
        out = subprocess.run(
            [
                sys.executable, "-m", "webhook", "certs",
                "--service", "heartbeat-webhook", "--namespace", "heartbeat-system",
                "--out", str(self.cert_dir), "--san", "127.0.0.1",
            ],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.ca_bundle = out.stdout.strip().splitlines()[-1]

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not self.ca_bundle:
            self.make_certs()
        ports = [self.port] if self.port else [free_port() for _ in range(5)]
        for port in ports:
            proc = spawn(
                self.name,
                [
                    sys.executable, "-m", "webhook", "serve",
                    "--host", "127.0.0.1", "--port", str(port),
                    "--cert-file", str(self.cert_dir / "tls.crt"),
                    "--key-file", str(self.cert_dir / "tls.key"),
                    *self.extra_args,
                ],
                self.workdir,
            )  # fmt: skip
            try:
                # Generous: other jobs may be loading the machine.
                wait_until(lambda p=port: self._ready(p), f"{self.name} /readyz", 60, proc)
            except RuntimeError:
                if self.port:  # a fixed port (a restart) cannot move: say why it failed
                    raise
                continue
            self.port, self.process = port, proc
            return
        raise RuntimeError(f"heartbeat-webhook serve ({self.name}) did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None:
            self.process.stop(sig)
            self.process = None

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert_dir / "ca.crt"))

    def _ready(self, port: int) -> bool:
        return https_ok(f"https://127.0.0.1:{port}/readyz", self.context())

    def metrics(self) -> dict[str, float]:
        """Sample name with labels -> value, from GET /metrics."""
        with urllib.request.urlopen(f"{self.url}/metrics", context=self.context(), timeout=5) as r:  # noqa: S310
            text = r.read().decode()
        samples: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def reviews(self) -> float:
        """Total admission reviews answered so far, whatever the outcome."""
        return sum(
            value
            for name, value in self.metrics().items()
            if name.startswith("heartbeat_webhook_admission_requests_total")
        )


@contextlib.contextmanager
def running(*parts: ControlPlane | Webhook) -> Iterator[None]:
    try:
        yield
    finally:
        for part in reversed(parts):
            part.stop()
