"""The example alerts, run by promtool: the PromQL parses, and each alert fires
on the series it is meant for and stays quiet on look-alikes
(tests/monitoring/alerts.test.yaml)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.manifests import ROOT, kustomize, one, tools_dir

CASES = ROOT / "tests" / "monitoring" / "alerts.test.yaml"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(promtool, a directory with rules.yaml from the rendered PrometheusRule and the cases)."""
    tools = tools_dir()
    directory = tmp_path_factory.mktemp("alerts")
    rule = one(kustomize(tools, ROOT / "manifests" / "monitoring"), "PrometheusRule")
    (directory / "rules.yaml").write_text(yaml.safe_dump(rule["spec"], sort_keys=False))
    shutil.copy(CASES, directory / CASES.name)
    return tools / "promtool", directory


def promtool(workdir: tuple[Path, Path], *args: str) -> subprocess.CompletedProcess[str]:
    binary, directory = workdir
    return subprocess.run(
        [str(binary), *args],
        cwd=directory,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def test_rules_are_valid(workdir: tuple[Path, Path]) -> None:
    result = promtool(workdir, "check", "rules", "rules.yaml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alerts_fire_on_the_right_series(workdir: tuple[Path, Path]) -> None:
    result = promtool(workdir, "test", "rules", CASES.name)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_case() -> None:
    rule = yaml.safe_load((ROOT / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    cases = yaml.safe_load(CASES.read_text())
    tested = {
        check["alertname"]
        for case in cases["tests"]
        for check in case["alert_rule_test"]
        if check["exp_alerts"]
    }
    assert alerts == tested, f"alerts without a firing case: {sorted(alerts - tested)}"
