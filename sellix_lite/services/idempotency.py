"""Idempotency keys (docs/api.md, Idempotency): a write sent twice runs once.

A request claims its key in a short transaction before it runs (state `in_flight`), then
stores its response (state `done`). A second request with the same key gets the stored
response, or 409 while the first still runs or when it differs in method, path or body.

A claim names the process (boot id) that holds it. If that process died, the claim is
abandoned: it is taken over when the request never committed anything, and refused with 409
when it did (`effects_committed`, set inside the request's own write transactions), because
running it again could repeat a refund or a payout whose response was lost.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import sqlite_utils

from ..clock import iso_ago, now_iso
from ..db import query_one, write_txn
from ..errors import Conflict, InvalidRequest

T = TypeVar("T")
RETENTION_HOURS = 24
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class StoredResponse:
    status: int
    headers: dict
    body: bytes


@dataclass(frozen=True)
class Claim:
    api_key_id: str
    key: str


def check_key(key: str) -> str:
    """The key itself, or 400 when it is not 1–255 printable ASCII characters."""
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not all(" " <= ch <= "~" for ch in key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters",
            errors={"Idempotency-Key": "must be 1 to 255 printable ASCII characters"})
    return key


def fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests "the same request" for one key."""
    digest = hashlib.sha256()
    for part in (method.encode(), b"\0", path.encode(), b"\0", body):
        digest.update(part)
    return digest.hexdigest()


def claim(db: sqlite_utils.Database, api_key_id: str, key: str, request_fingerprint: str,
          boot_id: str) -> Claim | StoredResponse:
    """Claim `key` for this request, or return the response it already produced."""
    with write_txn(db):
        row = query_one(db, "SELECT * FROM idempotency_keys WHERE api_key_id = ? AND key = ?",
                        (api_key_id, key))
        if row is None:
            db.execute(
                "INSERT INTO idempotency_keys (api_key_id, key, fingerprint, state, boot_id,"
                " created_at) VALUES (?, ?, ?, 'in_flight', ?, ?)",
                (api_key_id, key, request_fingerprint, boot_id, now_iso()))
            return Claim(api_key_id, key)
        if row["fingerprint"] != request_fingerprint:
            raise Conflict("this Idempotency-Key was already used with a different request")
        if row["state"] == "done":
            return StoredResponse(row["status"], json.loads(row["headers"]), row["body"])
        if row["boot_id"] == boot_id:
            raise Conflict("a request with this Idempotency-Key is still in flight")
        if row["effects_committed"]:
            raise Conflict("the first request with this Idempotency-Key was interrupted after"
                           " it took effect; fetch the resource to see its state")
        db.execute("UPDATE idempotency_keys SET boot_id = ?, created_at = ? "
                   "WHERE api_key_id = ? AND key = ?", (boot_id, now_iso(), api_key_id, key))
        return Claim(api_key_id, key)


def mark_effects(db: sqlite_utils.Database, held: Claim) -> None:
    """Record, inside the caller's write transaction, that the request changed something."""
    db.execute("UPDATE idempotency_keys SET effects_committed = 1 "
               "WHERE api_key_id = ? AND key = ?", (held.api_key_id, held.key))


def store(db: sqlite_utils.Database, held: Claim, response: StoredResponse) -> None:
    """Keep the response so that a retry gets it back byte for byte."""
    with write_txn(db):
        db.execute(
            "UPDATE idempotency_keys SET state = 'done', status = ?, headers = ?, body = ? "
            "WHERE api_key_id = ? AND key = ?",
            (response.status, json.dumps(response.headers), response.body,
             held.api_key_id, held.key))


def release(db: sqlite_utils.Database, held: Claim) -> None:
    """Forget a claim whose request failed (5xx, 429) so that a retry may run it.

    A request that committed something before failing keeps its claim, in flight: a retry
    gets 409 rather than a second execution.
    """
    where = "WHERE api_key_id = ? AND key = ?"
    with write_txn(db):
        db.execute(f"DELETE FROM idempotency_keys {where} AND effects_committed = 0",
                   (held.api_key_id, held.key))
        # No process holds it any more: a retry is told it was interrupted.
        db.execute(f"UPDATE idempotency_keys SET boot_id = '' {where}",
                   (held.api_key_id, held.key))


def run_once(db: sqlite_utils.Database, principal: str, key: str, request_fingerprint: str,
             boot_id: str, execute: Callable[[], T],
             to_stored: Callable[[T], StoredResponse | None]) -> tuple[T | StoredResponse, bool]:
    """Run `execute` once per key: `(its result, False)`, or `(the stored response, True)`.

    While it runs, every transaction it commits also marks the claim as having taken
    effect. `to_stored` turns the result into what a retry gets back, or None to forget
    the claim so a retry runs again (5xx, 429). An exception forgets it too.
    """
    outcome = claim(db, principal, key, request_fingerprint, boot_id)
    if isinstance(outcome, StoredResponse):
        return outcome, True
    mark = partial(mark_effects, held=outcome)
    db.before_commit.append(mark)
    try:
        result = execute()
    except BaseException:
        db.before_commit.remove(mark)
        release(db, outcome)
        raise
    db.before_commit.remove(mark)
    stored = to_stored(result)
    if stored is None:
        release(db, outcome)
    else:
        store(db, outcome, stored)
    return result, False


def purge_expired(db: sqlite_utils.Database) -> int:
    """Delete finished records older than the retention period; returns how many."""
    with write_txn(db):
        cursor = db.execute("DELETE FROM idempotency_keys WHERE created_at < ?",
                            (iso_ago(hours=RETENTION_HOURS),))
    return cursor.rowcount
