"""Stock reservations: taken at checkout, released when an order fails or expires.

License keys are reserved one by one to the order (the key row names its order); other
products with finite stock have their count decremented. Both happen inside the order's
write transaction, so two checkouts can never take the same key or the last unit.
"""

from __future__ import annotations

import sqlite_utils

from ..errors import Unprocessable


def reserve(db: sqlite_utils.Database, order_id: str, product: dict, qty: int) -> None:
    """Reserve `qty` units of `product` for the order, or 422 `errors.qty`."""
    if product["type"] == "license_key":
        taken = db.execute(
            "UPDATE license_keys SET state = 'reserved', order_id = ? WHERE id IN ("
            " SELECT id FROM license_keys WHERE product_id = ? AND state = 'available'"
            " ORDER BY id LIMIT ?)", (order_id, product["id"], qty)).rowcount
    elif product["stock"] is not None:
        taken = qty if db.execute("UPDATE products SET stock = stock - ? WHERE id = ? "
                                  "AND stock >= ?", (qty, product["id"], qty)).rowcount else 0
    else:
        return
    if taken < qty:
        left = product["stock"]
        if not left:
            raise Unprocessable(errors={"qty": "the product is sold out"},
                                codes={"qty": "sold_out"})
        raise Unprocessable(errors={"qty": f"only {left} left in stock"},
                            codes={"qty": "short_of_stock"})


def release(db: sqlite_utils.Database, order: dict) -> None:
    """Give an unpaid order's reservation back to the pool."""
    if order["product_type"] == "license_key":
        db.execute("UPDATE license_keys SET state = 'available', order_id = NULL "
                   "WHERE order_id = ? AND state = 'reserved'", (order["id"],))
    else:
        db.execute("UPDATE products SET stock = stock + ? WHERE id = ? AND stock IS NOT NULL",
                   (order["qty"], order["product_id"]))
