"""Payments: applying what BlockPN reports about an invoice to its order.

An IPN callback, the polling job and the sandbox test helpers all end in `apply_invoice`,
which compares the invoice with the order inside one write transaction. Applying the same
report twice changes nothing the second time, so a callback and a poll that race, or a
callback sent twice, can never pay or deliver an order twice. A payment that reaches an
expired invoice (docs/blockpn.md, Late payments) is recorded too, and once the order is
paid in full it is delivered after all or given back, as `[blockpn] late_payment` says.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlite_utils

from ..clock import iso, iso_ago, now_iso, utcnow
from ..config import Config
from ..currencies import MAX_AMOUNT_CENTS
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..providers.blockpn import BlockPN, Invoice, ProviderError
from . import coupons, fulfilment, inventory, orders, refunds
from .links import Links

# A `pending` order older than this was cut off between its two checkout transactions.
STALE_PENDING_MINUTES = 5
log = logging.getLogger("sellix_lite.payments")


class InvoiceMismatch(Unprocessable):
    """A provider report that names no order of the mode, or disagrees with its order."""


class LivePaymentsDisabled(Unprocessable):
    def __init__(self):
        super().__init__("live payments are not configured on this shop: set [blockpn] "
                         "base_url, api_key and ipn_secret",
                         errors={"payment": "live payments are not configured"})


def provider_for(db: sqlite_utils.Database, mode: str, config: Config) -> BlockPN:
    """The in-process sandbox in test mode, the HTTP client in live mode."""
    if mode == "test":
        from ..providers.sandbox import SandboxLedger

        return SandboxLedger(db, payout_confirm_seconds=config.sandbox.payout_confirm_seconds)
    if not config.blockpn.base_url:
        raise LivePaymentsDisabled()
    from ..providers.http_client import BlockPNClient

    blockpn = config.blockpn
    return BlockPNClient(blockpn.base_url, blockpn.api_key, blockpn.ipn_secret,
                         timeout=blockpn.timeout_seconds)


def apply_invoice(db: sqlite_utils.Database, invoice: Invoice, mode: str, config: Config,
                  links: Links) -> dict:
    """Bring the invoice's order of `mode` up to date with it; returns the order row.

    Every payment is recorded, in whatever status the order is, except one that reaches an
    expired invoice after `[blockpn] late_payment_hours`. InvoiceMismatch, changing nothing,
    when no order of `mode` has the invoice or the report disagrees with the order: the two
    modes' providers number invoices alike.
    """
    with write_txn(db):
        order = query_one(db, "SELECT * FROM orders WHERE invoice_id = ? AND mode = ?",
                          (invoice.id, mode))
        _check_report(order, invoice, mode)
        if order["status"] == "awaiting_payment":
            return _apply_to_open_order(db, order, invoice, config, links)
        if invoice.paid_cents <= order["paid_cents"] or order["status"] == "pending":
            return order  # nothing new: a repeated report changes nothing
        if order["paid_at"] is not None:  # more after the order was paid: an excess
            return orders.save(db, order, _received(invoice), links)
        return _late_payment(db, order, invoice, config, links)


def _apply_to_open_order(db, order: dict, invoice: Invoice, config: Config,
                         links: Links) -> dict:
    if invoice.paid_cents > order["paid_cents"]:
        order = orders.save(db, order, _received(invoice), links)
    if _paid_in_full(order):
        return _mark_paid(db, order, config, links)
    if invoice.status == "expired":
        reason = "the invoice expired unpaid"
        if order["paid_cents"]:
            reason = f"the invoice expired after a partial payment of {order['paid_cents']}"
        # When it expired (early, when made to) starts the window for late payments.
        order = orders.save(db, order, {"expires_at": invoice.expires_at}, links)
        return orders.fail(db, order, reason, links)
    return order


def _received(invoice: Invoice) -> dict:
    """The order's columns recording what the invoice received."""
    return {"paid_cents": invoice.paid_cents, "asset_paid": invoice.asset_paid,
            "tx_hash": invoice.tx_hash, "updated_at": now_iso()}


def _paid_in_full(order: dict) -> bool:
    """Whether what was received, less what went back, covers the order."""
    return order["paid_cents"] - order["refunded_cents"] >= order["total_cents"]


def _late_payment(db, order: dict, invoice: Invoice, config: Config, links: Links) -> dict:
    """A payment reached the invoice of an order that failed unpaid (it expired): record it
    within the late window; once paid in full, deliver it again or give the money back."""
    window = config.blockpn.late_payment_hours
    if not order["expires_at"] or order["expires_at"] < iso_ago(hours=window):
        log.warning("ignored a payment to invoice %s of order %s: it came more than %s hours "
                    "after the invoice expired", invoice.id, order["id"], window)
        return order
    order = orders.save(db, order, {**_received(invoice), "paid_late": 1}, links)
    if not _paid_in_full(order):
        return order
    if config.blockpn.late_payment == "deliver" and _reserve_again(db, order, config):
        return _mark_paid(db, order, config, links)
    refunds.reserve(db, order, orders.refundable_cents(order), "other", "late payment")
    return query_one(db, "SELECT * FROM orders WHERE id = ?", (order["id"],))


