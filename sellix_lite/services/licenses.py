"""Licenses (docs/api.md, Licenses): every key a license_key product delivers becomes a
license, which the merchant can list, disable and re-enable, or give an activation limit,
and which the merchant's software activates on machines (instances; the public checks are
in `license_checks`).

A license is created in the delivery's transaction, with the product's `activation_limit`
as it was then; a full refund disables the order's licenses. `activations` is the number
of its instances, changed in the transaction that adds or removes one.

Expiry is read, not stored: a license whose `expires_at` has passed shows `expired` (unless
it is disabled, the merchant's own word), so moving `expires_at` forward, as a renewal
will, revives it with nothing else to undo, and no job has to sweep licenses at midnight.
"""

from __future__ import annotations

import re

import sqlite_utils

from ..clock import now_iso
from ..db import query_one, write_txn
from ..errors import NotFound, Unprocessable
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
_FILTERS = ("product_id", "order_id", "customer_email")
# The `status` filter as `status_of` reads it (an active license past its expiry is expired).
_STATUS_WHERE = {
    "active": "status = 'active' AND (expires_at IS NULL OR expires_at > ?)",
    "expired": "(status = 'expired' OR (status = 'active' AND expires_at <= ?))",
    "disabled": "status = 'disabled'",
}


def render(row: dict) -> dict:
    """The merchant's license object."""
    shown = {key: row[key] for key in (
        "id", "key", "status", "product_id", "order_id", "customer_email", "mode",
        "activation_limit", "activations", "expires_at", "created_at", "updated_at")}
    shown["status"] = status_of(row)
    return shown


def status_of(row: dict) -> str:
    """`expired` once `expires_at` has passed (a disabled license stays `disabled`)."""
    if row["status"] == "active" and row["expires_at"] and row["expires_at"] <= now_iso():
        return "expired"
    return row["status"]


def render_instance(row: dict) -> dict:
    """An instance: one machine (or install) that activated a license."""
    return {key: row[key] for key in ("id", "name", "fingerprint", "created_at")}


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
    conditions, params = _filters(query)
    return scope.page("licenses", query, render, where=" AND ".join(conditions),
                      params=tuple(params))


def _filters(query: dict) -> tuple[list[str], list]:
    """The SQL conditions of the list filters given, and their parameters (emails are kept
    in lower case, so a buyer's is found in any case)."""
    given = [name for name in _FILTERS if name in query]
    conditions = [f"{name} = ?" for name in given]
    params = [query[name].lower() if name == "customer_email" else query[name]
              for name in given]
    if "status" in query:
        conditions.append(_STATUS_WHERE[query["status"]])
        params += [now_iso()] * _STATUS_WHERE[query["status"]].count("?")
    return conditions, params


def get(scope: Scope, license_id: str) -> dict:
    """One license with its activated instances."""
    return _detail(scope.db, scope.require("licenses", license_id, "license"))


def update(scope: Scope, license_id: str, body: dict) -> dict:
    """Disable or re-enable a license, or change its activation limit; a license whose key
    was replaced or whose order was refunded in full stays disabled (`lock_reason`)."""
    params = UPDATE.validate(body)
    with write_txn(scope.db):
        row = scope.require("licenses", license_id, "license")
        changes = {key: value for key, value in params.items() if row[key] != value}
        if changes.get("status") == "active":
            _refuse_if_locked(scope.db, row)
        if changes:
            row = _save(scope.db, row, changes)
    return _detail(scope.db, row)


# Why a disabled license can't be switched back on: the message and the code of each.
LOCKS = {
    "replaced": "the key was replaced, so its license can't be enabled again",
    "refunded": "the order was refunded in full, so its licenses can't be enabled again",
}


def lock_reason(db: sqlite_utils.Database, row: dict) -> str | None:
    """`replaced` when the license's key was burned, `refunded` when its order was refunded
    in full, else None: re-enabling either would give back a sale that was taken back (a
    burned key working beside its replacement, or a key the buyer got the money for)."""
    if key_was_replaced(db, row["order_id"], row["key"]):
        return "replaced"
    order = query_one(db, "SELECT status FROM orders WHERE id = ?", (row["order_id"],))
    return "refunded" if order["status"] == "refunded" else None


