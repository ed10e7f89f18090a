"""Delivery strategies: what a paid order hands the buyer, one module per product type.

A strategy's `deliver` runs inside the payment's write transaction and returns the new
delivery state and the goods; strategies that must call out (dynamic products) are run by a
job instead and say so with `immediate = False`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import sqlite_utils


@dataclass(frozen=True)
class Outcome:
    state: str                          # delivery.state: delivered, failed, awaiting_shipment
    content: dict = field(default_factory=dict)  # the goods: keys, text, download_url, ...
    reason: str | None = None           # why it failed


class Strategy(Protocol):
    immediate: bool

    def deliver(self, db: sqlite_utils.Database, order: dict) -> Outcome:
        """Hand over the goods of a paid order (inside its transaction when immediate)."""


def strategy_for(product_type: str) -> Strategy | None:
    """The strategy that delivers `product_type`, or None when it can't be sold yet."""
    from . import account, license_key

    return {"license_key": license_key.STRATEGY, "account": account.STRATEGY}.get(product_type)
