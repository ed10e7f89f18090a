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

The parser also answers requests it can't read before the app sees them. On the paths
programs read those answers are problem JSON too, and a transfer coding other than
chunked, which waitress would answer 501, is the client's mistake: 400 `invalid_request`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from http import HTTPStatus

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError, TransferEncodingNotImplemented
from waitress.server import BaseWSGIServer
from waitress.utilities import Error
from werkzeug.exceptions import HTTPException
from werkzeug.http import parse_cookie

from ..errors import InvalidRequest, PayloadTooLarge, problem
from ..ids import new_id
from .surfaces import is_machine_facing, surface_of

JSON_BODY_BYTES = 1024 * 1024
FORM_BODY_BYTES = 64 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_ENDPOINTS = frozenset({"v1.upload_product_file", "v1.upload_product_image",
                              "dashboard.upload_file", "dashboard.upload_image"})
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
        try:
            super().parse_header(header_plus)
        except TransferEncodingNotImplemented as exc:
            raise ParsingError(f"{exc.args[0]} Send the body with Content-Length, or "
                               "chunked.") from None
        if not self.chunked and self.content_length <= FORM_BODY_BYTES:
            return  # within every limit: no need to find the route
        self.body_limit = self.limit_for(self.command, self.path, self.headers)
        if self.content_length > self.body_limit:
            self._cut(self.content_length)

    def received(self, data):
        consumed = super().received(data)
        path = getattr(self, "path", None)  # set once the request line is read
        if self.error is not None and not isinstance(self.error, ProblemAnswer) \
                and path and is_machine_facing(path):
            self.error = ProblemAnswer(self.error, path)
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


class ProblemAnswer(Error):
    """waitress's answer to a request it could not parse, as problem JSON (with a request
    id, as every answer of the app has)."""

    def __init__(self, error: Error, path: str):
        super().__init__(error.body)
        self.problem = (PayloadTooLarge if error.code == 413 else InvalidRequest)(
            f"the request could not be read: {error.body}")
        self.code, self.path = self.problem.status, path

    def to_response(self, ident=None):
        request_id = new_id("req")
        body = json.dumps(problem(self.problem, instance=self.path, request_id=request_id),
                          separators=(",", ":"))
        headers = [("Content-Type", "application/problem+json"), ("X-Request-Id", request_id)]
        return f"{self.code} {HTTPStatus(self.code).phrase}", headers, body.encode()


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
