"""Delivery strategies: what a paid order hands the buyer, one module per product type.

A strategy's `deliver` runs inside the payment's write transaction and returns the new
delivery state with the goods, or None when the goods come from a call that must not run
inside a transaction (dynamic products): the delivery job makes that call later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import sqlite_utils


@dataclass(frozen=True)
class Outcome:
    state: str                          # delivery.state: delivered, failed, awaiting_shipment, …
    content: dict = field(default_factory=dict)  # the goods: keys, text, file_name, ...
    reason: str | None = None           # why it failed


class Strategy(Protocol):
    def deliver(self, db: sqlite_utils.Database, order: dict) -> Outcome | None:
        """Hand over the goods of a paid order (None: the delivery job will)."""


def strategy_for(product_type: str) -> Strategy:
    """The strategy that delivers `product_type`."""
    from . import account, dynamic, file_download, license_key, physical

    return {
        "license_key": license_key.STRATEGY, "account": account.STRATEGY,
        "file_download": file_download.STRATEGY, "dynamic": dynamic.STRATEGY,
        "physical": physical.STRATEGY,
        # A subscription hands over its delivery_text like an account; its period is kept
        # by the subscriptions service.
        "subscription": account.STRATEGY,
    }[product_type]
