"""A real node for the tests: containerd and a kubelet, on this machine.

containerd (Debian's 1.6) runs with its own config, root, state and socket
under the node's work directory, the overlayfs snapshotter, runc with the
cgroupfs driver and a locally built pause image as its sandbox image. The
kubelet (tests/envtest/node-assets.sh) registers against the suite's
kube-apiserver and runs the pods whose ``nodeName`` is this node's name.

Everything the node creates is undone by :meth:`Node.stop`, which reports what
it could not undo. The host state the kubelet touches outside its root dir,
found by running it, is restored too:

* cgroups: the kubelet's hierarchy lives under a ``cgroupRoot`` of its own
  (``/heartbeat-node-<pid>-<hex>``), removed at the end;
* sysctls: the kubelet sets vm.overcommit_memory, vm.panic_on_oom,
  kernel.panic, kernel.panic_on_oops and kernel.keys.* (its "kernel
  defaults"); their values are saved and put back;
* ``/var/lib/kubelet/device-plugins/kubelet.sock`` (a hard-coded path) and
  ``/var/log/containers`` symlinks: removed when they are ours;
* mounts (emptyDirs, projected tokens, container root filesystems, the
  kubelet's rshared root dir): unmounted;
* processes: containerd and the kubelet die with the test process
  (PR_SET_PDEATHSIG); containers and runc shims, which containerd detaches,
  are killed through containerd, then through the cgroups, then by their
  command line. A run killed outright leaves them (and its host changes,
  recorded in ``host-state.json``); the next run sweeps them
  (see :func:`sweep_stale`).

Learnt by running it here (kubelet v1.37.2, containerd 1.6.20, runc 1.1.5,
cgroup v1 with a unified mount):

* the kubelet refuses cgroup v1 unless ``failCgroupV1: false`` (default true
  since 1.35);
* containerd 1.6 lacks the RuntimeConfig CRI call ("unknown method
  RuntimeConfig"); the kubelet falls back to its own ``cgroupDriver`` (still
  so in v1.38.0-beta.0), which must match containerd's ``SystemdCgroup``;
* this VM withholds CAP_SYS_RESOURCE, so nothing may lower an oom_score_adj:
  the kubelet asks -998 for pod sandboxes and runc dies with "can't get final
  child's PID from pipe: EOF" unless containerd clamps it
  (``restrict_oom_score_adj``);
* ``--node-ip=127.0.0.1`` is rejected ("nodeIP can't be loopback address");
* with no CNI config the node stays NotReady ("cni plugin not initialized")
  and gets no taint from the kubelet; hostNetwork pods run regardless.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import ssl
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.integration.cluster import Process, free_port, spawn, wait_until

CGROUP_FS = Path("/sys/fs/cgroup")
CGROUP_PREFIX = "heartbeat-node-"
WORKDIR_PREFIX = "hbnode-"
SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
DEVICE_PLUGINS = Path("/var/lib/kubelet/device-plugins")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
SHIM_SOCKETS = Path("/run/containerd/s")  # containerd 1.6 hard-codes the shims' socket dir

_MNT_DETACH = 2
_libc = ctypes.CDLL(None, use_errno=True)


# --------------------------------------------------------------------------
# Host helpers


def mounts_under(prefix: Path) -> list[str]:
    """Mount points at or below ``prefix``, deepest first."""
    found = []
    base = str(prefix).rstrip("/")
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            target = _unescape(line.split()[4])
            if target == base or target.startswith(base + "/"):
                found.append(target)
    return sorted(set(found), key=lambda p: (p.count("/"), len(p)), reverse=True)


def _unescape(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def unmount_all(prefix: Path) -> list[str]:
    """Detach every mount under ``prefix``; return those that stay."""
    for _ in range(10):
        targets = mounts_under(prefix)
        if not targets:
            return []
        for target in targets:
            _libc.umount2(target.encode(), _MNT_DETACH)
    return mounts_under(prefix)


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (and the v2 one of a hybrid host)."""
    return sorted(
        path
        for path in CGROUP_FS.iterdir()
        if path.is_dir() and not path.is_symlink() and (path / "cgroup.procs").exists()
    )


