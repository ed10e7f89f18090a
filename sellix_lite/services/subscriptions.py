"""Subscriptions (docs/api.md): a subscription product's order starts a period; before
it ends, a renewal order is opened and its checkout link emailed; paying it extends the
period, and a period that ends unpaid expires the subscription.

Cancelling at the period end stops the renewals: no renewal is opened, one already open and
unpaid is failed (its stock released), and the subscription expires at the end as an unpaid
one does. Cancelling now ends it at once (`canceled`), and its licenses expire with it.
Paying a renewal after all (a late payment the shop delivers) resumes the subscription.

The renewal order is an ordinary order (one checkout path) that names its subscription; its
invoice stays open until the period ends.
"""

from __future__ import annotations

import calendar
from datetime import datetime, timedelta

import sqlite_utils

from .. import db as storage
from ..clock import iso, now_iso, utcnow
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..ids import new_id
from ..validation import Boolean, Schema
from . import events, licenses, orders
from .links import Links
from .scope import Scope, list_query

LIST = list_query()
CANCEL = Schema(at_period_end=Boolean(
    default=True, description="`true`: no renewal is opened and the subscription expires at "
                              "its period end; `false`: it is canceled now and its licenses "
                              "expire."))
# Why a subscription can't be cancelled, by its status.
_ENDED = {"canceled": "the subscription is already canceled",
          "expired": "the subscription has expired"}


def render(row: dict) -> dict:
    """The public subscription object."""
    return {"id": row["id"], "mode": row["mode"], "status": row["status"],
            "interval": row["interval"], "current_period_end": row["current_period_end"],
            "product_id": row["product_id"], "customer_id": row["customer_id"],
            "customer_email": row["customer_email"],
            "renewal_order_id": row["renewal_order_id"],
            "cancel_at_period_end": bool(row["cancel_at_period_end"]),
            "canceled_at": row["canceled_at"], "created_at": row["created_at"],
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
        subscription_id = current["id"]
        db.execute("UPDATE subscriptions SET status = 'active', current_period_end = ?, "
                   "renewal_order_id = NULL, cancel_at_period_end = 0, canceled_at = NULL, "
                   "updated_at = ? WHERE id = ?",
                   (iso(add_interval(start, current["interval"])), iso(now), subscription_id))
    period_end = query_one(db, "SELECT current_period_end FROM subscriptions WHERE id = ?",
                           (subscription_id,))["current_period_end"]
    licenses.expire_with_subscription(db, subscription_id, period_end)
    return query_one(db, "SELECT * FROM orders WHERE id = ?", (order["id"],))


def cancel(scope: Scope, subscription_id: str, body: dict) -> dict:
    """Cancel at the period end (the default) or now, with `subscription.canceled`.

    Cancelling at the period end again changes nothing and emits nothing; a canceled or
    expired subscription can't be cancelled (422).
    """
    at_period_end = CANCEL.validate(body)["at_period_end"]
    with write_txn(scope.db):
        row = scope.require("subscriptions", subscription_id, "subscription")
        if row["status"] in _ENDED:
            raise Unprocessable(_ENDED[row["status"]], errors={"status": _ENDED[row["status"]]})
        if at_period_end and row["cancel_at_period_end"]:
            return render(row)
        _fail_open_renewal(scope, row)
        changes = {"cancel_at_period_end": 1} if at_period_end \
            else {"cancel_at_period_end": 0, "status": "canceled"}
        storage.update(scope.db, "subscriptions", row["id"], {
            **changes, "canceled_at": now_iso(), "renewal_order_id": None,
            "updated_at": now_iso()})
        if not at_period_end:
            licenses.expire_with_subscription(scope.db, row["id"], now_iso())
        row = query_one(scope.db, "SELECT * FROM subscriptions WHERE id = ?", (row["id"],))
        events.emit(scope.db, row["mode"], "subscription.canceled", render(row))
    return render(row)


def _fail_open_renewal(scope: Scope, row: dict) -> None:
    if row["renewal_order_id"] is not None:
        fail_renewal(scope.db, row["renewal_order_id"], scope.links)


def fail_renewal(db: sqlite_utils.Database, order_id: str, links: Links) -> None:
    """No more charges: a renewal still awaiting payment fails, releasing its stock (inside
    the caller's transaction)."""
    order = query_one(db, "SELECT * FROM orders WHERE id = ?", (order_id,))
    if order["status"] in ("pending", "awaiting_payment"):
        orders.fail(db, order, "the subscription was canceled", links)


def renews(row: dict) -> bool:
    """Whether the subscription still wants its next period."""
    return row["status"] == "active" and not row["cancel_at_period_end"]


def due_for_renewal(db: sqlite_utils.Database, notice_days: int) -> list[dict]:
    """Active subscriptions ending within the notice period with no renewal opened yet."""
    horizon = iso(utcnow() + timedelta(days=notice_days))
    return list(db.query("SELECT * FROM subscriptions WHERE status = 'active' AND "
                         "cancel_at_period_end = 0 AND "
                         "renewal_order_id IS NULL AND current_period_end <= ? "
                         "AND current_period_end > ?", (horizon, now_iso())))


def expire_ended(db: sqlite_utils.Database) -> int:
    """Subscriptions whose period ended without a paid renewal expire."""
    with write_txn(db):
        return db.execute("UPDATE subscriptions SET status = 'expired', updated_at = ? "
                          "WHERE status = 'active' AND current_period_end <= ?",
                          (now_iso(), now_iso())).rowcount
