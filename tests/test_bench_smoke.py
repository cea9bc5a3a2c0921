"""`make bench-smoke`'s command runs end to end: servers, wrk, vegeta, report.

No timing assertions: this only proves the benchmark still works (the servers
start, answer every payload as expected, the load generators' output parses, the
report is written). Needs wrk (Debian package) and vegeta (bench/tools.sh builds
it with Go); skipped locally without them, a failure under CI=true. The
end-to-end step runs when KUBEBUILDER_ASSETS is set (as `make test` does) or in CI.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"

pytestmark = pytest.mark.integration


def _missing(why: str) -> None:
    if IN_CI:
        pytest.fail(f"{why} (CI=true: the benchmark smoke test must run)", pytrace=False)
    pytest.skip(why)


def test_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        _missing("wrk is not installed (apt-get install -y wrk)")
    tools = subprocess.run(
        ["bash", str(ROOT / "bench" / "tools.sh")],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if tools.returncode != 0:
        _missing(f"bench/tools.sh could not provide vegeta: {tools.stderr.strip()[-500:]}")
    env = {**os.environ, "VEGETA": tools.stdout.strip().splitlines()[-1]}
    argv = [sys.executable, "-m", "bench", "--smoke", "--out", str(tmp_path)]
    e2e = IN_CI or bool(os.environ.get("KUBEBUILDER_ASSETS"))
    if not e2e:
        argv += ["--skip", "e2e"]

    result = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False
    )

    assert result.returncode == 0, result.stderr[-4000:]
    report = (tmp_path / "report.md").read_text()
    assert report == result.stdout.rstrip("\n") + "\n"
    rows = ("| typical |", "| plain |", "| large |", "| nolog |", "| fieldsonly |", "| devnull |")
    for row in (*rows, "| nometrics |", "| h11 |"):
        assert row in report, row
    assert "| 50 |" in report and "| 100 |" in report  # the vegeta rates
    assert (tmp_path / "results.json").exists()
    if e2e:
        assert "Ratio of medians" in report
        # kube-apiserver's own profile, read with `go tool pprof` (Go builds the assets).
        assert "| creates profiled |" in report, report[-3000:]
        assert "| ↳ the call to the webhook, µs CPU |" in report