def cgroup_pids(name: str) -> set[int]:
    pids: set[int] = set()
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for directory, _, _ in os.walk(root):
            with contextlib.suppress(OSError):
                text = (Path(directory) / "cgroup.procs").read_text()
                pids.update(int(pid) for pid in text.split())
    return pids


def kill_cgroup(name: str, timeout: float = 15) -> set[int]:
    """SIGKILL every process in cgroup ``name`` (all hierarchies) until none is left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = cgroup_pids(name)
        if not pids:
            return set()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return cgroup_pids(name)


def remove_cgroup(name: str) -> list[str]:
    """rmdir the cgroup tree ``name`` in every hierarchy, leaves first."""
    left = []
    for hierarchy in cgroup_hierarchies():
        root = hierarchy / name
        if not root.is_dir():
            continue
        for directory, _, _ in sorted(os.walk(root), key=lambda w: -w[0].count("/")):
            for _ in range(20):
                try:
                    os.rmdir(directory)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)  # a process still exiting
        if root.exists():
            left.append(str(root))
    return left


def make_cgroup(name: str) -> None:
    for hierarchy in cgroup_hierarchies():
        path = hierarchy / name
        path.mkdir(exist_ok=True)
        if hierarchy.name == "cpuset":
            # A new v1 cpuset is empty; children cannot get CPUs from it.
            for knob in ("cpuset.cpus", "cpuset.mems"):
                (path / knob).write_text((hierarchy / knob).read_text())


def processes_matching(needle: str) -> dict[int, str]:
    """PID -> command line for every process whose command line contains ``needle``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if needle in cmdline:
                found[int(entry.name)] = cmdline.strip()
    return found


