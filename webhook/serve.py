"""Run the app under uvicorn with TLS and an apiserver-friendly keep-alive."""

from __future__ import annotations

from pathlib import Path

import uvicorn

from webhook import logs
from webhook.app import create_app
from webhook.tls import CertReloader


def run(
    *,
    host: str,
    port: int,
    cert_file: Path,
    key_file: Path,
    keep_alive: int,
    log_level: str,
) -> None:
    logs.configure(log_level)
    reloader = CertReloader(cert_file, key_file)
    uvicorn.run(
        create_app(certificate=reloader),
        host=host,
        port=port,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        # Our own context, so rotated certificate files are served without a restart.
        ssl_context_factory=reloader,
        # The apiserver keeps idle connections for 90 s; closing sooner (uvicorn's
        # default is 5 s) races its reuse and shows up as intermittent EOF errors.
        timeout_keep_alive=keep_alive,
        # One JSON line per decision is our access log; uvicorn's would double it.
        access_log=False,
        log_config=None,
        log_level=log_level,
        server_header=False,
    )