def key_was_replaced(db: sqlite_utils.Database, order_id: str, key: str) -> bool:
    """Whether `key`, delivered to the order, was burned and replaced by another."""
    return query_one(db, "SELECT 1 AS burned FROM burned_keys b JOIN license_keys k ON "
                         "k.id = b.key_id WHERE b.order_id = ? AND k.key = ?",
                     (order_id, key)) is not None


def _refuse_if_locked(db: sqlite_utils.Database, row: dict) -> None:
    reason = lock_reason(db, row)
    if reason:
        raise Unprocessable(errors={"status": LOCKS[reason]}, codes={"status": reason})


def delete_instance(scope: Scope, license_id: str, instance_id: str) -> dict:
    """Remove an instance, freeing its activation, with `license.deactivated`."""
    with write_txn(scope.db):
        row = scope.require("licenses", license_id, "license")
        remove_instance(scope.db, row, require_instance(scope.db, row, instance_id))
    return {"id": instance_id, "deleted": True}


def require_instance(db: sqlite_utils.Database, row: dict, instance_id: str) -> dict:
    """The license's instance with that id, or 404."""
    instance = find_instance(db, row, instance_id)
    if instance is None:
        raise NotFound(f"no instance {instance_id} of license {row['id']}")
    return instance


def find_instance(db: sqlite_utils.Database, row: dict, instance_id: str) -> dict | None:
    """The license's instance with that id, or None (another license's is not found)."""
    return query_one(db, "SELECT * FROM license_instances WHERE id = ? AND license_id = ?",
                     (instance_id, row["id"]))


def remove_instance(db: sqlite_utils.Database, row: dict, instance: dict) -> dict:
    """Delete the instance and count one activation less, with `license.deactivated`
    (inside the caller's transaction); returns the license as it now is."""
    db.execute("DELETE FROM license_instances WHERE id = ?", (instance["id"],))
    return count_activation(db, row, instance, -1, "license.deactivated")


def count_activation(db: sqlite_utils.Database, row: dict, instance: dict, change: int,
                     event_type: str) -> dict:
    """Move `activations` by `change` for `instance` and emit `event_type`, the license
    in `data.object` and the instance in `data.instance` (inside the caller's
    transaction); returns the license as it now is."""
    changed = {**row, "activations": row["activations"] + change, "updated_at": now_iso()}
    db.execute("UPDATE licenses SET activations = ?, updated_at = ? WHERE id = ?",
               (changed["activations"], changed["updated_at"], row["id"]))
    events.emit(db, row["mode"], event_type, render(changed),
                extra={"instance": render_instance(instance)})
    return changed


def _save(db: sqlite_utils.Database, row: dict, changes: dict) -> dict:
    """Apply `changes` and emit `license.updated` with the values they replaced."""
    changed = {**row, **changes, "updated_at": now_iso()}
    db["licenses"].update(row["id"], {**changes, "updated_at": changed["updated_at"]})
    events.emit(db, row["mode"], "license.updated", render(changed),
                {key: row[key] for key in changes})
    return changed


def _detail(db: sqlite_utils.Database, row: dict) -> dict:
    instances = db.query("SELECT * FROM license_instances WHERE license_id = ? ORDER BY id",
                         (row["id"],))
    return {**render(row), "instances": [render_instance(i) for i in instances]}


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
    """The dashboard's list: `list_page`'s filters, and `key` finds the licenses whose key
    starts with it, case as typed (a prefix can use the index on keys, a substring could
    not)."""
    conditions, params = _filters(query)
    if "key" in query:
        conditions.append("key GLOB ?")
        params.append(_GLOB_SPECIAL.sub(r"[\1]", query["key"]) + "*")
    return scope.page("licenses", query, render, where=" AND ".join(conditions),
                      params=tuple(params))


def expire_with_subscription(db: sqlite_utils.Database, subscription_id: str,
                             expires_at: str) -> None:
    """The licenses of a subscription's orders expire when it ends: at its period end, moved
    on by each renewal, or now when it is canceled now; with `license.updated` (inside the
    caller's transaction)."""
    for row in db.query("SELECT l.* FROM licenses l JOIN orders o ON o.id = l.order_id "
                        "WHERE o.subscription_id = ? AND l.expires_at IS NOT ? ORDER BY l.id",
                        (subscription_id, expires_at)):
        _save(db, row, {"expires_at": expires_at})
