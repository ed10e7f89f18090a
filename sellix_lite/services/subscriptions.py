"""Subscriptions (docs/api.md): a subscription product's order starts a period; before
it ends, a renewal order is opened and its checkout link emailed; paying it extends the
period, and a period that ends unpaid expires the subscription.

The renewal order is an ordinary order (one checkout path) that names its subscription; its
invoice stays open until the period ends.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

import sqlite_utils

from ..clock import iso, now_iso, utcnow
from ..db import query_one, write_txn
from ..ids import new_id
from .scope import Scope, list_query

LIST = list_query()


def render(row: dict) -> dict:
    """The public subscription object."""
    return {"id": row["id"], "mode": row["mode"], "status": row["status"],
            "interval": row["interval"], "current_period_end": row["current_period_end"],
            "product_id": row["product_id"], "customer_id": row["customer_id"],
            "customer_email": row["customer_email"],
            "renewal_order_id": row["renewal_order_id"], "created_at": row["created_at"],
            "updated_at": row["updated_at"]}


def list_page(scope: Scope, query: dict) -> dict:
    return scope.page("subscriptions", query, render)


def get(scope: Scope, subscription_id: str) -> dict:
    return render(scope.require("subscriptions", subscription_id, "subscription"))


def add_interval(moment: datetime, interval: str) -> datetime:
    """One month (same day, clamped to the month's end) or one year later."""
    months = 12 if interval == "year" else 1
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def on_delivered(db: sqlite_utils.Database, order: dict, config) -> dict:
    """Start the subscription of a first order, or extend it for a paid renewal.

    Runs inside the delivery's transaction; returns the order row (with its subscription).
    """
    product = query_one(db, "SELECT interval FROM products WHERE id = ?",
                        (order["product_id"],))
    now = utcnow()
    if order["subscription_id"] is None:
        subscription_id = new_id("sub")
        db.execute(
            "INSERT INTO subscriptions (id, mode, product_id, customer_id, customer_email,"
            " interval, status, chain, asset, current_period_end, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?, ?, ?, ?)",
            (subscription_id, order["mode"], order["product_id"], order["customer_id"],
             order["customer_email"], product["interval"], order["chain"], order["asset"],
             iso(add_interval(now, product["interval"])), iso(now), iso(now)))
        db.execute("UPDATE orders SET subscription_id = ? WHERE id = ?",
                   (subscription_id, order["id"]))
    else:
        current = query_one(db, "SELECT * FROM subscriptions WHERE id = ?",
                            (order["subscription_id"],))
        start = max(datetime.fromisoformat(current["current_period_end"].replace("Z", "+00:00")),
                    now)
        db.execute("UPDATE subscriptions SET status = 'active', current_period_end = ?, "
                   "renewal_order_id = NULL, updated_at = ? WHERE id = ?",
                   (iso(add_interval(start, current["interval"])), iso(now), current["id"]))
    return query_one(db, "SELECT * FROM orders WHERE id = ?", (order["id"],))


def due_for_renewal(db: sqlite_utils.Database, notice_days: int) -> list[dict]:
    """Active subscriptions ending within the notice period with no renewal opened yet."""
    horizon = iso(utcnow() + timedelta(days=notice_days))
    return list(db.query("SELECT * FROM subscriptions WHERE status = 'active' AND "
                         "renewal_order_id IS NULL AND current_period_end <= ? "
                         "AND current_period_end > ?", (horizon, now_iso())))


def expire_ended(db: sqlite_utils.Database) -> int:
    """Subscriptions whose period ended without a paid renewal expire."""
    with write_txn(db):
        return db.execute("UPDATE subscriptions SET status = 'expired', updated_at = ? "
                          "WHERE status = 'active' AND current_period_end <= ?",
                          (now_iso(), now_iso())).rowcount
