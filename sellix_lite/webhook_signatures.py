"""Webhook signatures (docs/webhooks.md): Standard Webhooks plus the Sellix-style headers.

A secret is `whsec_` + base64 of 32 random bytes; the HMAC key is the decoded bytes. The
same signature scheme signs webhook deliveries and the calls to dynamic-product URLs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from . import __version__

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
USER_AGENT = f"sellix-lite-webhook/{__version__}"


def new_secret() -> str:
    """A fresh signing secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def standard_signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def sellix_signature(secret: str, timestamp: int, body: bytes) -> str:
    """`sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`."""
    digest = hmac.new(_key(secret), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def headers(secrets_in_use: list[str], message_id: str, event_type: str, timestamp: int,
            body: bytes) -> dict:
    """Every header of a signed delivery; the first secret is the current one.

    During a rotation each valid secret adds a Standard Webhooks signature, so receivers
    holding either secret verify the message.
    """
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            standard_signature(secret, message_id, timestamp, body) for secret in secrets_in_use),
        "X-Event-Id": message_id,
        "X-Event-Type": event_type,
        "X-Webhook-Timestamp": str(timestamp),
        "X-Signature": sellix_signature(secrets_in_use[0], timestamp, body),
    }
