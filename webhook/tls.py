"""Serving TLS with certificate reload: rotated files are picked up with no restart.

cert-manager and Secret volume updates replace the files (a Secret volume
swaps a symlink, so cert and key change together). On every TLS ClientHello,
at most once per ``interval`` seconds, the files' identity is checked; when it
changed, a complete new SSLContext is built and new handshakes use it.
Established connections keep theirs, so nothing is dropped, and a half-written
pair fails to load and leaves the old context serving.
"""

from __future__ import annotations

import datetime
import logging
import os
import ssl
import time
from pathlib import Path

from cryptography import x509

LOG = logging.getLogger("webhook.tls")
EXPIRY_WARNING = datetime.timedelta(days=30)
_WARN_EVERY = 3600.0

FileIdentity = tuple[tuple[int, int, int], ...]


class CertReloader:
    def __init__(self, cert_file: Path, key_file: Path, interval: float = 1.0) -> None:
        self.cert_file = cert_file
        self.key_file = key_file
        self.interval = interval
        self._current: ssl.SSLContext | None = None
        self._identity: FileIdentity = ()
        self._checked = 0.0
        self._warned = 0.0
        self.not_after = 0.0  # epoch seconds; exposed as a metric
        self.reloads = 0

    def __call__(self, *_: object) -> ssl.SSLContext:
        """uvicorn's ssl_context_factory: the context the listener is created with."""
        return self.server_context()

    def server_context(self) -> ssl.SSLContext:
        return self._load()  # fails loudly at startup if the pair is bad

    def current(self) -> ssl.SSLContext:
        self.maybe_reload()
        if self._current is None:  # only before server_context() was ever called
            return self._load()
        return self._current

    def maybe_reload(self) -> bool:
        """Reload when the files changed; True when a new pair is now served."""
        now = time.monotonic()
        if self._current is not None and now - self._checked < self.interval:
            return False
        self._checked = now
        try:
            identity = self._file_identity()
        except OSError as error:
            LOG.warning("cannot stat the serving certificate; keeping the loaded one: %s", error)
            return False
        if identity == self._identity:
            self._warn_if_expiring()
            return False
        try:
            self._load()
        except (OSError, ssl.SSLError, ValueError) as error:
            # Mid-rotation (cert written, key not yet): keep serving the old pair.
            LOG.warning("new serving certificate not loadable yet; keeping the old one: %s", error)
            return False
        self.reloads += 1
        LOG.info(
            "loaded serving certificate",
            extra={"fields": {"cert_file": str(self.cert_file), "not_after": self.not_after}},
        )
        return True

    def _on_client_hello(
        self, connection: ssl.SSLObject | ssl.SSLSocket, _server_name: str | None, _: object
    ) -> None:
        context = self.current()
        if connection.context is not context:
            connection.context = context

    def _load(self) -> ssl.SSLContext:
        identity = self._file_identity()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        cert = x509.load_pem_x509_certificate(self.cert_file.read_bytes())
        context.sni_callback = self._on_client_hello
        self._current, self._identity = context, identity
        self._checked = time.monotonic()
        self.not_after = cert.not_valid_after_utc.timestamp()
        self._warned = 0.0
        self._warn_if_expiring()
        return context

    def _file_identity(self) -> FileIdentity:
        stats = (os.stat(self.cert_file), os.stat(self.key_file))
        return tuple((s.st_ino, s.st_mtime_ns, s.st_size) for s in stats)

    def _warn_if_expiring(self) -> None:
        left = self.not_after - time.time()
        now = time.monotonic()
        if left < EXPIRY_WARNING.total_seconds() and (
            not self._warned or now - self._warned > _WARN_EVERY
        ):
            self._warned = now
            LOG.warning(
                "serving certificate expires in %.1f days; is its renewal failing?",
                left / 86400,
                extra={"fields": {"cert_file": str(self.cert_file), "not_after": self.not_after}},
            )
