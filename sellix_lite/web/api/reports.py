"""/v1/reports and the orders export (docs/api.md, Reports)."""

from __future__ import annotations

from flask import Response, stream_with_context

from ...services import reports
from ..context import get_db
from . import bp
from .pipeline import operation, scope

TAG = "Reports"


@operation(bp, "GET", "/reports/sales", summary="Report sales", tag=TAG,
           ability="orders:read", query=reports.SALES, response="Report")
def sales_report(query):
    """Sums paid orders (on `paid_at`, UTC) per day, ISO week, month, product or asset, and
    per currency."""
    return reports.sales(scope(), query)


@operation(bp, "GET", "/orders/export.csv", summary="Export orders as CSV", tag=TAG,
           ability="orders:read", query=reports.EXPORT, media_type="text/csv")
def export_orders(query):
    """Streams the orders created between `from` and `to` as CSV (RFC 4180), oldest first,
    one row per order after a header row."""
    where, params = reports.export_filter(scope(), query)

    @stream_with_context
    def chunks():
        # The view's connection went back at its teardown; the stream takes it again.
        yield from reports.export_csv(get_db(), where, params)

    return Response(chunks(), content_type="text/csv; charset=utf-8")
