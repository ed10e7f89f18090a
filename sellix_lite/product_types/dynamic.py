"""dynamic: the goods are the answer of the merchant's URL, called by the delivery job
(`fulfilment.deliver_dynamic_due`) outside any transaction, with retries."""

from __future__ import annotations


class DynamicDelivery:
    def deliver(self, db, order: dict) -> None:
        return None  # the call is made by the delivery job, never inside a transaction


STRATEGY = DynamicDelivery()
