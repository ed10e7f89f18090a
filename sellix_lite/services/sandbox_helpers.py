"""Test helpers (docs/api.md, Test helpers): drive the sandbox as a buyer or the chain would.

They act on the sandbox's ledger and then take exactly the path a real provider report
takes (`payments.apply_invoice`), so transitions, events and emails are the real ones.
Test mode only: in live mode they do not exist (404).
"""

from __future__ import annotations

from ..currencies import MAX_AMOUNT_CENTS
from ..errors import NotFound, Unprocessable
from ..validation import Integer, Schema, String
from . import orders, payments, payouts
from .scope import Scope

FAIL_PAYOUT = Schema(reason=String(min_length=1, max_length=200, default="rejected by the "
                                  "network (test helper)", description="Why it failed."))
PAY = Schema(amount_cents=Integer(minimum=1, maximum=MAX_AMOUNT_CENTS,
                                  description="Pay this much (less than what is due pays "
                                              "in part); default: everything still due."))


def pay_order(scope: Scope, order_id: str, body: dict) -> dict:
    """Pay a test order's invoice, in full or in part; paying an order that expired unpaid
    is a late payment."""
    _require_test_mode(scope)
    params = PAY.validate(body)
    order = scope.require("orders", order_id, "order")
    if order["status"] != "awaiting_payment" and not _expired_unpaid(order):
        raise Unprocessable(errors={"order": f"is {order['status']}, not awaiting payment"})
    due = order["total_cents"] - (order["paid_cents"] - order["refunded_cents"])
    amount = params.get("amount_cents", max(due, 1))
    invoice = _sandbox(scope).pay(order["invoice_id"], amount)
    payments.apply_invoice(scope.db, invoice, "test", scope.config, scope.links)
    return orders.get(scope, order_id)


def _expired_unpaid(order: dict) -> bool:
    return order["status"] == "failed" and order["paid_at"] is None \
        and order["invoice_id"] is not None


def expire_order(scope: Scope, order_id: str) -> dict:
    """Let a test order's invoice run out now."""
    order = _awaiting_payment(scope, order_id)
    invoice = _sandbox(scope).expire(order["invoice_id"])
    payments.apply_invoice(scope.db, invoice, "test", scope.config, scope.links)
    return orders.get(scope, order_id)


def _require_test_mode(scope: Scope) -> None:
    if scope.mode != "test":
        raise NotFound("test helpers exist in test mode only")


def _awaiting_payment(scope: Scope, order_id: str) -> dict:
    _require_test_mode(scope)
    order = scope.require("orders", order_id, "order")
    if order["status"] != "awaiting_payment":
        raise Unprocessable(errors={"order": f"is {order['status']}, not awaiting payment"})
    return order


def _sandbox(scope: Scope):
    return payments.provider_for(scope.db, "test", scope.config)


def fail_payout(scope: Scope, payout_id: str, body: dict) -> dict:
    """Fail a test payout that is not final yet, as a rejected transaction would."""
    _require_test_mode(scope)
    reason = FAIL_PAYOUT.validate(body)["reason"]
    payout = scope.require("payouts", payout_id, "payout")
    if payout["status"] in ("confirmed", "failed"):
        raise Unprocessable(errors={"payout": f"is already {payout['status']}"})
    config = scope.config
    if payout["provider_payout_id"] is None:  # not sent yet: send it the way the job does
        report = payouts.ask_provider(scope.db, payout, config)
        payout = payouts.settle(scope.db, payout_id, report, config)
    sandbox = _sandbox(scope)
    try:
        report = sandbox.fail_payout(payout["provider_payout_id"], reason)
    except ValueError:  # the sandbox confirmed it after the job last looked
        payouts.settle(scope.db, payout_id, sandbox.get_payout(payout["provider_payout_id"]),
                       config)
        raise Unprocessable(errors={"payout": "is already confirmed"}) from None
    payouts.settle(scope.db, payout_id, report, config)
    return payouts.get(scope, payout_id)
