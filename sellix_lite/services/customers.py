"""Customers (docs/api.md, Customers): one per email and mode, created with their first order.

`orders_count` and `lifetime_cents` are computed from the orders themselves (what paid
orders brought in, overpayments included, net of refunds), so they can't disagree with them
and a refunded overpayment can't drive them below zero.
"""

from __future__ import annotations

import json

import sqlite_utils

from ..clock import now_iso
from ..db import query_one, write_txn
from ..ids import new_id
from ..validation import String
from . import events, metadata
from .scope import Scope, list_query

LIST = list_query(email=String(min_length=1, max_length=254,
                               description="Only the customer with this email."))
# Totals over paid orders, as columns next to each customer row.
_WITH_TOTALS = """*,
    (SELECT count(*) FROM orders o WHERE o.customer_id = customers.id
       AND o.paid_at IS NOT NULL) AS orders_count,
    (SELECT coalesce(sum(o.paid_cents - o.refunded_cents), 0) FROM orders o
       WHERE o.customer_id = customers.id AND o.paid_at IS NOT NULL) AS lifetime_cents"""


def render(row: dict) -> dict:
    """The public customer object."""
    return {"id": row["id"], "email": row["email"], "mode": row["mode"],
            "orders_count": row["orders_count"], "lifetime_cents": row["lifetime_cents"],
            "first_seen_at": row["first_seen_at"], "last_seen_at": row["last_seen_at"],
            "metadata": json.loads(row["metadata"])}


def record_order(db: sqlite_utils.Database, mode: str, email: str) -> str:
    """The customer id for `email`, created (with `customer.created`) on a first order.

    Runs inside the order's write transaction.
    """
    now = now_iso()
    row = query_one(db, "SELECT id FROM customers WHERE mode = ? AND email = ?", (mode, email))
    if row:
        db.execute("UPDATE customers SET last_seen_at = ? WHERE id = ?", (now, row["id"]))
        return row["id"]
    customer_id = new_id("cus")
    db.execute("INSERT INTO customers (id, mode, email, first_seen_at, last_seen_at) "
               "VALUES (?, ?, ?, ?, ?)", (customer_id, mode, email, now, now))
    events.emit(db, mode, "customer.created", _fetch(db, customer_id))
    return customer_id


def list_page(scope: Scope, query: dict) -> dict:
    """A page of customers, newest first; `email` finds one."""
    where, params = ("email = ?", (query["email"].strip().lower(),)) if "email" in query \
        else ("", ())
    return scope.page("customers", query, render, where=where, params=params,
                      select=_WITH_TOTALS)


def get(scope: Scope, customer_id: str) -> dict:
    """One customer with their orders, newest first."""
    scope.require("customers", customer_id, "customer")
    customer = _fetch(scope.db, customer_id)
    customer["orders"] = [
        {"id": o["id"], "status": o["status"], "total_cents": o["total_cents"],
         "currency": o["currency"], "paid_at": o["paid_at"], "created_at": o["created_at"]}
        for o in scope.db.query("SELECT * FROM orders WHERE customer_id = ? ORDER BY id DESC",
                                (customer_id,))]
    return customer


def update(scope: Scope, customer_id: str, body: dict) -> dict:
    """Merge `metadata` into what the customer keeps, with `customer.updated` when it
    changed; returns the customer as `get` does."""
    change = metadata.UPDATE.validate(body).get("metadata", {})
    with write_txn(scope.db):
        row = scope.require("customers", customer_id, "customer")
        previous = metadata.update(scope, "customers", row, change)
        if previous is not None:
            events.emit(scope.db, scope.mode, "customer.updated",
                        _fetch(scope.db, customer_id), {"metadata": previous})
    return get(scope, customer_id)


def _fetch(db: sqlite_utils.Database, customer_id: str) -> dict:
    return render(query_one(db, f"SELECT {_WITH_TOTALS} FROM customers WHERE id = ?",
                            (customer_id,)))
