"""license_key: the keys reserved to the order at checkout become delivered, for good, each
with its license."""

from __future__ import annotations

from ..services import licenses
from . import Outcome


class LicenseKeyDelivery:
    def deliver(self, db, order: dict) -> Outcome:
        keys = [row["key"] for row in db.query(
            "SELECT key FROM license_keys WHERE order_id = ? AND state = 'reserved' ORDER BY id",
            (order["id"],))]
        if len(keys) != order["qty"]:
            return Outcome("failed", reason=f"{len(keys)} of {order['qty']} keys were reserved")
        # Once delivered, a database trigger forbids the key from ever changing again.
        db.execute("UPDATE license_keys SET state = 'delivered' WHERE order_id = ? "
                   "AND state = 'reserved'", (order["id"],))
        licenses.create_for_delivery(db, order, keys)
        return Outcome("delivered", {"keys": keys})


STRATEGY = LicenseKeyDelivery()
