"""Licenses (docs/api.md, Licenses): every key a license_key product delivers becomes a
license, which the merchant can list, disable and re-enable, or give an activation limit.

A license is created in the delivery's transaction, with the product's `activation_limit`
as it was then; a full refund disables the order's licenses.
"""

from __future__ import annotations

import re

import sqlite_utils

from ..clock import now_iso
from ..db import write_txn
from ..ids import new_id
from ..validation import Enum, Integer, Schema, String
from . import events
from .scope import Scope, list_query

STATUSES = ("active", "disabled", "expired")
MAX_ACTIVATION_LIMIT = 1_000_000
ACTIVATION_LIMIT = dict(minimum=1, maximum=MAX_ACTIVATION_LIMIT, nullable=True,
                        description="How many instances may activate the license; `null`: "
                                    "unlimited.", example=3)

LIST = list_query(
    status=Enum(STATUSES, description="Only licenses with this status."),
    product_id=String(min_length=1, max_length=100, description="Only this product's."),
    order_id=String(min_length=1, max_length=100, description="Only this order's."),
    customer_email=String(min_length=1, max_length=320, strip=True,
                          description="Only this buyer's."),
)
UPDATE = Schema(
    status=Enum(("active", "disabled"), description="`disabled` stops the key from working."),
    activation_limit=Integer(**ACTIVATION_LIMIT),
)
_FILTERS = ("status", "product_id", "order_id", "customer_email")


def render(row: dict) -> dict:
    """The public license object."""
    return {key: row[key] for key in (
        "id", "key", "status", "product_id", "order_id", "customer_email", "mode",
        "activation_limit", "activations", "expires_at", "created_at", "updated_at")}


def create_for_delivery(db: sqlite_utils.Database, order: dict, keys: list[str]) -> None:
    """One license per delivered key, with `license.created` (in the delivery's
    transaction)."""
    product = db.execute("SELECT activation_limit FROM products WHERE id = ?",
                         (order["product_id"],)).fetchone()
    now = now_iso()
    for key in keys:
        row = {"id": new_id("lic"), "key": key, "status": "active",
               "product_id": order["product_id"], "order_id": order["id"],
               "customer_email": order["customer_email"], "mode": order["mode"],
               "activation_limit": product[0], "activations": 0, "expires_at": None,
               "created_at": now, "updated_at": now}
        db["licenses"].insert(row)
        events.emit(db, order["mode"], "license.created", render(row))


def disable_for_order(db: sqlite_utils.Database, order: dict) -> None:
    """Disable the order's active licenses (its sale was undone), with `license.updated`."""
    for row in db.query("SELECT * FROM licenses WHERE order_id = ? AND status = 'active' "
                        "ORDER BY id", (order["id"],)):
        _save(db, row, {"status": "disabled"})


def list_page(scope: Scope, query: dict) -> dict:
    """A page of this mode's licenses, newest first, narrowed by the filters given."""
    given = [name for name in _FILTERS if name in query]
    where = " AND ".join(f"{name} = ?" for name in given)
    return scope.page("licenses", query, render, where=where,
                      params=tuple(query[name] for name in given))


def get(scope: Scope, license_id: str) -> dict:
    """One license with its activated instances."""
    return _detail(scope.require("licenses", license_id, "license"))


def update(scope: Scope, license_id: str, body: dict) -> dict:
    """Disable or re-enable a license, or change its activation limit."""
    params = UPDATE.validate(body)
    with write_txn(scope.db):
        row = scope.require("licenses", license_id, "license")
        changes = {key: value for key, value in params.items() if row[key] != value}
        if changes:
            row = _save(scope.db, row, changes)
    return _detail(row)


def _save(db: sqlite_utils.Database, row: dict, changes: dict) -> dict:
    """Apply `changes` and emit `license.updated` with the values they replaced."""
    changed = {**row, **changes, "updated_at": now_iso()}
    db["licenses"].update(row["id"], {**changes, "updated_at": changed["updated_at"]})
    events.emit(db, row["mode"], "license.updated", render(changed),
                {key: row[key] for key in changes})
    return changed


def _detail(row: dict) -> dict:
    # No instance can activate a license yet, so the list is always empty.
    return {**render(row), "instances": []}


def disable_key(db: sqlite_utils.Database, order_id: str, key: str) -> None:
    """Disable the active license of one of the order's keys (the key was replaced), with
    `license.updated`."""
    for row in db.query("SELECT * FROM licenses WHERE order_id = ? AND key = ? "
                        "AND status = 'active'", (order_id, key)):
        _save(db, row, {"status": "disabled"})


SEARCH = Schema(**LIST.fields, key=String(
    min_length=1, max_length=1024, strip=True,
    description="Only licenses whose key starts with this text (a whole key included)."))
_GLOB_SPECIAL = re.compile(r"([*?\[])")  # matched literally inside brackets


def search(scope: Scope, query: dict) -> dict:
    """The dashboard's list: `list_page`'s filters (an email in any case), and `key` finds
    the licenses whose key starts with it, case as typed (a prefix can use the index on
    keys, a substring could not)."""
    given = [name for name in _FILTERS if name in query]
    conditions = [f"{name} = ?" for name in given]
    params = [query[name].lower() if name == "customer_email" else query[name]
              for name in given]  # emails are kept in lower case
    if "key" in query:
        conditions.append("key GLOB ?")
        params.append(_GLOB_SPECIAL.sub(r"[\1]", query["key"]) + "*")
    return scope.page("licenses", query, render, where=" AND ".join(conditions),
                      params=tuple(params))
