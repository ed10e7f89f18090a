"""The sales report and the orders export, in process: paid orders summed per group and
currency on `paid_at`, and every order streamed as CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

from sellix_lite.services import reports

from support import assert_problem, json_body, key_product, pay, place_order


def report(v1, **params) -> dict:
    return json_body(v1.get("/v1/reports/sales", params=params))


def paid_order(v1, clock, when: str, product_id: str, **extra) -> dict:
    clock.set(datetime.fromisoformat(when).replace(tzinfo=UTC))
    return pay(v1, place_order(v1, product_id, **extra)["id"])


def test_paid_orders_are_summed_per_day_with_discounts_and_refunds(v1, clock):
    product, _ = key_product(v1, 5)
    coupon = json_body(v1.post("/v1/coupons", json={"code": "TENOFF", "percent_off": 10}), 201)
    paid_order(v1, clock, "2026-05-26T09:00:00", product["id"], qty=2, coupon=coupon["code"])
    refunded = paid_order(v1, clock, "2026-05-26T23:59:00", product["id"])
    json_body(v1.post(f"/v1/orders/{refunded['id']}/refund", json={"amount_cents": 900},
                      headers={"Idempotency-Key": "part"}))
    paid_order(v1, clock, "2026-05-27T00:00:00", product["id"])
    place_order(v1, product["id"])  # never paid: not in the report
    body = report(v1, **{"from": "2026-05-26", "to": "2026-05-27"})
    assert body["object"] == "report" and body["group_by"] == "day"
    assert (body["from"], body["to"]) == ("2026-05-26T00:00:00Z", "2026-05-27T23:59:59Z")
    first, second = body["rows"]
    assert first == {"key": "2026-05-26", "currency": "USD", "orders": 2, "units": 3,
                     "gross_cents": 14700, "discount_cents": 980, "refunded_cents": 900,
                     "net_cents": 14700 - 980 - 900}
    assert second["key"] == "2026-05-27" and second["net_cents"] == 4900
    total, = body["totals"]
    assert "key" not in total
    assert total == {"currency": "USD",
                     **{name: first[name] + second[name] for name in reports.SUM_FIELDS}}


def test_weeks_months_products_and_assets_key_their_rows(v1, clock):
    first, _ = key_product(v1, 3)
    second, _ = key_product(v1, 3)
    paid_order(v1, clock, "2025-12-29T10:00:00", first["id"])  # Monday of 2026-W01
    paid_order(v1, clock, "2026-01-04T10:00:00", second["id"])  # Sunday of 2026-W01
    paid_order(v1, clock, "2026-01-05T10:00:00", first["id"])  # 2026-W02
    bounds = {"from": "2025-12-01", "to": "2026-01-31"}
    keys = {name: [(row["key"], row["orders"]) for row in
                   report(v1, group_by=name, **bounds)["rows"]]
            for name in ("week", "month", "product", "asset")}
    assert keys["week"] == [("2026-W01", 2), ("2026-W02", 1)]
    assert keys["month"] == [("2025-12", 1), ("2026-01", 2)]
    assert sorted(keys["product"]) == sorted([(first["id"], 2), (second["id"], 1)])
    assert len(keys["asset"]) == 1 and keys["asset"][0][1] == 3


def test_the_week_key_is_the_iso_year_and_week_across_year_boundaries(app):
    days = [date(2014, 12, 20) + timedelta(days=n) for n in range(0, 12 * 366, 3)]
    db = app.extensions["sellix"].connections.acquire()
    sql = f"SELECT {reports.GROUP_KEYS['week']} FROM (SELECT ? AS paid_at)"
    for day in days:
        year, week, _ = day.isocalendar()
        stamp = f"{day.isoformat()}T12:00:00Z"
        assert db.execute(sql, (stamp,)).fetchone()[0] == f"{year}-W{week:02d}", day


def test_the_last_30_days_by_default_and_a_bad_bound_is_refused(v1, clock):
    product, _ = key_product(v1, 2)
    paid_order(v1, clock, "2026-04-01T00:00:00", product["id"])
    paid_order(v1, clock, "2026-05-26T00:00:00", product["id"])
    clock.set(datetime(2026, 5, 27, tzinfo=UTC))
    body = report(v1)
    assert (body["from"], body["to"]) == ("2026-04-27T00:00:00Z", "2026-05-27T00:00:00Z")
    assert [row["key"] for row in body["rows"]] == ["2026-05-26"]
    assert_problem(v1.get("/v1/reports/sales", params={"from": "yesterday"}), 422,
                   "unprocessable")
    assert_problem(v1.get("/v1/reports/sales", params={"group_by": "hour"}), 422,
                   "unprocessable")


def test_another_mode_sees_none_of_them_and_orders_read_is_needed(v1, client, clock):
    product, _ = key_product(v1, 1)
    paid_order(v1, clock, "2026-05-26T00:00:00", product["id"])
    bounds = {"from": "2026-05-01", "to": "2026-05-31"}
    live = report(client.keyed(mode="live"), **bounds)
    assert live["rows"] == [] and live["totals"] == []
    assert_problem(client.keyed("products:read").get("/v1/reports/sales"), 403,
                   "forbidden_scope")


def export(v1, **params) -> list[list[str]]:
    response = v1.get("/v1/orders/export.csv", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
    text = response.get_data(as_text=True)
    assert text.endswith("\r\n")
    return list(csv.reader(io.StringIO(text, newline="")))


def test_the_export_has_a_header_and_one_quoted_row_per_order(v1, clock):
    product, _ = key_product(v1, 2, name='Pro, "2026"\r\nedition')
    clock.set(datetime(2026, 5, 26, 8, tzinfo=UTC))
    unpaid = place_order(v1, product["id"], customer_email="a+b@example.com")
    paid = paid_order(v1, clock, "2026-05-26T09:00:00", product["id"])
    header, *rows = export(v1)
    assert tuple(header) == reports.EXPORT_COLUMNS
    assert [row[0] for row in rows] == [unpaid["id"], paid["id"]]
    first = dict(zip(header, rows[0], strict=True))
    assert first["product"] == 'Pro, "2026"\r\nedition'
    assert first["customer_email"] == "a+b@example.com"
    assert (first["status"], first["paid_at"], first["qty"]) == ("awaiting_payment", "", "1")
    second = dict(zip(header, rows[1], strict=True))
    assert second["paid_at"] == paid["paid_at"] and second["total_cents"] == "4900"


def test_a_cell_a_spreadsheet_would_run_is_prefixed(v1, app_db):
    formulas = ("=HYPERLINK(\"http://x\")", "+1", "-1", "@SUM(A1)", "tab", "return")
    placed = [place_order(v1, key_product(v1, 1, name=name)[0]["id"])["id"]
              for name in formulas]
    # A name given through the API is trimmed: these two are written straight to the file.
    for order_id, name in zip(placed[4:], ("\tx", "\rx"), strict=True):
        app_db.execute("UPDATE orders SET product_name = ? WHERE id = ?",
                       params=(name, order_id))
    names = [row[4] for row in export(v1)[1:]]
    assert names == ["'=HYPERLINK(\"http://x\")", "'+1", "'-1", "'@SUM(A1)", "'\tx", "'\rx"]


def test_the_export_filters_on_creation_time_status_and_mode(v1, client, clock):
    product, _ = key_product(v1, 3)
    clock.set(datetime(2026, 5, 1, tzinfo=UTC))
    early = place_order(v1, product["id"])
    late = paid_order(v1, clock, "2026-05-20T00:00:00", product["id"])
    waiting = place_order(v1, product["id"])

    def ids(who, **params):
        return [row[0] for row in export(who, **params)[1:]]
    assert ids(v1, **{"from": "2026-05-02"}) == [late["id"], waiting["id"]]
    assert ids(v1, **{"from": "2026-04-25", "to": "2026-05-01"}) == [early["id"]]
    assert ids(v1, status="completed") == [late["id"]]
    assert ids(client.keyed(mode="live")) == []
    assert_problem(client.keyed("products:read").get("/v1/orders/export.csv"), 403,
                   "forbidden_scope")
    assert_problem(v1.get("/v1/orders/export.csv", params={"status": "lost"}), 422,
                   "unprocessable")


def test_the_export_reads_in_pages_and_is_not_taken_for_an_order_id(v1, app):
    product, _ = key_product(v1, 5)
    placed = [place_order(v1, product["id"])["id"] for _ in range(5)]
    assert app.url_map.bind("").match("/v1/orders/export.csv")[0] == "v1.export_orders"
    runtime = app.extensions["sellix"]
    db = runtime.connections.acquire()
    where, params = reports.export_filter(runtime.scope(db, "test"), {})
    paged = [row[0] for row in reports.export_rows(db, where, params, page_size=2)]
    assert paged == placed


def test_each_currency_has_its_own_rows_and_total(v1, clock):
    dollars, _ = key_product(v1, 2)
    euros, _ = key_product(v1, 1, currency="EUR", price_cents=1000)
    for product in (dollars, euros, dollars):
        paid_order(v1, clock, "2026-05-26T10:00:00", product["id"])
    body = report(v1, **{"from": "2026-05-26", "to": "2026-05-26"})
    assert [(row["currency"], row["orders"]) for row in body["rows"]] == [("EUR", 1),
                                                                          ("USD", 2)]
    assert [(total["currency"], total["net_cents"]) for total in body["totals"]] == [
        ("EUR", 1000), ("USD", 9800)]


def test_through_the_real_server_the_export_streams_and_the_server_goes_on(server, api):
    """The CSV leaves waitress in chunks as the rows are read, on a connection of its own;
    the connection the request held is handed back, so the server keeps answering."""
    product, _ = key_product(api, 5)
    placed = [place_order(api, product["id"])["id"] for _ in range(3)]
    with api.get("/v1/orders/export.csv", stream=True, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/csv; charset=utf-8"
        assert response.headers.get("Transfer-Encoding") == "chunked"
        text = b"".join(response.iter_content(chunk_size=None)).decode()
    header, *rows = csv.reader(io.StringIO(text, newline=""))
    assert tuple(header) == reports.EXPORT_COLUMNS
    assert set(placed) <= {row[0] for row in rows}
    for _ in range(3):  # the server still answers, export after export
        assert api.get("/v1/orders/export.csv", timeout=30).status_code == 200
    assert api.get("/v1/orders", params={"limit": 1}, timeout=30).status_code == 200
