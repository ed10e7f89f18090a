"""physical: nothing is handed over online; the order waits for the merchant to ship it."""

from __future__ import annotations

import json

from . import Outcome


class PhysicalDelivery:
    def deliver(self, db, order: dict) -> Outcome:
        address = json.loads(order["shipping_address"])
        return Outcome("awaiting_shipment", {"shipping_address": address, "tracking": None})


STRATEGY = PhysicalDelivery()
