"""webhook.cli: exit codes, inject, certs, serve's argument checks, the missing-extra message."""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

import webhook
from webhook import __version__, serve
from webhook.cli import FINDING, OK, USAGE, main
from webhook.heartbeat import ENV_VAR

ENABLED = {"heartbeat/enabled": "true"}
# Subprocesses import the same webhook package as this test process.
SOURCE_ENV = {**os.environ, "PYTHONPATH": str(Path(webhook.__file__).parent.parent)}
INJECTED = "heartbeat/injected"


def pod_spec(**container: Any) -> dict[str, Any]:
    return {"containers": [{"name": "worker", "image": "busybox", **container}]}


def template(annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "w"}, "annotations": annotations or ENABLED},
        "spec": pod_spec(),
    }


def workload(kind: str, api_version: str = "apps/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"name": kind.lower()},
        "spec": {"selector": {"matchLabels": {"app": "w"}}, "template": template()},
    }


def pod(name: str = "p", annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": ENABLED if annotations is None else annotations},
        "spec": {**pod_spec(), **spec},
    }


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "svc", "annotations": ENABLED},
    "spec": {"selector": {"app": "w"}, "ports": [{"port": 80}]},
}
CRONJOB = {
    "apiVersion": "batch/v1",
    "kind": "CronJob",
    "metadata": {"name": "cron"},
    "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template()}}},
}
JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"name": "job"},
    "spec": {"template": template()},
}
LIST = {"apiVersion": "v1", "kind": "List", "items": [pod("listed"), SERVICE]}
MANIFESTS = [
    pod(),
    workload("Deployment"),
    workload("StatefulSet"),
    workload("DaemonSet"),
    workload("ReplicaSet"),
    JOB,
    CRONJOB,
    SERVICE,
    LIST,
]


def write(tmp_path: Path, documents: list[Any], name: str = "in.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(documents, sort_keys=False), encoding="utf-8")
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_injected(pod_template: dict[str, Any]) -> None:
    (worker,) = pod_template["spec"]["containers"]
    assert worker["livenessProbe"]["exec"]["command"][0] == "/bin/sh"
    assert {"name": ENV_VAR, "value": "/tmp/heartbeat"} in worker["env"]
    marker = json.loads(pod_template["metadata"]["annotations"][INJECTED])
    assert marker["containers"] == ["worker"]


# ---------------------------------------------------------------- usage errors (exit 2)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param([], id="no-command"),
        pytest.param(["bogus"], id="unknown-command"),
        pytest.param(["inject"], id="inject-without-f"),
        pytest.param(["certs", "--service", "s"], id="certs-missing-args"),
        pytest.param(["serve", "--port", "https"], id="bad-port"),
        pytest.param(["serve", "--log-level", "trace"], id="bad-log-level"),
    ],
)
def test_argparse_errors_exit_2(capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == USAGE
    assert "usage: heartbeat-webhook" in capsys.readouterr().err


def test_exit_code_contract() -> None:
    assert (OK, FINDING, USAGE) == (0, 1, 2)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"heartbeat-webhook {__version__}\n"


def test_python_m_webhook_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "webhook", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=SOURCE_ENV,
    )
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"heartbeat-webhook {__version__}\n",
        "",
    )


# ---------------------------------------------------------------- inject


