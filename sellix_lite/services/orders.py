"""Orders (docs/api.md, Orders): the order object, its queries, and its lifecycle steps.

pending → awaiting_payment → paid → delivering → completed; or failed (expired unpaid,
delivery failed for good) and refunded. Each step runs in one write transaction with the
events it causes.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, time

import sqlite_utils

from .. import db as storage
from ..clock import iso, now_iso
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..validation import DATE_OR_DATE_TIME_FIELD, Enum, String
from . import coupons, events, inventory, metadata
from .links import Links
from .scope import Scope, list_query

STATUSES = ("pending", "awaiting_payment", "paid", "delivering", "completed", "failed",
            "refunded")
LIST = list_query(
    status=Enum(STATUSES, description="Only orders in this status."),
    **{"from": String(description="Created at or after this date or date-time.",
                      **DATE_OR_DATE_TIME_FIELD)},
    to=String(description="Created at or before this date or date-time (a date includes "
                          "the whole day).", **DATE_OR_DATE_TIME_FIELD),
    customer_email=String(min_length=1, max_length=254,
                          description="Only orders of this email."),
)


def present(db: sqlite_utils.Database, row: dict, links: Links) -> dict:
    """The public order object, with its subscription when it has one."""
    subscription = None
    if row["subscription_id"]:
        subscription = query_one(db, "SELECT * FROM subscriptions WHERE id = ?",
                                 (row["subscription_id"],))
    return render(row, links, subscription)


def render(row: dict, links: Links, subscription: dict | None = None) -> dict:
    """The public order object from its row (see `present`)."""
    paid = row["paid_at"] is not None
    shown = {
        "id": row["id"], "mode": row["mode"], "status": row["status"],
        "subtotal_cents": row["subtotal_cents"], "discount_cents": row["discount_cents"],
        "coupon": row["coupon"],
        "total_cents": row["total_cents"], "refunded_cents": row["refunded_cents"],
        "refundable_cents": refundable_cents(row),
        "currency": row["currency"], "customer_email": row["customer_email"],
        "customer_id": row["customer_id"], "created_at": row["created_at"],
        "paid_at": row["paid_at"],
        "payment": {
            "provider": "blockpn", "invoice_id": row["invoice_id"], "chain": row["chain"],
            "asset": row["asset"],
            "address": row["pay_address"], "asset_amount": row["asset_amount"],
            "expires_at": row["expires_at"], "paid_cents": row["paid_cents"],
            "asset_paid": row["asset_paid"], "tx_hash": row["tx_hash"],
            "late": bool(row["paid_late"]),
            "overpaid_cents": max(row["paid_cents"] - row["total_cents"], 0) if paid else 0,
            "checkout_url": links.order_url(row["id"], row["mode"]),
        },
        "items": [{"product_id": row["product_id"], "product": row["product_name"],
                   "qty": row["qty"], "unit_price_cents": row["unit_price_cents"],
                   "subtotal_cents": row["subtotal_cents"]}],
        "delivery": _delivery(row, links),
        "failure_reason": row["failure_reason"],
        "metadata": json.loads(row["metadata"]),
        "custom_fields": json.loads(row["custom_fields"]),
    }
    if row["total_cents"] == 0:
        shown["payment"] = None  # a free order opens no invoice
    if row["product_type"] == "subscription":
        shown["subscription"] = subscription and {
            "id": subscription["id"], "interval": subscription["interval"],
            "current_period_end": subscription["current_period_end"],
            "status": subscription["status"]}
    return shown


def refundable_cents(row: dict) -> int:
    """What was received and not yet refunded (or being refunded)."""
    return max(row["paid_cents"] - row["refunded_cents"], 0)


def _delivery(row: dict, links: Links) -> dict:
    delivery = {"kind": row["product_type"], "state": row["delivery_state"],
                "delivered_at": row["delivered_at"], **json.loads(row["delivery"] or "{}")}
    if row["product_type"] == "file_download" and row["delivery_state"] == "delivered":
        # A fresh link each time the order is shown; none once the order is refunded.
        delivery["download_url"] = None if row["status"] == "refunded" \
            else links.download_url(row["id"])
    return delivery


def get(scope: Scope, order_id: str) -> dict:
    return present(scope.db, scope.require("orders", order_id, "order"), scope.links)


def update(scope: Scope, order_id: str, body: dict) -> dict:
    """Merge `metadata` into what the order keeps, with `order.updated` when it changed."""
    change = metadata.UPDATE.validate(body).get("metadata", {})
    with write_txn(scope.db):
        row = scope.require("orders", order_id, "order")
        previous = metadata.update(scope, "orders", row, change, updated_at=now_iso())
        order = get(scope, order_id)
        if previous is not None:
            events.emit(scope.db, scope.mode, "order.updated", order, {"metadata": previous})
    return order


def list_page(scope: Scope, query: dict) -> dict:
    """A page of orders, newest first, filtered by status, creation time and email."""
    conditions, params = [], []
    if "status" in query:
        conditions.append("status = ?")
        params.append(query["status"])
    if "from" in query:
        conditions.append("created_at >= ?")
        params.append(parse_bound("from", query["from"], end_of_day=False))
    if "to" in query:
        conditions.append("created_at <= ?")
        params.append(parse_bound("to", query["to"], end_of_day=True))
    if "customer_email" in query:
        conditions.append("customer_email = ?")
        params.append(query["customer_email"].strip().lower())
    return scope.page("orders", query, lambda row: present(scope.db, row, scope.links),
                      where=" AND ".join(conditions), params=tuple(params))


def parse_bound(name: str, value: str, *, end_of_day: bool) -> str:
    """An ISO-8601 date or date-time as a UTC timestamp; a bare date spans its whole day."""
    try:
        if len(value) == 10:
            day = datetime.strptime(value, "%Y-%m-%d").date()
            moment = datetime.combine(day, time.max if end_of_day else time.min, UTC)
        else:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
        return iso(moment)  # OverflowError past the years 1 to 9999 in UTC
    except (ValueError, OverflowError):
        raise Unprocessable(errors={name: "must be an ISO-8601 date or date-time"}) from None


def fail(db: sqlite_utils.Database, order: dict, reason: str, links: Links) -> dict:
    """Mark an unpaid or undeliverable order failed, release its stock (and coupon
    redemption) when unpaid, emit order.failed.

    Runs inside the caller's write transaction; returns the updated row.
    """
    if order["paid_at"] is None:
        inventory.release(db, order)
        coupons.release(db, order["id"])
    changes = {"status": "failed", "failure_reason": reason, "updated_at": now_iso()}
    if order["paid_at"] is not None:
        changes["delivery_state"] = "failed"
    return save(db, order, changes, links, "order.failed")


def save(db: sqlite_utils.Database, order: dict, changes: dict, links: Links,
         *event_types: str) -> dict:
    """Write `changes` to the order and emit `event_types` with its new state (inside the
    caller's write transaction); returns the updated row."""
    if changes:
        storage.update(db, "orders", order["id"], changes)
    row = query_one(db, "SELECT * FROM orders WHERE id = ?", (order["id"],))
    for event_type in event_types:
        events.emit(db, row["mode"], event_type, present(db, row, links))
    return row
