"""Structured JSON logs on stdout, written by a background thread so the event loop never blocks on I/O.

Every line carries the model name and version, and the request id when logged while serving a
request. Known secret values (``API_KEY``, environment variables whose names look secret) are
replaced by ``**********`` in every line.
"""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import os
import queue
import sys
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any, TextIO

import orjson

from custom_server.settings import SECRET_NAME, Settings

#: The id of the request being served (set by the REST middleware).
REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

MASK = "**********"
_MIN_SECRET_LENGTH = 6
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "request_id", "color_message", "taskName"}
)
_listener: logging.handlers.QueueListener | None = None
_output: logging.Handler | None = None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, model, model_version, request_id, extras."""

    def __init__(self, static: dict[str, Any], secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._static = static
        self._secrets = sorted({s for s in secrets if len(s) >= _MIN_SECRET_LENGTH}, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **self._static,
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        line = orjson.dumps(entry, default=str).decode()
        for secret in self._secrets:
            if secret in line:
                line = line.replace(secret, MASK)
        return line


class _ContextQueueHandler(logging.handlers.QueueHandler):
    """Captures the request id and renders arguments/tracebacks in the caller's thread."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        return record


def secret_values(settings: Settings, environ: dict[str, str] | None = None) -> list[str]:
    """Values never to log: secret settings and environment variables whose names look secret."""
    env = os.environ if environ is None else environ
    values = list(settings.secret_values())
    values.extend(value for name, value in env.items() if SECRET_NAME.search(name) and value)
    return values


def configure_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route all logging (ours, uvicorn's, the model's) through the JSON formatter on stdout."""
    global _listener, _output
    if _listener is not None:
        _listener.stop()
        _listener = None
    formatter = JsonFormatter(
        {"model": settings.model_name, "model_version": settings.model_version},
        secret_values(settings),
    )
    output = logging.StreamHandler(stream or sys.stdout)
    output.setFormatter(formatter)
    records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    handler = _ContextQueueHandler(records)
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "fastapi"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    logging.getLogger("uvicorn.access").disabled = True
    logging.captureWarnings(True)
    _output = output
    _listener = logging.handlers.QueueListener(records, output, respect_handler_level=False)
    _listener.start()
    atexit.register(flush_logging)


def flush_logging() -> None:
    """Write out queued lines and log synchronously from now on (the process is about to end)."""
    global _listener
    if _listener is None:
        return
    _listener.stop()
    _listener = None
    root = logging.getLogger()
    for existing in list(root.handlers):
        if isinstance(existing, logging.handlers.QueueHandler):
            root.removeHandler(existing)
    if _output is not None:
        root.addHandler(_output)
