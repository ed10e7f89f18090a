"""Every outbound HTTP call: webhooks, test sends, dynamic products and the BlockPN client.

`exchange` makes one request under a **total** deadline: connecting, sending, and reading the
headers and the body together get `timeout` seconds, because the socket's timeout is set to
the time left before each operation (a per-read timeout would let a peer trickling a byte
at a time hold the call for days). At most MAX_READ_BYTES of an answer are read.

`post` is the POST to a merchant's URL: redirects are never followed (a redirect is a
failure), the host is resolved once and every address it resolves to is checked against the
mode's rules (`services.urls.Targets`), and the connection goes to a checked address, so a
DNS answer that changes between the check and the connect can't redirect the call into the
server's own network.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from .services.urls import Targets, UrlRefused

MAX_READ_BYTES = 64 * 1024
MAX_KEPT_BODY = 4096  # what the delivery log keeps of an answer


class AnswerTooLarge(http.client.HTTPException):
    """The answer goes on past MAX_READ_BYTES where the whole of it is needed."""

    def __init__(self):
        super().__init__(f"the answer is larger than {MAX_READ_BYTES // 1024} KiB")


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # at most the bytes asked for, and never past MAX_READ_BYTES in all


def exchange(method: str, *, https: bool, host: str, port: int | None, target: str,
             body: bytes | None, headers: dict, timeout: float,
             addresses: list[str] | None = None, keep: int = MAX_READ_BYTES,
             whole: bool = False) -> Answer:
    """One request and the first `keep` bytes of its answer, all within `timeout` seconds.

    `addresses`: connect to one of these (checked) addresses instead of resolving `host`.
    `whole`: the body must end within MAX_READ_BYTES (else AnswerTooLarge). Raises OSError
    (TimeoutError at the deadline) or http.client.HTTPException.
    """
    conn = _Connection(host, port, https=https, deadline=_Deadline(timeout),
                       addresses=addresses)
    try:
        conn.request(method, target, body=body, headers=headers)
        response = conn.getresponse()
        if conn.budget.overrun:
            raise AnswerTooLarge()  # the headers alone
        data = _read(response, keep)
        if whole and conn.budget.overrun:
            raise AnswerTooLarge()
        return Answer(response.status, data)
    finally:
        conn.discard()


def _read(response: http.client.HTTPResponse, keep: int) -> bytes:
    try:
        return response.read(keep)
    except http.client.IncompleteRead as exc:  # cut short (or at MAX_READ_BYTES): keep it
        return exc.partial


@dataclass(frozen=True)
class PostResult:
    status: int | None  # None when no HTTP answer came back
    body: str
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post(url: str, body: bytes, headers: dict, *, timeout: float,
         targets: Targets | None, keep_bytes: int = MAX_KEPT_BODY) -> PostResult:
    """POST `body` to `url`; never raises for network trouble, the result says what happened.

    `targets`: the rules the URL's addresses are checked against (None: not checked, for the
    BlockPN simulator calling the shop back). The first `keep_bytes` of the answer are kept.
    """
    started = time.perf_counter()
    try:
        addresses = targets.addresses(url) if targets is not None else None
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        answer = exchange("POST", https=parts.scheme == "https", host=parts.hostname,
                          port=parts.port, target=target, body=body, headers=headers,
                          timeout=timeout, addresses=addresses, keep=keep_bytes)
        status, text = answer.status, answer.body.decode("utf-8", errors="replace")
        error = None if 200 <= status < 300 else f"answered HTTP {status}"
    except UrlRefused as exc:
        status, text, error = None, "", str(exc)
    except (OSError, http.client.HTTPException) as exc:
        status, text, error = None, "", describe(exc)
    return PostResult(status, text, error, int((time.perf_counter() - started) * 1000))


def describe(exc: Exception) -> str:
    """A short account of a failed call, for logs and the delivery log."""
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, AnswerTooLarge):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"[:300]


class _Deadline:
    def __init__(self, seconds: float):
        self._end = time.monotonic() + seconds

    def left(self) -> float:
        """Seconds left; TimeoutError once there are none."""
        left = self._end - time.monotonic()
        if left <= 0:
            raise TimeoutError("timed out")
        return left


class _Budget:
    """The socket http.client talks through: each operation may take only the time left
    before the deadline, and reading stops (as if the peer had closed) at MAX_READ_BYTES."""

    def __init__(self, sock: socket.socket, deadline: _Deadline):
        self._sock, self._deadline = sock, deadline
        self._room = MAX_READ_BYTES
        self.overrun = False  # a read was wanted past MAX_READ_BYTES

    def sendall(self, data) -> None:
        # socket.sendall on a TLS socket gives each chunk the whole timeout: loop here.
        view = memoryview(data)
        while view:
            self._sock.settimeout(self._deadline.left())
            view = view[self._sock.send(view):]

    def recv_into(self, buffer) -> int:
        if self._room == 0:
            self.overrun = True
            return 0
        self._sock.settimeout(self._deadline.left())
        count = self._sock.recv_into(buffer, min(len(buffer), self._room))
        self._room -= count
        return count

    def makefile(self, mode: str, *args, **kwargs) -> io.BufferedReader:
        return io.BufferedReader(_Reader(self))

    def close(self) -> None:
        """Nothing: http.client closes the connection while the answer is still being read
        from it; `_Connection.discard` closes the socket."""


class _Reader(io.RawIOBase):
    def __init__(self, budget: _Budget):
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._budget.recv_into(buffer)


class _Connection(http.client.HTTPConnection):
    """An HTTP(S) connection whose socket is a `_Budget` under one deadline."""

    def __init__(self, host: str, port: int | None, *, https: bool, deadline: _Deadline,
                 addresses: list[str] | None):
        self.default_port = 443 if https else 80  # the Host header leaves it out
        super().__init__(host, port or self.default_port)
        self._https, self._deadline, self._addresses = https, deadline, addresses
        self._raw: socket.socket | None = None
        self.budget: _Budget | None = None

    def connect(self) -> None:
        self._raw = self._open()
        if self._https:
            self._raw.settimeout(self._deadline.left())  # the handshake as a whole
            self._raw = ssl.create_default_context().wrap_socket(self._raw,
                                                                 server_hostname=self.host)
        self.sock = self.budget = _Budget(self._raw, self._deadline)

    def _open(self) -> socket.socket:
        failure: OSError | None = None
        for address in self._addresses or [self.host]:
            try:
                return socket.create_connection((address, self.port), self._deadline.left())
            except TimeoutError:
                raise
            except OSError as exc:
                failure = exc  # the next address may answer
        raise failure

    def discard(self) -> None:
        self.close()
        if self._raw is not None:
            self._raw.close()
