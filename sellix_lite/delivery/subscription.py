"""subscription: the product's `delivery_text`; the subscription's period is kept by the
subscriptions service."""

from __future__ import annotations

from ..db import query_one
from . import Outcome


class SubscriptionDelivery:
    def deliver(self, db, order: dict) -> Outcome:
        product = query_one(db, "SELECT delivery_text FROM products WHERE id = ?",
                            (order["product_id"],))
        return Outcome("delivered", {"text": product["delivery_text"] or ""})


STRATEGY = SubscriptionDelivery()
