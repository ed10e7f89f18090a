"""One log line per request on stderr (CONTRACT §18).

The line names the API key by id, never by secret. The fields travel with the record, so the
JSON formatter of `logsetup` writes them as keys and the text formatter as one line.
"""

from __future__ import annotations

import logging
import time

from flask import Flask, Response, g, request

from .http import request_id
from .logsetup import ACCESS_LOGGER

access_log = logging.getLogger(ACCESS_LOGGER)


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
            "path": this.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "request_id": request_id(),
            "api_key_id": context.get("api_key_id"),
            "client_ip": this.remote_addr,
        }
        access_log.info(
            "%(method)s %(path)s %(status)s %(duration_ms)sms %(request_id)s key=%(key)s "
            "ip=%(client_ip)s", {**fields, "key": fields["api_key_id"] or "-"},
            extra={"fields": fields})
        return response
