"""Free products through the real server's storefront: the checkout asks for no coin, lands
straight on the order page showing the goods, leaves the balance alone, and counts against
the per-IP checkout limit like any other; the dashboard shows such an order; orders racing
for free keys get one key each, each key one order."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
    home = page_text(session.get(server.url + "/test/", timeout=30).text)
    assert f"{product['name']} Free" in home, home
    form = session.get(product_url(server, product["slug"]), timeout=30)
    assert "Get it free" in form.text and 'name="coin"' not in form.text
    assert "Free" in page_text(form.text) and "0.00" not in page_text(form.text)

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
    assert "Free" in text and "0.00" not in text
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


def test_concurrent_free_orders_share_out_the_keys_one_each(server, api, test_key):
    product, pool = key_product(api, 10, price_cents=0)

    def order(_):
        return server.client(test_key).post("/v1/orders", timeout=60, json={
            "product_id": product["id"], "customer_email": buyer("rush")})

    with ThreadPoolExecutor(20) as workers:
        answers = list(workers.map(order, range(20)))
    made = [a.json() for a in answers if a.status_code == 201]
    assert sorted(a.status_code for a in answers) == [201] * 10 + [422] * 10
    delivered = [key for o in made for key in o["delivery"]["keys"]]
    assert sorted(delivered) == sorted(pool)
    assert all(o["status"] == "completed" and o["payment"] is None for o in made)
    assert server.query("SELECT count(DISTINCT order_id), count(*) FROM license_keys WHERE "
                        "product_id = ? AND state = 'delivered'", (product["id"],)) == [(10, 10)]
    assert server.query("SELECT count(*) FROM orders WHERE product_id = ?",
                        (product["id"],)) == [(10,)]  # a sold-out attempt leaves none behind
