"""file_download: a signed, expiring link to the product's file (made when the order is
shown, so the order page always has a fresh one)."""

from __future__ import annotations

from ..db import query_one
from . import Outcome


class FileDownloadDelivery:
    def deliver(self, db, order: dict) -> Outcome:
        product = query_one(db, "SELECT file_name, file_sha256 FROM products WHERE id = ?",
                            (order["product_id"],))
        if product["file_sha256"] is None:
            return Outcome("failed", reason="the product has no file to deliver")
        return Outcome("delivered", {"file_name": product["file_name"]})


STRATEGY = FileDownloadDelivery()
