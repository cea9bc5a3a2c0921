"""A private Docker engine for the image test: Debian's dockerd with its own
data root, exec root, socket and cgroup parent, no bridge and no iptables
(builds and containers use the host network), stopped without leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.integration.cluster import Process, spawn, wait_until
from tests.node.node import (
    CGROUP_PREFIX,
    kill_cgroup,
    kill_matching,
    make_cgroup,
    remove_cgroup,
    unmount_all,
)

# Written by dockerd 20.10 outside its roots (its libtrust key, the plugin
# discovery dir) and by containerd 1.6 (the shims' socket dir): removed when
# this run created them.
HOST_PATHS = (
    Path("/etc/docker"),
    Path("/etc/docker/key.json"),
    Path("/run/docker"),
    Path("/run/docker/plugins"),
    Path("/run/containerd"),
    Path("/run/containerd/s"),
)


@dataclass
class Dockerd:
    workdir: Path
    cgroup: str = field(
        default_factory=lambda: f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    )
    process: Process | None = None
    _created: list[Path] = field(default_factory=list)

    @property
    def socket(self) -> Path:
        return self.workdir / "docker.sock"

    @property
    def exec_root(self) -> Path:
        return self.workdir / "x"  # short: containerd's socket lives under it

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCKER_HOST": f"unix://{self.socket}",
            "DOCKER_CONFIG": str(self.workdir / "client"),
            # The legacy builder: no buildx plugin is needed, and the daemon
            # (20.10) supports everything the Dockerfile uses.
            "DOCKER_BUILDKIT": "0",
        }

    def start(self) -> None:
        self._created = [path for path in HOST_PATHS if not path.exists()]
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "client").mkdir(exist_ok=True)
        config = self.workdir / "daemon.json"
        config.write_text(json.dumps({}))
        make_cgroup(self.cgroup)
        self.process = spawn(
            "dockerd",
            [
                "dockerd",
                f"--config-file={config}",
                f"--data-root={self.workdir / 'data'}",
                f"--exec-root={self.exec_root}",
                f"--pidfile={self.workdir / 'dockerd.pid'}",
                f"--host=unix://{self.socket}",
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--userland-proxy=false",
                "--storage-driver=overlay2",
                "--exec-opt=native.cgroupdriver=cgroupfs",
                f"--cgroup-parent=/{self.cgroup}",
                # Lowering oom_score_adj needs CAP_SYS_RESOURCE (see node.py).
                "--oom-score-adjust=0",
                "--log-level=warn",
            ],
            self.workdir,
        )
        wait_until(lambda: self.docker("version").returncode == 0, "dockerd", 90, self.process)

    def docker(
        self, *args: str, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["docker", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"docker {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def stop(self) -> list[str]:
        """Stop everything; return what could not be undone."""
        problems: list[str] = []
        if self.process is not None and self.process.alive():
            with contextlib.suppress(subprocess.TimeoutExpired):
                ids = self.docker("ps", "-aq", timeout=20).stdout.split()
                if ids:
                    self.docker("rm", "-f", *ids, timeout=60)
            self.process.stop(timeout=30)
        left = kill_cgroup(self.cgroup)
        if left:
            problems.append(f"processes still in cgroup {self.cgroup}: {sorted(left)}")
        stray = kill_matching(str(self.workdir))
        if stray:
            problems.append(f"processes left: {stray}")
        mounts = unmount_all(self.workdir)
        if mounts:
            problems.append(f"mounts left: {mounts}")
        problems += [f"cgroup left: {c}" for c in remove_cgroup(self.cgroup)]
        for path in reversed(self._created):
            with contextlib.suppress(OSError):
                if path.is_dir() and not path.is_symlink():
                    path.rmdir()  # only when empty
                else:
                    path.unlink()
        if not mounts:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)
        return problems
