"""Stock reservations: taken at checkout, released when an order fails or expires.

License keys are reserved one by one to the order (the key row names its order); other
products with finite stock have their count decremented. Both happen inside the order's
write transaction, so two checkouts can never take the same key or the last unit.

Low stock: when stock falls from above a product's `low_stock_threshold` to at or below
it, `product.stock_low` is emitted and the owner emailed, in the transaction of the fall.
Comparing the stock before and after each fall is the whole rule: a fall that starts at
or below the threshold says nothing, so the alert re-arms only once stock has risen above
it again (keys imported, an order's stock given back, a PATCH).
"""

from __future__ import annotations

import sqlite_utils

from ..db import query_one
from ..errors import Unprocessable
from . import emails, events, products


def reserve(db: sqlite_utils.Database, order_id: str, product: dict, qty: int, *,
            owner_email: str) -> None:
    """Reserve `qty` units of `product` for the order, or 422 `errors.qty`; the owner
    (when `owner_email` is set) hears of a fall to low stock."""
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
        _refuse(product["stock"])
    warn_if_low(db, product, owner_email)


def check_available(product: dict, qty: int) -> None:
    """Refuse as `reserve` would when the product row has fewer than `qty` units in stock
    (for a price asked before buying); takes nothing."""
    if product["stock"] is not None and product["stock"] < qty:
        _refuse(product["stock"])


def _refuse(left: int) -> None:
    if not left:
        raise Unprocessable(errors={"qty": "the product is sold out"},
                            codes={"qty": "sold_out"})
    raise Unprocessable(errors={"qty": f"only {left} left in stock"},
                        codes={"qty": "short_of_stock"})


def warn_if_low(db: sqlite_utils.Database, before: dict, owner_email: str) -> None:
    """After the stock of the product row `before` fell (inside the same transaction):
    emit `product.stock_low` and email the owner if it crossed its threshold."""
    threshold = before["low_stock_threshold"]
    if threshold is None or before["stock"] is None or before["stock"] <= threshold:
        return
    after = query_one(db, "SELECT * FROM products WHERE id = ?", (before["id"],))
    if after["stock"] > threshold:
        return
    events.emit(db, after["mode"], "product.stock_low", products.render(after))
    if owner_email:
        emails.queue(db, mode=after["mode"], kind="stock_low", to=owner_email,
                     subject=f"Low stock: {after['name']} ({after['stock']} left)",
                     body=f"{after['name']} ({after['id']}) is down to {after['stock']} in "
                          f"stock, at or below its low-stock threshold of {threshold}.\n",
                     related_id=after["id"])


def release(db: sqlite_utils.Database, order: dict) -> None:
    """Give an unpaid order's reservation back to the pool."""
    if order["product_type"] == "license_key":
        db.execute("UPDATE license_keys SET state = 'available', order_id = NULL "
                   "WHERE order_id = ? AND state = 'reserved'", (order["id"],))
    else:
        db.execute("UPDATE products SET stock = stock + ? WHERE id = ? AND stock IS NOT NULL",
                   (order["qty"], order["product_id"]))
