"""account (and subscription): the product's `delivery_text` (credentials, an invite link),
with the order's custom field values in its `{{ custom.NAME }}` placeholders."""

from __future__ import annotations

from ..db import query_one
from ..services import custom_fields
from . import Outcome


class AccountDelivery:
    def deliver(self, db, order: dict) -> Outcome:
        product = query_one(db, "SELECT delivery_text FROM products WHERE id = ?",
                            (order["product_id"],))
        return Outcome("delivered", {"text": custom_fields.delivery_text(product, order)})


STRATEGY = AccountDelivery()
