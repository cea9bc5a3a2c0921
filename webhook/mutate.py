"""Pod -> JSON patch operations, warnings or a denial. Pure: no I/O, no copies.

The operations are built directly rather than by diffing a modified copy of
the pod: a deep copy plus ``jsonpatch.make_patch`` measured 17x slower than a
bare handler. Tests prove the operations by applying them with jsonpatch.
Every operation is conditional on the pod not already holding the result, so a
second review of a patched pod (reinvocation) yields no operations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jsonpointer import JsonPointer

from webhook.config import (
    CONTAINERS,
    DEFAULT_CONTAINER,
    INJECTED,
    PATH,
    AnnotationError,
    HeartbeatConfig,
    is_enabled,
    parse_config,
    quote,
)
from webhook.heartbeat import DEFAULT_PATH, ENV_VAR
from webhook.marker import marker_value, read_marker
from webhook.probe import is_heartbeat_probe, liveness_probe, startup_probe

Operation = dict[str, Any]
JSONObject = Mapping[str, Any]

# Read-only root filesystems get the beat on a small memory-backed emptyDir,
# mounted at a directory no image uses, one file per container (the emptyDir
# is shared by every container that mounts it).
BEAT_DIR = "/run/heartbeat"
VOLUME_NAME = "heartbeat-webhook"
EMPTY_DIR: dict[str, str] = {"medium": "Memory", "sizeLimit": "1Mi"}
# Volume sources Kubernetes always mounts read-only.
_READ_ONLY_SOURCES = frozenset({"configMap", "secret", "downwardAPI", "projected", "image"})
_MARKER_POINTER = JsonPointer.from_parts(["metadata", "annotations", INJECTED]).path
DENIAL_CODE = 400  # status.code of every denial: the pod's annotations are a bad request


class MalformedObject(ValueError):
    """The object is not shaped like a Pod; the HTTP layer answers 400."""


class _Denied(Exception):
    """A rule the pod breaks; carries the message for the denial."""


@dataclass(frozen=True, slots=True)
class Mutation:
    """What to do with one pod. ``denial`` set means reject; otherwise apply ``patch``."""

    patch: list[Operation] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    injected: tuple[str, ...] = ()  # containers that carry our liveness probe
    denial: str | None = None


UNCHANGED = Mutation()


def mutate_pod(pod: JSONObject) -> Mutation:
    """Decide the heartbeat injection for a pod given as the API's JSON form."""
    metadata = _mapping(pod, "metadata", "object")
    annotations = _mapping(metadata, "annotations", "object.metadata")
    try:
        if not is_enabled(annotations):
            return UNCHANGED
        config, warnings = parse_config(annotations)
        spec = _mapping(pod, "spec", "object")
        containers = _containers(spec)
        if not containers:
            return UNCHANGED  # the apiserver rejects a pod without containers
        builder = _PatchBuilder(config, spec, annotations, warnings)
        for index in _target_indexes(config, annotations, containers):
            builder.container(index, containers[index])
        return builder.finish()
    except (AnnotationError, _Denied) as error:
        return Mutation(denial=str(error))


