"""The generated probe command, run for real under dash, bash and busybox sh.

Every case runs the exact argv from ``webhook.probe.command`` with only
``/bin/sh`` swapped for the shell under test, and asserts the exit status, the
short reason on stdout and an empty stderr (a shell complaining about an
"integer expression" would mean garbage reached arithmetic). The Python checker
(``python -m webhook.heartbeat check``) is cross-checked on the same files.

Hostile cases write to an absolute canary path: if anything in the file or in
the path argument were executed, the canary would appear.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from webhook.config import HeartbeatConfig
from webhook.heartbeat import MAX_FUTURE_SECONDS, check_heartbeat, write_heartbeat
from webhook.probe import SHELL_NAME, command

ROOT = Path(__file__).resolve().parent.parent
MAX_AGE = 90
SHELLS: dict[str, tuple[str, ...]] = {
    "dash": ("dash",),
    "bash": ("bash",),
    "busybox": ("busybox", "sh"),
}
IMPLEMENTATIONS = [*SHELLS, "python"]
# A minimal, explicit environment: the probe must not depend on ours. A UTF-8
# locale is the harder case for the byte checks (multibyte matching).
ENV = {"PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"), "LC_ALL": "C.UTF-8"}
PY_ENV = {**ENV, "PYTHONPATH": str(ROOT)}

NO_FILE = "no file at"
NOT_TS = "does not hold an epoch timestamp"
LINES = "has more than one line"
AGO = "ago"
FUTURE = "in the future"

# All three shells' `read` silently drops NUL bytes (observed with dash 0.5.12,
# bash 5.2.15, busybox 1.35.0): "17964\x0015818" is read as "1796415818".
# Builtins cannot see a NUL, so the Python checker drops them too, and both
# probes agree. Nothing is executed: what is left is validated digits.


@dataclass(frozen=True)
class Probe:
    status: int
    stdout: str
    stderr: str


def require_shell(name: str) -> tuple[str, ...]:
    argv = SHELLS[name]
    if shutil.which(argv[0]) is None:
        hint = f"{argv[0]} is not installed: apt-get install -y {argv[0]}"
        if name == "busybox" and os.environ.get("CI") != "true":
            pytest.skip(hint)
        pytest.fail(hint)
    return argv


def available_shells() -> list[str]:
    """Every shell; busybox left out only when missing outside CI (as require_shell)."""
    names = []
    for name, argv in SHELLS.items():
        if shutil.which(argv[0]) or name != "busybox" or os.environ.get("CI") == "true":
            require_shell(name)  # fails when missing
            names.append(name)
    return names


def _finish(argv: list[str], cwd: Path | None, env: dict[str, str]) -> Probe:
    done = subprocess.run(argv, capture_output=True, cwd=cwd, env=env, timeout=20, check=False)
    return Probe(
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def run_shell(
    shell: tuple[str, ...],
    path: str | Path,
    max_age: int = MAX_AGE,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> Probe:
    """The real generated command, with only /bin/sh replaced by ``shell``."""
    argv = command(HeartbeatConfig(max_age=max_age), os.fspath(path))
    assert argv[:2] == ["/bin/sh", "-c"]
    assert argv[3:] == [SHELL_NAME, os.fspath(path), str(max_age), str(MAX_FUTURE_SECONDS)]
    executable = shutil.which(shell[0]) or shell[0]  # absolute: env may have another PATH
    return _finish([executable, *shell[1:], *argv[1:]], cwd, ENV if env is None else env)


def run_python(path: str | Path, max_age: int = MAX_AGE, *, cwd: Path | None = None) -> Probe:
    """The real generated python command, with python3 replaced by the venv's."""
    argv = command(HeartbeatConfig(max_age=max_age, probe="python"), os.fspath(path))
    assert argv[:4] == ["python3", "-m", "webhook.heartbeat", "check"]
    return _finish([sys.executable, *argv[1:]], cwd, PY_ENV)


def run(impl: str, path: str | Path, max_age: int = MAX_AGE, *, cwd: Path | None = None) -> Probe:
    if impl == "python":
        return run_python(path, max_age, cwd=cwd)
    return run_shell(require_shell(impl), path, max_age, cwd=cwd)


