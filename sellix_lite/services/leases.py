"""Signed license leases (docs/licenses.md): a JWT the merchant's software keeps, so it can
check its license offline until the lease ends.

A lease is a compact JWS signed with Ed25519 (`alg: EdDSA`). The shop has one signing key,
made the first time a lease is issued or the key set is asked for, and kept in the database
(table `signing_keys`), so a backup of the database restores it and the leases already
handed out keep verifying. Its public half is published as a JWK Set at
`/.well-known/jwks.json`; `kid` is the key's JWK thumbprint (RFC 7638).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

import sqlite_utils
from Crypto.PublicKey import ECC
from Crypto.Signature import eddsa

from ..clock import clock, now_iso
from ..db import write_txn
from .scope import Scope

ALGORITHM = "EdDSA"
CURVE = "Ed25519"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    x: str  # the public key: 32 bytes, base64url without padding
    private_pem: str

    @property
    def jwk(self) -> dict:
        """The public key as a JWK (RFC 8037)."""
        return {"kty": "OKP", "crv": CURVE, "x": self.x, "kid": self.kid, "use": "sig",
                "alg": ALGORITHM}

    def sign(self, message: bytes) -> bytes:
        return _signer(self.private_pem).sign(message)


def issue(scope: Scope, license_row: dict, instance_id: str | None) -> str:
    """A lease for `license_row` (and the instance it was asked for): valid for
    `licenses.lease_hours`, never beyond the license's own expiry."""
    key = signing_key(scope.db)
    issued_at = int(clock.time())
    expires = issued_at + scope.config.licenses.lease_hours * 3600
    if license_row["expires_at"]:
        expires = min(expires, _epoch(license_row["expires_at"]))
    claims = {
        "iss": scope.links.public_url, "sub": license_row["id"], "iat": issued_at,
        "exp": expires,
        "lic": {"status": license_row["status"], "product_id": license_row["product_id"],
                "instance_id": instance_id, "mode": license_row["mode"]},
    }
    header = {"alg": ALGORITHM, "typ": "JWT", "kid": key.kid}
    signing_input = f"{_b64_json(header)}.{_b64_json(claims)}".encode()
    return f"{signing_input.decode()}.{_b64(key.sign(signing_input))}"


def jwks(db: sqlite_utils.Database) -> dict:
    """The shop's public signing keys as a JWK Set (the key is made if there is none yet,
    so software can fetch the set before the first lease is issued)."""
    return {"keys": [signing_key(db).jwk]}


def signing_key(db: sqlite_utils.Database) -> SigningKey:
    """The shop's signing key, made once: the first caller inserts it, under the write lock,
    and every later one reads it. Call it outside a write transaction: the first call opens
    one."""
    found = _stored_key(db)
    if found is None:
        with write_txn(db):
            found = _stored_key(db) or _create_key(db)
    return found


def _stored_key(db: sqlite_utils.Database) -> SigningKey | None:
    row = db.execute("SELECT kid, public_key, private_key FROM signing_keys "
                     "ORDER BY created_at DESC, kid LIMIT 1").fetchone()
    return SigningKey(*row) if row else None


def _create_key(db: sqlite_utils.Database) -> SigningKey:
    private = ECC.generate(curve=CURVE)
    x = _b64(private.public_key().export_key(format="raw"))
    key = SigningKey(_thumbprint(x), x, private.export_key(format="PEM"))
    db.execute("INSERT INTO signing_keys (kid, algorithm, private_key, public_key, created_at) "
               "VALUES (?, ?, ?, ?, ?)", (key.kid, ALGORITHM, key.private_pem, key.x, now_iso()))
    return key


@lru_cache(maxsize=8)
def _signer(private_pem: str):
    """Parsing a PEM key costs more than signing with it: one signer per key."""
    return eddsa.new(ECC.import_key(private_pem), "rfc8032")


def _thumbprint(x: str) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, without whitespace."""
    members = json.dumps({"crv": CURVE, "kty": "OKP", "x": x}, separators=(",", ":"),
                         sort_keys=True)
    return _b64(hashlib.sha256(members.encode()).digest())


def _epoch(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())


def _b64_json(value: dict) -> str:
    return _b64(json.dumps(value, separators=(",", ":")).encode())


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
