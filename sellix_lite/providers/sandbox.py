"""The BlockPN sandbox: invoices, payouts and refunds kept in SQLite, with no chain behind.

Test mode uses it in-process over the shop's own database (the `sandbox_*` tables); the
`blockpn-sim` simulator serves the same ledger over HTTP from a file of its own.

Nothing runs in the background: objects move on when they are read, one step per read, so
whoever polls sees every status.

- Invoice: `pending` until `pay` has brought in the full amount (`paid`; more is an
  overpayment). A pending invoice read at or after `expires_at` is `expired`, and stored so;
  a paid invoice never expires. Paying an expired invoice is a late payment: it counts in
  `paid_cents` and the invoice stays `expired`.
- Payout: `queued` when sent; the next read makes it `broadcast` (with a transaction hash);
  a read `payout_confirm_seconds` or more after it was queued makes it `confirmed`.
  `fail_payout` fails it, as a chain would.
- Refund: `processing` when sent; the next read makes it `succeeded` with `destination_tx`.

A repeated `reference` returns the object made the first time; the other arguments of the
repeat are not looked at. Invalid requests raise `Refused` and unknown ids `UnknownObject`,
both ProviderErrors like the live client's; a simulation step the object's state forbids
(expiring a paid invoice) raises ValueError. The ledger opens its own write transactions,
so call it outside yours, as the live client must be.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import timedelta

import sqlite_utils

from ..chains import (
    MEMO_CHAINS,
    asset_amount,
    asset_share,
    sandbox_address,
    sandbox_tx_hash,
    supports,
    validate_address,
)
from ..clock import iso, utcnow
from ..currencies import is_currency
from ..db import query_one, write_txn
from ..ids import new_id
from .blockpn import InvalidCallback, Invoice, Payout, ProviderError, Refund
from .http_client import SIGNATURE_HEADER, callback_body, sign_callback

INVOICES, PAYOUTS, REFUNDS = "sandbox_invoices", "sandbox_payouts", "sandbox_refunds"
_NOUNS = {INVOICES: "invoice", PAYOUTS: "payout", REFUNDS: "refund"}


class UnknownObject(ProviderError):
    """No invoice, payout or refund has that id."""

    kind = "refused"


class Refused(ProviderError):
    """The request is invalid; repeating it won't help."""

    kind = "refused"


