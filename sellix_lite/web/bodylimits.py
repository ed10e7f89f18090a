"""How large a request body may be, decided from its request line and headers alone.

1 MiB for the API's JSON, 64 KiB for HTML forms and the IPN, and `storage.max_upload_mb`
(plus room for a multipart form) only for file uploads whose credentials are good: an API
key with `products:write`, or a dashboard session; the dashboard's key import, a text
file, takes the 1 MiB the API's key import takes.

waitress reads a whole body before it calls the app, so the rule is applied twice: by the
server's request parser as soon as the headers are in (a body announced over the limit is
never read, a chunked one is cut once it passes the limit, and the connection closes after
the answer), and by the app, which answers 413 in the area's format (problem JSON under
/v1 and /ipn, an HTML page elsewhere) whatever server runs it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie

from .surfaces import surface_of

JSON_BODY_BYTES = 1024 * 1024
FORM_BODY_BYTES = 64 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_ENDPOINTS = frozenset({"v1.upload_product_file", "dashboard.upload_file"})
KEY_FILE_ENDPOINTS = frozenset({"dashboard.import_keys"})


def body_limit(app, endpoint: str | None, path: str, authorization: str,
               cookies: Mapping[str, str]) -> int:
    """The most bytes a body sent to `endpoint` (at `path`) with these credentials may
    have. Credentials are checked only for an upload's larger limit."""
    if endpoint in UPLOAD_ENDPOINTS and _may_upload(app, endpoint, authorization, cookies):
        return app.extensions["sellix"].config.storage.max_upload_bytes \
            + MULTIPART_OVERHEAD_BYTES
    if endpoint in KEY_FILE_ENDPOINTS and _may_upload(app, endpoint, authorization, cookies):
        return JSON_BODY_BYTES
    return JSON_BODY_BYTES if surface_of(path) == "api" else FORM_BODY_BYTES


def endpoint_of(app, method: str, path: str) -> str | None:
    """The endpoint a request would reach, None for an unknown path or method."""
    try:
        return app.url_map.bind("localhost").match(path, method)[0]
    except HTTPException:
        return None


def _may_upload(app, endpoint: str, authorization: str, cookies: Mapping[str, str]) -> bool:
    """Whether the credentials are good now: an API key with products:write for the API,
    a signed-in dashboard session for the dashboard."""
    from ..services import admin, api_keys

    connections = app.extensions["sellix"].connections
    db = connections.acquire()  # this thread's own; waitress's reading thread has one too
    try:
        if endpoint.startswith("v1."):
            scheme, _, secret = authorization.partition(" ")
            key = scheme.lower() == "bearer" and api_keys.authenticate(db, secret.strip())
            return bool(key) and "products:write" in key["abilities"]
        session = app.session_interface.open_session_from_cookie(app, cookies)
        return bool(session.get("admin")) and session.get("epoch") == admin.session_epoch(db)
    finally:
        connections.release(db)


class LimitedRequestParser(HTTPRequestParser):
    """waitress's parser, holding each body to its limit (see the module's docstring)."""

    limit_for: Callable[[str, str, dict], int]  # (method, path, headers) → bytes
    body_limit: int | None = None

    def parse_header(self, header_plus):
        super().parse_header(header_plus)
        if not self.chunked and self.content_length <= FORM_BODY_BYTES:
            return  # within every limit: no need to find the route
        self.body_limit = self.limit_for(self.command, self.path, self.headers)
        if self.content_length > self.body_limit:
            self._cut(self.content_length)

    def received(self, data):
        consumed = super().received(data)
        if (self.chunked and not self.completed and self.body_limit is not None
                and self.body_bytes_received > self.body_limit):
            self._cut(self.body_bytes_received)
        return consumed

    def _cut(self, length: int) -> None:
        """Hand the request on without its body, announcing `length` so the app refuses
        it; the connection closes after the answer (what follows is never read)."""
        if self.body_rcv is not None:
            self.body_rcv.getbuf().close()
            self.body_rcv = None
        self.content_length = 0
        self.expect_continue = False  # no "100 Continue": the body is not wanted
        self.headers["CONTENT_LENGTH"] = str(length)
        self.headers["CONNECTION"] = "close"
        self.completed = True


def install(server, app) -> None:
    """Make `server` (made by `waitress.create_server` for `app`) parse requests with the
    limits."""
    def limit_for(method: str, path: str, headers: dict) -> int:
        return body_limit(app, endpoint_of(app, method, path), path,
                          headers.get("AUTHORIZATION", ""),
                          parse_cookie(headers.get("COOKIE", "")))

    parser = type("Parser", (LimitedRequestParser,), {"limit_for": staticmethod(limit_for)})
    channel = type("Channel", (HTTPChannel,), {"parser_class": parser})
    dispatchers = getattr(server, "map", None) or server._map
    for dispatcher in list(dispatchers.values()):
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = channel
