"""Secrets, hashes and signed tokens.

API key secrets are long random strings, so one SHA-256 is enough to store them safely; the
database is searched by that hash, so no comparison ever runs over the secret itself.
Signed values use itsdangerous with one salt per purpose (namespace), so a token made for
one purpose (a list cursor) is refused for another (a download link).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import string
from pathlib import Path

from itsdangerous import (
    BadData,
    SignatureExpired,
    Signer as ItsdangerousSigner,
    TimestampSigner,
    URLSafeSerializer,
    URLSafeTimedSerializer,
)
from itsdangerous.encoding import base64_decode, base64_encode

from .clock import clock

_BASE62 = string.digits + string.ascii_letters
SECRET_RANDOM_LENGTH = 40
SECRET_PATTERN = re.compile(r"sx_(live|test)_[0-9A-Za-z]{32,200}")


class BadToken(Exception):
    """A signed value that was tampered with, expired or made for another purpose."""

    def __init__(self, message: str, expired: bool = False):
        super().__init__(message)
        self.expired = expired


def new_api_secret(mode: str) -> str:
    """A fresh `sx_<mode>_` secret with 40 random base62 characters (~238 bits)."""
    body = "".join(secrets.choice(_BASE62) for _ in range(SECRET_RANDOM_LENGTH))
    return f"sx_{mode}_{body}"


def secret_mode(secret: str) -> str | None:
    """The mode a well-formed secret belongs to, or None for anything malformed."""
    match = SECRET_PATTERN.fullmatch(secret)
    return match.group(1) if match else None


def hash_secret(secret: str) -> str:
    """The stored form of an API key secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_hash(a: str, b: str) -> bool:
    """Constant-time comparison of two hashes."""
    return hmac.compare_digest(a.encode(), b.encode())


def load_secret_key(configured: str, data_dir: Path) -> str:
    """The configured secret key, or the one kept in the data folder (made on first use)."""
    if configured:
        return configured
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # O_EXCL: two processes starting at once can't both write a different key.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key


class ClockTimestampSigner(TimestampSigner):
    """Stamps and ages timed tokens by the app's clock, so that tests can move a link past
    its lifetime."""

    def get_timestamp(self) -> int:
        return int(clock.time())


class TimedSerializer(URLSafeTimedSerializer):
    default_signer = ClockTimestampSigner


class Signer:
    """Signs JSON-able values for one secret key, namespaced by purpose.

    Plain tokens are stable (the same value always signs the same way, so a link can be
    shown twice); timed tokens carry their signing time and expire.
    """

    def __init__(self, secret_key: str):
        self._secret_key = secret_key
        # Made once per salt (each namespace and kind has its own), not once per token.
        self._signers: dict[str, object] = {}

    def sign(self, value, namespace: str) -> str:
        """A URL-safe token carrying `value`, valid only for `namespace`, never expiring."""
        return self._plain(namespace).dumps(value)

    def unsign(self, token: str, namespace: str):
        """The value inside a `sign` token; BadToken if tampered or of another namespace.

        Base64 leaves spare bits in a token's last character, so a few altered tokens still
        decode to the same signature; only the exact token that `sign` makes is accepted.
        """
        if not isinstance(token, str) or not token.isascii():
            raise BadToken("the token was altered")  # base64 decoding would skip the rest
        value = self._load(self._plain(namespace), token)
        _require_canonical_signature(token)
        return value

    def sign_text(self, text: str, namespace: str) -> str:
        """`text` with a signature appended, valid only for `namespace`: the cheap form for
        values signed on every request (list cursors), with no JSON or compression."""
        return self._text_signer(namespace).sign(text).decode()

    def unsign_text(self, token: str, namespace: str) -> str:
        """The text inside a `sign_text` token; BadToken if tampered or of another namespace."""
        if not isinstance(token, str) or not token.isascii():
            raise BadToken("the token was altered")
        try:
            text = self._text_signer(namespace).unsign(token).decode()
        except (BadData, UnicodeError, ValueError) as exc:
            raise BadToken(str(exc)) from None
        _require_canonical_signature(token)
        return text

    def sign_timed(self, value, namespace: str) -> str:
        """Like `sign`, but the token records when it was made (see `unsign_timed`)."""
        return self._timed(namespace).dumps(value)

    def unsign_timed(self, token: str, namespace: str, max_age: int):
        """The value inside a `sign_timed` token; BadToken also once `max_age` s have passed."""
        return self._load(self._timed(namespace), token, max_age=max_age)

    @staticmethod
    def _load(serializer, token: str, **kwargs):
        try:
            return serializer.loads(token, **kwargs)
        except SignatureExpired as exc:
            raise BadToken(str(exc), expired=True) from None
        except (BadData, UnicodeError, ValueError, TypeError) as exc:
            raise BadToken(str(exc)) from None

    def _text_signer(self, namespace: str) -> ItsdangerousSigner:
        return self._made(ItsdangerousSigner, f"sellix-lite.text.{namespace}")

    def _plain(self, namespace: str) -> URLSafeSerializer:
        return self._made(URLSafeSerializer, f"sellix-lite.{namespace}")

    def _timed(self, namespace: str) -> URLSafeTimedSerializer:
        return self._made(TimedSerializer, f"sellix-lite.timed.{namespace}")

    def _made(self, kind: type, salt: str):
        """One signer or serializer of `kind` per salt, made on first use."""
        if salt not in self._signers:
            self._signers[salt] = kind(self._secret_key, salt=salt)
        return self._signers[salt]


def _require_canonical_signature(token: str) -> None:
    """The signature covers the signed text exactly; only the signature's own base64 is
    loose (unused bits in its last character, skipped characters), so a token is accepted
    only with the canonical encoding: exactly the token that was handed out."""
    signature = token.rpartition(".")[2]
    if base64_encode(base64_decode(signature)).decode() != signature:
        raise BadToken("the token was altered")
