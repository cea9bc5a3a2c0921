"""Run the app under uvicorn: TLS with reload, apiserver-friendly keep-alive, draining."""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from types import FrameType

import uvicorn

from webhook import logs
from webhook.app import Readiness, create_app
from webhook.coalesce import CoalescingHTTPProtocol
from webhook.tls import CertReloader

LOG = logging.getLogger("webhook.serve")


class DrainingServer(uvicorn.Server):
    """On the first SIGTERM/SIGINT, drain before uvicorn's own graceful shutdown.

    For ``drain_seconds`` the server keeps answering, /readyz says 503 so load
    moves to other replicas, and every response carries ``Connection: close`` so
    clients (the apiserver pools connections for 90 s) drop their kept-alive
    connection after an answer instead of finding it closed under a request.
    """

    def __init__(self, config: uvicorn.Config, readiness: Readiness, drain_seconds: float) -> None:
        super().__init__(config)
        self.readiness = readiness
        self.drain_seconds = drain_seconds
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self.drain_seconds <= 0:
            super().handle_exit(sig, frame)  # a second signal: stop now
            return
        self._draining = True
        self.readiness.ready = False
        LOG.info("draining for %ss before shutdown", self.drain_seconds)
        timer = threading.Timer(self.drain_seconds, super().handle_exit, (sig, frame))
        timer.daemon = True
        timer.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        # uvicorn re-raises the signal after shutdown, which skips atexit.
        logs.flush()


def run(
    *,
    host: str,
    port: int,
    cert_file: Path,
    key_file: Path,
    keep_alive: int,
    log_level: str,
    drain_seconds: float = 5.0,
) -> None:
    log_handler = logs.BufferedStreamHandler()
    logs.configure(log_level, log_handler)
    reloader = CertReloader(cert_file, key_file)
    readiness = Readiness()
    config = uvicorn.Config(
        create_app(
            readiness=readiness,
            certificate=reloader,
            # Only this handler is configured, so decision lines can skip LogRecords.
            decision_log=log_handler.write_decision,
        ),
        host=host,
        port=port,
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        # Our own context, so rotated certificate files are served without a restart.
        ssl_context_factory=reloader,
        # The apiserver keeps idle connections for 90 s; closing sooner (uvicorn's
        # default is 5 s) races its reuse and shows up as intermittent EOF errors.
        timeout_keep_alive=keep_alive,
        # In-flight reviews get this long to finish once draining is over.
        timeout_graceful_shutdown=10,
        # One JSON line per decision is our access log; uvicorn's would double it.
        access_log=False,
        log_config=None,
        log_level=log_level,
        server_header=False,
        # uvicorn's HTTP protocol, writing each response in one piece.
        http=CoalescingHTTPProtocol,
        # The apiserver calls us directly; there is no proxy whose headers to trust.
        proxy_headers=False,
    )
    DrainingServer(config, readiness, drain_seconds).run()
