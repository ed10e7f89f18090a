"""Free products through the real server's storefront: the checkout asks for no coin, lands
straight on the order page showing the goods, leaves the balance alone, and counts against
the per-IP checkout limit like any other; the dashboard shows such an order."""

from __future__ import annotations

import pytest
import requests
from test_storefront import ORDER_PATH, checkout, form_token, page_text, product_url

from conftest import GENEROUS_LIMITS, running_server
from support import buyer, fetch, json_body, key_product

CHECKOUTS_PER_MINUTE = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The module's shop, with a per-IP checkout limit small enough to reach."""
    limits = GENEROUS_LIMITS + f"checkouts_per_minute_per_ip = {CHECKOUTS_PER_MINUTE}\n"
    with running_server(tmp_path_factory.mktemp("free"), limits) as shop:
        yield shop


def test_a_free_checkout_lands_on_the_order_page_with_the_goods(server, api):
    product, pool = key_product(api, 5, price_cents=0)
    balance = json_body(api.get("/v1/balance"))
    session = requests.Session()
    form = session.get(product_url(server, product["slug"]), timeout=30)
    assert "Get it free" in form.text and 'name="coin"' not in form.text

    email = buyer("free")
    response = checkout(session, server, product["slug"], email=email, qty="2")
    assert response.status_code == 303, response.text
    order_id = ORDER_PATH.search(response.headers["Location"]).group(2)
    page = session.get(server.url + response.headers["Location"], timeout=30)
    assert page.status_code == 200
    text = page_text(page.text)
    order = fetch(api, order_id)
    assert order["status"] == "completed" and order["payment"] is None
    assert order["customer_email"] == email
    keys = order["delivery"]["keys"]
    assert len(set(keys)) == 2 and set(keys) <= set(pool)
    assert "Delivered" in text and all(key in text for key in keys)
    assert "Send exactly" not in text and "Simulate payment" not in text
    assert json_body(api.get("/v1/balance")) == balance

    for _ in range(CHECKOUTS_PER_MINUTE - 1):  # the first checkout counted too
        assert checkout(session, server, product["slug"], email=email).status_code == 303
    limited = checkout(session, server, product["slug"], email=email)
    assert limited.status_code == 429 and "Retry-After" in limited.headers


def test_the_dashboard_shows_a_free_order(server, api):
    product, _ = key_product(api, 1, price_cents=0)
    order = json_body(api.post("/v1/orders", json={"product_id": product["id"],
                                                   "customer_email": buyer()}), 201)
    assert server.cli("admin", "set-password", input="a long enough password\n").returncode == 0
    session = requests.Session()
    form = session.get(server.url + "/dashboard/login", timeout=30)
    signed_in = session.post(server.url + "/dashboard/login", timeout=30, data={
        "csrf_token": form_token(form.text), "password": "a long enough password"})
    assert signed_in.status_code == 200, signed_in.text
    shown = session.get(f"{server.url}/dashboard/orders/{order['id']}", timeout=30)
    assert shown.status_code == 200, shown.text
    text = page_text(shown.text)
    assert "Free order" in text and order["delivery"]["keys"][0] in text
