"""The worker side: path resolution, the atomic write, the loop, the CLI, and
that ``webhook.heartbeat`` needs the standard library only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import webhook.heartbeat as hb
from webhook.heartbeat import (
    DEFAULT_PATH,
    ENV_VAR,
    MAX_FUTURE_SECONDS,
    check_heartbeat,
    heartbeat_loop,
    resolve_path,
    write_heartbeat,
)

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_700_000_000


@pytest.fixture
def frozen(monkeypatch: pytest.MonkeyPatch) -> float:
    """time.time() fixed just before the next second: the write must truncate."""
    now = NOW + 0.999
    monkeypatch.setattr(time, "time", lambda: now)
    return now


# --- path resolution ---------------------------------------------------------


@pytest.mark.parametrize(
    ("argument", "env", "expected"),
    [
        pytest.param("/arg/hb", "/env/hb", "/arg/hb", id="argument-beats-env"),
        pytest.param(Path("/arg/hb"), "/env/hb", "/arg/hb", id="pathlike-argument"),
        pytest.param("relative/hb", None, "relative/hb", id="relative-argument"),
        pytest.param(None, "/env/hb", "/env/hb", id="env-beats-default"),
        pytest.param(None, None, DEFAULT_PATH, id="default"),
        pytest.param(None, "", DEFAULT_PATH, id="empty-env-is-default"),
    ],
)
def test_resolve_path_order(
    argument: str | Path | None,
    env: str | None,
    expected: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if env is None:
        monkeypatch.delenv(ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(ENV_VAR, env)
    assert resolve_path(argument) == expected


def test_constants() -> None:
    assert (ENV_VAR, DEFAULT_PATH, MAX_FUTURE_SECONDS) == ("HEARTBEAT_PATH", "/tmp/heartbeat", 3600)


def test_write_without_argument_uses_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "from-env"
    monkeypatch.setenv(ENV_VAR, str(target))
    assert write_heartbeat() == str(target)
    assert target.read_text().endswith("\n")


def test_argument_wins_over_env_when_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env"))
    write_heartbeat(tmp_path / "from-arg")
    assert sorted(os.listdir(tmp_path)) == ["from-arg"]


# --- the write ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        pytest.param(0, b"1700000000\n", id="now"),
        pytest.param(1, b"1700000001\n", id="allow-1"),
        pytest.param(600, b"1700000600\n", id="allow-600"),
        pytest.param(MAX_FUTURE_SECONDS, b"1700003600\n", id="allow-max"),
    ],
)
def test_writes_epoch_seconds_and_newline(
    allow: int, expected: bytes, frozen: float, tmp_path: Path
) -> None:
    target = tmp_path / "hb"
    assert write_heartbeat(target, allow=allow) == str(target)
    assert target.read_bytes() == expected
    # The future timestamp is within what the checker accepts.
    assert check_heartbeat(str(target), 90, now=NOW) is None


@pytest.mark.parametrize("allow", [-1, MAX_FUTURE_SECONDS + 1, 10**9])
def test_allow_bounds(allow: int, tmp_path: Path) -> None:
    target = tmp_path / "hb"
    with pytest.raises(ValueError, match="allow"):
        write_heartbeat(target, allow=allow)
    assert not target.exists()
    assert os.listdir(tmp_path) == []


def test_real_clock_write_is_fresh(tmp_path: Path) -> None:
    before = int(time.time())
    write_heartbeat(tmp_path / "hb")
    after = int(time.time())
    beat = int((tmp_path / "hb").read_text())
    assert before <= beat <= after


def test_plain_beat_cancels_allow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "hb"
    monkeypatch.setattr(time, "time", lambda: float(NOW))
    write_heartbeat(target, allow=600)
    write_heartbeat(target)
    assert target.read_bytes() == b"1700000000\n"


@pytest.mark.parametrize(
    "relative",
    ["hb", "a/hb", "a/b/c/hb"],
    ids=["existing-dir", "one-missing-dir", "three-missing-dirs"],
)
def test_creates_missing_parent_dirs(relative: str, tmp_path: Path) -> None:
    target = tmp_path / relative
    write_heartbeat(target)
    assert target.read_text().strip().isdigit()
    assert sorted(os.listdir(target.parent)) == ["hb"]


def test_bare_file_name_writes_in_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert write_heartbeat("hb") == "hb"
    assert sorted(os.listdir(tmp_path)) == ["hb"]


def test_overwrite_leaves_no_temp_files(tmp_path: Path) -> None:
    target = tmp_path / "hb"
    for _ in range(5):
        write_heartbeat(target)
    assert sorted(os.listdir(tmp_path)) == ["hb"]


def test_write_is_a_rename_from_the_same_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "hb"
    target.write_text("old\n")
    calls: list[tuple[str, str, bytes]] = []
    real_replace = os.replace

    def spy(src: str, dst: str) -> None:
        # At rename time the temp file is complete and the target still old.
        calls.append((os.fspath(src), os.fspath(dst), Path(src).read_bytes()))
        assert target.read_text() == "old\n"
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_heartbeat(target)
    assert len(calls) == 1
    src, dst, data = calls[0]
    assert dst == str(target)
    assert os.path.dirname(src) == str(tmp_path)  # same filesystem: rename is atomic
    assert src != dst
    assert data == target.read_bytes()
    assert not os.path.exists(src)


@pytest.mark.parametrize(
    "error",
    [OSError(28, "No space left on device"), PermissionError(13, "denied"), KeyboardInterrupt()],
    ids=["enospc", "permission", "keyboard-interrupt"],
)
def test_failed_rename_cleans_up_and_keeps_old_beat(
    error: BaseException, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "hb"
    target.write_bytes(b"1600000000\n")
    seen: list[str] = []

    def failing_replace(src: str, dst: str) -> None:
        seen.append(os.fspath(src))
        assert os.path.exists(src)  # the temp file was really there to clean up
        raise error

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(type(error)):
        write_heartbeat(target)
    assert len(seen) == 1
    assert sorted(os.listdir(tmp_path)) == ["hb"]
    assert target.read_bytes() == b"1600000000\n"


def test_failed_write_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure before the rename (e.g. a full disk on write) leaves nothing."""
    target = tmp_path / "hb"
    target.write_bytes(b"1600000000\n")
    real_fdopen = os.fdopen

    class Full:
        def __init__(self, fd: int, mode: str) -> None:
            self.handle = real_fdopen(fd, mode)

        def __enter__(self) -> Full:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, data: bytes) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", Full)
    with pytest.raises(OSError, match="No space"):
        write_heartbeat(target)
    assert sorted(os.listdir(tmp_path)) == ["hb"]
    assert target.read_bytes() == b"1600000000\n"


