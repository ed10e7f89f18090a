"""Amounts at their bounds through the real server: every amount field takes an integer up
to 10^12 and refuses more with a 422 naming it, and the largest amounts the API takes add
up without a 500 anywhere — the balance, customers, order lists and the dashboard."""

from __future__ import annotations

import secrets

import pytest
import requests

from conftest import assert_problem
from support import assert_invalid, json_body, make_product, pay, place_order

LIMIT = 10**12
TOO_MUCH = [LIMIT + 1, 2**63 - 1, 2**63, 2**64, 10**30]
TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def idempotent(client, path: str, body: dict) -> requests.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": secrets.token_hex(12)})


@pytest.mark.parametrize("amount", TOO_MUCH)
def test_a_price_over_the_limit_is_refused(api, amount):
    response = api.post("/v1/products", json={"name": "Gold", "type": "account",
                                              "price_cents": amount, "currency": "USD",
                                              "delivery_text": "x"})
    assert_invalid(response, "price_cents", exact=True)
    product = make_product(api, type="account", delivery_text="x")
    response = api.patch(f"/v1/products/{product['id']}", json={"price_cents": amount})
    assert_invalid(response, "price_cents", exact=True)


@pytest.mark.parametrize("amount", TOO_MUCH)
def test_a_test_payment_over_the_limit_is_refused(api, amount):
    order = place_order(api, make_product(api, type="account", delivery_text="x")["id"])
    response = api.post(f"/v1/test_helpers/orders/{order['id']}/pay",
                        json={"amount_cents": amount})
    assert_invalid(response, "amount_cents", exact=True)
    assert json_body(api.get(f"/v1/orders/{order['id']}"))["payment"]["paid_cents"] == 0


@pytest.mark.parametrize("amount", TOO_MUCH)
def test_a_refund_over_the_limit_is_refused(api, amount):
    order = pay(api, place_order(api, make_product(api, type="account",
                                                   delivery_text="x")["id"])["id"])
    response = idempotent(api, f"/v1/orders/{order['id']}/refund", {"amount_cents": amount})
    assert_invalid(response, "amount_cents", exact=True)


@pytest.mark.parametrize("amount", TOO_MUCH)
def test_a_payout_over_the_limit_is_refused(api, amount):
    response = idempotent(api, "/v1/payouts", {
        "chain": "tron", "asset": "USDT", "amount_cents": amount,
        "destination_address": TRON})
    assert_invalid(response, "amount_cents", exact=True)


def test_an_order_total_over_the_limit_is_refused(api):
    product = make_product(api, type="account", delivery_text="x", price_cents=LIMIT // 2)
    assert place_order(api, product["id"], qty=2)["total_cents"] == LIMIT
    response = api.post("/v1/orders", json={"product_id": product["id"], "qty": 3,
                                            "customer_email": "big@example.com"})
    assert_invalid(response, "qty", exact=True)


def test_the_largest_amounts_add_up_everywhere(make_server):
    shop = make_server()
    client = shop.client(shop.mint())
    product = make_product(client, type="account", delivery_text="x", price_cents=LIMIT)
    email = f"whale-{secrets.token_hex(3)}@example.com"
    for _ in range(3):  # each paid in full, then overpaid by the most a payment may be
        order = place_order(client, product["id"], customer_email=email)
        pay(client, order["id"], LIMIT)
    cheap = make_product(client, type="account", delivery_text="x", price_cents=1)
    pay(client, place_order(client, cheap["id"], customer_email=email)["id"], LIMIT)

    balance = json_body(client.get("/v1/balance"))
    assert balance["available_cents"] == 4 * LIMIT
    customer, = json_body(client.get("/v1/customers", params={"email": email}))["data"]
    assert customer["lifetime_cents"] == 4 * LIMIT
    assert json_body(client.get("/v1/orders"))["data"]
    assert shop.cli("admin", "set-password", input="a long enough password\n").returncode == 0
    session = requests.Session()
    form = session.get(shop.url + "/dashboard/login", timeout=30)
    token = form.text.split('name="csrf_token" value="')[1].split('"')[0]
    signed_in = session.post(shop.url + "/dashboard/login", timeout=30, data={
        "csrf_token": token, "password": "a long enough password"})
    assert signed_in.status_code == 200, signed_in.text
    for page in ("/dashboard/", "/dashboard/orders", "/dashboard/payouts",
                 "/dashboard/customers"):
        assert session.get(shop.url + page, timeout=30).status_code == 200, page

    # The balance is now over the limit of one payout: asking for all of it is refused.
    response = idempotent(client, "/v1/payouts", {
        "chain": "tron", "asset": "USDT", "amount_cents": LIMIT + 1,
        "destination_address": TRON})
    assert_problem(response, 422, "unprocessable")
