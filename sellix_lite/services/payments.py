"""Payments: applying what BlockPN reports about an invoice to its order.

An IPN callback, the polling job and the sandbox test helpers all end in `apply_invoice`,
which compares the invoice with the order inside one write transaction. Applying the same
report twice changes nothing the second time, so a callback and a poll that race, or a
callback sent twice, can never pay or deliver an order twice.
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
from . import fulfilment, orders
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

    InvoiceMismatch, changing nothing, when no order of `mode` has the invoice or the
    report disagrees with the order: the two modes' providers number invoices alike.
    """
    with write_txn(db):
        order = query_one(db, "SELECT * FROM orders WHERE invoice_id = ? AND mode = ?",
                          (invoice.id, mode))
        _check_report(order, invoice, mode)
        if order["status"] != "awaiting_payment":
            return order  # already settled: a repeated report changes nothing
        if invoice.paid_cents > order["paid_cents"]:
            order = orders.save(db, order, {
                "paid_cents": invoice.paid_cents, "asset_paid": invoice.asset_paid,
                "tx_hash": invoice.tx_hash, "updated_at": now_iso()}, links)
        if order["paid_cents"] >= order["total_cents"]:
            return _mark_paid(db, order, config, links)
        if invoice.status == "expired":
            reason = "the invoice expired unpaid"
            if order["paid_cents"]:
                reason = f"the invoice expired after a partial payment of {order['paid_cents']}"
            return orders.fail(db, order, reason, links)
        return order


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
    order = orders.save(db, order, {"status": "paid", "paid_at": now, "updated_at": now},
                        links)
    return fulfilment.start(db, order, config, links)  # emits order.paid once delivered


def poll_open_invoices(db: sqlite_utils.Database, config: Config, links: Links,
                       limit: int = 100) -> int:
    """Ask the provider about orders awaiting payment (a lost callback only delays them)."""
    seen = 0
    for order in list(db.query(
            "SELECT * FROM orders WHERE status = 'awaiting_payment' ORDER BY updated_at "
            "LIMIT ?", (limit,))):
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
            db.execute("UPDATE orders SET updated_at = ? WHERE id = ? AND status = "
                       "'awaiting_payment'", (now_iso(), order["id"]))
        seen += 1
    return seen


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
