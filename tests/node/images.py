"""OCI image archives written by hand: no registry, no image builder.

An image here is a list of uncompressed tar layers plus a config.
`write_archive` writes images as one OCI image layout tar (oci-layout,
index.json, blobs/sha256/...), which ``ctr -n k8s.io images import`` loads,
each image under the name in its ``io.containerd.image.name`` annotation.

The worker images are the Debian minbase layer from node-assets.sh, then the
project's worker code. The no-shell variant adds a layer of whiteouts that
deletes every shell, as a distroless image would have none.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"

PAUSE_IMAGE = "heartbeat.test/pause:node"
WORKER_IMAGE = "heartbeat.test/worker:node"
NOSHELL_IMAGE = "heartbeat.test/worker-noshell:node"

# Where the worker's code lands: Debian's python3 has this on sys.path, as if
# the package were pip-installed into the image.
SITE_PACKAGES = "usr/local/lib/python{version}/dist-packages"
WORKER_SCRIPT = "/app/worker.py"
# Every shell of the Debian base (merged /usr: /bin is a link to usr/bin).
SHELLS = ("usr/bin/sh", "usr/bin/dash", "usr/bin/bash", "usr/bin/rbash")


@dataclass
class Layer:
    """An uncompressed tar layer: a file on disk or bytes made here."""

    path: Path | None = None
    data: bytes = b""
    comment: str = ""
    _digest: str = field(default="", repr=False)

    def digest(self) -> str:
        if not self._digest:
            sha = hashlib.sha256()
            if self.path is not None:
                with self.path.open("rb") as handle:
                    for chunk in iter(lambda: handle.read(1 << 20), b""):
                        sha.update(chunk)
            else:
                sha.update(self.data)
            self._digest = f"sha256:{sha.hexdigest()}"
        return self._digest

    def size(self) -> int:
        return self.path.stat().st_size if self.path is not None else len(self.data)


def files_layer(files: dict[str, tuple[bytes, int]], comment: str) -> Layer:
    """A layer holding ``files`` (path -> (content, mode)), owned by root, parents created."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        seen: set[str] = set()
        for name in sorted(files):
            parts = name.split("/")
            for depth in range(1, len(parts)):
                parent = "/".join(parts[:depth])
                if parent not in seen:
                    seen.add(parent)
                    info = tarfile.TarInfo(parent)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            content, mode = files[name]
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(content), mode
            tar.addfile(info, io.BytesIO(content))
    return Layer(data=buffer.getvalue(), comment=comment)


def whiteout_layer(paths: Iterable[str], comment: str) -> Layer:
    """A layer deleting ``paths`` from the layers below (OCI ``.wh.`` files)."""
    files = {}
    for path in paths:
        parent, _, name = path.rpartition("/")
        files[f"{parent}/.wh.{name}" if parent else f".wh.{name}"] = (b"", 0o644)
    return files_layer(files, comment)


@dataclass
class Image:
    name: str
    layers: list[Layer]
    config: dict[str, Any]

    def blobs(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """The index entry for this image and the config and manifest blobs by digest."""
        diff_ids = [layer.digest() for layer in self.layers]
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": self.config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": [{"created_by": layer.comment or "layer"} for layer in self.layers],
        }
        config_blob = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": _descriptor(OCI_CONFIG, config_blob),
            "layers": [
                {"mediaType": OCI_LAYER, "digest": layer.digest(), "size": layer.size()}
                for layer in self.layers
            ],
        }
        manifest_blob = json.dumps(manifest, sort_keys=True).encode()
        entry = {
            **_descriptor(OCI_MANIFEST, manifest_blob),
            "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {
                "io.containerd.image.name": self.name,
                "org.opencontainers.image.ref.name": self.name.rpartition(":")[2],
            },
        }
        blobs = {
            _descriptor(OCI_CONFIG, config_blob)["digest"]: config_blob,
            entry["digest"]: manifest_blob,
        }
        return entry, blobs


def write_archive(archive: Path, images: Iterable[Image]) -> Path:
    """One OCI image layout tar holding ``images``; a layer shared by several is stored once."""
    entries: list[dict[str, Any]] = []
    written: set[str] = set()
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        for image in images:
            entry, blobs = image.blobs()
            entries.append(entry)
            for digest, blob in blobs.items():
                if digest not in written:
                    written.add(digest)
                    _add_bytes(tar, _blob_path(digest), blob)
            for layer in image.layers:
                if layer.digest() in written:
                    continue
                written.add(layer.digest())
                if layer.path is not None:
                    info = tarfile.TarInfo(_blob_path(layer.digest()))
                    info.size, info.mode = layer.size(), 0o644
                    with layer.path.open("rb") as handle:
                        tar.addfile(info, handle)
                else:
                    _add_bytes(tar, _blob_path(layer.digest()), layer.data)
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
        _add_bytes(tar, "index.json", json.dumps(index).encode())
    return archive


def _descriptor(media_type: str, blob: bytes) -> dict[str, Any]:
    return {
        "mediaType": media_type,
        "digest": f"sha256:{hashlib.sha256(blob).hexdigest()}",
        "size": len(blob),
    }


def _blob_path(digest: str) -> str:
    return f"blobs/sha256/{digest.partition(':')[2]}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def pause_image(pause_binary: Path) -> Image:
    layer = files_layer({"pause": (pause_binary.read_bytes(), 0o755)}, "pause (static Go)")
    return Image(PAUSE_IMAGE, [layer], {"Entrypoint": ["/pause"], "User": "65535:65535"})


def worker_code_layer(python_version: str, worker: Path) -> Layer:
    """webhook/__init__.py and webhook/heartbeat.py (all a worker needs) and the demo worker."""
    site = SITE_PACKAGES.format(version=python_version)
    package = ROOT / "webhook"
    files = {
        f"{site}/webhook/__init__.py": ((package / "__init__.py").read_bytes(), 0o644),
        f"{site}/webhook/heartbeat.py": ((package / "heartbeat.py").read_bytes(), 0o644),
        WORKER_SCRIPT.lstrip("/"): (worker.read_bytes(), 0o644),
    }
    return files_layer(files, "worker code: webhook.heartbeat and the demo worker")


def worker_images(base_tar: Path, python_version: str, worker: Path) -> list[Image]:
    """The worker image (with /bin/sh) and its no-shell variant."""
    base = Layer(path=base_tar, comment="debootstrap --variant=minbase bookworm + python3-minimal")
    code = worker_code_layer(python_version, worker)
    config = {
        "Env": [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "PYTHONUNBUFFERED=1",
            "PYTHONDONTWRITEBYTECODE=1",
        ],
        "Cmd": ["python3", WORKER_SCRIPT],
        "WorkingDir": "/",
    }
    no_shell = whiteout_layer(SHELLS, "remove every shell (distroless-like)")
    return [
        Image(WORKER_IMAGE, [base, code], config),
        Image(NOSHELL_IMAGE, [base, no_shell, code], config),
    ]
