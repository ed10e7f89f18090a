"""account (and subscription): the product's `delivery_text` (credentials, an invite link)."""

from __future__ import annotations

from ..db import query_one
from . import Outcome


class AccountDelivery:
    def deliver(self, db, order: dict) -> Outcome:
        product = query_one(db, "SELECT delivery_text FROM products WHERE id = ?",
                            (order["product_id"],))
        return Outcome("delivered", {"text": product["delivery_text"] or ""})


STRATEGY = AccountDelivery()