# --- the loop ----------------------------------------------------------------


def test_heartbeat_loop_beats_before_each_iteration_in_callers_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "hb"
    events: list[tuple[str, object]] = []
    real_write = hb.write_heartbeat

    def write(path: str | os.PathLike[str] | None = None, **kwargs: int) -> str:
        events.append(("write", threading.get_ident()))
        return real_write(path, **kwargs)

    monkeypatch.setattr(hb, "write_heartbeat", write)
    monkeypatch.setattr(time, "sleep", lambda seconds: events.append(("sleep", seconds)))
    threads = threading.active_count()

    loop = heartbeat_loop(7.5, target)
    assert events == []  # nothing before the loop asks for its first item
    assert not target.exists()
    seen = []
    for index in loop:
        # The body runs right after a beat, and sees it on disk.
        assert target.exists()
        seen.append(index)
        events.append(("body", index))
        target.unlink()  # the next iteration must write it again
        if index == 2:
            break
    me = threading.get_ident()
    assert seen == [0, 1, 2]
    assert events == [
        ("write", me), ("body", 0), ("sleep", 7.5),
        ("write", me), ("body", 1), ("sleep", 7.5),
        ("write", me), ("body", 2),
    ]  # fmt: skip
    assert threading.active_count() == threads


def test_heartbeat_loop_stops_beating_when_the_body_hangs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the caller does not ask for the next item, no beat is written."""
    target = tmp_path / "hb"
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    loop = heartbeat_loop(0.01, target)
    next(loop)
    target.unlink()
    real_sleep = threading.Event().wait
    real_sleep(0.1)  # "hang" in the body; a background beater would write now
    assert not target.exists()
    next(loop)
    assert target.exists()


def test_heartbeat_loop_uses_env_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "env-hb"
    monkeypatch.setenv(ENV_VAR, str(target))
    monkeypatch.setattr(time, "sleep", lambda seconds: None)
    assert next(heartbeat_loop(1)) == 0
    assert target.exists()


# --- command line ------------------------------------------------------------


def cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "webhook.heartbeat", *args],
        capture_output=True, text=True, cwd=cwd, env={**base, **(env or {})}, timeout=30,
        check=False,
    )  # fmt: skip


def test_cli_beat_writes_the_given_path(tmp_path: Path) -> None:
    target = tmp_path / "dir" / "hb"
    done = cli("beat", str(target), cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (0, f"{target}\n", "")
    assert abs(int(target.read_text()) - time.time()) < 5
    assert target.read_text().endswith("\n")


def test_cli_beat_uses_env(tmp_path: Path) -> None:
    target = tmp_path / "hb"
    done = cli("beat", cwd=tmp_path, env={ENV_VAR: str(target)})
    assert (done.returncode, done.stdout) == (0, f"{target}\n")
    assert target.exists()


@pytest.mark.parametrize(
    ("content", "args", "status", "reason"),
    [
        pytest.param("{now}\n", ["--max-age", "90"], 0, "", id="fresh"),
        pytest.param("{stale}\n", ["--max-age", "90"], 1, "ago, limit 90s", id="stale"),
        pytest.param("{stale}\n", ["--max-age", "300"], 0, "", id="stale-but-long-max-age"),
        pytest.param("{soon}\n", ["--max-age", "90"], 0, "", id="future-100s"),
        pytest.param("{soon}\n", ["--max-age", "90", "--max-future", "10"], 1, "future",
                     id="future-over-max-future"),
        pytest.param("{far}\n", ["--max-age", "90"], 1, "in the future", id="future-4000s"),
        pytest.param(None, ["--max-age", "90"], 1, "no file at", id="missing"),
        pytest.param("garbage", ["--max-age", "90"], 1, "does not hold", id="garbage"),
        pytest.param("{now}\n", [], 2, "", id="max-age-required"),
        pytest.param("{now}\n", ["--max-age", "ninety"], 2, "", id="max-age-not-int"),
    ],
)  # fmt: skip
def test_cli_check_exit_codes(
    content: str | None, args: list[str], status: int, reason: str, tmp_path: Path
) -> None:
    target = tmp_path / "hb"
    now = int(time.time())
    if content is not None:
        target.write_text(content.format(now=now, stale=now - 200, soon=now + 100, far=now + 4000))
    done = cli("check", *args, "--", str(target), cwd=tmp_path)
    assert done.returncode == status, done
    if reason:
        assert reason in done.stdout
    elif status == 0:
        assert (done.stdout, done.stderr) == ("", "")
    else:
        assert "usage:" in done.stderr


def test_cli_beat_then_check_round_trip(tmp_path: Path) -> None:
    target = tmp_path / "hb"
    assert cli("beat", str(target), cwd=tmp_path).returncode == 0
    assert cli("check", "--max-age", "90", "--", str(target), cwd=tmp_path).returncode == 0


def test_cli_requires_a_command(tmp_path: Path) -> None:
    assert cli(cwd=tmp_path).returncode == 2


# --- standard library only ---------------------------------------------------

BLOCKER = r"""
import sys
sys.path.insert(0, sys.argv[1])
ALLOWED = set(sys.stdlib_module_names) | {"webhook"}
preloaded = {name.partition(".")[0] for name in sys.modules}


