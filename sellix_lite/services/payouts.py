"""Payouts and the balance (docs/api.md, Payouts and balance).

The balance of a mode is what its paid orders brought in, minus refunds that have not
failed, minus payouts that have not failed, in the shop's currency. A payout is checked
against it and recorded in one write transaction, so racing payouts can never overdraw it.
A job sends queued payouts to BlockPN, with the payout's id as the provider's reference (a
re-send after a crash or a timeout is the same payout), and follows each to `confirmed` or
`failed`; every change emits `payout.<status>` in its own transaction.
"""

from __future__ import annotations

import sqlite_utils

from .. import chains, db as storage
from ..clock import now_iso
from ..config import Config
from ..currencies import MAX_AMOUNT_CENTS
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..ids import new_id
from ..providers.blockpn import Payout, ProviderError
from ..validation import Enum, Integer, Schema, String
from . import events
from .payments import LivePaymentsDisabled, ask_again_later, next_provider_check, provider_for
from .scope import Scope, list_query

STATUSES = ("queued", "broadcast", "confirmed", "failed")
CREATE = Schema(
    chain=Enum(tuple(chains.CHAINS), required=True, description="Network to send on."),
    asset=String(required=True, min_length=1, max_length=10,
                 description="Asset symbol offered on that chain.", example="USDT"),
    amount_cents=Integer(required=True, minimum=1, maximum=MAX_AMOUNT_CENTS,
                         description="Amount in the shop currency's smallest unit; at "
                                     "most the available balance.",
                         example=25000),
    destination_address=String(required=True, min_length=1, max_length=200, strip=True,
                               description="Address in the chain's format.",
                               example="TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"),
    memo=String(min_length=1, max_length=100, nullable=True,
                description="Memo or tag, on chains that use one; null for none."),
)
LIST = list_query(status=Enum(STATUSES, description="Only payouts in this status."))


def render(row: dict) -> dict:
    """The public payout object."""
    return {key: row[key] for key in (
        "id", "mode", "status", "chain", "asset", "amount_cents", "currency",
        "destination_address", "memo", "tx_hash", "failure_reason", "created_at",
        "broadcast_at", "confirmed_at")}


def balance(db: sqlite_utils.Database, mode: str, currency: str) -> dict:
    """`{"available_cents", "pending_cents", "currency"}` of a mode.

    `pending_cents` is money already on its way out (refunds processing, payouts not yet
    confirmed); it is not part of `available_cents`.
    """
    # Everything received, also by orders that expired after a part or were paid late: it
    # is in the wallet until refunded.
    received = query_one(db, "SELECT coalesce(sum(paid_cents), 0) AS v FROM orders WHERE "
                             "mode = ? AND currency = ?",
                         (mode, currency))["v"]
    refunds = query_one(db, "SELECT coalesce(sum(r.amount_cents), 0) AS v, coalesce(sum("
                            "CASE WHEN r.status = 'processing' THEN r.amount_cents END), 0) AS p"
                            " FROM refunds r JOIN orders o ON o.id = r.order_id WHERE "
                            "r.mode = ? AND o.currency = ? AND r.status != 'failed'",
                        (mode, currency))
    paid_out = query_one(db, "SELECT coalesce(sum(amount_cents), 0) AS v, coalesce(sum("
                             "CASE WHEN status != 'confirmed' THEN amount_cents END), 0) AS p"
                             " FROM payouts WHERE mode = ? AND currency = ? AND "
                             "status != 'failed'", (mode, currency))
    return {"available_cents": received - refunds["v"] - paid_out["v"],
            "pending_cents": refunds["p"] + paid_out["p"], "currency": currency}


def create(scope: Scope, body: dict) -> dict:
    """Queue a payout of the available balance (with `payout.queued`)."""
    params = _validate(body)
    currency = scope.config.shop.currency
    with write_txn(scope.db):
        available = balance(scope.db, scope.mode, currency)["available_cents"]
        if params["amount_cents"] > available:
            raise Unprocessable(errors={"amount_cents": f"at most the available balance of "
                                                        f"{max(available, 0)}"})
        now = now_iso()
        row = {"id": new_id("po"), "mode": scope.mode, "status": "queued",
               "chain": params["chain"], "asset": params["asset"],
               "amount_cents": params["amount_cents"], "currency": currency,
               "destination_address": params["destination_address"],
               "memo": params.get("memo"), "provider_payout_id": None, "tx_hash": None,
               "failure_reason": None, "next_check_at": now, "created_at": now,
               "updated_at": now, "broadcast_at": None, "confirmed_at": None}
        storage.insert(scope.db, "payouts", row)
        events.emit(scope.db, scope.mode, "payout.queued", render(row))
    return render(row)


