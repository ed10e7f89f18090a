"""Orders (refund, resend, fulfil, replace a key), customers, payouts and the balance."""

from __future__ import annotations

from flask import flash, request, url_for

from ...services import (
    custom_fields,
    customers,
    fulfilment,
    key_replacements,
    licenses,
    orders,
    payouts,
    refunds,
)
from ..context import runtime
from ..html import money
from . import bp, page, query_of, scope, submit
from .catalog import to_cents
from .licensing import with_locks

LICENSES_SHOWN = 100  # on an order's or a buyer's page; the licenses page has them all


@bp.get("/orders")
def orders_page():
    """Orders, newest first, with the API's filters."""
    listing = orders.list_page(scope(), query_of(orders.LIST))
    return page("orders.html", listing=listing, statuses=orders.STATUSES,
                filters=request.args)


@bp.get("/orders/<order_id>")
def order_page(order_id):
    """One order with its payment, delivery, licenses and refunds."""
    order = orders.get(scope(), order_id)
    history = refunds.list_for_order(scope(), order_id, {"limit": 100})
    listed = _licenses({"order_id": order_id})["data"]
    shown = [licenses.get(scope(), lic["id"]) for lic in listed]  # with their instances
    return page("order.html", order=order, refunds=history["data"], reasons=refunds.REASONS,
                licenses=with_locks(shown), field_labels=custom_fields.labels(scope(), order))


@bp.post("/orders/<order_id>/refund")
def refund_order(order_id):
    def action():
        body = {k: request.form[k] for k in ("reason", "note") if request.form.get(k)}
        if request.form.get("amount", "").strip():
            body["amount_cents"] = to_cents(request.form["amount"],
                                            orders.get(scope(), order_id)["currency"])
        refund = refunds.create(scope(), order_id, body)
        currency = orders.get(scope(), order_id)["currency"]
        flash(f"Refund {refund['id']} of {money(refund['amount_cents'], currency)} is "
              f"processing.", "info")
    return submit(action, url_for("dashboard.order_page", order_id=order_id))


@bp.post("/orders/<order_id>/resend")
def resend_order(order_id):
    def action():
        sent = fulfilment.resend(scope(), order_id)
        flash(f"Delivery email queued for {sent['recipient']}.", "info")
    return submit(action, url_for("dashboard.order_page", order_id=order_id))


@bp.post("/orders/<order_id>/fulfill")
def fulfill_order(order_id):
    def action():
        body = {"tracking": request.form["tracking"]} if request.form.get("tracking") else {}
        fulfilment.fulfil(scope(), order_id, body)
        flash("Marked as shipped; the buyer is told.", "info")
    return submit(action, url_for("dashboard.order_page", order_id=order_id))


@bp.post("/orders/<order_id>/replace")
def replace_key(order_id):
    """Swap a delivered key for a fresh one from the pool (reason optional)."""
    def action():
        body = {k: request.form[k] for k in ("key", "reason") if request.form.get(k, "").strip()}
        key_replacements.replace(scope(), order_id, body)
        flash(f"Key {body['key']} is burned and its license disabled; the buyer is "
              f"emailed the new key.", "info")
    return submit(action, url_for("dashboard.order_page", order_id=order_id))


@bp.get("/customers")
def customers_page():
    """Customers, newest first."""
    return page("customers.html", listing=customers.list_page(scope(),
                                                               query_of(customers.LIST)))


@bp.get("/customers/<customer_id>")
def customer_page(customer_id):
    """One buyer's orders and licenses."""
    customer = customers.get(scope(), customer_id)
    listing = _licenses({"customer_email": customer["email"]})
    return page("customer.html", customer=customer,
                licenses={**listing, "data": with_locks(listing["data"])})


def _licenses(query: dict) -> dict:
    """The newest licenses of an order or a buyer, for their page."""
    return licenses.list_page(scope(), {**query, "limit": LICENSES_SHOWN})


@bp.get("/payouts")
def payouts_page():
    """The balance, the payouts, and the form to trigger one."""
    config = runtime().config
    return page("payouts.html", listing=payouts.list_page(scope(), query_of(payouts.LIST)),
                balance=payouts.balance(scope().db, scope().mode, config.shop.currency))


@bp.post("/payouts")
def create_payout():
    def action():
        currency = runtime().config.shop.currency
        body = {k: request.form[k].strip() for k in ("chain", "asset", "destination_address",
                                                     "memo") if request.form.get(k, "").strip()}
        body["amount_cents"] = to_cents(request.form.get("amount", ""), currency)
        payout = payouts.create(scope(), body)
        flash(f"Payout {payout['id']} of {money(payout['amount_cents'], currency)} is "
              f"queued.", "info")
    return submit(action, url_for("dashboard.payouts_page"))