def at_stable_second(attempt: Callable[[int], Probe]) -> Probe:
    """Run ``attempt(now)`` until the wall clock second did not change during it.

    For boundary cases whose outcome flips if the probe reads the next second.
    A result is only returned from a run where the probe's clock must have read
    exactly ``now``, so the assertion on it still means something.
    """
    for _ in range(5):
        fraction = time.time() % 1
        if fraction > 0.5:
            time.sleep(1.01 - fraction)
        now = int(time.time())
        result = attempt(now)
        if int(time.time()) == now:
            return result
    pytest.fail("the clock ticked during every attempt")


@pytest.fixture(params=list(SHELLS))
def shell(request: pytest.FixtureRequest) -> tuple[str, ...]:
    return require_shell(request.param)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    path = tmp_path / "CANARY"
    assert path.is_absolute()
    return path


# --- content cases -----------------------------------------------------------


@dataclass(frozen=True)
class Case:
    content: Callable[[int, Path], bytes]  # (now, canary) -> the file's bytes
    status: int
    reason: str  # in the shell probe's stdout; "" means stdout is empty
    py_reason: str | None = None  # the Python checker's, where it words it differently


def _fields(now: int, canary: Path) -> dict[str, object]:
    return {
        "now": now,
        "canary": canary,
        "stale": now - 200,
        "edge": now - MAX_AGE,
        "soon": now + 100,
        "far": now + 4000,
        "head": str(now)[:5],
        "tail": str(now)[5:],
        "stale_head": str(now - 200)[:5],
        "stale_tail": str(now - 200)[5:],
    }


def text(template: str) -> Callable[[int, Path], bytes]:
    """Template with {now}, {canary}, ... encoded as UTF-8."""
    return lambda now, canary: template.format(**_fields(now, canary)).encode("utf-8")


def raw(template: str) -> Callable[[int, Path], bytes]:
    """Template whose characters are bytes 0-255 (for NUL and non-UTF-8 bytes)."""
    return lambda now, canary: template.format(**_fields(now, canary)).encode("latin-1")


def case(
    id_: str,
    content: Callable[[int, Path], bytes],
    status: int,
    reason: str = "",
    py_reason: str | None = None,
    *marks: pytest.MarkDecorator,
) -> object:
    return pytest.param(Case(content, status, reason, py_reason), id=id_, marks=marks)


