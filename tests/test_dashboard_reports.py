"""The dashboard's figures, in process: the overview's server-drawn chart of net sales per
day, the best sellers, the products running out, the orders export under the dashboard's
session, and the sales report page."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from test_dashboard import FormCollector
from test_reports import paid_order

from sellix_lite.web.dashboard.charts import bar_chart

from support import (
    json_body,
    key_product,
    make_product,
    signed_in_dashboard,
)


@pytest.fixture
def dashboard(app, client):
    return signed_in_dashboard(app, client)


def bars_of(html: str) -> dict[str, float]:
    return {day: float(height) for height, day in re.findall(
        r'<rect class="bar" [^>]*height="([\d.]+)" data-day="([\d-]+)"', html)}


# --- the chart's geometry ------------------------------------------------------------------

def test_bars_scale_to_the_largest_and_a_day_without_sales_is_zero():
    chart = bar_chart([("2026-05-01", 1000), ("2026-05-02", 0), ("2026-05-03", 500),
                       ("2026-05-04", 250), ("2026-05-05", 2000)])
    heights = [bar["height"] for bar in chart["bars"]]
    tallest = chart["baseline"] - chart["top"]
    assert heights == [tallest / 2, 0, tallest / 4, tallest / 8, tallest]
    assert all(bar["y"] + bar["height"] == chart["baseline"] for bar in chart["bars"])
    assert chart["largest_cents"] == 2000
    assert [label["day"] for label in chart["date_labels"]] == [
        "2026-05-01", "2026-05-03", "2026-05-05"]
    xs = [bar["x"] for bar in chart["bars"]]
    assert xs == sorted(xs) and xs[0] == chart["left"]


def test_a_chart_without_sales_has_flat_bars():
    chart = bar_chart([("2026-05-01", 0), ("2026-05-02", 0)])
    assert [bar["height"] for bar in chart["bars"]] == [0, 0]
    assert chart["largest_cents"] == 0


# --- the overview --------------------------------------------------------------------------

def test_the_overview_draws_net_sales_per_day_with_a_title_and_a_table(dashboard, v1, clock):
    product, _ = key_product(v1, 5)
    paid_order(v1, clock, "2026-05-10T09:00:00", product["id"], qty=2)  # 9800
    paid_order(v1, clock, "2026-05-20T09:00:00", product["id"])  # 4900
    paid_order(v1, clock, "2026-04-01T09:00:00", product["id"])  # before the 30 days
    clock.set(datetime(2026, 5, 27, 12, tzinfo=UTC))
    html = dashboard.get("/dashboard/").get_data(as_text=True)
    assert 'role="img" aria-labelledby="sales-chart-title sales-chart-desc"' in html
    assert re.search(r'<title id="sales-chart-title">Net sales per day in USD, 2026-04-28 to '
                     r'2026-05-27</title>', html)
    assert "Net sales (USD)" in html and "Day (UTC)" in html
    bars = bars_of(html)
    assert len(bars) == 30 and min(bars) == "2026-04-28"
    assert bars["2026-05-10"] == 2 * bars["2026-05-20"] > 0
    assert sum(1 for height in bars.values() if height) == 2
    assert "<td>2026-05-10</td><td>98.00 USD</td>" in html


def test_the_top_five_products_by_net_sales_in_order(dashboard, v1, clock):
    products = [key_product(v1, 10, name=f"Seller {n}")[0] for n in range(6)]
    for rank, product in enumerate(products):
        for _ in range(rank + 1):
            paid_order(v1, clock, "2026-05-20T09:00:00", product["id"])
    clock.set(datetime(2026, 5, 27, tzinfo=UTC))
    html = dashboard.get("/dashboard/").get_data(as_text=True)
    top = html.split('id="top-products"')[1].split("</section>")[0]
    assert re.findall(r"Seller \d", top) == ["Seller 5", "Seller 4", "Seller 3", "Seller 2",
                                             "Seller 1"]


def test_the_low_stock_list_has_the_products_at_or_below_their_threshold(dashboard, v1):
    make_product(v1, type="physical", name="Nearly gone", stock=2, low_stock_threshold=2)
    make_product(v1, type="physical", name="Plenty", stock=9, low_stock_threshold=2)
    make_product(v1, type="physical", name="Untracked", stock=1)
    html = dashboard.get("/dashboard/").get_data(as_text=True)
    low = html.split('id="low-stock"')[1].split("</section>")[0]
    assert "Nearly gone" in low and "2 left (threshold 2)" in low
    assert "Plenty" not in low and "Untracked" not in low


# --- the export ----------------------------------------------------------------------------

def test_the_export_link_streams_the_orders_with_the_session(dashboard, v1, clock):
    product, _ = key_product(v1, 2)
    order = paid_order(v1, clock, "2026-05-20T09:00:00", product["id"])
    clock.set(datetime(2026, 5, 27, tzinfo=UTC))
    html = dashboard.get("/dashboard/").get_data(as_text=True)
    link = re.search(r'<a href="([^"]+)" id="export-link"', html).group(1)
    response = dashboard.get(link)
    assert response.status_code == 200 and response.mimetype == "text/csv"
    header, row = csv.reader(io.StringIO(response.get_data(as_text=True)))
    assert header[0] == "id" and row[0] == order["id"]


def test_the_export_without_a_session_goes_to_sign_in(client):
    response = client.get("/dashboard/orders/export.csv")
    assert response.status_code == 302 and "/dashboard/login" in response.headers["Location"]


def test_a_bad_export_bound_returns_to_the_orders_with_the_message(dashboard):
    response = dashboard.get("/dashboard/orders/export.csv?from=yesterday",
                             follow_redirects=True)
    assert "/dashboard/orders" == response.request.path
    assert 'class="flash error"' in response.get_data(as_text=True)


# --- the report page -----------------------------------------------------------------------

def test_the_report_page_groups_between_two_dates_with_totals(dashboard, v1, clock):
    product, _ = key_product(v1, 5)
    paid_order(v1, clock, "2026-05-10T09:00:00", product["id"])
    paid_order(v1, clock, "2026-05-11T09:00:00", product["id"], qty=2)
    html = dashboard.get("/dashboard/reports?from=2026-05-01&to=2026-05-31&group_by=month"
                         ).get_data(as_text=True)
    assert '<option value="month" selected>' in html
    table = html.split('id="report"')[1]
    assert "<td>2026-05</td><td>USD</td><td>2</td><td>3</td><td>147.00 USD</td>" in table
    assert '<tr class="total"><th scope="row">Total</th><td>USD</td><td>2</td>' in table


def test_a_bad_date_shows_the_api_message(dashboard, v1):
    api = json_body(v1.get("/v1/reports/sales", params={"from": "yesterday"}), 422)
    html = dashboard.get("/dashboard/reports?from=yesterday").get_data(as_text=True)
    assert 'class="flash error"' in html and api["detail"] in html
    assert 'id="report"' in html


def test_the_reports_page_is_in_the_navigation(dashboard):
    html = dashboard.get("/dashboard/").get_data(as_text=True)
    assert 'href="/dashboard/reports">Reports</a>' in html


# --- the product image ---------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100


def product_form(dashboard, product_id: str, action: str) -> dict:
    collector = FormCollector()
    collector.feed(dashboard.get(f"/dashboard/products/{product_id}").get_data(as_text=True))
    [fields] = [fields for found, fields in collector.forms if found == action]
    return fields


def test_an_image_is_uploaded_shown_refused_when_not_an_image_and_removed(dashboard, v1):
    product = make_product(v1)
    upload = f"/dashboard/products/{product['id']}/image"
    answer = dashboard.post(upload, data={**product_form(dashboard, product["id"], upload),
                                          "file": (io.BytesIO(PNG), "photo.png")},
                            content_type="multipart/form-data")
    assert answer.status_code == 303
    image_url = json_body(v1.get(f"/v1/products/{product['id']}"))["image_url"]
    assert image_url and image_url.endswith(".png")
    html = dashboard.get(f"/dashboard/products/{product['id']}").get_data(as_text=True)
    assert f'<img src="{image_url}"' in html
    assert dashboard.get(image_url).data == PNG
    refused = dashboard.post(upload, data={**product_form(dashboard, product["id"], upload),
                                           "file": (io.BytesIO(b"plain text"), "a.png")},
                             content_type="multipart/form-data", follow_redirects=True)
    assert "is not a PNG, JPEG or WebP image" in refused.get_data(as_text=True)
    remove = f"{upload}/delete"
    dashboard.post(remove, data=product_form(dashboard, product["id"], remove))
    assert json_body(v1.get(f"/v1/products/{product['id']}"))["image_url"] is None


def test_an_image_larger_than_a_form_may_be_is_taken(dashboard, v1):
    product = make_product(v1)
    upload = f"/dashboard/products/{product['id']}/image"
    large = PNG.ljust(2 * 1024 * 1024, b"\x00")
    answer = dashboard.post(upload, data={**product_form(dashboard, product["id"], upload),
                                          "file": (io.BytesIO(large), "large.png")},
                            content_type="multipart/form-data")
    assert answer.status_code == 303
    assert json_body(v1.get(f"/v1/products/{product['id']}"))["image_url"]
