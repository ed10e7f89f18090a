"""The live BlockPN client, and every detail of the wire it speaks (docs/blockpn.md).

BlockPN's own API reference was not available when this was written, so the wire contract
is ours: JSON objects whose fields mirror the dataclasses of `blockpn.py`, bearer
authentication, the caller's reference as `Idempotency-Key`, and IPN callbacks signed
`X-BlockPN-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "{t}.{body}">`. Adapting to
the real API means changing this module only; the simulator imports its helpers from here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import http.client
import json
import typing
from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from .. import __version__, outbound
from ..clock import clock
from .blockpn import InvalidCallback, Invoice, Payout, ProviderError, Refund

SIGNATURE_HEADER = "X-BlockPN-Signature"
CALLBACK_TYPE = "invoice.updated"
# A callback signed further than this from our clock is refused, so a captured one can't
# be replayed later.
SIGNATURE_TOLERANCE_SECONDS = 300
MAX_ANSWER_BYTES = outbound.MAX_READ_BYTES
USER_AGENT = f"sellix-lite/{__version__}"


def to_wire(obj) -> dict:
    """The JSON object of an Invoice, Payout or Refund: the dataclass fields, same names."""
    return dataclasses.asdict(obj)


def from_wire(cls, data):
    """Build `cls` from its JSON object; ValueError when a field is missing or mistyped.

    Fields the dataclass does not know are ignored, so the provider may add some.
    """
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.__name__.lower()} must be a JSON object")
    hints = typing.get_type_hints(cls)
    values = {}
    for field in dataclasses.fields(cls):
        value = data.get(field.name)
        if field.name not in data or not _fits(value, hints[field.name]):
            raise ValueError(f"{cls.__name__.lower()}.{field.name} is missing or mistyped")
        values[field.name] = value
    return cls(**values)


def _fits(value, hint) -> bool:
    allowed = typing.get_args(hint) or (hint,)
    if isinstance(value, bool):  # JSON true is not a number of cents
        return bool in allowed
    return isinstance(value, allowed)


def callback_body(invoice: Invoice) -> bytes:
    """The body of an IPN callback reporting `invoice`."""
    return json.dumps({"type": CALLBACK_TYPE, "invoice": to_wire(invoice)}).encode()


def sign_callback(secret: str, body: bytes, timestamp: int) -> str:
    """The value of the signature header for `body` sent at `timestamp` (Unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, timestamp, body)}"


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


