"""The dashboard password: only a strong hash is stored (scrypt, with a random salt).

The running server reads the hash at every sign-in, so a password set with
`sellix-lite admin set-password` works at the next sign-in without a restart.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import sqlite_utils

from ..db import query_one, write_txn

SETTING = "admin_password_hash"
# Sessions carry the epoch they were opened in; signing out or a new password moves it on,
# which ends every session opened before, even from a copied cookie.
EPOCH = "admin_session_epoch"
MIN_LENGTH = 10
# scrypt cost: 2^15 × 8 × 128 bytes = 32 MiB of memory per guess.
N, R, P = 2**15, 8, 1


class WeakPassword(ValueError):
    """A password too short to protect the shop."""


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=N, r=R, p=P, maxmem=64 * 2**20)
    return "$".join(["scrypt", str(N), str(R), str(P), _b64(salt), _b64(digest)])


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash (constant-time comparison)."""
    try:
        scheme, n, r, p, salt, expected = stored.split("$")
        digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n),
                                r=int(r), p=int(p), maxmem=64 * 2**20)
    except (ValueError, TypeError):
        return False
    return scheme == "scrypt" and hmac.compare_digest(digest, base64.b64decode(expected))


def set_password(db: sqlite_utils.Database, password: str) -> None:
    """Store the hash of a new dashboard password."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters")
    with write_txn(db):
        _put(db, SETTING, hash_password(password))
        _put(db, EPOCH, secrets.token_urlsafe(12))


def session_epoch(db: sqlite_utils.Database) -> str:
    """The current session epoch (sessions of another epoch are over)."""
    row = query_one(db, "SELECT value FROM settings WHERE name = ?", (EPOCH,))
    return row["value"] if row else ""


def end_sessions(db: sqlite_utils.Database) -> None:
    """Sign every dashboard session out."""
    with write_txn(db):
        _put(db, EPOCH, secrets.token_urlsafe(12))


def _put(db, name: str, value: str) -> None:
    db.execute("INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) "
               "DO UPDATE SET value = excluded.value", (name, value))


def verify(db: sqlite_utils.Database, password: str) -> bool:
    """Whether `password` is the dashboard password (False while none is set)."""
    row = query_one(db, "SELECT value FROM settings WHERE name = ?", (SETTING,))
    return bool(row) and check_password(password, row["value"])


def is_set(db: sqlite_utils.Database) -> bool:
    return query_one(db, "SELECT 1 AS x FROM settings WHERE name = ?", (SETTING,)) is not None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