CONTENT_CASES = [
    case("date-newline", text("{now}\n"), 0),
    case("date-no-newline", text("{now}"), 0),
    case("stale-200s", text("{stale}\n"), 1, AGO),
    case("exactly-max-age", text("{edge}\n"), 1, AGO),
    case("future-100s", text("{soon}\n"), 0),
    case("future-4000s", text("{far}\n"), 1, FUTURE),
    case("twelve-digits", text("999999999999\n"), 1, FUTURE),
    case("thirteen-digits", text("1000000000000\n"), 1, NOT_TS),
    # A torn or interrupted write.
    case("empty", text(""), 1, NOT_TS),
    case("newline-only", text("\n"), 1, NOT_TS),
    case("spaces-only", text("   "), 1, NOT_TS),
    case("half-written-17", text("17"), 1, AGO),  # valid, but from 1970
    case("half-written-head", text("{head}"), 1, AGO),
    # Hostile: each must be rejected as "not a timestamp" (not merely stale) and
    # must not execute; several are built around a fresh timestamp so a lenient
    # parser would pass them.
    case("arith-subscript", text("a[$(touch {canary})]"), 1, NOT_TS),
    case("arith-subscript-plus", text("x[$(touch {canary})]+1"), 1, NOT_TS),
    case("command-substitution", text("$(touch {canary})"), 1, NOT_TS),
    case("backticks", text("`touch {canary}`"), 1, NOT_TS),
    case("semicolon", text("{now};touch {canary}"), 1, NOT_TS),
    case("fresh-then-substitution", text("{now}$(touch {canary})"), 1, NOT_TS),
    case("arith-expression", text("{stale}+200"), 1, NOT_TS),
    case("variable-name", text("EPOCHSECONDS"), 1, NOT_TS),
    case("leading-zero-0123", text("0123"), 1, NOT_TS),
    case("bad-octal-08", text("08"), 1, NOT_TS),
    case("leading-zero-fresh", text("0{now}"), 1, NOT_TS),
    case("zero", text("0"), 1, NOT_TS),
    case("hex", text("0x6553f100"), 1, NOT_TS),
    case("huge-30-nines", text("9" * 30), 1, NOT_TS),
    case("negative", text("-5"), 1, NOT_TS),
    case("plus-sign", text("+{now}"), 1, NOT_TS),
    case("scientific", text("1e9"), 1, NOT_TS),
    case("leading-space", text(" {now}"), 1, NOT_TS),
    case("trailing-space", text("{now} "), 1, NOT_TS),
    case("tab", text("{now}\t\n"), 1, NOT_TS),
    case("crlf", text("{now}\r\n"), 1, NOT_TS),
    case("two-lines", text("{now}\n{now}\n"), 1, LINES, NOT_TS),
    case("trailing-blank-line", text("{now}\n\n"), 1, LINES, NOT_TS),
    case("second-line-unterminated", text("{now}\nx"), 1, LINES, NOT_TS),
    case("fullwidth-digits", text("\uff11\uff17\uff10\uff10"), 1, NOT_TS),
    case("arabic-indic-digits", text("\u0661\u0667\u0660\u0660"), 1, NOT_TS),
    case("superscript-two", text("\u00b2"), 1, NOT_TS),
    case("non-utf8-leading", raw("\xff{now}\n"), 1, NOT_TS),
    case("non-utf8-trailing", raw("{now}\xff\n"), 1, NOT_TS),
    case("latin1-e-acute", raw("{now}\xe9"), 1, NOT_TS),
    case("nul-only", raw("\0\0\0\0\n"), 1, NOT_TS),
    case("nul-inside-digits", raw("{head}\0{tail}\n"), 0),
    case("nul-leading", raw("\0{now}\n"), 0),
    case("nul-trailing", raw("{now}\0\n"), 0),
    case("nul-inside-stale", raw("{stale_head}\0{stale_tail}\n"), 1, AGO),
]


@pytest.mark.parametrize("case", CONTENT_CASES)
def test_shell_probe_content(
    shell: tuple[str, ...], case: Case, tmp_path: Path, canary: Path
) -> None:
    beat = tmp_path / "heartbeat"
    beat.write_bytes(case.content(int(time.time()), canary))
    result = run_shell(shell, beat)
    assert not canary.exists(), "the probe executed file content"
    assert (result.status, result.stderr) == (case.status, "")
    if case.reason:
        assert case.reason in result.stdout
    else:
        assert result.stdout == ""


@pytest.mark.parametrize("case", CONTENT_CASES)
def test_python_checker_matches_shell_probe(case: Case, tmp_path: Path, canary: Path) -> None:
    """Same file, same verdict: the Python checker against every shell."""
    beat = tmp_path / "heartbeat"
    beat.write_bytes(case.content(int(time.time()), canary))
    python = run_python(beat)
    assert not canary.exists(), "the Python checker executed file content"
    assert (python.status, python.stderr) == (case.status, "")
    reason = case.reason if case.py_reason is None else case.py_reason
    if reason:
        assert reason in python.stdout
    else:
        assert python.stdout == ""
    shells = available_shells()
    verdicts = {name: run_shell(SHELLS[name], beat).status for name in shells}
    assert not canary.exists(), "a shell probe executed file content"
    assert verdicts == dict.fromkeys(shells, python.status)


