"""Figures for the dashboard's overview."""

from __future__ import annotations

from ..clock import utcnow
from ..db import query_one
from . import payouts, webhooks
from .scope import Scope


def overview(scope: Scope, currency: str) -> dict:
    """Today's orders and revenue, the balance, and the webhook endpoints in trouble."""
    today = utcnow().strftime("%Y-%m-%dT00:00:00Z")
    orders = query_one(scope.db, "SELECT count(*) AS n FROM orders WHERE mode = ? AND "
                                 "created_at >= ?", (scope.mode, today))["n"]
    revenue = query_one(scope.db, "SELECT coalesce(sum(paid_cents), 0) AS v FROM orders WHERE "
                                  "mode = ? AND currency = ? AND paid_at >= ?",
                        (scope.mode, currency, today))["v"]
    failing = [webhooks.render(row) for row in scope.db.query(
        "SELECT * FROM webhook_endpoints WHERE mode = ? AND deleted_at IS NULL AND "
        "(status = 'disabled' OR failing_since IS NOT NULL) ORDER BY id DESC", (scope.mode,))]
    return {"orders_today": orders, "revenue_today_cents": revenue, "currency": currency,
            "balance": payouts.balance(scope.db, scope.mode, currency),
            "failing_webhooks": failing}
