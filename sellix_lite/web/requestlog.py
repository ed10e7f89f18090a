"""One log line per request on stderr (docs/deploy.md, Monitoring and logs).

The line names the API key by id, never by secret, and carries no token of a buyer's link:
the query values that hold one (`t`, `token`, `sig`) and the token of a download link are
written `[redacted]`. The fields travel with the record, so the JSON formatter of `logsetup`
writes them as keys and the text formatter as one line.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import unquote_plus

from flask import Flask, Response, g, request

from ..logsetup import ACCESS_LOGGER
from .responses import request_id
from .surfaces import surface_of

access_log = logging.getLogger(ACCESS_LOGGER)
REDACTED = "[redacted]"
TOKEN_PARAMETERS = frozenset({"t", "token", "sig"})
DOWNLOAD_PREFIX = "/download/"


def loggable_path(path: str) -> str:
    """The path, with a download link's token (everything after the prefix) redacted."""
    if surface_of(path) == "download" and len(path) > len(DOWNLOAD_PREFIX):
        return DOWNLOAD_PREFIX + REDACTED
    return path


def loggable_query(query_string: bytes) -> str:
    """The query string as sent, with the values of token parameters redacted."""
    parts = query_string.decode("latin-1").split("&") if query_string else []
    return "&".join(_redacted_parameter(part) for part in parts)


def _redacted_parameter(part: str) -> str:
    name, has_value, _ = part.partition("=")
    if has_value and unquote_plus(name) in TOKEN_PARAMETERS:
        return f"{name}={REDACTED}"
    return part


def install(app: Flask) -> None:
    """Time every request of `app` and log it when the response is ready."""

    @app.before_request
    def _start_clock():
        g.started = time.perf_counter()

    @app.after_request
    def _log(response: Response) -> Response:
        # Each use of Flask's `request` and `g` proxies looks the context up again.
        this, context = request._get_current_object(), g._get_current_object()
        started = context.get("started", time.perf_counter())
        fields = {
            "method": this.method,
            "path": loggable_path(this.path),
            "query": loggable_query(this.query_string),
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "request_id": request_id(),
            "api_key_id": context.get("api_key_id"),
            "client_ip": this.remote_addr,
        }
        target = f"{fields['path']}?{fields['query']}" if fields["query"] else fields["path"]
        access_log.info(
            "%(method)s %(target)s %(status)s %(duration_ms)sms %(request_id)s key=%(key)s "
            "ip=%(client_ip)s", {**fields, "target": target, "key": fields["api_key_id"] or "-"},
            extra={"fields": fields})
        return response
