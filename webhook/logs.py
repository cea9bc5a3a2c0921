"""Structured logging: one JSON object per line, for every logger."""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import orjson

DECISIONS = logging.getLogger("webhook.admission")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            # Tracebacks go to our log only, never to the caller.
            line["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class BufferedStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes lines into a 64 KiB buffer, flushed every ``interval`` seconds and at
    once for warnings and errors.

    One write syscall per admission decision measured ~7 us of the ~45 us a
    review costs. Decision lines can lag by ``interval``; logging.shutdown()
    and the server's shutdown flush the rest.
    """

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(open(os.dup(2), "w", buffering=65536, encoding="utf-8"))  # noqa: SIM115
        self.interval = interval
        flusher = threading.Thread(target=self._flush_forever, name="log-flush", daemon=True)
        flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            if record.levelno >= logging.WARNING:
                self.stream.flush()
        except Exception:
            self.handleError(record)

    def _flush_forever(self) -> None:
        while True:
            time.sleep(self.interval)
            self.flush()  # takes the handler's lock, so never mid-line


def configure(level: str = "info", buffered: bool = False) -> None:
    # The logging HOWTO's "Optimization": skip what no line of ours uses. Caller
    # lookup (sys._getframe per record) alone cost ~6 us of every admission.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler: logging.Handler = BufferedStreamHandler() if buffered else logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