class SandboxLedger:
    """The BlockPN protocol over the `sandbox_*` tables, plus simulation controls."""

    def __init__(self, db: sqlite_utils.Database, *, payout_confirm_seconds: int,
                 ipn_secret: str = ""):
        self.db = db
        self.payout_confirm_seconds = payout_confirm_seconds
        self.ipn_secret = ipn_secret

    # The provider protocol (blockpn.BlockPN)

    def open_invoice(self, *, reference: str, amount_cents: int, currency: str, chain: str,
                     asset: str, ttl_minutes: int, callback_url: str) -> Invoice:
        """Open an invoice paid to a sandbox address (a known reference returns it)."""
        _check_money(amount_cents, currency)
        _check_pair(chain, asset)
        _check(_is_count(ttl_minutes), "ttl_minutes must be a positive integer")
        with write_txn(self.db):
            found = self._by_reference(INVOICES, reference)
            if found is None:
                found, now = new_id("inv"), utcnow()
                _insert(self.db, INVOICES, {
                    "id": found, "reference": reference, "chain": chain, "asset": asset,
                    "address": sandbox_address(chain, found), "amount_cents": amount_cents,
                    "currency": currency,
                    "asset_amount": asset_amount(amount_cents, currency, asset),
                    "asset_paid": asset_share("0", 0, 1, asset),  # zero, written like amounts
                    "status": "pending", "callback_url": callback_url or None,
                    "expires_at": iso(now + timedelta(minutes=ttl_minutes)),
                    "created_at": iso(now), "updated_at": iso(now)})
        return self.get_invoice(found)

    def get_invoice(self, invoice_id: str) -> Invoice:
        """The invoice now (a pending one past its expiry becomes expired)."""
        return _build(Invoice, self._current(INVOICES, invoice_id, self._invoice_step))

    def send_payout(self, *, reference: str, chain: str, asset: str, amount_cents: int,
                    currency: str, address: str, memo: str | None) -> Payout:
        """Queue a payout (a known reference returns it)."""
        _check_money(amount_cents, currency)
        _check_pair(chain, asset)
        problem = validate_address(chain, address)
        _check(problem is None, f"address {problem}")
        _check(not memo or chain in MEMO_CHAINS, f"payouts on {chain} take no memo")
        with write_txn(self.db):
            found = self._by_reference(PAYOUTS, reference)
            if found is None:
                found = new_id("bpo")
                _insert(self.db, PAYOUTS, {
                    "id": found, "reference": reference, "chain": chain, "asset": asset,
                    "amount_cents": amount_cents, "currency": currency, "address": address,
                    "memo": memo or None, "status": "queued", "created_at": self._now()})
        return _build(Payout, self._row(PAYOUTS, found))

    def get_payout(self, payout_id: str) -> Payout:
        """The payout now, one step further along if one is due."""
        return _build(Payout, self._current(PAYOUTS, payout_id, self._payout_step))

    def send_refund(self, *, reference: str, invoice_id: str, amount_cents: int,
                    currency: str) -> Refund:
        """Refund part or all of what an invoice received (a known reference returns it)."""
        _check_money(amount_cents, currency)
        with write_txn(self.db):
            found = self._by_reference(REFUNDS, reference)
            if found is None:
                self._check_refundable(invoice_id, amount_cents, currency)
                found, now = new_id("brf"), self._now()
                _insert(self.db, REFUNDS, {
                    "id": found, "reference": reference, "invoice_id": invoice_id,
                    "amount_cents": amount_cents, "currency": currency,
                    "status": "processing", "created_at": now, "updated_at": now})
        return _build(Refund, self._row(REFUNDS, found))

    def get_refund(self, refund_id: str) -> Refund:
        """The refund now: it succeeds on the first read after it was sent."""
        return _build(Refund, self._current(REFUNDS, refund_id, self._refund_step))

    def verify_callback(self, body: bytes, headers: Mapping[str, str]) -> Invoice:
        """The in-process sandbox sends no callbacks, so none can be genuine."""
        raise InvalidCallback("the in-process sandbox sends no callbacks")

    # Simulation controls (test helpers and the simulator's /sim endpoints)

    def pay(self, invoice_id: str, amount_cents: int) -> Invoice:
        """Receive a payment of `amount_cents` into the invoice, with a new transaction; an
        expired invoice takes it too (a late payment) and stays expired."""
        if not _is_count(amount_cents):
            raise ValueError("amount_cents must be a positive integer")
        with write_txn(self.db):
            row = self._row(INVOICES, invoice_id)
            expired = row["status"] == "expired" or self._invoice_step(row) is not None
            paid = row["paid_cents"] + amount_cents
            changes = {
                "paid_cents": paid,
                "asset_paid": asset_share(row["asset_amount"], paid, row["amount_cents"],
                                          row["asset"]),
                # The running total is unique per payment, so each gets its own hash.
                "tx_hash": sandbox_tx_hash(row["chain"], f"{invoice_id}:{paid}"),
                "status": "expired" if expired
                else "paid" if paid >= row["amount_cents"] else "pending",
                "updated_at": self._now()}
            _update(self.db, INVOICES, invoice_id, changes)
        return _build(Invoice, {**row, **changes})

    def expire(self, invoice_id: str) -> Invoice:
        """Let an unpaid (or partly paid) invoice run out now."""
        with write_txn(self.db):
            row = self._row(INVOICES, invoice_id)
            if row["status"] == "paid":
                raise ValueError(f"invoice {invoice_id} is paid; it can't expire")
            if row["status"] == "pending":
                now = self._now()
                changes = {"status": "expired", "expires_at": min(row["expires_at"], now),
                           "updated_at": now}
                _update(self.db, INVOICES, invoice_id, changes)
                row.update(changes)
        return _build(Invoice, row)

    def fail_payout(self, payout_id: str, reason: str) -> Payout:
        """Fail a payout that is not confirmed yet, as a rejected transaction would."""
        if not isinstance(reason, str) or not reason:
            raise ValueError("a failure reason is required")
        with write_txn(self.db):
            row = self._row(PAYOUTS, payout_id)
            if row["status"] == "confirmed":
                raise ValueError(f"payout {payout_id} is confirmed; it can't fail")
            if row["status"] != "failed":
                changes = {"status": "failed", "failure_reason": reason}
                _update(self.db, PAYOUTS, payout_id, changes)
                row.update(changes)
        return _build(Payout, row)

    def notification(self, invoice_id: str) -> tuple[str, bytes, dict] | None:
        """(callback URL, body, headers) of a signed IPN reporting the invoice now, or None
        when it has no callback URL."""
        invoice = self.get_invoice(invoice_id)
        url = self._row(INVOICES, invoice_id)["callback_url"]
        if not url:
            return None
        body = callback_body(invoice)
        signature = sign_callback(self.ipn_secret, body, int(utcnow().timestamp()))
        return url, body, {"Content-Type": "application/json", SIGNATURE_HEADER: signature}

    def recent_invoices(self, limit: int = 100) -> list[Invoice]:
        """The newest invoices, expired ones marked so."""
        now = self._now()
        with write_txn(self.db):
            self.db.execute(f"UPDATE {INVOICES} SET status = 'expired', updated_at = ? "
                            "WHERE status = 'pending' AND expires_at <= ?", (now, now))
        rows = self.db.query(f"SELECT * FROM {INVOICES} ORDER BY id DESC LIMIT ?", (limit,))
        return [_build(Invoice, row) for row in rows]

    # Steps objects take when read: the changes due now, or None.

    def _invoice_step(self, row: dict) -> dict | None:
        now = self._now()
        if row["status"] == "pending" and row["expires_at"] <= now:
            return {"status": "expired", "updated_at": now}
        return None

    def _payout_step(self, row: dict) -> dict | None:
        if row["status"] == "queued":
            return {"status": "broadcast", "broadcast_at": self._now(),
                    "tx_hash": sandbox_tx_hash(row["chain"], row["id"])}
        confirmable = iso(utcnow() - timedelta(seconds=self.payout_confirm_seconds))
        if row["status"] == "broadcast" and row["created_at"] <= confirmable:
            return {"status": "confirmed", "confirmed_at": self._now()}
        return None

    def _refund_step(self, row: dict) -> dict | None:
        if row["status"] != "processing":
            return None
        chain = self._row(INVOICES, row["invoice_id"])["chain"]
        return {"status": "succeeded", "updated_at": self._now(),
                "destination_tx": sandbox_tx_hash(chain, row["id"])}

    def _current(self, table: str, object_id: str, step) -> dict:
        """The row after the step due now, if any, has been taken and stored."""
        row = self._row(table, object_id)
        if step(row) is None:
            return row  # the common case reads without taking the write lock
        with write_txn(self.db):
            row = self._row(table, object_id)  # again, under the lock
            changes = step(row)
            if changes:
                _update(self.db, table, object_id, changes)
                row.update(changes)
        return row

    def _check_refundable(self, invoice_id: str, amount_cents: int, currency: str) -> None:
        invoice = query_one(self.db, f"SELECT * FROM {INVOICES} WHERE id = ?", (invoice_id,))
        _check(invoice is not None, f"there is no invoice {invoice_id}")
        _check(currency == invoice["currency"], f"the invoice is in {invoice['currency']}")
        refunded = query_one(
            self.db, f"SELECT COALESCE(SUM(amount_cents), 0) AS total FROM {REFUNDS} "
            "WHERE invoice_id = ? AND status != 'failed'", (invoice_id,))["total"]
        left = invoice["paid_cents"] - refunded
        _check(amount_cents <= left,
               f"amount_cents is more than the {left} received and not yet refunded")

    def _row(self, table: str, object_id: str) -> dict:
        row = query_one(self.db, f"SELECT * FROM {table} WHERE id = ?", (object_id,))
        if row is None:
            raise UnknownObject(f"no such {_NOUNS[table]}: {object_id}")
        return row

    def _by_reference(self, table: str, reference: str) -> str | None:
        _check(isinstance(reference, str) and reference, "reference is required")
        row = query_one(self.db, f"SELECT id FROM {table} WHERE reference = ?", (reference,))
        return row and row["id"]

    def _now(self) -> str:
        return iso(utcnow())


# In test mode the ledger is the provider itself.
SandboxProvider = SandboxLedger


def _check(condition, message: str) -> None:
    if not condition:
        raise Refused(message)


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _check_money(amount_cents, currency) -> None:
    _check(_is_count(amount_cents), "amount_cents must be a positive integer")
    _check(isinstance(currency, str) and is_currency(currency),
           "currency must be an ISO 4217 code")


def _check_pair(chain: str, asset: str) -> None:
    _check(supports(chain, asset), f"{asset} on {chain} is not supported")


def _build(cls, row: dict):
    return cls(**{field.name: row[field.name] for field in dataclasses.fields(cls)})


def _insert(db: sqlite_utils.Database, table: str, row: dict) -> None:
    columns, marks = ", ".join(row), ", ".join("?" * len(row))
    db.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks})", list(row.values()))


def _update(db: sqlite_utils.Database, table: str, object_id: str, changes: dict) -> None:
    assignments = ", ".join(f"{column} = ?" for column in changes)
    db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?",
               [*changes.values(), object_id])
