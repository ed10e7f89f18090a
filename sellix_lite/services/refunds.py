"""Refunds (docs/api.md, Refunds): money back to the buyer through BlockPN.

Creating a refund reserves its amount on the order (`refunded_cents`) in the same write
transaction that checks what is left, so two racing refunds of the remainder can't both
pass. A job then sends it to the provider, with the refund's id as the provider's
reference (a re-send after a crash is the same refund), and follows it to `succeeded` or
`failed`; a failed refund gives its amount back to what may be refunded.
"""

from __future__ import annotations

import sqlite_utils

from .. import db as storage
from ..clock import now_iso
from ..config import Config
from ..currencies import MAX_AMOUNT_CENTS, format_amount
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..ids import new_id
from ..providers.blockpn import ProviderError, Refund
from ..validation import Enum, Integer, Schema, String

# `payments` as a module: it gives late payments back through `reserve`.
from . import emails, licenses, orders, payments
from .links import Links
from .scope import Scope, list_query

STATUSES = ("processing", "succeeded", "failed")
REASONS = ("requested_by_buyer", "duplicate", "fraud", "other")
CREATE = Schema(
    amount_cents=Integer(minimum=1, maximum=MAX_AMOUNT_CENTS,
                         description="How much to refund; default: everything still "
                                     "refundable."),
    reason=Enum(REASONS, description="For your accounting and the buyer's receipt."),
    note=String(max_length=1000, description="An internal note kept with the refund."),
)
LIST = list_query()


def render(row: dict) -> dict:
    """The public refund object."""
    return {"id": row["id"], "order_id": row["order_id"], "status": row["status"],
            "amount_cents": row["amount_cents"], "reason": row["reason"], "note": row["note"],
            "destination_tx": row["destination_tx"], "failure_reason": row["failure_reason"],
            "created_at": row["created_at"], "updated_at": row["updated_at"]}


def create(scope: Scope, order_id: str, body: dict) -> dict:
    """Start a refund of money an order received, in any status; it is `processing` until
    the provider settles it."""
    params = CREATE.validate(body)
    with write_txn(scope.db):
        order = scope.require("orders", order_id, "order")
        amount = _refundable_amount(order, params.get("amount_cents"))
        row = reserve(scope.db, order, amount, params.get("reason"), params.get("note"))
    return render(row)


def reserve(db: sqlite_utils.Database, order: dict, amount: int, reason: str | None,
            note: str | None) -> dict:
    """Record a refund of `amount` (checked by the caller) and count it in the order's
    `refunded_cents`, inside the caller's write transaction; returns the refund row."""
    now = now_iso()
    row = {"id": new_id("rf"), "mode": order["mode"], "order_id": order["id"],
           "amount_cents": amount, "reason": reason, "note": note, "status": "processing",
           "provider_refund_id": None, "destination_tx": None, "failure_reason": None,
           "next_check_at": now, "created_at": now, "updated_at": now}
    storage.insert(db, "refunds", row)
    db.execute("UPDATE orders SET refunded_cents = refunded_cents + ?, updated_at = ? "
               "WHERE id = ?", (amount, now, order["id"]))
    return row


def _refundable_amount(order: dict, asked: int | None) -> int:
    """The amount to refund (`asked`, or all that is refundable); 422 beyond what the order
    received and has not refunded yet."""
    if order["paid_cents"] == 0:
        raise Unprocessable(errors={"order": "received no payment, so there is nothing to "
                                             "refund"})
    left = orders.refundable_cents(order)
    if left <= 0:
        raise Unprocessable(errors={"amount_cents": "nothing is left to refund"})
    if asked is not None and asked > left:
        raise Unprocessable(errors={"amount_cents": f"at most {left} is left to refund"})
    return left if asked is None else asked


def list_for_order(scope: Scope, order_id: str, query: dict) -> dict:
    """The refunds of one order, newest first."""
    scope.require("orders", order_id, "order")
    return scope.page("refunds", query, render, where="order_id = ?", params=(order_id,))