def _reserve_again(db, order: dict, config: Config) -> bool:
    """Take the failed order's stock (and coupon redemption) back, or change nothing when
    either is gone."""
    product = query_one(db, "SELECT * FROM products WHERE id = ?", (order["product_id"],))
    if product is None:
        return False
    db.execute("SAVEPOINT reserve_again")
    try:
        inventory.reserve(db, order["id"], product, order["qty"],
                          owner_email=config.shop.owner_email)
        coupons.redeem_again(db, order)
    except Unprocessable:
        db.execute("ROLLBACK TO reserve_again")
        return False
    finally:
        db.execute("RELEASE reserve_again")
    return True


def _check_report(order: dict | None, invoice: Invoice, mode: str) -> None:
    if order is None:
        raise InvoiceMismatch(f"no {mode} order has invoice {invoice.id}",
                              errors={"invoice": "names no order of this shop"})
    wrong = {}
    if invoice.reference != order["id"]:
        wrong["reference"] = f"is {invoice.reference!r}, the order is {order['id']}"
    if invoice.currency != order["currency"]:
        wrong["currency"] = f"is {invoice.currency!r}, the order's is {order['currency']}"
    if not 0 <= invoice.paid_cents <= MAX_AMOUNT_CENTS:
        wrong["paid_cents"] = f"must be from 0 to {MAX_AMOUNT_CENTS}"
    if wrong:
        raise InvoiceMismatch(f"the report of invoice {invoice.id} does not match order "
                              f"{order['id']}: {', '.join(wrong)} differ", errors=wrong)


def _mark_paid(db, order: dict, config: Config, links: Links) -> dict:
    """Paid in full: record it and deliver what can be delivered right now."""
    now = now_iso()
    order = orders.save(db, order, {"status": "paid", "paid_at": now, "failure_reason": None,
                                    "updated_at": now}, links)
    return fulfilment.start(db, order, config, links)  # emits order.paid once delivered


def poll_open_invoices(db: sqlite_utils.Database, config: Config, links: Links,
                       limit: int = 100) -> int:
    """Ask the provider about orders awaiting payment (a lost callback only delays them) and
    about orders that expired unpaid within the late window (a late payment may reach them)."""
    seen = 0
    late_since = iso_ago(hours=config.blockpn.late_payment_hours)
    for order in list(db.query(
            f"SELECT * FROM orders WHERE {_POLLED} ORDER BY updated_at LIMIT ?",
            (late_since, limit))):
        try:
            provider = provider_for(db, order["mode"], config)
            invoice = provider.get_invoice(order["invoice_id"])
            apply_invoice(db, invoice, order["mode"], config, links)
        except (ProviderError, LivePaymentsDisabled) as exc:
            warn_provider_failure(f"order {order['id']}", exc)
            continue
        except InvoiceMismatch as exc:
            log.warning("ignored the provider's answer for order %s: %s", order["id"],
                        exc.detail)
        with write_txn(db):  # rotate: the next poll starts with the others
            db.execute(f"UPDATE orders SET updated_at = ? WHERE id = ? AND {_POLLED}",
                       (now_iso(), order["id"], late_since))
        seen += 1
    return seen


# The orders the poll asks about; `?` is the start of the late window.
_POLLED = ("(status = 'awaiting_payment' OR (status = 'failed' AND paid_at IS NULL AND "
           "invoice_id IS NOT NULL AND expires_at >= ?))")


def fail_stale_pending(db: sqlite_utils.Database, links: Links) -> int:
    """Fail orders cut off between the two checkout transactions, releasing their stock."""
    stale = list(db.query("SELECT * FROM orders WHERE status = 'pending' AND created_at < ?",
                          (iso_ago(minutes=STALE_PENDING_MINUTES),)))
    for order in stale:
        with write_txn(db):
            current = query_one(db, "SELECT * FROM orders WHERE id = ?", (order["id"],))
            if current["status"] == "pending":
                orders.fail(db, current, "checkout was interrupted", links)
    return len(stale)


def next_provider_check(mode: str, config: Config, live_seconds: int) -> str:
    """When to ask the provider about a refund or payout again: every tick in test mode (the
    sandbox moves on its own clock), every `live_seconds` with a real provider."""
    seconds = config.jobs.tick_seconds if mode == "test" else live_seconds
    return iso(utcnow() + timedelta(seconds=seconds))


def warn_provider_failure(subject: str, reason: Exception) -> None:
    """Log what a job's call to BlockPN met, in words the merchant can act on; the job asks
    about `subject` again at its next run."""
    if isinstance(reason, ProviderError):
        log.warning("%s; %s is asked about again later (%s)", reason.diagnosis, subject, reason)


def ask_again_later(db: sqlite_utils.Database, table: str, row: dict, config: Config,
                    live_seconds: int, reason: Exception) -> None:
    """Put off the next provider check of a row of `table`, after `reason` kept the
    provider from answering."""
    warn_provider_failure(f"{table.removesuffix('s')} {row['id']}", reason)
    with write_txn(db):
        db.execute(f"UPDATE {table} SET next_check_at = ? WHERE id = ?",
                   (next_provider_check(row["mode"], config, live_seconds), row["id"]))
