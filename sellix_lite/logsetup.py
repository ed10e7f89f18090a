"""Logging to stderr as text lines or one JSON object per line (`[server] log_format`)."""

from __future__ import annotations

import json
import logging
import sys

from .clock import now_iso


class JsonFormatter(logging.Formatter):
    """One JSON object per record; request fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": now_iso(), "level": record.levelname.lower(),
                   "logger": record.name, "message": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["traceback"] = self.formatException(record.exc_info)
        return json.dumps(payload)


def configure(log_format: str) -> None:
    """Send INFO and above to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    # No format of ours prints threads, processes or source lines: skip gathering them for
    # every record (the logging HOWTO's "Optimization" advice; the access log writes one
    # record per request).
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    logging._srcfile = None
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