class _PatchBuilder:
    """Accumulates operations for one pod; one instance per review."""

    def __init__(
        self,
        config: HeartbeatConfig,
        spec: JSONObject,
        annotations: JSONObject,
        warnings: list[str],
    ) -> None:
        self.config = config
        self.spec = spec
        self.annotations = annotations
        self.warnings = warnings
        self.ops: list[Operation] = []
        # Containers an earlier injection gave our probe, so we may update it.
        self.owned = frozenset(read_marker(annotations.get(INJECTED)).containers)
        self.paths: dict[str, str] = {}
        self.injected: list[str] = []
        self.volume: str | None = None

    def container(self, index: int, container: JSONObject) -> None:
        name: str = container["name"]
        base = f"/spec/containers/{index}"
        path = self._beat_path(index, container, base)
        self.paths[name] = path
        self._env(container, base, path)
        config = self.config
        if self._probe(container, base, "livenessProbe", liveness_probe(config, path)):
            self.injected.append(name)
            startup = startup_probe(config, path)
            if startup is not None:
                self._probe(container, base, "startupProbe", startup)

    def finish(self) -> Mutation:
        marker = marker_value(self.config, self.paths, self.injected)
        if self.annotations.get(INJECTED) != marker:
            self.ops.append({"op": "add", "path": _MARKER_POINTER, "value": marker})
        self._warn_shared_file()
        return Mutation(self.ops, self.warnings, tuple(self.injected))

    def _beat_path(self, index: int, container: JSONObject, base: str) -> str:
        read_only = _read_only_root(container, index)
        explicit = self.config.path
        if explicit is not None:
            if read_only:
                self._require_writable(container, explicit)
            return explicit
        if not read_only:
            return DEFAULT_PATH
        self._mount_beat_dir(container, base)
        return f"{BEAT_DIR}/{container['name']}"

    def _require_writable(self, container: JSONObject, path: str) -> None:
        mount = _deepest_mount(container, path)
        if mount is not None and self._writable(mount):
            return
        raise _Denied(
            f"annotation {PATH}={quote(path)} is not on a writable volume of container "
            f"{quote(container['name'])}, whose root filesystem is read-only "
            "(securityContext.readOnlyRootFilesystem); mount a writable volume such as an "
            "emptyDir at a directory of its own that holds the file, or remove "
            f"{PATH} so the webhook mounts one at {BEAT_DIR}"
        )

    def _writable(self, mount: JSONObject) -> bool:
        if mount.get("readOnly") is True:
            return False
        for volume in _volumes(self.spec):
            if volume.get("name") == mount.get("name"):
                return not any(
                    key in _READ_ONLY_SOURCES
                    or (isinstance(source, dict) and source.get("readOnly") is True)
                    for key, source in volume.items()
                )
        return False

    def _mount_beat_dir(self, container: JSONObject, base: str) -> None:
        volume = self._beat_volume()
        mounts = container.get("volumeMounts")
        for mount in mounts or ():
            if mount.get("mountPath", "").rstrip("/") == BEAT_DIR:
                if mount.get("name") == volume:
                    return
                raise _Denied(
                    f"container {quote(container['name'])} already mounts volume "
                    f"{quote(mount.get('name'))} at {BEAT_DIR}, where the webhook puts the "
                    f"heartbeat of read-only containers; set annotation {PATH} to a file on "
                    "a writable volume of that container"
                )
        entry = {"name": volume, "mountPath": BEAT_DIR}
        self._append(f"{base}/volumeMounts", mounts, entry)

    def _beat_volume(self) -> str:
        if self.volume is not None:
            return self.volume
        volumes = self.spec.get("volumes")
        taken = {volume.get("name"): volume for volume in volumes or ()}
        for suffix in range(len(taken) + 1):
            name = VOLUME_NAME if suffix == 0 else f"{VOLUME_NAME}-{suffix}"
            existing = taken.get(name)
            if existing is None:
                self._append("/spec/volumes", volumes, {"name": name, "emptyDir": EMPTY_DIR})
                break
            if existing.get("emptyDir") == EMPTY_DIR and len(existing) == 2:
                break  # ours, from an earlier review
        self.volume = name
        return name

    def _env(self, container: JSONObject, base: str, path: str) -> None:
        env = container.get("env")
        if env is not None and not isinstance(env, list):
            raise MalformedObject(f"{base[1:]}/env must be a list")
        found = False
        for position, entry in enumerate(env or ()):
            if not isinstance(entry, dict) or entry.get("name") != ENV_VAR:
                continue
            found = True
            value = entry.get("value")
            if "valueFrom" not in entry and value == path:
                continue
            name = container["name"]
            if name in self.owned and "valueFrom" not in entry:
                self.ops.append(
                    {"op": "replace", "path": f"{base}/env/{position}/value", "value": path}
                )
                continue
            source = "from valueFrom" if "valueFrom" in entry else f"to {quote(value)}"
            raise _Denied(
                f"container {quote(name)} already sets {ENV_VAR} {source}, but the probe "
                f"would watch {quote(path)}, a file the worker would not write; remove that "
                f"env var, or set annotation {PATH} to the same file"
            )
        if not found:
            self._append(f"{base}/env", env, {"name": ENV_VAR, "value": path})

    def _probe(self, container: JSONObject, base: str, key: str, desired: JSONObject) -> bool:
        """Add our probe unless the user has one; True when ours is in place."""
        existing = container.get(key)
        if existing == desired:
            return True
        ours = container["name"] in self.owned and is_heartbeat_probe(existing)
        if existing is None or ours:
            self.ops.append({"op": "add", "path": f"{base}/{key}", "value": desired})
            return True
        self.warnings.append(
            f"container {quote(container['name'])} already has a {key}; kept it, so the "
            f"heartbeat is not checked by a {key} there ({ENV_VAR} is still set); remove "
            f"the {key} to get the heartbeat check"
        )
        return False

    def _append(self, path: str, current: object, value: object) -> None:
        if current is None:
            self.ops.append({"op": "add", "path": path, "value": [value]})
        else:
            self.ops.append({"op": "add", "path": f"{path}/-", "value": value})

    def _warn_shared_file(self) -> None:
        explicit = self.config.path
        if explicit is None or len(self.paths) < 2:
            return
        by_volume: dict[str, list[str]] = {}
        for container in _containers(self.spec):
            if container["name"] in self.paths:
                mount = _deepest_mount(container, explicit)
                if mount is not None:
                    key = f"{mount.get('name')}:{mount.get('subPath', '')}"
                    by_volume.setdefault(key, []).append(container["name"])
        for names in by_volume.values():
            if len(names) > 1:
                self.warnings.append(
                    f"containers {', '.join(quote(n) for n in names)} share the file "
                    f"{quote(explicit)} on one volume, so one container's beat hides "
                    f"another's hang; remove {PATH} to give each its own file"
                )


