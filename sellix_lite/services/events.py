"""The events outbox (docs/api.md, Events): every state change writes its event in the same
transaction, so an event exists exactly when its change does, whatever crashes.

An event is `{"id", "type", "created_at", "mode", "data": {"object": ...,
"previous_attributes"?: ...}}`: `data.object` is the object after the change and, for
`*.updated` events, `data.previous_attributes` holds the old values of the fields that
changed. A few events carry a second member the change was about beside it: the instance
of `license.activated` and `license.deactivated` (`data.instance`), the replacement of
`order.key_replaced` (`data.replacement`).
"""

from __future__ import annotations

import json

import sqlite_utils

from ..clock import now_iso
from ..errors import NotFound
from ..ids import new_id
from ..validation import String
from . import webhooks
from .scope import Scope, list_query


class OutsideTransaction(RuntimeError):
    """An event written outside the transaction of its change could be lost or orphaned."""


def emit(db: sqlite_utils.Database, mode: str, event_type: str, obj: dict,
         previous_attributes: dict | None = None, *, extra: dict | None = None) -> str:
    """Write an event into the outbox; must run inside the change's write transaction.

    `extra`: members of `data` besides the object that the event's type documents (the
    `replacement` of `order.key_replaced`).
    """
    if not db.conn.in_transaction:
        raise OutsideTransaction(f"{event_type} must be written inside its change's transaction")
    data = {"object": obj, **(extra or {})}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    event_id = new_id("evt")
    db.execute("INSERT INTO events (id, mode, type, data, created_at) VALUES (?, ?, ?, ?, ?)",
               (event_id, mode, event_type, json.dumps(data), now_iso()))
    webhooks.fan_out(db, mode, event_id, event_type)
    return event_id


LIST = list_query(type=String(min_length=1, max_length=100,
                              description="Only events of this type."))
# Reading an event shows its object, so it takes the ability that reads that object.
READ_ABILITY = {"order": "orders:read", "subscription": "orders:read",
                "product": "products:read", "payout": "payouts:read",
                "customer": "customers:read", "license": "licenses:read"}
_FAMILY = "substr(type, 1, instr(type, '.') - 1)"


def readable_families(abilities: list[str]) -> tuple[str, ...]:
    """The event families (`order`, `product`, ...) a key with `abilities` may read."""
    return tuple(family for family, ability in READ_ABILITY.items() if ability in abilities)


def list_page(scope: Scope, query: dict, abilities: list[str]) -> dict:
    """A page of this mode's events the key can read, newest first.

    The families are filtered in the query, so every page is full and `has_more` is true.
    """
    families = readable_families(abilities)
    where = f"{_FAMILY} IN ({', '.join('?' * len(families))})" if families else "0"
    params = families
    if "type" in query:
        where += " AND type = ?"
        params += (query["type"],)
    return scope.page("events", query, render, where=where, params=params)


def get(scope: Scope, event_id: str, abilities: list[str]) -> dict:
    """One event of this mode the key can read, or 404."""
    row = scope.get("events", event_id)
    if row is None or row["type"].split(".")[0] not in readable_families(abilities):
        raise NotFound(f"no event {event_id}")
    return render(row)


def render(row: dict) -> dict:
    """The public event object."""
    return {"id": row["id"], "type": row["type"], "created_at": row["created_at"],
            "mode": row["mode"], "data": _without_secrets(json.loads(row["data"]))}


def _without_secrets(data: dict) -> dict:
    """Product events written by earlier releases carry the dynamic signing secret, which
    products no longer show; it is left out of what is read or delivered."""
    for part in ("object", "previous_attributes"):
        data.get(part, {}).pop("dynamic_signing_secret", None)
    return data
