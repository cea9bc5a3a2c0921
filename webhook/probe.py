"""The probe we inject: an exec command that passes only for a fresh beat. Pure.

The shell check runs under dash, bash and busybox sh. The path and limits are
passed as arguments ($1..$3), never spliced into the script, and the file's
content is checked to be plain digits before any arithmetic: under bash,
``$(( ))`` would execute ``a[$(cmd)]`` found in the file.
"""

from __future__ import annotations

import math
from typing import Any

from webhook.config import HeartbeatConfig
from webhook.heartbeat import MAX_FUTURE_SECONDS

# $1 path, $2 max age, $3 max seconds in the future. Builtins except `date`:
# POSIX sh has no clock builtin, and bash's $EPOCHSECONDS is not used because
# under dash it is an ordinary variable the environment could set.
# Content rules: one line of 1-12 digits with no leading zero (08 is bad
# octal in $(( ))), nothing after it. The reason goes to stdout, which the
# kubelet puts in the pod's Unhealthy event.
SHELL_CHECK = """\
f=$1 a=$2 u=$3 t= r=
[ -f "$f" ] || { printf 'heartbeat: no file at %s\\n' "$f"; exit 1; }
{ IFS= read -r t; IFS= read -r r && r=.; } <"$f"
case $t in ''|*[!0-9]*|0*|?????????????*)
  printf 'heartbeat: %s does not hold an epoch timestamp\\n' "$f"; exit 1;; esac
[ -z "$r" ] || { printf 'heartbeat: %s has more than one line\\n' "$f"; exit 1; }
n=$(date +%s)
case $n in ''|*[!0-9]*) echo 'heartbeat: cannot read the clock'; exit 1;; esac
[ "$t" -le $((n + u)) ] || {
  printf 'heartbeat: beat %s is more than %ss in the future\\n' "$t" "$u"; exit 1; }
[ $((n - t)) -lt "$a" ] || {
  printf 'heartbeat: last beat %ss ago, limit %ss\\n' $((n - t)) "$a"; exit 1; }
"""
SHELL_NAME = "heartbeat-probe"  # $0 of the check, shown in `ps` on the node
# How often the startup probe looks for the first beat; short so a worker that
# starts quickly is handed to the liveness probe quickly.
STARTUP_PERIOD = 5


def command(config: HeartbeatConfig, path: str) -> list[str]:
    """The exec command that checks ``path`` against ``config.max_age``."""
    if config.probe == "python":
        return [
            "python3", "-m", "webhook.heartbeat", "check",
            "--max-age", str(config.max_age), "--", path,
        ]  # fmt: skip
    return [
        "/bin/sh", "-c", SHELL_CHECK, SHELL_NAME,
        path, str(config.max_age), str(MAX_FUTURE_SECONDS),
    ]  # fmt: skip


def liveness_probe(config: HeartbeatConfig, path: str) -> dict[str, Any]:
    """Every field set explicitly, so the apiserver's defaulting changes nothing
    and a second review can recognise the probe as ours by equality."""
    probe: dict[str, Any] = {
        "exec": {"command": command(config, path)},
        "initialDelaySeconds": config.initial_delay,
        "periodSeconds": config.period,
        "timeoutSeconds": config.timeout,
        "successThreshold": 1,
        "failureThreshold": config.failure_threshold,
    }
    if config.termination_grace is not None:
        probe["terminationGracePeriodSeconds"] = config.termination_grace
    return probe


def startup_probe(config: HeartbeatConfig, path: str) -> dict[str, Any] | None:
    """A startup probe giving the worker ``startup_grace`` seconds for its first beat.

    Probe ticks are not aligned to container start, so the first failure can
    come up to one period early: one extra period of failures covers it.
    """
    if config.startup_grace is None:
        return None
    period = min(STARTUP_PERIOD, config.startup_grace)
    probe: dict[str, Any] = {
        "exec": {"command": command(config, path)},
        "initialDelaySeconds": 0,
        "periodSeconds": period,
        "timeoutSeconds": config.timeout,
        "successThreshold": 1,
        "failureThreshold": math.ceil(config.startup_grace / period) + 1,
    }
    if config.termination_grace is not None:
        probe["terminationGracePeriodSeconds"] = config.termination_grace
    return probe


def is_heartbeat_probe(probe: object) -> bool:
    """Whether ``probe`` is one of ours, of any version or settings.

    Used with the marker to update a probe an earlier injection wrote, while
    never touching a probe the user wrote.
    """
    if not isinstance(probe, dict):
        return False
    action = probe.get("exec")
    argv = action.get("command") if isinstance(action, dict) else None
    if not isinstance(argv, list):
        return False
    shell = argv[:2] == ["/bin/sh", "-c"] and argv[3:4] == [SHELL_NAME]
    return shell or argv[:4] == ["python3", "-m", "webhook.heartbeat", "check"]