def _validate(body: dict) -> dict:
    params = CREATE.validate(body)
    chain, errors = params["chain"], {}
    if not chains.supports(chain, params["asset"]):
        errors["asset"] = f"must be one of {', '.join(chains.CHAINS[chain])} on {chain}"
    problem = chains.validate_address(chain, params["destination_address"])
    if problem:
        errors["destination_address"] = problem
    if params.get("memo") is not None and chain not in chains.MEMO_CHAINS:
        errors["memo"] = f"{chain} payouts take no memo"
    if errors:
        raise Unprocessable(errors=errors)
    return params


def get(scope: Scope, payout_id: str) -> dict:
    return render(scope.require("payouts", payout_id, "payout"))


def list_page(scope: Scope, query: dict) -> dict:
    """A page of payouts, newest first, optionally of one status."""
    if "status" in query:
        return scope.page("payouts", query, render, where="status = ?",
                          params=(query["status"],))
    return scope.page("payouts", query, render)


def process_due(db: sqlite_utils.Database, config: Config, limit: int = 20) -> int:
    """Send queued payouts and follow unfinished ones; returns how many were seen."""
    due = list(db.query("SELECT * FROM payouts WHERE status IN ('queued', 'broadcast') AND "
                        "next_check_at <= ? ORDER BY next_check_at LIMIT ?", (now_iso(), limit)))
    for payout in due:
        try:
            report = ask_provider(db, payout, config)
        except (ProviderError, LivePaymentsDisabled) as exc:
            ask_again_later(db, "payouts", payout, config, config.jobs.payout_poll_seconds, exc)
            continue
        settle(db, payout["id"], report, config)
    return len(due)


def ask_provider(db: sqlite_utils.Database, payout: dict, config: Config) -> Payout:
    """Send a payout not yet sent (idempotent on its id), or read one that was."""
    provider = provider_for(db, payout["mode"], config)
    if payout["provider_payout_id"] is None:
        return provider.send_payout(
            reference=payout["id"], chain=payout["chain"], asset=payout["asset"],
            amount_cents=payout["amount_cents"], currency=payout["currency"],
            address=payout["destination_address"], memo=payout["memo"])
    return provider.get_payout(payout["provider_payout_id"])


def settle(db: sqlite_utils.Database, payout_id: str, report: Payout, config: Config) -> dict:
    """Apply the provider's view of a payout, emitting an event per status it moved to."""
    with write_txn(db):
        payout = query_one(db, "SELECT * FROM payouts WHERE id = ?", (payout_id,))
        changes = {"provider_payout_id": report.id,
                   "next_check_at": _next_check(payout["mode"], config)}
        for status in _steps(payout["status"], report.status):
            changes.update(status=status, updated_at=now_iso())
            if status == "broadcast":
                changes.update(tx_hash=report.tx_hash,
                               broadcast_at=report.broadcast_at or now_iso())
            elif status == "confirmed":
                changes.update(tx_hash=report.tx_hash,
                               confirmed_at=report.confirmed_at or now_iso())
            elif status == "failed":
                changes.update(failure_reason=report.failure_reason or "failed at the provider")
            storage.update(db, "payouts", payout_id, changes)
            events.emit(db, payout["mode"], f"payout.{status}",
                        render({**payout, **changes}))
        storage.update(db, "payouts", payout_id, changes)
        return query_one(db, "SELECT * FROM payouts WHERE id = ?", (payout_id,))


def _steps(current: str, reported: str) -> list[str]:
    """The statuses between ours and the provider's, in order (none if it is not ahead)."""
    if current in ("confirmed", "failed") or reported == current:
        return []
    if reported == "failed":
        return ["failed"]
    order = ["queued", "broadcast", "confirmed"]
    return order[order.index(current) + 1: order.index(reported) + 1]


def _next_check(mode: str, config: Config) -> str:
    return next_provider_check(mode, config, config.jobs.payout_poll_seconds)
