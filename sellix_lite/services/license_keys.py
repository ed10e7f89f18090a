"""License-key pools (docs/api.md, Products): bulk import into a license_key product.

A key is one row, unique within its product's pool (sold or not), so an import can only add
keys the pool has never had. The whole import is one transaction: all valid, or nothing.
"""

from __future__ import annotations

from ..clock import now_iso
from ..db import write_txn
from ..errors import Unprocessable
from ..validation import Array, Schema, String
from . import products
from .scope import Scope

MAX_KEYS_PER_IMPORT = 5000

IMPORT = Schema(
    keys=Array(String(min_length=1, max_length=1024, strip=True), required=True,
               min_items=1, max_items=MAX_KEYS_PER_IMPORT,
               description="Keys to add to the pool; each is trimmed.",
               example=["AAAA-BBBB-CCCC", "DDDD-EEEE-FFFF"]),
)


def import_keys(scope: Scope, product_id: str, body: dict) -> dict:
    """Add keys to the pool; duplicates (in the pool or in the call) are counted, not added."""
    keys = IMPORT.validate(body)["keys"]
    with write_txn(scope.db):
        before = products.require(scope, product_id)
        if before["type"] != "license_key":
            raise Unprocessable(errors={"keys": "only license_key products have a key pool"})
        now = now_iso()
        cursor = scope.db.conn.executemany(
            "INSERT OR IGNORE INTO license_keys (product_id, key, created_at) VALUES (?, ?, ?)",
            [(product_id, key, now) for key in keys])
        imported = cursor.rowcount
        product = products.record_stock_change(scope, before)
    return {"imported": imported, "duplicates": len(keys) - imported,
            "stock_after": product["stock"]}