class NoThirdParty:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] not in ALLOWED:
            raise ImportError(f"third-party import blocked: {name}")
        return None


sys.meta_path.insert(0, NoThirdParty())
try:
    import yaml  # installed in the venv: proves the blocker is active
except ImportError as error:
    assert "blocked" in str(error), error
else:
    raise AssertionError("the blocker let yaml through")

import webhook.heartbeat

assert webhook.heartbeat.__file__.startswith(sys.argv[1]), webhook.heartbeat.__file__
written = webhook.heartbeat.write_heartbeat(sys.argv[2])
assert webhook.heartbeat.check_heartbeat(written, 90) is None
loaded = {name.partition(".")[0] for name in sys.modules}
print(sorted(loaded - preloaded - ALLOWED))
"""


@pytest.mark.parametrize("flags", [["-I"], ["-I", "-S"]], ids=["with-site", "no-site"])
def test_heartbeat_imports_with_standard_library_only(flags: list[str], tmp_path: Path) -> None:
    target = tmp_path / "hb"
    done = subprocess.run(
        [sys.executable, *flags, "-c", BLOCKER, str(ROOT), str(target)],
        capture_output=True, text=True, cwd=tmp_path, timeout=30, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == "[]\n"
    assert target.read_text().strip().isdigit()


SERVER_MODULES = [
    "fastapi", "starlette", "pydantic", "uvicorn", "yaml", "jsonpatch", "jsonpointer",
    "cryptography", "prometheus_client", "kubernetes", "httpx", "anyio",
]  # fmt: skip

PROBE_IMPORTS = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import webhook, webhook.heartbeat
names = json.loads(sys.argv[2])
print(json.dumps({
    "third_party": sorted(n for n in names if n in sys.modules),
    "webhook": sorted(n for n in sys.modules if n.partition(".")[0] == "webhook"),
}))
import yaml  # control: the detection above would see it
print("yaml" in sys.modules)
"""


def test_importing_heartbeat_loads_no_server_dependency(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-I", "-c", PROBE_IMPORTS, str(ROOT), json.dumps(SERVER_MODULES)],
        capture_output=True, text=True, cwd=tmp_path, timeout=30, check=False,
    )  # fmt: skip
    assert (done.returncode, done.stderr) == (0, "")
    report, control = done.stdout.splitlines()
    assert json.loads(report) == {"third_party": [], "webhook": ["webhook", "webhook.heartbeat"]}
    assert control == "True"
