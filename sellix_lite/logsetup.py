"""Logging to stderr as text lines or one JSON object per line (`[server] log_format`).

The access log writes a line per request. Written and flushed one by one, each line costs a
system call, and under load each call hands the interpreter lock to another thread and waits
to get it back (in the write benchmark, batching cut the server's context switches per request
from about 31 to 17). So access lines wait at most `ACCESS_FLUSH_SECONDS` and are written
together; any other record (start-up, shutdown, warnings, errors with their tracebacks) writes
the waiting lines and itself at once, in order. A `kill -9` can lose the access lines of that
last moment, never a write or an event.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import TextIO

from .clock import now_iso

ACCESS_LOGGER = "sellix_lite.access"
ACCESS_FLUSH_SECONDS = 0.1


class JsonFormatter(logging.Formatter):
    """One JSON object per record; request fields become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {"time": now_iso(), "level": record.levelname.lower(),
                   "logger": record.name, "message": record.getMessage()}
        payload.update(getattr(record, "fields", {}))
        if record.exc_info:
            payload["traceback"] = self.formatException(record.exc_info)
        return json.dumps(payload)


class BatchingHandler(logging.StreamHandler):
    """Writes records to a stream; routine ones a little later, together.

    A record is routine when it comes from one of the `batched` loggers below WARNING. A
    daemon thread writes the batch `delay` seconds after its first record, so an idle server
    has no thread waking up. That thread takes the lines under the handler's lock but writes
    them outside it: a thread holding a lock across a system call would block every logging
    thread until it got the interpreter lock back.
    """

    def __init__(self, stream: TextIO, batched: frozenset[str], delay: float):
        super().__init__(stream)
        self.batched, self.delay = batched, delay
        self._lines: list[str] = []
        self._writing = threading.Lock()  # keeps batches in order once out of `self.lock`
        self._pending = threading.Event()
        self._closed = False
        threading.Thread(target=self._flush_batches, name="log-flush", daemon=True).start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._lines.append(self.format(record) + self.terminator)
        except Exception:  # noqa: BLE001 - logging must never break the caller
            self.handleError(record)
            return
        if record.name in self.batched and record.levelno < logging.WARNING:
            if not self._pending.is_set():
                self._pending.set()
        else:
            self.flush()

    def flush(self) -> None:
        with self.lock:
            lines, self._lines = self._lines, []
            self._writing.acquire()
        try:
            if lines:
                self.stream.write("".join(lines))
            self.stream.flush()
        except Exception:  # noqa: BLE001 - as in StreamHandler: report, don't raise
            self.handleError(logging.makeLogRecord({"msg": "log lines lost"}))
        finally:
            self._writing.release()

    def _flush_batches(self) -> None:
        while not self._closed:
            self._pending.wait()
            time.sleep(self.delay)
            self._pending.clear()
            self.flush()

    def close(self) -> None:
        self._closed = True
        self._pending.set()
        super().close()


def configure(log_format: str) -> None:
    """Send INFO and above to stderr in the chosen format."""
    handler = BatchingHandler(sys.stderr, frozenset({ACCESS_LOGGER}), ACCESS_FLUSH_SECONDS)
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
