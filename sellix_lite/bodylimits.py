"""How large a request body may be, decided from its request line and headers alone.

1 MiB for the API's JSON, 64 KiB for HTML forms and the IPN, and `storage.max_upload_mb`
(plus room for a multipart form) only for file uploads that carry credentials — an
`Authorization` header or a cookie; the dashboard's key import, a text file, takes the
1 MiB the API's key import takes.

waitress reads a whole body before it calls the app, so the rule is applied twice: by the
server's request parser as soon as the headers are in (a body announced over the limit is
never read, a chunked one is cut once it passes the limit, and the connection closes after
the answer), and by the app, which answers 413 in the area's format (problem JSON under
/v1 and /ipn, an HTML page elsewhere) whatever server runs it.
"""

from __future__ import annotations

from typing import Callable

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import BaseWSGIServer
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map

JSON_BODY_BYTES = 1024 * 1024
FORM_BODY_BYTES = 64 * 1024
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_ENDPOINTS = frozenset({"v1.upload_product_file", "dashboard.upload_file"})
KEY_FILE_ENDPOINTS = frozenset({"dashboard.import_keys"})


def body_limit(endpoint: str | None, path: str, has_credentials: bool,
               max_upload_bytes: int) -> int:
    """The most bytes a body sent to `endpoint` (at `path`) may have."""
    if has_credentials and endpoint in UPLOAD_ENDPOINTS:
        return max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    if has_credentials and endpoint in KEY_FILE_ENDPOINTS:
        return JSON_BODY_BYTES
    return JSON_BODY_BYTES if path.startswith("/v1/") else FORM_BODY_BYTES


def endpoint_of(url_map: Map, method: str, path: str) -> str | None:
    """The endpoint a request would reach, None for an unknown path or method."""
    try:
        return url_map.bind("localhost").match(path, method)[0]
    except HTTPException:
        return None


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


def install(server, url_map: Map, max_upload_bytes: int) -> None:
    """Make `server` (made by `waitress.create_server`) parse requests with the limits."""
    def limit_for(method: str, path: str, headers: dict) -> int:
        credentials = "AUTHORIZATION" in headers or "COOKIE" in headers
        return body_limit(endpoint_of(url_map, method, path), path, credentials,
                          max_upload_bytes)

    parser = type("Parser", (LimitedRequestParser,), {"limit_for": staticmethod(limit_for)})
    channel = type("Channel", (HTTPChannel,), {"parser_class": parser})
    dispatchers = getattr(server, "map", None) or server._map
    for dispatcher in list(dispatchers.values()):
        if isinstance(dispatcher, BaseWSGIServer):
            dispatcher.channel_class = channel
