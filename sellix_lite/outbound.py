"""Outbound HTTP POSTs to merchant URLs (webhooks, dynamic products).

Redirects are never followed (a redirect is a failure), every call has a timeout, and the
response body is kept to a few KiB. When private targets are not allowed, the host is
resolved once, every address it resolves to must be public, and the connection goes to that
checked address, so a DNS answer that changes between the check and the connect can't
redirect the call into the server's own network.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .services.urls import UrlRefused, resolve_public

MAX_KEPT_BODY = 4096


@dataclass(frozen=True)
class PostResult:
    status: int | None  # None when no HTTP answer came back
    body: str
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict, *, timeout: float, public_only: bool,
         keep_bytes: int = MAX_KEPT_BODY) -> PostResult:
    """POST `body` to `url`; never raises for network trouble, the result says what happened.

    The first `keep_bytes` of the answer are kept.
    """
    started = time.perf_counter()
    try:
        status, text = _post(url, body, headers, timeout, public_only, keep_bytes)
        error = None if 200 <= status < 300 else f"answered HTTP {status}"
    except UrlRefused as exc:
        status, text, error = None, "", str(exc)
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        status, text, error = None, "", _describe(exc)
    duration = int((time.perf_counter() - started) * 1000)
    if error is None and duration > timeout * 1000:
        # Each socket read has the timeout; a slow trickle must not stretch the whole call.
        status, error = None, "timed out"
    return PostResult(status, text, error, duration)


def _post(url: str, body: bytes, headers: dict, timeout: float, public_only: bool,
          keep_bytes: int) -> tuple[int, str]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    address = resolve_public(parts.hostname, port)[0] if public_only else None
    if parts.scheme == "https":
        conn = _PinnedHTTPSConnection(parts.hostname, port, timeout=timeout, address=address)
    else:
        conn = _PinnedHTTPConnection(parts.hostname, port, timeout=timeout, address=address)
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(keep_bytes).decode("utf-8", errors="replace")
        return response.status, text
    finally:
        conn.close()


def _describe(exc: Exception) -> str:
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    return f"{type(exc).__name__}: {exc}"[:300]


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to a checked address when one is given, keeping the URL's Host header."""

    def __init__(self, host, port, *, timeout, address):
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self):
        target = (self._address or self.host, self.port)
        self.sock = socket.create_connection(target, self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """As above, verifying the certificate for the URL's host name."""

    def __init__(self, host, port, *, timeout, address):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address

    def connect(self):
        raw = socket.create_connection((self._address or self.host, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)