def kill_matching(needle: str, timeout: float = 10) -> dict[int, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = processes_matching(needle)
        if not found:
            return {}
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    return processes_matching(needle)


def read_sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        with contextlib.suppress(OSError):
            values[key] = (Path("/proc/sys") / key).read_text().strip()
    return values


def write_sysctls(values: dict[str, str]) -> list[str]:
    failed = []
    for key, value in values.items():
        path = Path("/proc/sys") / key
        try:
            if path.read_text().strip() != value:
                path.write_text(value)
        except OSError as error:
            failed.append(f"{key}={value}: {error}")
    return failed


def _can_lower_oom_score() -> bool:
    """Whether this process holds CAP_SYS_RESOURCE (needed to lower oom_score_adj)."""
    cap_sys_resource = 24
    with open("/proc/self/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return bool(int(line.split()[1], 16) >> cap_sys_resource & 1)
    return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shim_socket(cmdline: str) -> Path:
    """The socket a containerd 1.6 shim listens on, from its command line:
    /run/containerd/s/sha256(<containerd address>/<namespace>/<id>)."""
    args = cmdline.split()
    value = {flag: args[i + 1] for i, flag in enumerate(args[:-1]) if flag.startswith("-")}
    key = f"{value.get('-address', '')}/{value.get('-namespace', '')}/{value.get('-id', '')}"
    return SHIM_SOCKETS / hashlib.sha256(key.encode()).hexdigest()


HOST_STATE = "host-state.json"  # in a node's work dir: what to put back on the host


def restore_host(state: dict[str, Any], workdir: Path) -> list[str]:
    """Put back what a node changed outside its work dir; return what failed."""
    problems = [f"sysctl not restored: {s}" for s in write_sysctls(state.get("sysctls", {}))]
    with contextlib.suppress(OSError):
        for link in CONTAINER_LOG_LINKS.iterdir():
            if link.is_symlink() and os.readlink(link).startswith(f"{workdir}/"):
                link.unlink()
    created = [Path(p) for p in state.get("created", [])]
    if DEVICE_PLUGINS in created or DEVICE_PLUGINS.parent in created:
        with contextlib.suppress(OSError):
            (DEVICE_PLUGINS / "kubelet.sock").unlink()
    for path in reversed(created):
        with contextlib.suppress(OSError):
            path.rmdir()  # only when empty: never someone else's files
    return problems


def sweep_stale() -> list[str]:
    """Undo what the node (or Docker engine) of a run killed before its
    teardown left behind: shims, containers, mounts, cgroups, host state.

    Work dirs (``hbnode-<pid>-...``) and cgroups (``heartbeat-node-<pid>-...``)
    carry the PID of the run that made them; only those of runs that are no
    longer alive are swept, so concurrent runs leave each other alone."""
    swept: list[str] = []
    owner = re.compile(rf"(/\S*/{WORKDIR_PREFIX}(\d+)-[^/\s]+)")
    stale_dirs: set[str] = set()

    def stale(text: str) -> bool:
        match = owner.search(text)
        if match and not _pid_alive(int(match.group(2))):
            stale_dirs.add(match.group(1))
            return True
        return False

    for pid, cmdline in processes_matching(f"/{WORKDIR_PREFIX}").items():
        if "containerd-shim" in cmdline and stale(cmdline):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            # A killed shim leaves its socket file behind.
            shim_socket(cmdline).unlink(missing_ok=True)
            swept.append(f"shim {pid}")
    names: set[str] = set()
    for hierarchy in cgroup_hierarchies():
        for path in hierarchy.glob(f"{CGROUP_PREFIX}*"):
            match = re.fullmatch(rf"{CGROUP_PREFIX}(\d+)-[0-9a-f]+", path.name)
            if match and not _pid_alive(int(match.group(1))):
                names.add(path.name)
    for name in sorted(names):
        kill_cgroup(name)
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        targets = {_unescape(line.split()[4]) for line in handle}
    for target in sorted((t for t in targets if stale(t)), key=len, reverse=True):
        _libc.umount2(target.encode(), _MNT_DETACH)
        swept.append(f"mount {target}")
    for name in sorted(names):
        remove_cgroup(name)
        swept.append(f"cgroup {name}")
    for pattern in (f"/tmp/{WORKDIR_PREFIX}*", f"/tmp/pytest-of-*/pytest-*/{WORKDIR_PREFIX}*"):
        for candidate in Path("/").glob(pattern.lstrip("/")):
            stale(str(candidate))
    for directory in sorted(stale_dirs):
        state_file = Path(directory) / "node" / HOST_STATE
        if state_file.is_file():
            problems = restore_host(json.loads(state_file.read_text()), Path(directory))
            state_file.rename(state_file.with_suffix(".restored"))
            swept.append(f"host state of {directory}" + (f" ({problems})" if problems else ""))
    return swept


# --------------------------------------------------------------------------
# containerd


@dataclass
class Containerd:
    workdir: Path
    sandbox_image: str
    runc: str = "runc"
    restrict_oom: bool = field(default_factory=lambda: not _can_lower_oom_score())
    process: Process | None = None

    @property
    def socket(self) -> Path:
        return self.workdir / "containerd.sock"

    @property
    def endpoint(self) -> str:
        return f"unix://{self.socket}"

    def config(self) -> str:
        d = self.workdir
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        return f"""\
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"

[{cri}]
  sandbox_image = "{self.sandbox_image}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # Lowering oom_score_adj needs CAP_SYS_RESOURCE, which a sandboxed host
  # (a CI VM, a container) may not grant: the kubelet asks -998 for every pod
  # sandbox, and runc then fails with "can't get final child's PID from pipe:
  # EOF". Clamp to containerd's own score instead; a test node loses nothing.
  restrict_oom_score_adj = {str(self.restrict_oom).lower()}
  [{cri}.containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [{cri}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri}.containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/runc"
        BinaryName = "{self.runc}"
  [{cri}.cni]
    bin_dir = "{d}/cni/bin"
    conf_dir = "{d}/cni/net.d"
"""

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.toml"
        config.write_text(self.config())
        self.process = spawn(
            "containerd",
            ["containerd", "--config", str(config), "--log-level", "info"],
            self.workdir,
        )
        wait_until(lambda: self.ctr("version").returncode == 0, "containerd", 60, self.process)

    def ctr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", str(self.socket), "--namespace", "k8s.io", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def import_image(self, archive: Path) -> None:
        result = self.ctr(
            "images", "import", "--snapshotter", "overlayfs", str(archive), timeout=300
        )
        if result.returncode != 0:
            raise RuntimeError(f"ctr images import {archive} failed:\n{result.stderr}")

    def images(self) -> list[str]:
        return self.ctr("images", "ls", "-q").stdout.split()

    def kill_all(self) -> None:
        """Kill and delete every task and container in the k8s.io namespace."""
        if self.process is None or not self.process.alive():
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            for task in self.ctr("tasks", "ls", "-q", timeout=20).stdout.split():
                self.ctr("tasks", "kill", "--signal", "SIGKILL", "--all", task, timeout=20)
            for task in self.ctr("tasks", "ls", "-q", timeout=20).stdout.split():
                self.ctr("tasks", "delete", "--force", task, timeout=20)
            for container in self.ctr("containers", "ls", "-q", timeout=20).stdout.split():
                self.ctr("containers", "delete", container, timeout=20)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


# --------------------------------------------------------------------------
# kubelet


@dataclass
class Kubelet:
    binary: Path
    workdir: Path
    kubeconfig: Path
    runtime_endpoint: str
    node_name: str
    cgroup_root: str
    port: int = 0
    healthz_port: int = 0
    process: Process | None = None

    @property
    def root_dir(self) -> Path:
        return self.workdir / "root"

    @property
    def pod_logs_dir(self) -> Path:
        return self.workdir / "pod-logs"

    def config(self) -> dict[str, object]:
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "containerRuntimeEndpoint": self.runtime_endpoint,
            # containerd 1.6 has no RuntimeConfig CRI call, so the kubelet's own
            # driver is used (a fallback kubelet 1.38 removes): it must match
            # containerd's SystemdCgroup = false.
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": f"/{self.cgroup_root}",
            "cgroupsPerQOS": True,
            # Since 1.35 the kubelet refuses cgroup v1 hosts unless told otherwise.
            "failCgroupV1": False,
            "failSwapOn": False,
            "address": "127.0.0.1",
            "port": self.port,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.healthz_port,
            "readOnlyPort": 0,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {},
            },
            "authorization": {"mode": "Webhook"},
            "podLogsDir": str(self.pod_logs_dir),
            "makeIPTablesUtilChains": False,
            "registerNode": True,
            "nodeStatusUpdateFrequency": "5s",
            # Never evict the test pods or collect the imported images
            # (imagePullPolicy: Never could not bring them back).
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "nodefs.inodesFree": "1%",
                "imagefs.available": "1%",
                "imagefs.inodesFree": "1%",
            },
            "serializeImagePulls": False,
        }

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.root_dir.mkdir(exist_ok=True)
        self.pod_logs_dir.mkdir(exist_ok=True)
        config = self.workdir / "kubelet-config.json"
        for _ in range(5):
            self.port, self.healthz_port = free_port(), free_port()
            config.write_text(json.dumps(self.config(), indent=2))
            self.process = spawn(
                "kubelet",
                [
                    str(self.binary),
                    f"--config={config}",
                    f"--kubeconfig={self.kubeconfig}",
                    f"--root-dir={self.root_dir}",
                    f"--cert-dir={self.workdir / 'pki'}",
                    f"--hostname-override={self.node_name}",
                    "--v=2",
                ],
                self.workdir,
            )
            try:
                wait_until(self._healthy, "kubelet /healthz", 90, self.process)
            except RuntimeError:
                if "address already in use" in self.process.tail(200):
                    continue  # lost a port race
                raise
            return
        raise RuntimeError("the kubelet did not start after 5 attempts")

    def _healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.healthz_port}/healthz"
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)

    def get(self, path: str, token: str) -> str:
        """GET from the kubelet's authenticated API (webhook authn/authz via the apiserver)."""
        context = ssl.create_default_context()
        # The kubelet serves a self-signed certificate it made in --cert-dir.
        context.load_verify_locations(cafile=str(self.workdir / "pki" / "kubelet.crt"))
        context.check_hostname = False
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}{path}")
        request.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(request, context=context, timeout=10) as response:  # noqa: S310
            return str(response.read().decode())

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)


