"""Figures: the dashboard's overview, the sales report and the orders export
(docs/api.md, Reports)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import sqlite_utils

from ..clock import iso, utcnow
from ..db import query_one
from ..validation import DATE_OR_DATE_TIME_FIELD, Enum, Schema, String
from . import orders, payouts, webhooks
from .scope import Scope

DEFAULT_DAYS = 30
# The key of a paid order's group, from its `paid_at` (UTC). An ISO week belongs to the year
# of its Thursday: `-3 days, weekday 4` moves any day of a Monday-to-Sunday week onto it.
_THURSDAY = "date(paid_at, '-3 days', 'weekday 4')"
GROUP_KEYS = {
    "day": "strftime('%Y-%m-%d', paid_at)",
    "week": f"strftime('%Y', {_THURSDAY}) || '-W' || "
            f"printf('%02d', (strftime('%j', {_THURSDAY}) - 1) / 7 + 1)",
    "month": "strftime('%Y-%m', paid_at)",
    "product": "product_id",
    "asset": "asset",
}
SUM_FIELDS = ("orders", "units", "gross_cents", "discount_cents", "refunded_cents",
              "net_cents")
# gross: before the discount; net: what the shop keeps of it.
_SUMS = ("count(*) AS orders, sum(qty) AS units, sum(subtotal_cents) AS gross_cents, "
         "sum(discount_cents) AS discount_cents, sum(refunded_cents) AS refunded_cents, "
         "sum(subtotal_cents - discount_cents - refunded_cents) AS net_cents")


def _bounds(what: str) -> dict:
    """The `from` and `to` query fields, on the time `what` (paid or created)."""
    return {
        "from": String(description=f"{what} at or after this date or date-time; "
                                   f"{DEFAULT_DAYS} days ago if absent.",
                       **DATE_OR_DATE_TIME_FIELD),
        "to": String(description=f"{what} at or before this date or date-time (a date "
                                 "includes the whole day); now if absent.",
                     **DATE_OR_DATE_TIME_FIELD),
    }


SALES = Schema(**_bounds("Paid"), group_by=Enum(tuple(GROUP_KEYS), default="day",
                                                description="How rows are grouped."))
EXPORT = Schema(**_bounds("Created"),
                status=Enum(orders.STATUSES, description="Only orders in this status."))


def overview(scope: Scope, currency: str) -> dict:
    """Today's orders and revenue, the balance, and the webhook endpoints in trouble."""
    today = utcnow().strftime("%Y-%m-%dT00:00:00Z")
    orders_today = query_one(scope.db, "SELECT count(*) AS n FROM orders WHERE mode = ? AND "
                                       "created_at >= ?", (scope.mode, today))["n"]
    revenue = query_one(scope.db, "SELECT coalesce(sum(paid_cents), 0) AS v FROM orders WHERE "
                                  "mode = ? AND currency = ? AND paid_at >= ?",
                        (scope.mode, currency, today))["v"]
    failing = [webhooks.render(row) for row in scope.db.query(
        "SELECT * FROM webhook_endpoints WHERE mode = ? AND deleted_at IS NULL AND "
        "(status = 'disabled' OR failing_since IS NOT NULL) ORDER BY id DESC", (scope.mode,))]
    return {"orders_today": orders_today, "revenue_today_cents": revenue,
            "currency": currency, "balance": payouts.balance(scope.db, scope.mode, currency),
            "failing_webhooks": failing}


TOP_PRODUCTS = 5


def recent_sales(scope: Scope, default_currency: str, days: int = DEFAULT_DAYS) -> dict:
    """The overview's figures for the last `days` days (today, UTC, included), in the
    currency that made the most net sales (`default_currency` when nothing sold): net sales
    per day with the days without sales as zero, and the products that made the most."""
    today = utcnow().date()
    first = today - timedelta(days=days - 1)
    window = {"from": first.isoformat(), "to": today.isoformat()}
    per_day = sales(scope, {**window, "group_by": "day"})
    currency = max(per_day["totals"], key=lambda total: total["net_cents"],
                   default={"currency": default_currency})["currency"]
    net = {row["key"]: row["net_cents"] for row in per_day["rows"]
           if row["currency"] == currency}
    dates = [(first + timedelta(days=n)).isoformat() for n in range(days)]
    return {"currency": currency, "days": [(day, net.get(day, 0)) for day in dates],
            "top_products": _top_products(scope, sales(scope, {**window, "group_by": "product"}),
                                          currency)}


