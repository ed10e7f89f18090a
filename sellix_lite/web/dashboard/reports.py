"""The sales report page and the orders export, read with the dashboard's session."""

from __future__ import annotations

from flask import Response, redirect, request, stream_with_context, url_for

from ...errors import ApiError
from ...services import reports
from ..context import get_db
from . import bp, flash_error, page, scope


def _query(schema) -> dict:
    """The page's filters as the API reads them; bad ones are shown with the API's message
    and dropped."""
    args = {key: value for key, value in request.args.items() if value}
    try:
        return schema.validate(args, from_query=True)
    except ApiError as error:
        flash_error(error)
        return schema.validate({}, from_query=True)


@bp.get("/reports")
def reports_page():
    """Paid orders summed per day, week, month, product or asset between two dates."""
    query = _query(reports.SALES)
    try:
        report = reports.sales(scope(), query)
    except ApiError as error:  # a bound the schema lets through but the parser refuses
        flash_error(error)
        report = reports.sales(scope(), reports.SALES.validate({}, from_query=True))
    return page("reports.html", report=report, query=query,
                group_keys=tuple(reports.GROUP_KEYS), sum_fields=reports.SUM_FIELDS)


@bp.get("/orders/export.csv")
def export_orders():
    """The orders export of the API, for the signed-in merchant."""
    try:
        where, params = reports.export_filter(
            scope(), reports.EXPORT.validate(
                {key: value for key, value in request.args.items() if value},
                from_query=True))
    except ApiError as error:
        flash_error(error)
        return redirect(url_for("dashboard.orders_page"), code=303)

    @stream_with_context
    def chunks():
        yield from reports.export_csv(get_db(), where, params)

    return Response(chunks(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": 'attachment; filename="orders.csv"'})
