"""API keys (docs/api.md, Authentication): minting, listing, revoking and authenticating.

Only the SHA-256 of a secret is stored. A lookup goes by that hash, and revocation is read
from the database on every request, so a revoked key fails on the very next one.
"""

from __future__ import annotations

import json

import sqlite_utils

from .. import db as storage
from ..clock import iso_ago, now_iso
from ..db import query_one, write_txn
from ..errors import ForbiddenScope, NotFound
from ..ids import new_id
from ..security import hash_secret, new_api_secret, same_hash, secret_mode
from ..validation import Array, Enum, Schema, String
from .scope import MODES, Scope, list_query

ABILITIES = (
    "products:read", "products:write",
    "orders:read", "orders:write",
    "customers:read", "customers:write",
    "payouts:read", "payouts:write",
    "licenses:read", "licenses:write",
    "coupons:read", "coupons:write",
    "blacklist:read", "blacklist:write",
    "webhooks:read", "webhooks:write",
    "api_keys:read", "api_keys:write",
)
# last_used_at is written at most this often per key, so reads stay reads.
TOUCH_INTERVAL_SECONDS = 60

MINT = Schema(
    name=String(required=True, min_length=1, max_length=200, strip=True,
                description="Human-readable label.", example="Fulfilment worker"),
    abilities=Array(Enum(ABILITIES), required=True, min_items=1, unique=True,
                    description="Abilities the key grants; a subset of the minting key's.",
                    example=["orders:read", "orders:write"]),
    mode=Enum(MODES, description="Live or test; defaults to the mode of the minting key."),
)
LIST = list_query()


def render(row: dict) -> dict:
    """The public API key object (never the secret)."""
    return {
        "id": row["id"], "name": row["name"], "abilities": json.loads(row["abilities"]),
        "mode": row["mode"], "created_at": row["created_at"],
        "last_used_at": row["last_used_at"], "revoked_at": row["revoked_at"],
    }


def mint(db: sqlite_utils.Database, *, name: str, abilities: list[str], mode: str) -> dict:
    """Create a key; the returned object carries `secret`, shown this once only."""
    secret = new_api_secret(mode)
    row = {
        "id": new_id("apik"), "mode": mode, "name": name,
        "abilities": json.dumps(list(abilities)), "secret_hash": hash_secret(secret),
        "created_at": now_iso(), "last_used_at": None, "revoked_at": None,
    }
    with write_txn(db):
        storage.insert(db, "api_keys", row)
    return {**render(row), "secret": secret}


def mint_for(scope: Scope, caller: dict, body: dict) -> dict:
    """Mint on behalf of an API key: its abilities and mode bound what it may create."""
    return create(scope, body, granted=caller["abilities"])


def create(scope: Scope, body: dict, granted=ABILITIES) -> dict:
    """Validate and mint a key within the abilities `granted` to whoever asks (the
    dashboard's owner may grant them all)."""
    params = MINT.validate(body)
    mode = params.get("mode", scope.mode)
    _require_within("mint", params["abilities"], granted)
    if scope.mode == "test" and mode != "test":
        raise ForbiddenScope("a test key can only mint test keys")
    return mint(scope.db, name=params["name"], abilities=params["abilities"], mode=mode)


def _require_within(action: str, abilities: list[str], granted) -> None:
    """A key may only mint or revoke keys whose abilities are all among its own."""
    missing = [a for a in abilities if a not in granted]
    if missing:
        raise ForbiddenScope(f"a key can only {action} keys with abilities it has itself; "
                             f"missing: {', '.join(missing)}", ability=missing[0])


def list_page(scope: Scope, query: dict) -> dict:
    """A page of this mode's keys, newest first, revoked ones included."""
    return scope.page("api_keys", query, render)


def list_all(db: sqlite_utils.Database) -> list[dict]:
    """Every key of both modes, newest first (for the command line)."""
    return [render(row) for row in db.query("SELECT * FROM api_keys ORDER BY id DESC")]


def revoke_for(scope: Scope, caller: dict, key_id: str) -> dict:
    """Revoke on behalf of an API key: only keys whose abilities it has itself."""
    return revoke(scope, key_id, granted=caller["abilities"])


def revoke(scope: Scope, key_id: str, granted=ABILITIES) -> dict:
    """Revoke one of this mode's keys within the abilities `granted` to whoever asks;
    revoking twice is harmless."""
    row = scope.get("api_keys", key_id)
    if row is None:
        raise NotFound(f"no API key {key_id}")
    _require_within("revoke", json.loads(row["abilities"]), granted)
    return revoke_any(scope.db, key_id)


def revoke_any(db: sqlite_utils.Database, key_id: str) -> dict:
    """Revoke a key of either mode (for the command line)."""
    with write_txn(db):
        cursor = db.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?) "
                            "WHERE id = ?", (now_iso(), key_id))
    if cursor.rowcount == 0:
        raise NotFound(f"no API key {key_id}")
    return {"id": key_id, "revoked": True}


def authenticate(db: sqlite_utils.Database, secret: str) -> dict | None:
    """The live key row for `secret`, with `abilities` decoded; None if unknown or revoked."""
    if secret_mode(secret) is None:
        return None
    digest = hash_secret(secret)
    row = query_one(db, "SELECT * FROM api_keys WHERE secret_hash = ?", (digest,))
    if row is None or not same_hash(row["secret_hash"], digest) or row["revoked_at"]:
        return None
    if row["mode"] != secret_mode(secret):
        return None
    row["abilities"] = json.loads(row["abilities"])
    return row


def touch(db: sqlite_utils.Database, key: dict) -> None:
    """Note that the key was used, at most once a minute."""
    if key["last_used_at"] and key["last_used_at"] > iso_ago(seconds=TOUCH_INTERVAL_SECONDS):
        return
    with write_txn(db):
        db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (now_iso(), key["id"]))
