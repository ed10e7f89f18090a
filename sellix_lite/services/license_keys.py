"""License-key pools (docs/api.md, Products): bulk import into a license_key product, the
pool's list and the removal of an unsold key.

A key is one row, unique within its product's pool (sold or not), so an import can only add
keys the pool has never had. The whole import is one transaction: all valid, or nothing.
The API names a key `key_` and its zero-padded row id, and shows a delivered key as `sold`
(the view `license_key_pool`).
"""

from __future__ import annotations

from ..clock import now_iso
from ..db import query_one, write_txn
from ..errors import NotFound, Unprocessable
from ..validation import Array, Enum, Schema, String
from . import inventory, products
from .scope import Scope, list_query

MAX_KEYS_PER_IMPORT = 5000

IMPORT = Schema(
    keys=Array(String(min_length=1, max_length=1024, strip=True), required=True,
               min_items=1, max_items=MAX_KEYS_PER_IMPORT,
               description="Keys to add to the pool; each is trimmed.",
               example=["AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"]),
)
# `burned`: a delivered key replaced by another (services/key_replacements.py).
STATUSES = ("available", "reserved", "sold", "burned")
LIST = list_query(status=Enum(STATUSES, description="Only keys with this status."))
ID_PREFIX = "key_"
MAX_ID_DIGITS = 18  # a row id beyond that is not a SQLite integer, so no key has it


def import_keys(scope: Scope, product_id: str, body: dict) -> dict:
    """Add keys to the pool; duplicates (in the pool or in the call) are counted, not added."""
    keys = IMPORT.validate(body)["keys"]
    with write_txn(scope.db):
        before = _require_pool(scope, product_id, "keys")
        now = now_iso()
        cursor = scope.db.conn.executemany(
            "INSERT OR IGNORE INTO license_keys (product_id, key, created_at) VALUES (?, ?, ?)",
            [(product_id, key, now) for key in keys])
        imported = cursor.rowcount
        product = products.record_stock_change(scope, before)
    return {"imported": imported, "duplicates": len(keys) - imported,
            "stock_after": product["stock"]}


def list_page(scope: Scope, product_id: str, query: dict) -> dict:
    """A page of the product's pool, newest first, optionally of one status."""
    _require_pool(scope, product_id, "product_id")
    where, params = "product_id = ?", (product_id,)
    if "status" in query:
        where, params = f"{where} AND status = ?", (*params, query["status"])
    return scope.page("license_key_pool", query, render, where=where, params=params)


def render(row: dict) -> dict:
    """The public key object."""
    return {"id": row["id"], "key": row["key"], "status": row["status"],
            "order_id": row["order_id"], "created_at": row["created_at"]}


def delete(scope: Scope, product_id: str, key_id: str) -> dict:
    """Remove an available key from the pool (its stock drops with it); a reserved or sold
    key belongs to an order and stays."""
    with write_txn(scope.db):
        before = _require_pool(scope, product_id, "product_id")
        row = _key_row(scope, product_id, key_id)
        if row["state"] != "available":
            status = _unavailable_status(scope, row)
            raise Unprocessable(errors={"key_id": f"the key is {status}; only available "
                                                  "keys can be deleted"},
                                codes={"key_id": status})
        scope.db.execute("DELETE FROM license_keys WHERE id = ?", (row["id"],))
        products.record_stock_change(scope, before)
        inventory.warn_if_low(scope.db, before, scope.config.shop.owner_email)
    return {"id": key_id, "deleted": True}


def _unavailable_status(scope: Scope, row: dict) -> str:
    """What the pool calls a key that is not available: reserved, sold, or burned (a
    delivered key that was replaced), as the view `license_key_pool` has it."""
    if row["state"] != "delivered":
        return row["state"]
    burned = query_one(scope.db, "SELECT 1 FROM burned_keys WHERE key_id = ?", (row["id"],))
    return "burned" if burned else "sold"


def _key_row(scope: Scope, product_id: str, key_id: str) -> dict:
    digits = key_id.removeprefix(ID_PREFIX)
    row = None
    if key_id.startswith(ID_PREFIX) and digits.isascii() and digits.isdigit() \
            and len(digits) <= MAX_ID_DIGITS:
        row = query_one(scope.db, "SELECT * FROM license_keys WHERE id = ? AND product_id = ?",
                        (int(digits), product_id))
    if row is None:
        raise NotFound(f"no key {key_id} in product {product_id}")
    return row


def _require_pool(scope: Scope, product_id: str, field: str) -> dict:
    """The license_key product's row (404 when unknown, 422 when of another type)."""
    product = products.require(scope, product_id)
    if product["type"] != "license_key":
        raise Unprocessable(errors={field: "only license_key products have a key pool"})
    return product