@pytest.mark.parametrize("locale", ["C", "POSIX", "C.UTF-8"])
@pytest.mark.parametrize(
    "content",
    [b"\xff1700000000", b"1700000000\xff", b"\xef\xbc\x91\xef\xbc\x97", b"\xc2\xb2", b"\xe9"],
    ids=["ff-leading", "ff-trailing", "fullwidth", "superscript", "latin1"],
)
def test_shell_probe_bytes_rejected_in_every_locale(
    shell: tuple[str, ...], locale: str, content: bytes, tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    beat.write_bytes(content)
    result = run_shell(shell, beat, env={**ENV, "LC_ALL": locale})
    assert (result.status, result.stderr) == (1, "")
    assert NOT_TS in result.stdout


def test_naive_probe_is_injectable_control(canary: Path, tmp_path: Path) -> None:
    """Control: the hostile content and the canary do detect execution.

    The naive probe from MISSION.md runs ``touch`` under bash, so the canary
    assertions above can fail.
    """
    beat = tmp_path / "heartbeat"
    beat.write_text(f"a[$(touch {canary})]")
    naive = 'f=$1; [ $(( $(date +%s) - $(cat "$f") )) -lt "$2" ]'
    subprocess.run(["bash", "-c", naive, "naive", str(beat), "90"], capture_output=True,
                   env=ENV, check=False)  # fmt: skip
    assert canary.exists()


# --- writers -----------------------------------------------------------------


def _shell_writer(script: str) -> Callable[[tuple[str, ...], Path], None]:
    def write(shell: tuple[str, ...], path: Path) -> None:
        subprocess.run([*shell, "-c", script, "writer", str(path)], env=ENV, check=True)

    return write


def _python_writer(allow: int) -> Callable[[tuple[str, ...], Path], None]:
    def write(shell: tuple[str, ...], path: Path) -> None:
        write_heartbeat(path, allow=allow)

    return write


WRITERS = [
    pytest.param(_python_writer(0), id="write_heartbeat"),
    pytest.param(_python_writer(600), id="write_heartbeat-allow-600"),
    pytest.param(_python_writer(MAX_FUTURE_SECONDS), id="write_heartbeat-allow-3600"),
    pytest.param(_shell_writer('date +%s > "$1"'), id="date-newline"),
    pytest.param(_shell_writer('printf %s "$(date +%s)" > "$1"'), id="date-printf-no-newline"),
    pytest.param(_shell_writer('date +%s > "$1.tmp" && mv "$1.tmp" "$1"'), id="date-tmp-mv"),
]


@pytest.mark.parametrize("writer", WRITERS)
def test_shell_probe_accepts_every_writer(
    shell: tuple[str, ...], writer: Callable[[tuple[str, ...], Path], None], tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    writer(shell, beat)
    assert run_shell(shell, beat) == Probe(0, "", "")


@pytest.mark.parametrize("writer", WRITERS)
def test_python_checker_accepts_every_writer(
    writer: Callable[[tuple[str, ...], Path], None], tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    writer(SHELLS["dash"], beat)
    assert run_python(beat) == Probe(0, "", "")


def test_unmodified_command_runs_under_bin_sh(tmp_path: Path) -> None:
    """The argv exactly as injected, /bin/sh included."""
    beat = tmp_path / "heartbeat"
    write_heartbeat(beat)
    argv = command(HeartbeatConfig(max_age=MAX_AGE), str(beat))
    assert _finish(argv, None, ENV) == Probe(0, "", "")
    beat.unlink()
    missing = _finish(argv, None, ENV)
    assert missing.status == 1
    assert f"{NO_FILE} {beat}" in missing.stdout


def test_missing_file(shell: tuple[str, ...], tmp_path: Path) -> None:
    beat = tmp_path / "absent" / "heartbeat"
    result = run_shell(shell, beat)
    assert result == Probe(1, f"heartbeat: {NO_FILE} {beat}\n", "")


def test_directory_is_not_a_beat(tmp_path: Path) -> None:
    """Shells say "no file", Python "cannot read": both fail."""
    for name in available_shells():
        assert run_shell(SHELLS[name], tmp_path).status == 1, name
    python = run_python(tmp_path)
    assert python.status == 1
    assert "cannot read" in python.stdout


# --- clock boundaries --------------------------------------------------------


@pytest.mark.parametrize("max_age", [2, 90, 86400])
def test_boundary_exactly_max_age_fails(
    shell: tuple[str, ...], max_age: int, tmp_path: Path
) -> None:
    # The probe's clock can only be >= ours, so this fails whatever the tick.
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{int(time.time()) - max_age}\n")
    result = run_shell(shell, beat, max_age)
    assert result.status == 1
    assert f"ago, limit {max_age}s" in result.stdout


@pytest.mark.parametrize("max_age", [2, 90, 86400])
def test_boundary_one_second_inside_passes(
    shell: tuple[str, ...], max_age: int, tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"

    def attempt(now: int) -> Probe:
        beat.write_text(f"{now - max_age + 1}\n")
        return run_shell(shell, beat, max_age)

    assert at_stable_second(attempt) == Probe(0, "", "")


def test_future_limit_passes(shell: tuple[str, ...], tmp_path: Path) -> None:
    # Exactly MAX_FUTURE_SECONDS ahead; a later probe clock only helps.
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{int(time.time()) + MAX_FUTURE_SECONDS}\n")
    assert run_shell(shell, beat) == Probe(0, "", "")


def test_future_limit_plus_one_fails(shell: tuple[str, ...], tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"

    def attempt(now: int) -> Probe:
        beat.write_text(f"{now + MAX_FUTURE_SECONDS + 1}\n")
        return run_shell(shell, beat)

    result = at_stable_second(attempt)
    assert result.status == 1
    assert f"is more than {MAX_FUTURE_SECONDS}s in the future" in result.stdout


@pytest.mark.parametrize("max_age", [2, 90])
def test_python_checker_boundaries(max_age: int, tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{int(time.time()) - max_age}\n")
    assert run_python(beat, max_age).status == 1

    def attempt(now: int) -> Probe:
        beat.write_text(f"{now - max_age + 1}\n")
        return run_python(beat, max_age)

    assert at_stable_second(attempt) == Probe(0, "", "")


def test_environment_cannot_set_the_clock(shell: tuple[str, ...], tmp_path: Path) -> None:
    """A stale beat stays stale whatever the container's environment holds.

    Exec probes inherit the container's env. bash and busybox (1.35) override
    an inherited EPOCHSECONDS with their own clock, but dash has no such
    variable: the earlier ``n=${EPOCHSECONDS:-$(date +%s)}`` took the inherited
    value as the time there, so a stale beat passed.
    """
    stale = int(time.time()) - 200
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{stale}\n")
    result = run_shell(shell, beat, env={**ENV, "EPOCHSECONDS": str(stale)})
    assert result.status == 1
    assert AGO in result.stdout


def test_no_clock_fails(shell: tuple[str, ...], tmp_path: Path) -> None:
    """Without `date` on PATH the probe fails closed (it always uses `date`)."""
    beat = tmp_path / "heartbeat"
    write_heartbeat(beat)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    result = run_shell(shell, beat, env={"PATH": str(empty), "LC_ALL": "C.UTF-8"})
    assert result.status == 1
    assert "cannot read the clock" in result.stdout


# --- hostile path argument ---------------------------------------------------

HOSTILE_PATHS = [
    pytest.param("my heartbeat", id="space"),
    pytest.param("$(touch {canary})", id="command-substitution"),
    pytest.param("hb;touch {canary};", id="semicolon"),
    pytest.param("`touch {canary}`", id="backticks"),
    pytest.param("hb\ntouch {canary}", id="newline"),
    pytest.param("hb' \"; touch {canary} #", id="quotes"),
    pytest.param("*", id="glob"),
    pytest.param("-f", id="dash-f"),
    pytest.param("--max-age", id="option-like"),
    pytest.param("!", id="bang"),
    pytest.param("(", id="paren"),
]


@pytest.mark.parametrize("impl", IMPLEMENTATIONS)
@pytest.mark.parametrize("template", HOSTILE_PATHS)
def test_hostile_path_is_an_argument(
    impl: str, template: str, tmp_path: Path, canary: Path
) -> None:
    """The path goes in as $1: reported verbatim when missing, checked when present."""
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / "decoy").write_text("1\n")  # something for a glob to match
    name = template.format(canary=canary)

    missing = run(impl, name, cwd=cwd)
    assert not canary.exists(), "the path argument was executed"
    assert missing.status == 1
    assert f"{NO_FILE} {name}\n" in missing.stdout

    write_heartbeat(cwd / name)
    present = run(impl, name, cwd=cwd)
    assert not canary.exists(), "the path argument was executed"
    assert present == Probe(0, "", "")


# --- check_heartbeat with an injected clock ----------------------------------

NOW = 1_700_000_000


@pytest.mark.parametrize(
    ("content", "max_age", "max_future", "expected"),
    [
        pytest.param(b"1700000000\n", 90, 3600, None, id="fresh"),
        pytest.param(b"1700000000", 90, 3600, None, id="no-newline"),
        pytest.param(b"1699999911\n", 90, 3600, None, id="one-second-inside"),
        pytest.param(
            b"1699999910\n", 90, 3600, "last beat 90s ago, limit 90s", id="exactly-max-age"
        ),
        pytest.param(b"1699999800\n", 90, 3600, "last beat 200s ago, limit 90s", id="stale-200s"),
        pytest.param(b"1699999999\n", 2, 3600, None, id="max-age-2-inside"),
        pytest.param(b"1699999998\n", 2, 3600, "last beat 2s ago, limit 2s", id="max-age-2-edge"),
        pytest.param(b"1700003600\n", 90, 3600, None, id="future-limit"),
        pytest.param(
            b"1700003601\n", 90, 3600, "beat 1700003601 is more than 3600s in the future",
            id="future-limit-plus-one",
        ),
        pytest.param(b"1700000010", 90, 10, None, id="max-future-10-edge"),
        pytest.param(b"1700000011", 90, 10, "more than 10s in the future", id="max-future-10-over"),
        pytest.param(b"1700000001", 90, 0, "more than 0s in the future", id="max-future-0"),
        pytest.param(b"17", 90, 3600, "last beat 1699999983s ago", id="half-written-17"),
        pytest.param(b"999999999999", 90, 3600, "in the future", id="twelve-digits"),
        pytest.param(b"1000000000000", 90, 3600, NOT_TS, id="thirteen-digits"),
        pytest.param(b"", 90, 3600, NOT_TS, id="empty"),
        pytest.param(b"1700000000\n\n", 90, 3600, NOT_TS, id="trailing-blank-line"),
        pytest.param(b"1700000000\r\n", 90, 3600, NOT_TS, id="crlf"),
        pytest.param(b"0170000000", 90, 3600, NOT_TS, id="leading-zero"),
        pytest.param(b"17000\x0000000", 90, 3600, None, id="nul-dropped"),
        pytest.param(b"\x00\x00\n", 90, 3600, NOT_TS, id="nul-only"),
        pytest.param(b"1700000000\n" + b" " * 100, 90, 3600, NOT_TS, id="long-tail"),
        pytest.param("\uff11\uff17".encode(), 90, 3600, NOT_TS, id="fullwidth-digits"),
    ],
)  # fmt: skip
def test_check_heartbeat_injected_clock(
    content: bytes, max_age: int, max_future: int, expected: str | None, tmp_path: Path
) -> None:
    beat = tmp_path / "heartbeat"
    beat.write_bytes(content)
    reason = check_heartbeat(str(beat), max_age, max_future=max_future, now=NOW)
    if expected is None:
        assert reason is None
    else:
        assert reason is not None
        assert expected in reason


def test_check_heartbeat_missing_and_unreadable(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert check_heartbeat(str(missing), 90, now=NOW) == f"heartbeat: {NO_FILE} {missing}"
    reason = check_heartbeat(str(tmp_path), 90, now=NOW)
    assert reason is not None
    assert reason.startswith(f"heartbeat: cannot read {tmp_path}")


def test_check_heartbeat_default_clock_truncates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without now=, the clock is int(time.time()) like `date +%s`."""
    beat = tmp_path / "heartbeat"
    beat.write_text(f"{NOW - 89}\n")
    monkeypatch.setattr(time, "time", lambda: NOW + 0.99)
    assert check_heartbeat(str(beat), 90) is None
    monkeypatch.setattr(time, "time", lambda: NOW + 1.0)
    assert check_heartbeat(str(beat), 90) == "heartbeat: last beat 90s ago, limit 90s"