def _target_indexes(
    config: HeartbeatConfig, annotations: JSONObject, containers: Sequence[JSONObject]
) -> list[int]:
    default = annotations.get(DEFAULT_CONTAINER)
    if config.containers is None and default is None:
        return [0]
    names = [container["name"] for container in containers]
    if config.containers is not None:
        for wanted in config.containers:
            if wanted not in names:
                raise _Denied(
                    f"annotation {CONTAINERS} names {quote(wanted)}, which is not a container "
                    f"of this pod (containers: {_listed(names)}); list only existing containers"
                )
        return [names.index(wanted) for wanted in config.containers]
    if default not in names:
        raise _Denied(
            f"annotation {DEFAULT_CONTAINER}={quote(default)} names no container of this "
            f"pod (containers: {_listed(names)}); fix it, or set {CONTAINERS} to choose the worker"
        )
    return [names.index(default)]


def _listed(names: Sequence[str]) -> str:
    return ", ".join(quote(name) for name in names)


def _deepest_mount(container: JSONObject, path: str) -> JSONObject | None:
    best: JSONObject | None = None
    for mount in container.get("volumeMounts") or ():
        root = str(mount.get("mountPath", "")).rstrip("/")
        if path.startswith(root + "/") and (
            best is None or len(root) > len(str(best.get("mountPath", "")).rstrip("/"))
        ):
            best = mount
    return best


def _read_only_root(container: JSONObject, index: int) -> bool:
    context = container.get("securityContext")
    if context is None:
        return False
    if not isinstance(context, dict):
        raise MalformedObject(f"spec/containers/{index}/securityContext must be an object")
    return context.get("readOnlyRootFilesystem") is True


def _volumes(spec: JSONObject) -> list[JSONObject]:
    volumes = spec.get("volumes")
    return volumes if isinstance(volumes, list) else []


def _containers(spec: JSONObject) -> list[JSONObject]:
    containers = spec.get("containers")
    if containers is None:
        return []
    if not isinstance(containers, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str) for c in containers
    ):
        raise MalformedObject("object.spec.containers must be a list of objects with a name")
    return containers


def _mapping(parent: JSONObject, key: str, where: str) -> JSONObject:
    value = parent.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedObject(f"{where}.{key} must be an object")
    return value