# --------------------------------------------------------------------------
# the node


@dataclass
class Node:
    """containerd + kubelet; ``start`` then always ``stop`` (it reports leftovers)."""

    assets: Path
    workdir: Path
    kubeconfig: Path
    sandbox_image: str
    name: str = "heartbeat-node"
    runc: str = "runc"
    cgroup_root: str = field(
        default_factory=lambda: f"{CGROUP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    )
    containerd: Containerd | None = None
    kubelet: Kubelet | None = None
    swept: list[str] = field(default_factory=list)
    _sysctls: dict[str, str] = field(default_factory=dict)
    _created: list[Path] = field(default_factory=list)

    def start(self) -> None:
        self.swept = sweep_stale()
        self._sysctls = read_sysctls()
        for path in (
            DEVICE_PLUGINS.parent,
            DEVICE_PLUGINS,
            CONTAINER_LOG_LINKS,
            SHIM_SOCKETS.parent,
            SHIM_SOCKETS,
        ):
            if not path.exists():
                self._created.append(path)
        # For a later run to restore, should this one be killed before its teardown.
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / HOST_STATE).write_text(json.dumps(self._host_state()))
        make_cgroup(self.cgroup_root)
        self.containerd = Containerd(self.workdir / "containerd", self.sandbox_image, self.runc)
        self.containerd.start()

    def start_kubelet(self) -> None:
        assert self.containerd is not None
        self.kubelet = Kubelet(
            self.assets / "kubelet",
            self.workdir / "kubelet",
            self.kubeconfig,
            self.containerd.endpoint,
            self.name,
            self.cgroup_root,
        )
        self.kubelet.start()

    def stop(self) -> list[str]:
        """Tear everything down; return what could not be undone (empty when clean)."""
        problems: list[str] = []
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.containerd is not None:
            self.containerd.kill_all()
        left = kill_cgroup(self.cgroup_root)
        if left:
            problems.append(f"processes still in cgroup {self.cgroup_root}: {sorted(left)}")
        if self.containerd is not None:
            # Shims detach from containerd (own process group, reparented), so
            # PR_SET_PDEATHSIG and killpg do not reach them.
            shims = kill_matching(f"-address {self.containerd.socket}")
            if shims:
                problems.append(f"containerd shims left: {shims}")
            self.containerd.stop()
        stray = kill_matching(str(self.workdir))
        if stray:
            problems.append(f"processes left: {stray}")
        mounts = unmount_all(self.workdir)
        if mounts:
            problems.append(f"mounts left: {mounts}")
        problems += [f"cgroup left: {c}" for c in remove_cgroup(self.cgroup_root)]
        problems += restore_host(self._host_state(), self.workdir)
        (self.workdir / HOST_STATE).unlink(missing_ok=True)
        if not mounts:
            # Container root filesystems and snapshots: large, and useless
            # after the run. Logs and configs stay for a failed test.
            for big in ("containerd/root", "containerd/state", "kubelet/root"):
                shutil.rmtree(self.workdir / big, ignore_errors=True)
        return problems

    def _host_state(self) -> dict[str, Any]:
        return {
            "sysctls": self._sysctls,
            "created": [str(p) for p in self._created],
            "cgroup": self.cgroup_root,
        }
