"""Subscriptions: each one's period, and cancelling it at its period end or now."""

from __future__ import annotations

from flask import flash, request, url_for

from ...services import subscriptions
from . import bp, page, query_of, scope, submit


@bp.get("/subscriptions")
def subscriptions_page():
    """Subscriptions, newest first, each with its cancel buttons while it is active."""
    listing = subscriptions.list_page(scope(), query_of(subscriptions.LIST))
    return page("subscriptions.html", listing=listing)


@bp.post("/subscriptions/<subscription_id>/cancel")
def cancel_subscription(subscription_id):
    """The API's cancel: `at_period_end` is `now` or not."""
    def action():
        at_period_end = request.form.get("when") != "now"
        subscriptions.cancel(scope(), subscription_id, {"at_period_end": at_period_end})
        flash(f"Subscription {subscription_id} "
              f"{'ends at its period end' if at_period_end else 'is canceled'}.", "info")
    return submit(action, url_for("dashboard.subscriptions_page"))