def test_inject_every_workload_kind(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inject", "-f", str(write(tmp_path, MANIFESTS)))
    assert (code, err) == (OK, "")
    result = list(yaml.safe_load_all(out))
    assert [d["kind"] for d in result] == [d["kind"] for d in MANIFESTS]
    p, deploy, sts, ds, rs, job, cron, service, listed = result
    assert_injected(p)
    for document in (deploy, sts, ds, rs, job):
        assert_injected(document["spec"]["template"])
    assert_injected(cron["spec"]["jobTemplate"]["spec"]["template"])
    assert service == SERVICE
    assert_injected(listed["items"][0])
    assert listed["items"][1] == SERVICE
    # Only the pod template changed: the workload around it is untouched.
    deploy["spec"]["template"] = workload("Deployment")["spec"]["template"]
    assert deploy == workload("Deployment")


def test_inject_leaves_unannotated_and_disabled_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    documents = [
        pod("plain", annotations={}),
        pod("off", annotations={"heartbeat/enabled": "false"}),
    ]
    code, out, err = run(capsys, "inject", "-f", str(write(tmp_path, documents)))
    assert (code, err) == (OK, "")
    assert list(yaml.safe_load_all(out)) == documents


def test_inject_warnings_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documents = [pod(annotations={**ENABLED, "heartbeat/perod": "10"})]
    code, out, err = run(capsys, "inject", "-f", str(write(tmp_path, documents)))
    assert code == OK
    (line,) = err.splitlines()
    assert line.startswith("warning: document 1 (Pod p): ")
    assert "heartbeat/perod" in line
    (result,) = yaml.safe_load_all(out)
    assert_injected(result)


def test_inject_keeps_an_own_probe_and_warns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    own = {"exec": {"command": ["true"]}}
    documents = [pod(containers=[{"name": "worker", "image": "busybox", "livenessProbe": own}])]
    code, out, err = run(capsys, "inject", "-f", str(write(tmp_path, documents)))
    assert code == OK
    assert "livenessProbe" in err
    (result,) = yaml.safe_load_all(out)
    assert result["spec"]["containers"][0]["livenessProbe"] == own


def test_inject_denial_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    documents = [pod("good"), pod("bad", annotations={"heartbeat/enabled": "maybe"})]
    code, out, err = run(capsys, "inject", "-f", str(write(tmp_path, documents)))
    assert code == FINDING
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("denied: document 2 (Pod bad): annotation heartbeat/enabled=")
    assert '"maybe"' in line


def test_inject_denies_an_unquoted_yaml_boolean_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`heartbeat/enabled: true` unquoted is a YAML boolean, which Kubernetes rejects as an
    annotation; the denial must say the value has to be a string.

    Known bug: config.quote renders the bool as the string "True", so the message reads
    'heartbeat/enabled="True" is invalid; accepted: "true" or "false" (any case)',
    which contradicts itself. Same for `heartbeat/period: 30` ("30" is invalid).
    """
    path = tmp_path / "unquoted.yaml"
    path.write_text(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations:\n"
        "    heartbeat/enabled: true\nspec:\n  containers: [{name: w, image: busybox}]\n",
        encoding="utf-8",
    )
    code, out, err = run(capsys, "inject", "-f", str(path))
    assert (code, out) == (FINDING, "")
    assert "heartbeat/enabled" in err
    assert 'heartbeat/enabled="True"' not in err
    assert "string" in err


def test_inject_reads_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(yaml.safe_dump(pod())))
    code, out, err = run(capsys, "inject", "-f", "-")
    assert (code, err) == (OK, "")
    (result,) = yaml.safe_load_all(out)
    assert_injected(result)


def test_inject_skips_empty_documents(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "gaps.yaml"
    path.write_text("---\n---\n" + yaml.safe_dump(pod()) + "---\n", encoding="utf-8")
    code, out, _ = run(capsys, "inject", "-f", str(path))
    assert code == OK
    (result,) = yaml.safe_load_all(out)
    assert_injected(result)


def test_inject_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    read_only = pod(
        "ro",
        containers=[
            {
                "name": "worker",
                "image": "busybox",
                "securityContext": {"readOnlyRootFilesystem": True},
            },
            {"name": "sidecar", "image": "busybox"},
        ],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    code, first, _ = run(capsys, "inject", "-f", str(write(tmp_path, [*MANIFESTS, read_only])))
    assert code == OK
    again = tmp_path / "again.yaml"
    again.write_text(first, encoding="utf-8")
    code, second, err = run(capsys, "inject", "-f", str(again))
    assert (code, err) == (OK, "")
    assert second == first
    injected_ro = list(yaml.safe_load_all(second))[-1]
    assert len(injected_ro["spec"]["volumes"]) == 2  # no second emptyDir on the rerun


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("a: [1, 2\n", "is not valid YAML", id="invalid-yaml"),
        pytest.param("key: value\n\tbad: tab\n", "is not valid YAML", id="tab"),
        pytest.param(
            "kind: Pod\nmetadata: {annotations: {heartbeat/enabled: 'true'}}\n"
            "spec: {containers: {name: w}}\n",
            "object.spec.containers must be a list of objects with a name",
            id="containers-not-a-list",
        ),
    ],
)
def test_inject_unusable_input_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(content, encoding="utf-8")
    code, out, err = run(capsys, "inject", "-f", str(path))
    assert (code, out) == (USAGE, "")
    assert err.startswith(f"inject: {path}")
    assert message in err


def test_inject_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    code, out, err = run(capsys, "inject", "-f", str(missing))
    assert (code, out) == (USAGE, "")
    assert err == f"inject: cannot read {missing}: No such file or directory\n"


def test_inject_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "inject", "-f", str(tmp_path))
    assert (code, out) == (USAGE, "")
    assert err.startswith(f"inject: cannot read {tmp_path}")


def test_inject_non_utf8_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Known bug: cli._read raises UnicodeDecodeError, which _inject does not catch
    (it catches OSError and YAMLError), so the user gets a traceback and exit 1."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"kind: Pod\nmetadata: {name: caf\xe9}\n")
    code, out, err = run(capsys, "inject", "-f", str(path))
    assert (code, out) == (USAGE, "")
    assert str(path) in err


# ---------------------------------------------------------------- certs


def test_certs_writes_and_reuses_the_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "certs"
    argv = ["certs", "--service", "s", "--namespace", "ns", "--out", str(out_dir)]
    code, out, err = run(capsys, *argv, "--san", "127.0.0.1")
    assert code == OK
    ca_pem = (out_dir / "ca.crt").read_bytes()
    assert base64.b64decode(out.splitlines()[-1], validate=True) == ca_pem
    assert "created a CA" in err
    first_leaf = (out_dir / "tls.crt").read_bytes()

    code, out, err = run(capsys, *argv, "--san", "127.0.0.1")
    assert code == OK
    assert "reused the CA" in err
    assert base64.b64decode(out.splitlines()[-1]) == ca_pem
    assert (out_dir / "ca.crt").read_bytes() == ca_pem
    assert (out_dir / "tls.crt").read_bytes() != first_leaf


def test_certs_sans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    argv = ["certs", "--service", "s", "--namespace", "ns", "--out", str(tmp_path)]
    assert run(capsys, *argv, "--san", "127.0.0.1", "--san", "hook.example")[0] == OK
    cert = x509.load_pem_x509_certificate((tmp_path / "tls.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [
        "s",
        "s.ns",
        "s.ns.svc",
        "s.ns.svc.cluster.local",
        "hook.example",
    ]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


# ---------------------------------------------------------------- serve


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Record serve.run calls instead of starting uvicorn."""
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(serve, "run", lambda **kwargs: calls.append(kwargs))
    return calls


@pytest.mark.parametrize("flag", ["--cert-file", "--key-file"])
def test_serve_needs_both_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: list[Any], flag: str
) -> None:
    existing = tmp_path / "tls.pem"
    existing.write_text("x", encoding="utf-8")
    code, out, err = run(capsys, "serve", flag, str(existing))
    assert (code, out) == (USAGE, "")
    assert err == "serve: give both --cert-file and --key-file, or neither\n"
    assert no_server == []