def _top_products(scope: Scope, per_product: dict, currency: str) -> list[dict]:
    rows = sorted((row for row in per_product["rows"] if row["currency"] == currency),
                  key=lambda row: (-row["net_cents"], row["key"]))[:TOP_PRODUCTS]
    names = {row["id"]: row["name"] for row in scope.db.query(
        f"SELECT id, name FROM products WHERE id IN ({', '.join('?' * len(rows))})",
        [row["key"] for row in rows])} if rows else {}
    return [{"id": row["key"], "name": names.get(row["key"], row["key"]),
             "units": row["units"], "net_cents": row["net_cents"]} for row in rows]


def low_stock(scope: Scope) -> list[dict]:
    """Products not archived whose counted stock is at or below their threshold, the
    emptiest first."""
    return list(scope.db.query(
        "SELECT id, name, stock, low_stock_threshold FROM products WHERE mode = ? AND "
        "status != 'archived' AND stock IS NOT NULL AND low_stock_threshold IS NOT NULL AND "
        "stock <= low_stock_threshold ORDER BY stock, name", (scope.mode,)))


def bounds(query: dict) -> tuple[str, str]:
    """The `from` and `to` of a report as UTC timestamps: the last 30 days unless given."""
    now = utcnow()
    start = orders.parse_bound("from", query["from"], end_of_day=False) if "from" in query \
        else iso(now - timedelta(days=DEFAULT_DAYS))
    end = orders.parse_bound("to", query["to"], end_of_day=True) if "to" in query \
        else iso(now)
    return start, end


def sales(scope: Scope, query: dict) -> dict:
    """Paid orders between `from` and `to` (on `paid_at`), summed per group and currency
    in one query, and per currency over all groups."""
    start, end = bounds(query)
    rows = list(scope.db.query(
        f"SELECT {GROUP_KEYS[query['group_by']]} AS key, currency, {_SUMS} FROM orders "
        "WHERE mode = ? AND paid_at IS NOT NULL AND paid_at >= ? AND paid_at <= ? "
        "GROUP BY 1, 2 ORDER BY 1, 2", (scope.mode, start, end)))
    return {"object": "report", "from": start, "to": end, "group_by": query["group_by"],
            "rows": rows, "totals": _totals(rows)}


def _totals(rows: list[dict]) -> list[dict]:
    """The rows' sums per currency, in currency order."""
    totals: dict[str, dict] = {}
    for row in rows:
        total = totals.setdefault(row["currency"], dict.fromkeys(SUM_FIELDS, 0))
        for name in SUM_FIELDS:
            total[name] += row[name]
    return [{"currency": currency, **totals[currency]} for currency in sorted(totals)]


EXPORT_COLUMNS = ("id", "created_at", "paid_at", "status", "product", "qty", "subtotal_cents",
                  "discount_cents", "total_cents", "refunded_cents", "currency",
                  "customer_email", "coupon", "chain", "asset", "tx_hash")
_EXPORT_SELECT = ("SELECT id, created_at, paid_at, status, product_name AS product, qty, "
                  "subtotal_cents, discount_cents, total_cents, refunded_cents, currency, "
                  "customer_email, coupon, chain, asset, tx_hash FROM orders")
EXPORT_PAGE = 500


def export_filter(scope: Scope, query: dict) -> tuple[str, list]:
    """The SQL condition and parameters of an export: orders of the scope's mode created
    between `from` and `to`, in `status` if given. Built before streaming, so that a bad
    bound is a 422 and not a cut-off body."""
    start, end = bounds(query)
    where, params = "mode = ? AND created_at >= ? AND created_at <= ?", [scope.mode, start, end]
    if "status" in query:
        where += " AND status = ?"
        params.append(query["status"])
    return where, params


def export_rows(db: sqlite_utils.Database, where: str, params: list,
                page_size: int = EXPORT_PAGE) -> Iterator[tuple]:
    """The orders matching `where`, oldest id first, read in short keyset pages so that no
    query stays open between rows handed out."""
    last = ""
    while True:
        page = db.execute(f"{_EXPORT_SELECT} WHERE {where} AND id > ? ORDER BY id "
                          f"LIMIT {page_size}", (*params, last)).fetchall()
        yield from page
        if len(page) < page_size:
            return
        last = page[-1][0]


# A spreadsheet runs a cell that begins with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_csv(db: sqlite_utils.Database, where: str, params: list,
               rows_per_chunk: int = 100) -> Iterator[str]:
    """The orders matching `where` (`export_filter`) as RFC 4180 text, a header row then
    one row per order, in chunks of `rows_per_chunk` rows. A text cell that a spreadsheet
    would take for a formula gets a leading `'`; numbers are written as they are."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    for count, row in enumerate(export_rows(db, where, params), start=1):
        writer.writerow([_defused(cell) for cell in row])
        if count % rows_per_chunk == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _defused(cell):
    if isinstance(cell, str) and cell.startswith(FORMULA_STARTS):
        return "'" + cell
    return cell


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
