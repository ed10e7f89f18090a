"""/v1/payouts, /v1/balance and the payout test helper (docs/api.md, Payouts and balance)."""

from __future__ import annotations

from ...services import payouts, sandbox_helpers
from ..context import get_db, runtime
from . import bp
from .pipeline import operation, scope

TAG = "Payouts"


@operation(bp, "GET", "/payouts", summary="List payouts", tag=TAG, ability="payouts:read",
           query=payouts.LIST,
           response="list:Payout")
def list_payouts(query):
    """Returns payouts newest first, optionally of one status."""
    return payouts.list_page(scope(), query)


@operation(bp, "POST", "/payouts", summary="Trigger a payout", tag=TAG,
           ability="payouts:write", body=payouts.CREATE, status=201,
           idempotency_required=True,
           response="Payout")
def create_payout(query, body):
    """Queues a payout of the available balance to an address; a job sends it to BlockPN
    and follows it until it is confirmed or failed."""
    return payouts.create(scope(), body)


@operation(bp, "GET", "/payouts/<payout_id>", summary="Fetch a payout", tag=TAG,
           ability="payouts:read",
           response="Payout")
def get_payout(payout_id, query):
    """Returns one payout."""
    return payouts.get(scope(), payout_id)


@operation(bp, "GET", "/balance", summary="Fetch the balance", tag=TAG,
           ability="payouts:read",
           response="Balance")
def get_balance(query):
    """Returns what can be paid out now and what is on its way out, in the shop currency."""
    return payouts.balance(get_db(), scope().mode, runtime().config.shop.currency)


@operation(bp, "POST", "/test_helpers/payouts/<payout_id>/fail", summary="Fail a test payout",
           tag="Test helpers", ability="payouts:write", body=sandbox_helpers.FAIL_PAYOUT,
           response="Payout")
def fail_test_payout(payout_id, query, body):
    """Fails a test payout that is not final yet; its amount returns to the balance."""
    return sandbox_helpers.fail_payout(scope(), payout_id, body)
