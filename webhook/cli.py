"""``heartbeat-webhook``: serve | inject | explain | audit | certs.

Exit codes, a contract for every command: 0 ok; 1 a denial or finding;
2 bad usage, unreadable input, or a missing install extra.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from webhook import __version__

OK, FINDING, USAGE = 0, 1, 2
# Modules the `server` extra brings; a missing one is an install problem, not a bug.
_SERVER_MODULES = frozenset(
    {"fastapi", "starlette", "uvicorn", "jsonpatch", "jsonpointer", "cryptography", "yaml",
     "prometheus_client", "kubernetes"}
)  # fmt: skip
DEV_CERT_DIR = Path("certs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="heartbeat-webhook",
        description="Inject a heartbeat livenessProbe into pods annotated heartbeat/enabled.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the admission webhook over HTTPS")
    serve.add_argument("--host", default="0.0.0.0", help="address to bind (default 0.0.0.0)")  # noqa: S104
    serve.add_argument("--port", type=int, default=8443, help="port (default 8443)")
    serve.add_argument("--cert-file", type=Path, help="PEM serving certificate")
    serve.add_argument("--key-file", type=Path, help="PEM private key of --cert-file")
    serve.add_argument(
        "--keep-alive",
        type=int,
        default=120,
        help="seconds an idle connection stays open (default 120; must exceed the "
        "apiserver's 90 s idle pool)",
    )
    serve.add_argument(
        "--drain-seconds",
        type=float,
        default=5.0,
        help="on SIGTERM, keep answering this long with /readyz failing before shutdown "
        "(default 5)",
    )
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.set_defaults(run=_serve)

    inject = commands.add_parser("inject", help="apply the injection to manifests offline")
    inject.add_argument("-f", "--filename", required=True, help="YAML file, or - for stdin")
    inject.set_defaults(run=_inject)

    explain = commands.add_parser(
        "explain", help="say whether pods would be (or were) injected, and why or why not"
    )
    source = explain.add_mutually_exclusive_group(required=True)
    source.add_argument("-f", "--filename", help="YAML manifest, or - for stdin")
    source.add_argument("pod", nargs="?", help="a live pod: NAME or pod/NAME")
    explain.add_argument("-n", "--namespace", default="default", help="the live pod's namespace")
    _cluster_arguments(explain)
    explain.add_argument("-o", "--output", choices=["text", "json"], default="text")
    explain.set_defaults(run=_explain)

    audit = commands.add_parser(
        "audit", help="list opted-in pods that missed injection or carry an outdated one"
    )
    audit.add_argument("-n", "--namespace", help="one namespace (default: all)")
    _cluster_arguments(audit)
    audit.add_argument("-o", "--output", choices=["text", "json"], default="text")
    audit.set_defaults(run=_audit)

    certs = commands.add_parser("certs", help="write a CA and a serving certificate")
    certs.add_argument("--service", required=True, help="the webhook's Service name")
    certs.add_argument("--namespace", required=True, help="the webhook's namespace")
    certs.add_argument("--out", type=Path, required=True, help="directory to write into")
    certs.add_argument(
        "--san", action="append", default=[], help="extra DNS name or IP address (repeatable)"
    )
    certs.set_defaults(run=_certs)
    return parser


def _cluster_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, ~/.kube)")
    parser.add_argument("--context", help="kubeconfig context")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except ModuleNotFoundError as error:
        if (error.name or "").split(".")[0] not in _SERVER_MODULES:
            raise
        print(
            f"heartbeat-webhook {args.command} needs the server extra (missing module "
            f"{error.name!r}); install it with: pip install 'heartbeat-webhook[server]'",
            file=sys.stderr,
        )
        return USAGE


def _serve(args: argparse.Namespace) -> int:
    from webhook import serve

    if (args.cert_file is None) != (args.key_file is None):
        print("serve: give both --cert-file and --key-file, or neither", file=sys.stderr)
        return USAGE
    cert_file, key_file = args.cert_file, args.key_file
    if cert_file is None:
        from webhook.certs import dev_pair

        cert_file, key_file, created = dev_pair(DEV_CERT_DIR)
        verb = "generated" if created else "reusing"
        print(
            f"serve: no --cert-file/--key-file given; {verb} the self-signed development "
            f"certificate {cert_file} for localhost and 127.0.0.1 (not for clusters)",
            file=sys.stderr,
        )
    for path in (cert_file, key_file):
        if not path.is_file():
            print(f"serve: cannot read {path}: no such file", file=sys.stderr)
            return USAGE
    serve.run(
        host=args.host,
        port=args.port,
        cert_file=cert_file,
        key_file=key_file,
        keep_alive=args.keep_alive,
        log_level=args.log_level,
        drain_seconds=args.drain_seconds,
    )
    return OK


def _inject(args: argparse.Namespace) -> int:
    import yaml

    from webhook.mutate import MalformedObject
    from webhook.offline import inject_documents

    documents = _load_yaml(args.filename, "inject")
    if documents is None:
        return USAGE
    try:
        result, report = inject_documents(documents)
    except MalformedObject as error:
        print(f"inject: {args.filename}: {error}", file=sys.stderr)
        return USAGE
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.denials:
        for denial in report.denials:
            print(f"denied: {denial}", file=sys.stderr)
        return FINDING
    yaml.safe_dump_all(result, sys.stdout, sort_keys=False)
    return OK


def _read(filename: str, stdin: TextIO | None = None) -> str:
    if filename == "-":
        return (stdin or sys.stdin).read()
    return Path(filename).read_text(encoding="utf-8")


def _certs(args: argparse.Namespace) -> int:
    from webhook.certs import service_sans, write_bundle

    bundle = write_bundle(args.out, [*service_sans(args.service, args.namespace), *args.san])
    ca = "reused the CA" if bundle.reused_ca else "created a CA"
    print(
        f"certs: {ca} in {bundle.ca_file}; wrote {bundle.cert_file} and {bundle.key_file}; "
        "the caBundle follows on stdout",
        file=sys.stderr,
    )
    print(bundle.ca_bundle)
    return OK


def _explain(args: argparse.Namespace) -> int:
    from webhook.diagnostics import Explanation, explain_live, explain_manifest

    explanations: list[Explanation] = []
    if args.filename is not None:
        documents = _load_yaml(args.filename, "explain")
        if documents is None:
            return USAGE
        for document in documents:
            if isinstance(document, dict):
                explanations.extend(explain_manifest(document))
    else:
        from webhook.kube import ClusterError, core_api, read_pod

        name = args.pod.removeprefix("pod/").removeprefix("pods/")
        try:
            pod = read_pod(core_api(args.kubeconfig, args.context), args.namespace, name)
        except ClusterError as error:
            print(f"explain: {error}", file=sys.stderr)
            return USAGE
        explanations.append(explain_live(pod))
    _print_explanations(explanations, args.output)
    return FINDING if any(e.finding for e in explanations) else OK


def _audit(args: argparse.Namespace) -> int:
    from webhook.diagnostics import explain_live
    from webhook.kube import ClusterError, core_api, list_pods

    try:
        core = core_api(args.kubeconfig, args.context)
        findings = [
            explanation
            for explanation in map(explain_live, list_pods(core, args.namespace))
            if explanation.finding
        ]
    except ClusterError as error:
        print(f"audit: {error}", file=sys.stderr)
        return USAGE
    _print_explanations(findings, args.output)
    if args.output == "text":
        print(f"audit: {len(findings)} pod(s) need attention", file=sys.stderr)
    return FINDING if findings else OK


def _print_explanations(explanations: list[Any], output: str) -> None:
    if output == "json":
        print(json.dumps([e.as_dict() for e in explanations], indent=2))
        return
    for explanation in explanations:
        print(f"{explanation.target}: {explanation.verdict}")
        for reason in explanation.reasons:
            print(f"  - {reason}")


def _load_yaml(filename: str, command: str) -> list[Any] | None:
    import yaml

    try:
        return [d for d in yaml.safe_load_all(_read(filename)) if d is not None]
    except OSError as error:
        print(f"{command}: cannot read {filename}: {error.strerror}", file=sys.stderr)
    except UnicodeDecodeError as error:
        print(f"{command}: {filename} is not UTF-8 text: {error.reason}", file=sys.stderr)
    except yaml.YAMLError as error:
        print(f"{command}: {filename} is not valid YAML: {error}", file=sys.stderr)
    return None
