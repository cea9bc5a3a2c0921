"""Serve a bench app exactly as ``heartbeat-webhook serve`` serves the webhook.

``python -m bench.launch --app {webhook,nometrics,fieldsonly,baseline} --port N
--cert-file C --key-file K [--log-level info|warning] [--http auto|h11|httptools]
[--stderr PATH]``

It calls ``webhook.serve.run`` itself (so TLS, the certificate reloader,
keep-alive, access log and every other uvicorn setting stay the webhook's),
with two substitutions: the app comes from bench/variants.py, and ``--http``,
when given, overrides uvicorn's HTTP implementation. ``--stderr`` sends the
log somewhere else (``/dev/null``: what writing it to a file costs). Binds
127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import uvicorn.config

from bench.variants import APPS, build
from webhook import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bench.launch")
    parser.add_argument("--app", choices=APPS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert-file", type=Path, required=True)
    parser.add_argument("--key-file", type=Path, required=True)
    parser.add_argument("--keep-alive", type=int, default=120)
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    parser.add_argument("--http", choices=["auto", "h11", "httptools"], default=None)
    parser.add_argument("--stderr", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.stderr is not None:  # before serve.run: its log handler writes to a dup of fd 2
        target = os.open(args.stderr, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(target, 2)
        os.close(target)

    if not callable(getattr(serve, "create_app", None)):
        raise SystemExit(
            "bench.launch: webhook.serve no longer calls create_app by that name; "
            "update bench/launch.py to substitute the app the new way"
        )

    def factory(**kwargs: Any) -> Any:  # serve.run passes certificate=, readiness=
        return build(args.app, **kwargs)

    serve.create_app = factory  # type: ignore[attr-defined]
    if args.http is not None:
        original = uvicorn.config.Config.__init__

        def with_http(self: uvicorn.config.Config, *a: Any, **kw: Any) -> None:
            kw["http"] = args.http
            original(self, *a, **kw)

        uvicorn.config.Config.__init__ = with_http  # type: ignore[method-assign]
    serve.run(
        host="127.0.0.1",
        port=args.port,
        cert_file=args.cert_file,
        key_file=args.key_file,
        keep_alive=args.keep_alive,
        log_level=args.log_level,
    )


if __name__ == "__main__":
    main()
