"""The servers under test, each its own process on 127.0.0.1, started once per run.

Processes come from tests/integration/cluster.py's ``spawn``: own process group
and PR_SET_PDEATHSIG, so they die with the bench even when it is killed.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.cluster import Process, free_port, https_ok, spawn, wait_until

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    cli: bool  # True: the real `heartbeat-webhook serve`; False: bench.launch
    app: str = "webhook"  # bench.launch --app
    log_level: str = "info"
    http: str | None = None  # bench.launch --http
    stderr: str | None = None  # bench.launch --stderr: where the log goes instead

    def argv(self, port: int, certs: Path) -> list[str]:
        tls = ["--cert-file", str(certs / "tls.crt"), "--key-file", str(certs / "tls.key")]
        common = ["--port", str(port), *tls, "--keep-alive", "120", "--log-level", self.log_level]
        if self.cli:
            script = Path(sys.executable).with_name("heartbeat-webhook")
            prefix = [str(script)] if script.exists() else [sys.executable, "-m", "webhook"]
            return [*prefix, "serve", "--host", "127.0.0.1", *common]
        extra = ["--http", self.http] if self.http else []
        extra += ["--stderr", self.stderr] if self.stderr else []
        return [sys.executable, "-m", "bench.launch", "--app", self.app, *common, *extra]


BASELINE = Variant(
    "baseline", "bare ASGI app (bench/baseline.py), same uvicorn + TLS", False, "baseline"
)
WEBHOOK = Variant("webhook", "`heartbeat-webhook serve` as shipped (INFO decision log)", True)
VARIANTS = {
    v.name: v
    for v in (
        BASELINE,
        WEBHOOK,
        Variant(
            "nolog", "`heartbeat-webhook serve --log-level warning`", True, log_level="warning"
        ),
        Variant(
            "fieldsonly",
            "INFO, each decision's fields built, then dropped: nothing queued or written",
            False,
            "fieldsonly",
        ),
        Variant(
            "devnull",
            "the shipped app with its log (stderr) on /dev/null: lines formatted, not stored",
            False,
            stderr="/dev/null",
        ),
        Variant("nometrics", "create_app(metrics=NoopMetrics()), INFO log", False, "nometrics"),
        Variant(
            "nolog+nometrics",
            "NoopMetrics and --log-level warning",
            False,
            "nometrics",
            log_level="warning",
        ),
        Variant(
            "uncoalesced",
            "the shipped app on uvicorn's own HTTP protocol: headers and body in two writes",
            False,
            http="auto",
        ),
        Variant(
            "baseline-uncoalesced",
            "the baseline on uvicorn's own HTTP protocol (as the issue's reference figures)",
            False,
            "baseline",
            http="auto",
        ),
        Variant("h11", "the shipped app on uvicorn's h11 protocol, uncoalesced", False, http="h11"),
    )
}


def make_certs(out: Path) -> Path:
    """A CA and a serving pair for 127.0.0.1, written by the project's own command."""
    subprocess.run(
        [
            sys.executable, "-m", "webhook", "certs",
            "--service", "heartbeat-webhook", "--namespace", "heartbeat-system",
            "--out", str(out), "--san", "127.0.0.1",
        ],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return out


@dataclass
class Server:
    variant: Variant
    certs: Path
    workdir: Path
    port: int = 0
    process: Process | None = None
    rss_kib: dict[str, int] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.variant.name

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not running")
        return self.process.popen.pid

    def start(self) -> None:
        context = ssl.create_default_context(cafile=str(self.certs / "ca.crt"))
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.workdir.mkdir(parents=True, exist_ok=True)
        last = ""
        for _ in range(5):  # free_port is racy; retry with a new port
            port = free_port()
            proc = spawn(self.name, self.variant.argv(port, self.certs), self.workdir, env)
            try:
                wait_until(
                    lambda p=port: https_ok(f"https://127.0.0.1:{p}/readyz", context),
                    f"{self.name} /readyz",
                    30,
                    proc,
                )
            except (RuntimeError, TimeoutError) as error:
                last = str(error)
                proc.stop()
                continue
            self.port, self.process = port, proc
            self.rss_kib["start"] = self.rss()
            return
        raise RuntimeError(f"{self.name} did not start: {last}")

    def rss(self, field_name: str = "VmRSS") -> int:
        """Resident set size in KiB from /proc/<pid>/status (VmRSS, or VmHWM for the peak)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        return 0

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


def which(tool: str) -> str | None:
    return shutil.which(tool)
