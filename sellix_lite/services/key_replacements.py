"""Key replacement (docs/api.md, Orders, "Replacing a key"): one delivered key of a completed
license_key order swapped for a fresh one from the product's pool.

It is one write transaction, so a refused replacement changes nothing: the pool's oldest
available key is delivered to the same order with a new license, the old key is burned (a
`burned_keys` row: a delivered key itself can never change) and its license disabled, the
order's `delivery.keys` shows the new key where the old one was, and `order.key_replaced`
and the buyer's email are written with it.
"""

from __future__ import annotations

import json

import sqlite_utils

from ..clock import now_iso
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..validation import Schema, String
from . import emails, events, inventory, licenses, orders
from .links import Links
from .scope import Scope

REPLACE = Schema(
    key=String(required=True, min_length=1, max_length=1024, strip=True,
               description="The delivered key to replace, as the order shows it.",
               example="AAAA-BBBB-CCCC"),
    reason=String(max_length=500, nullable=True,
                  description="Why it is replaced; kept with the burned key and sent in "
                              "`order.key_replaced`, never to the buyer.",
                  example="reported as not working"),
)


def replace(scope: Scope, order_id: str, body: dict) -> dict:
    """Burn one delivered key of the order and deliver the pool's oldest available key in
    its place; 422 (and nothing changes) when the order or key can't be replaced or the
    pool is empty. Returns the order object."""
    params = REPLACE.validate(body)
    old_key, reason = params["key"], params.get("reason")
    with write_txn(scope.db):
        order = scope.require("orders", order_id, "order")
        keys = _replaceable_keys(scope.db, order, old_key)
        new_key = _deliver_fresh_key(scope, order)
        _burn(scope.db, order, old_key, new_key["id"], reason)
        licenses.disable_key(scope.db, order["id"], old_key)
        licenses.create_for_delivery(scope.db, order, [new_key["key"]])
        keys[keys.index(old_key)] = new_key["key"]
        order = _announce(scope.db, order, keys, scope.links,
                          {"old_key": old_key, "new_key": new_key["key"], "reason": reason})
        _email_buyer(scope.db, order, old_key, new_key["key"], scope)
    return orders.present(scope.db, order, scope.links)


def _replaceable_keys(db: sqlite_utils.Database, order: dict, key: str) -> list[str]:
    """The order's delivered keys, once the order and `key` are found replaceable."""
    if order["product_type"] != "license_key":
        raise Unprocessable(errors={"order": "only a license_key order has keys to replace"},
                            codes={"order": "not_license_key"})
    if order["status"] == "refunded":
        raise Unprocessable(errors={"order": "is refunded, so its keys can't be replaced"},
                            codes={"order": "refunded"})
    if _refund_of_everything_under_way(order):
        raise Unprocessable(errors={"order": "a refund of the whole amount is under way, so "
                                             "its keys can't be replaced"},
                            codes={"order": "refunded"})
    if order["status"] != "completed" or order["delivery_state"] != "delivered":
        raise Unprocessable(errors={"order": "has no delivered keys to replace"},
                            codes={"order": "not_delivered"})
    keys = json.loads(order["delivery"])["keys"]
    if key not in keys:
        if licenses.key_was_replaced(db, order["id"], key):
            raise Unprocessable(errors={"key": "was replaced already"},
                                codes={"key": "burned"})
        raise Unprocessable(errors={"key": "is not one of the order's delivered keys"},
                            codes={"key": "not_delivered"})
    return keys


def _refund_of_everything_under_way(order: dict) -> bool:
    """Refunds still processing and those settled cover all that was paid: the order is
    completed until they settle, when its licenses are disabled, a fresh key's included."""
    return order["paid_cents"] > 0 and orders.refundable_cents(order) == 0


def _deliver_fresh_key(scope: Scope, order: dict) -> dict:
    """Take the pool's oldest available key for the order, as checkout does, and deliver
    it; the owner hears of a fall to low stock. Returns its `id` and `key`."""
    product = query_one(scope.db, "SELECT * FROM products WHERE id = ?", (order["product_id"],))
    try:
        inventory.reserve(scope.db, order["id"], product, 1,
                          owner_email=scope.config.shop.owner_email)
    except Unprocessable:
        raise Unprocessable(errors={"key": "no key is left in the product's pool to replace "
                                           "it with"}, codes={"key": "pool_empty"}) from None
    # A delivered order holds no reserved key but the one just taken.
    (taken,) = scope.db.query(
        "UPDATE license_keys SET state = 'delivered' WHERE order_id = ? AND state = 'reserved' "
        "RETURNING id, key", (order["id"],))
    return taken


def _burn(db: sqlite_utils.Database, order: dict, old_key: str, replacement_id: int,
          reason: str | None) -> None:
    """Record the old key as burned: its row stays delivered to the order, for good."""
    db.execute(
        "INSERT INTO burned_keys (key_id, order_id, replacement_key_id, reason, burned_at) "
        "SELECT id, order_id, ?, ?, ? FROM license_keys WHERE product_id = ? AND key = ? "
        "AND order_id = ? AND state = 'delivered'",
        (replacement_id, reason, now_iso(), order["product_id"], old_key, order["id"]))


def _announce(db: sqlite_utils.Database, order: dict, keys: list[str], links: Links,
              replacement: dict) -> dict:
    """Show the new keys on the order and emit `order.key_replaced`; the updated row."""
    delivery = {**json.loads(order["delivery"]), "keys": keys}
    order = orders.save(db, order, {"delivery": json.dumps(delivery), "updated_at": now_iso()},
                        links)
    events.emit(db, order["mode"], "order.key_replaced", orders.present(db, order, links),
                extra={"replacement": replacement})
    return order


def _email_buyer(db: sqlite_utils.Database, order: dict, old_key: str, new_key: str,
                 scope: Scope) -> None:
    shop = scope.config.shop.name
    emails.queue(db, mode=order["mode"], kind="key_replaced", to=order["customer_email"],
                 related_id=order["id"],
                 subject=f"Your new license key from {shop}: {order['product_name']}",
                 body=(f"{shop} replaced a license key of your order {order['id']} "
                       f"({order['product_name']}).\n\nYour new license key:\n  {new_key}\n\n"
                       f"It takes the place of {old_key}, which no longer works.\n\n"
                       f"Your order page: {scope.links.order_url(order['id'], order['mode'])}"
                       f"\n"))