def process_due(db: sqlite_utils.Database, config: Config, links: Links, limit: int = 20) -> int:
    """Send new refunds to the provider and follow the others; returns how many were seen."""
    due = list(db.query("SELECT * FROM refunds WHERE status = 'processing' AND "
                        "next_check_at <= ? ORDER BY next_check_at LIMIT ?", (now_iso(), limit)))
    for refund in due:
        order = query_one(db, "SELECT * FROM orders WHERE id = ?", (refund["order_id"],))
        try:
            provider = payments.provider_for(db, refund["mode"], config)
            if refund["provider_refund_id"] is None:
                report = provider.send_refund(
                    reference=refund["id"], invoice_id=order["invoice_id"],
                    amount_cents=refund["amount_cents"], currency=order["currency"])
            else:
                report = provider.get_refund(refund["provider_refund_id"])
        except (ProviderError, payments.LivePaymentsDisabled) as exc:
            payments.ask_again_later(db, "refunds", refund, config,
                                     config.jobs.payment_poll_seconds, exc)
            continue
        settle(db, refund["id"], report, config, links)
    return len(due)


def settle(db: sqlite_utils.Database, refund_id: str, report: Refund, config: Config,
           links: Links) -> dict:
    """Apply what the provider says about a refund; settling twice changes nothing."""
    with write_txn(db):
        refund = query_one(db, "SELECT * FROM refunds WHERE id = ?", (refund_id,))
        if refund["status"] != "processing":
            return refund
        now = now_iso()
        changes = {"provider_refund_id": report.id, "updated_at": now}
        if report.status == "succeeded":
            changes.update(status="succeeded", destination_tx=report.destination_tx)
            storage.update(db, "refunds", refund_id, changes)
            _refunded(db, refund, config, links)
        elif report.status == "failed":
            changes.update(status="failed", failure_reason=report.failure_reason)
            storage.update(db, "refunds", refund_id, changes)
            db.execute("UPDATE orders SET refunded_cents = refunded_cents - ?, updated_at = ? "
                       "WHERE id = ?", (refund["amount_cents"], now, refund["order_id"]))
        else:
            changes["next_check_at"] = _next_check(refund["mode"], config)
            storage.update(db, "refunds", refund_id, changes)
        return query_one(db, "SELECT * FROM refunds WHERE id = ?", (refund_id,))


def _refunded(db, refund: dict, config: Config, links: Links) -> None:
    """A refund went through: `order.refunded`, the buyer's email, `refunded` when all is."""
    order = query_one(db, "SELECT * FROM orders WHERE id = ?", (refund["order_id"],))
    settled = query_one(db, "SELECT coalesce(sum(amount_cents), 0) AS total FROM refunds "
                            "WHERE order_id = ? AND status = 'succeeded'", (order["id"],))
    changes = {"updated_at": now_iso()}
    # An order that was never paid (expired after a part, or paid late and refunded) stays
    # failed: `refunded` is for sales that were undone.
    if order["paid_at"] is not None and settled["total"] >= order["paid_cents"]:
        changes["status"] = "refunded"
        licenses.disable_for_order(db, order)
    order = orders.save(db, order, changes, links, "order.refunded")
    amount = format_amount(refund["amount_cents"], order["currency"])
    emails.queue(db, mode=order["mode"], kind="order_refunded", to=order["customer_email"],
                 related_id=order["id"],
                 subject=f"Refund of {amount} for your order {order['id']}",
                 body=(f"{config.shop.name} refunded {amount} of your order {order['id']} "
                       f"({order['product_name']}).\nIt was sent back on {order['chain']} "
                       f"in {order['asset']}.\n\nYour order page: "
                       f"{links.order_url(order['id'], order['mode'])}\n"))


def _next_check(mode: str, config: Config) -> str:
    return payments.next_provider_check(mode, config, config.jobs.payment_poll_seconds)