class BlockPNClient:
    """BlockPN over HTTP. Every failure to get a well-formed answer is a ProviderError."""

    def __init__(self, base_url: str, api_key: str, ipn_secret: str, timeout: float = 10):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"BlockPN base_url {base_url!r} is not an http(s) URL")
        self._https = parts.scheme == "https"
        self._host, self._port = parts.hostname, parts.port
        self._prefix = parts.path.rstrip("/")
        self.api_key, self.ipn_secret, self.timeout = api_key, ipn_secret, timeout

    def open_invoice(self, *, reference: str, amount_cents: int, currency: str, chain: str,
                     asset: str, ttl_minutes: int, callback_url: str) -> Invoice:
        """Open (or, for a known reference, return) an invoice."""
        body = {"reference": reference, "amount_cents": amount_cents, "currency": currency,
                "chain": chain, "asset": asset, "ttl_minutes": ttl_minutes,
                "callback_url": callback_url}
        return self._create(Invoice, "/v1/invoices", body)

    def get_invoice(self, invoice_id: str) -> Invoice:
        """The invoice as BlockPN knows it now."""
        return self._read(Invoice, "/v1/invoices/", invoice_id)

    def send_payout(self, *, reference: str, chain: str, asset: str, amount_cents: int,
                    currency: str, address: str, memo: str | None) -> Payout:
        """Queue a payout (a known reference returns it)."""
        body = {"reference": reference, "chain": chain, "asset": asset,
                "amount_cents": amount_cents, "currency": currency, "address": address,
                "memo": memo}
        return self._create(Payout, "/v1/payouts", body)

    def get_payout(self, payout_id: str) -> Payout:
        """The payout as BlockPN knows it now."""
        return self._read(Payout, "/v1/payouts/", payout_id)

    def send_refund(self, *, reference: str, invoice_id: str, amount_cents: int,
                    currency: str) -> Refund:
        """Refund part or all of a paid invoice (a known reference returns it)."""
        body = {"reference": reference, "invoice_id": invoice_id,
                "amount_cents": amount_cents, "currency": currency}
        return self._create(Refund, "/v1/refunds", body)

    def get_refund(self, refund_id: str) -> Refund:
        """The refund as BlockPN knows it now."""
        return self._read(Refund, "/v1/refunds/", refund_id)

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Invoice:
        """The invoice a signed IPN callback reports; InvalidCallback for anything else."""
        if not self.ipn_secret:
            # An empty key would make signatures anyone can compute.
            raise InvalidCallback("no ipn_secret is configured to verify callbacks with")
        body = body.encode() if isinstance(body, str) else bytes(body)
        timestamp, signatures = _parse_signature(_header(headers, SIGNATURE_HEADER))
        if abs(clock.time() - timestamp) > SIGNATURE_TOLERANCE_SECONDS:
            raise InvalidCallback("the callback's timestamp is more than 5 minutes off")
        expected = _digest(self.ipn_secret, timestamp, body)
        if not any(hmac.compare_digest(expected, given) for given in signatures):
            raise InvalidCallback("the callback's signature does not match")
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict) or payload.get("type") != CALLBACK_TYPE:
                raise ValueError(f"not an {CALLBACK_TYPE} callback")
            return from_wire(Invoice, payload.get("invoice"))
        except (ValueError, RecursionError) as exc:  # RecursionError: absurdly nested JSON
            raise InvalidCallback(f"the callback body is not usable: {exc}") from None

    def _create(self, cls, path: str, body: dict):
        return self._decode(cls, self._call("POST", path, body, body["reference"]))

    def _read(self, cls, path: str, object_id: str):
        return self._decode(cls, self._call("GET", path + quote(object_id, safe="")))

    @staticmethod
    def _decode(cls, payload: dict):
        try:
            return from_wire(cls, payload)
        except ValueError as exc:
            raise ProviderError(f"BlockPN sent a malformed answer: {exc}",
                                kind="failed") from None

    def _call(self, method: str, path: str, body: dict | None = None,
              idempotency_key: str | None = None) -> dict:
        headers = {"Authorization": f"Bearer {self.api_key}", "Accept": "application/json",
                   "User-Agent": USER_AGENT}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        status, raw = self._send(method, self._prefix + path, data, headers)
        return _answer(method, path, status, raw)

    def _send(self, method, path, data, headers) -> tuple[int, bytes]:
        """One call, all of it within `timeout` seconds, its answer at most 64 KiB."""
        try:
            answer = outbound.exchange(method, https=self._https, host=self._host,
                                       port=self._port, target=path, body=data,
                                       headers=headers, timeout=self.timeout, whole=True)
        except outbound.AnswerTooLarge:
            raise ProviderError(f"BlockPN's answer to {method} {path} is larger than "
                                f"{MAX_ANSWER_BYTES // 1024} KiB", kind="failed") from None
        except (OSError, http.client.HTTPException, ValueError) as exc:
            # OSError covers refused connections, timeouts and TLS failures; ValueError a
            # header value http.client refuses to send.
            raise ProviderError(f"BlockPN could not be reached: {outbound.describe(exc)}"
                                ) from None
        return answer.status, answer.body


def _answer(method: str, path: str, status: int, raw: bytes) -> dict:
    """The JSON object of a 2xx answer; a ProviderError naming the problem otherwise."""
    where = f"{method} {path}"
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        payload = None
    if not 200 <= status < 300:
        reason = _reason(payload)
        said = f": {reason}" if reason else ""
        raise ProviderError(f"BlockPN answered {where} with HTTP {status}{said}",
                            kind=_kind_of(status), reason=reason)
    if not isinstance(payload, dict):
        raise ProviderError(f"BlockPN's answer to {where} is not a JSON object",
                            kind="failed")
    return payload


def _kind_of(status: int) -> str:
    """What an error status means for the shop (ProviderError.kind)."""
    if status in (401, 403):
        return "credentials"
    return "refused" if 400 <= status < 500 else "failed"


def _reason(payload) -> str | None:
    """The provider's own message in an error answer, shortened to one line."""
    error = payload.get("error") if isinstance(payload, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if not isinstance(message, str):
        return None
    return " ".join(message.split())[:300] or None


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; HTTP header names are not
        wanted = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
    if not value:
        raise InvalidCallback(f"the callback has no {name} header")
    return value


def _parse_signature(value: str) -> tuple[int, list[str]]:
    """`t=<seconds>,v1=<hex>[,v1=<hex>...]` → (seconds, hex signatures)."""
    timestamp, signatures = None, []
    for part in value.split(","):
        key, _, item = part.strip().partition("=")
        if key == "t" and item.isascii() and item.isdigit():
            timestamp = int(item)
        elif key == "v1" and item.isascii():  # compare_digest refuses other strings
            signatures.append(item)
    if timestamp is None or not signatures:
        raise InvalidCallback(f"the {SIGNATURE_HEADER} header is not t=...,v1=...")
    return timestamp, signatures