def test_serve_missing_cert_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: list[Any]
) -> None:
    key = tmp_path / "tls.key"
    key.write_text("x", encoding="utf-8")
    missing = tmp_path / "tls.crt"
    code, out, err = run(capsys, "serve", "--cert-file", str(missing), "--key-file", str(key))
    assert (code, out) == (USAGE, "")
    assert err == f"serve: cannot read {missing}: no such file\n"
    assert no_server == []


def test_serve_passes_files_and_keep_alive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_server: list[dict[str, Any]]
) -> None:
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_text("c", encoding="utf-8")
    key.write_text("k", encoding="utf-8")
    code, _, _ = run(capsys, "serve", "--cert-file", str(cert), "--key-file", str(key))
    assert code == OK
    assert no_server == [
        {
            "host": "0.0.0.0",  # noqa: S104
            "port": 8443,
            "cert_file": cert,
            "key_file": key,
            "keep_alive": 120,
            "log_level": "info",
            "drain_seconds": 5.0,
        }
    ]
    assert no_server[0]["keep_alive"] > 90  # outlive the apiserver's idle connections


# ---------------------------------------------------------------- without the server extra


BLOCKER = """
import sys

BLOCKED = {"fastapi", "uvicorn", "yaml", "jsonpatch", "jsonpointer", "cryptography",
           "prometheus_client", "starlette", "kubernetes"}


class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, Block())
from webhook.cli import main

sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["inject", "-f", "-"], id="inject"),
        pytest.param(["certs", "--service", "s", "--namespace", "ns", "--out", "out"], id="certs"),
        pytest.param(["serve"], id="serve"),
    ],
)
def test_missing_server_extra_exits_2(tmp_path: Path, argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BLOCKER, *argv],
        input=yaml.safe_dump(pod()),
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
        check=False,
        env=SOURCE_ENV,
    )
    assert done.returncode == USAGE, done.stderr
    assert "pip install 'heartbeat-webhook[server]'" in done.stderr
    assert f"heartbeat-webhook {argv[0]} needs the server extra" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def test_blocker_really_blocks(tmp_path: Path) -> None:
    """The check above means something only if the blocked imports do fail."""
    script = BLOCKER.replace("from webhook.cli import main", "import yaml  # noqa")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'yaml'" in done.stderr
