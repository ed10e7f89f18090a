"""Coupons (docs/api.md, Coupons): CRUD and validation, the price of an order with a coupon
on `POST /v1/orders` and on the quote (which reserves nothing), every refusal, free orders
by a 100 % coupon, once per customer, redemptions given back when an order expires unpaid
and taken again by a late payment, the storefront's coupon field and the dashboard's
coupons page in process; then a 50-way race on `max_redemptions` over the real server and
a coupon applied in Chromium."""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from test_dashboard import hidden_fields
from test_late_payments import assert_given_back
from test_storefront import DEVICES, ORDER_PATH, form_token, page_text, product_url, snapshot

from sellix_lite.clock import iso, utcnow

from conftest import assert_problem
from support import (
    assert_invalid,
    buyer,
    event_types,
    expire,
    fetch,
    get_product,
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)

COUPON_FIELDS = {"id", "code", "percent_off", "amount_off_cents", "currency", "product_ids",
                 "max_redemptions", "redemptions", "once_per_customer", "starts_at",
                 "expires_at", "status", "mode", "created_at", "metadata"}


def make_coupon(client, **fields) -> dict:
    """A new coupon: 25 % off every product under a fresh code, unless `fields` say
    otherwise."""
    body = {"code": f"C{buyer('')[1:9].upper()}", **fields}
    if "amount_off_cents" not in body:
        body.setdefault("percent_off", 25)
    return json_body(client.post("/v1/coupons", json=body), 201)


def coupon_of(client, coupon_id: str) -> dict:
    return json_body(client.get(f"/v1/coupons/{coupon_id}"))


def order_body(product: dict, coupon: str | None, **extra) -> dict:
    return {"product_id": product["id"], "customer_email": buyer(),
            **({"coupon": coupon} if coupon else {}), **extra}


def order_ids(client) -> set[str]:
    return {order["id"] for order in json_body(client.get("/v1/orders?limit=100"))["data"]}


# --- CRUD and validation ------------------------------------------------------------------

def test_create_fetch_list_update_and_disable(v1, clock):
    product = make_product(v1)
    created = make_coupon(v1, code="Spring-25", percent_off=25, product_ids=[product["id"]],
                          max_redemptions=10, once_per_customer=True,
                          starts_at="2026-01-01", expires_at="2030-12-31",
                          metadata={"campaign": "spring"})
    assert set(created) == COUPON_FIELDS
    assert re.fullmatch(r"cpn_[0-9A-Z]{26}", created["id"])
    assert created | {"id": None, "created_at": None} == {
        "id": None, "code": "Spring-25", "percent_off": 25, "amount_off_cents": None,
        "currency": None, "product_ids": [product["id"]], "max_redemptions": 10,
        "redemptions": 0, "once_per_customer": True, "starts_at": "2026-01-01T00:00:00Z",
        "expires_at": "2030-12-31T23:59:59Z", "status": "active", "mode": "test",
        "created_at": None, "metadata": {"campaign": "spring"}}
    assert created["created_at"] == iso(utcnow())
    assert coupon_of(v1, created["id"]) == created
    fixed = make_coupon(v1, amount_off_cents=500, currency="EUR")
    assert (fixed["percent_off"], fixed["amount_off_cents"], fixed["currency"]) == \
        (None, 500, "EUR")
    assert fixed["product_ids"] is None and fixed["max_redemptions"] is None

    listed = json_body(v1.get("/v1/coupons"))["data"]
    assert [c["id"] for c in listed[:2]] == [fixed["id"], created["id"]]
    assert json_body(v1.get("/v1/coupons", params={"code": "SPRING-25"}))["data"] == [created]

    changed = json_body(v1.patch(f"/v1/coupons/{created['id']}", json={
        "max_redemptions": None, "expires_at": "2031-01-01T12:00:00+02:00",
        "metadata": {"campaign": None, "owner": "ada"}}))
    assert changed["max_redemptions"] is None
    assert changed["expires_at"] == "2031-01-01T10:00:00Z"
    assert changed["metadata"] == {"owner": "ada"}
    disabled = json_body(v1.delete(f"/v1/coupons/{created['id']}"))
    assert disabled == {**changed, "status": "disabled"}
    assert json_body(v1.get("/v1/coupons", params={"status": "disabled"}))["data"] == [disabled]
    enabled = json_body(v1.patch(f"/v1/coupons/{created['id']}", json={"status": "active"}))
    assert enabled["status"] == "active"


@pytest.mark.parametrize("body, field", [
    ({"code": "ab", "percent_off": 10}, "code"),
    ({"code": "x" * 41, "percent_off": 10}, "code"),
    ({"code": "two words", "percent_off": 10}, "code"),
    ({"code": "ÄPFEL", "percent_off": 10}, "code"),
    ({"code": "BOTH", "percent_off": 10, "amount_off_cents": 100, "currency": "USD"},
     "percent_off"),
    ({"code": "NEITHER"}, "percent_off"),
    ({"code": "ZERO", "percent_off": 0}, "percent_off"),
    ({"code": "OVER", "percent_off": 101}, "percent_off"),
    ({"code": "NOCUR", "amount_off_cents": 100}, "currency"),
    ({"code": "PCTCUR", "percent_off": 10, "currency": "USD"}, "currency"),
    ({"code": "BADCUR", "amount_off_cents": 100, "currency": "XYZ"}, "currency"),
    ({"code": "NOPROD", "percent_off": 10, "product_ids": ["prod_01J0000000000000000000000Z"]},
     "product_ids"),
    ({"code": "WINDOW", "percent_off": 10, "starts_at": "2026-06-02",
      "expires_at": "2026-06-01"}, "expires_at"),
    ({"code": "NOMAX", "percent_off": 10, "max_redemptions": 0}, "max_redemptions"),
    ({"code": "WHEN", "percent_off": 10, "starts_at": "tomorrow"}, "starts_at"),
    ({"code": "EARLY", "percent_off": 10, "starts_at": "0148-08-17"}, "starts_at"),
    ({"code": "LATE", "percent_off": 10, "expires_at": "9999-12-31T23:00:00-05:00"},
     "expires_at"),
])
def test_invalid_coupons_are_422_naming_the_field(v1, body, field):
    assert_invalid(v1.post("/v1/coupons", json=body), field, exact=True)
    assert json_body(v1.get("/v1/coupons"))["data"] == []


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"])
def test_a_moment_outside_the_calendar_in_utc_is_422_not_500(v1, moment):
    """Coupons read their dates as the order list reads its bounds."""
    assert_invalid(v1.get("/v1/orders", params={"from": moment}), "from", exact=True)


def test_a_code_is_unique_per_mode_whatever_its_letter_case(client, v1):
    make_coupon(v1, code="Summer")
    assert_invalid(v1.post("/v1/coupons", json={"code": "sUMMER", "percent_off": 5}), "code",
                   exact=True)
    live = client.keyed(mode="live")
    assert make_coupon(live, code="summer")["mode"] == "live"
    assert len(json_body(v1.get("/v1/coupons"))["data"]) == 1


def test_patch_takes_only_its_fields_and_never_a_limit_below_the_redemptions(v1):
    product, _ = key_product(v1, 5)
    coupon = make_coupon(v1, max_redemptions=5)
    for _ in range(2):
        place_order(v1, product["id"], coupon=coupon["code"])
    for body, field in (({"code": "OTHER"}, "code"), ({"percent_off": 50}, "percent_off"),
                        ({"product_ids": None}, "product_ids"),
                        ({"max_redemptions": 1}, "max_redemptions")):
        assert_invalid(v1.patch(f"/v1/coupons/{coupon['id']}", json=body), field, exact=True)
    assert coupon_of(v1, coupon["id"]) == {**coupon, "redemptions": 2}
    assert json_body(v1.patch(f"/v1/coupons/{coupon['id']}",
                              json={"max_redemptions": 2}))["max_redemptions"] == 2


def test_a_create_sent_twice_with_one_idempotency_key_makes_one_coupon(v1):
    headers = {"Idempotency-Key": "coupon-once"}
    first = v1.post("/v1/coupons", json={"code": "ONCE", "percent_off": 5}, headers=headers)
    again = v1.post("/v1/coupons", json={"code": "ONCE", "percent_off": 5}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert len(json_body(v1.get("/v1/coupons"))["data"]) == 1


def test_unknown_and_other_mode_coupons_are_404(client, v1):
    coupon = make_coupon(v1)
    live = client.keyed(mode="live")
    for method in ("GET", "PATCH", "DELETE"):
        assert_problem(live.open(f"/v1/coupons/{coupon['id']}", method=method, json={}),
                       404, "not_found")
    assert_problem(v1.get("/v1/coupons/cpn_01J0000000000000000000000Z"), 404, "not_found")


# --- the price of an order ------------------------------------------------------------------

@pytest.mark.parametrize("price, qty, coupon, subtotal, discount", [
    (4900, 2, {"percent_off": 25}, 9800, 2450),
    (999, 1, {"percent_off": 33}, 999, 329),  # 329.67 rounds down: the buyer pays 670
    (1, 1, {"percent_off": 99}, 1, 0),
    (4900, 3, {"amount_off_cents": 500, "currency": "USD"}, 14700, 500),
    (4900, 1, {"amount_off_cents": 10000, "currency": "USD"}, 4900, 4900),  # capped
])
def test_quote_and_order_take_the_same_discount(v1, price, qty, coupon, subtotal, discount):
    product, _ = key_product(v1, 5, price_cents=price)
    code = make_coupon(v1, **coupon)["code"]
    body = order_body(product, code.lower(), qty=qty)
    total = subtotal - discount
    quote = json_body(v1.post("/v1/orders/quote", json=body))
    # A coupon that takes nothing off is not applied (and spends no redemption).
    assert quote == {"subtotal_cents": subtotal, "discount_cents": discount,
                     "total_cents": total, "currency": "USD",
                     "coupon": code if discount else None}
    order = json_body(v1.post("/v1/orders", json=body), 201)
    assert {k: order[k] for k in quote} == quote
    assert order["items"][0]["subtotal_cents"] == subtotal
    assert order["items"][0]["unit_price_cents"] == price
    if total:
        assert order["payment"]["asset_amount"] == f"{total / 100:.6f}"
        assert pay(v1, order["id"])["status"] == "completed"


def test_a_coupon_that_takes_nothing_off_spends_no_redemption(v1):
    free = make_product(v1, type="account", delivery_text="x", price_cents=0)
    coupon = make_coupon(v1, percent_off=50, max_redemptions=1, once_per_customer=True)
    for _ in range(2):
        order = json_body(v1.post("/v1/orders", json=order_body(free, coupon["code"])), 201)
        assert (order["coupon"], order["discount_cents"], order["total_cents"]) == (None, 0, 0)
    assert json_body(v1.get(f"/v1/coupons/{coupon['id']}"))["redemptions"] == 0


def test_a_null_coupon_is_no_coupon(v1):
    product, _ = key_product(v1, 2)
    body = {**order_body(product, None), "coupon": None}
    assert json_body(v1.post("/v1/orders/quote", json=body))["coupon"] is None
    assert json_body(v1.post("/v1/orders", json=body), 201)["discount_cents"] == 0


def test_an_order_without_a_coupon_has_no_discount(v1):
    product, _ = key_product(v1, 2)
    body = order_body(product, None)
    assert json_body(v1.post("/v1/orders/quote", json=body)) == {
        "subtotal_cents": 4900, "discount_cents": 0, "total_cents": 4900, "currency": "USD",
        "coupon": None}
    order = json_body(v1.post("/v1/orders", json=body), 201)
    assert (order["subtotal_cents"], order["discount_cents"], order["coupon"]) == \
        (4900, 0, None)


def test_the_quote_reserves_nothing(v1, app_db):
    product, _ = key_product(v1, 1)
    coupon = make_coupon(v1, max_redemptions=1, once_per_customer=True)
    body = order_body(product, coupon["code"])
    for _ in range(3):
        json_body(v1.post("/v1/orders/quote", json=body))
    assert get_product(v1, product["id"])["stock"] == 1
    assert coupon_of(v1, coupon["id"])["redemptions"] == 0
    assert order_ids(v1) == set() and app_db.query("SELECT * FROM events "
                                                   "WHERE type LIKE 'order.%'") == []
    place_order(v1, product["id"], customer_email=body["customer_email"],
                coupon=coupon["code"])
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1


def test_the_quote_refuses_what_create_refuses(v1):
    product, _ = key_product(v1, 1)
    for body, field in (({"qty": 2}, "qty"), ({"product_id": "prod_nope"}, "product_id"),
                        ({"chain": "tron", "asset": "DOGE"}, "asset"),
                        ({"coupon": "a b"}, "coupon")):
        full = {**order_body(product, None), **body}
        quoted = assert_invalid(v1.post("/v1/orders/quote", json=full), field, exact=True)
        created = assert_invalid(v1.post("/v1/orders", json=full), field, exact=True)
        assert quoted["errors"] == created["errors"]
    assert_problem(v1.post("/v1/orders/quote", json={}), 400, "invalid_request")


def test_the_quote_is_a_route_of_its_own(app, v1):
    """`POST /v1/orders/quote` matches no rule taking an order id."""
    adapter = app.url_map.bind("localhost")
    assert adapter.match("/v1/orders/quote", method="POST")[0] == "v1.quote_order"
    assert_problem(v1.get("/v1/orders/quote"), 404, "not_found")


# --- refusals, on create and quote alike ------------------------------------------------------

def _refusal(v1, clock, reason: str) -> tuple[dict, dict, str]:
    """A product, an order body whose coupon is refused for `reason`, and the expected words."""
    product, _ = key_product(v1, 5)
    body = order_body(product, None)
    if reason == "unknown":
        return product, {**body, "coupon": "NO-SUCH-CODE"}, "no coupon has this code"
    fields, words = {
        "disabled": ({"status": "disabled"}, "this coupon is disabled"),
        "not started": ({"starts_at": iso(utcnow() + timedelta(hours=1))}, "valid from"),
        "expired": ({"expires_at": iso(utcnow() - timedelta(seconds=1))}, "expired at"),
        "used up": ({"max_redemptions": 1}, "used up"),
        "not for this product": ({"product_ids": [make_product(v1)["id"]]},
                                 "does not apply to this product"),
        "another currency": ({"amount_off_cents": 100, "currency": "EUR"}, "orders in EUR"),
        "already used by this customer": ({"once_per_customer": True},
                                          "already used with this email"),
    }[reason]
    code = make_coupon(v1, **fields)["code"]
    if reason in ("used up", "already used by this customer"):
        place_order(v1, product["id"], customer_email=body["customer_email"], coupon=code)
    return product, {**body, "coupon": code.lower()}, words


REASONS = ["unknown", "disabled", "not started", "expired", "used up", "not for this product",
           "another currency", "already used by this customer"]


@pytest.mark.parametrize("reason", REASONS)
@pytest.mark.parametrize("path", ["/v1/orders", "/v1/orders/quote"])
def test_a_refused_coupon_is_422_saying_why_and_reserves_nothing(v1, clock, reason, path):
    product, body, words = _refusal(v1, clock, reason)
    stock, orders = get_product(v1, product["id"])["stock"], order_ids(v1)
    refused = assert_invalid(v1.post(path, json=body), "coupon", exact=True)
    assert words in refused["errors"]["coupon"]
    assert get_product(v1, product["id"])["stock"] == stock
    assert order_ids(v1) == orders


def test_a_coupon_counts_from_its_start_to_its_end(v1, clock):
    product, _ = key_product(v1, 5)
    starts, ends = utcnow() + timedelta(hours=1), utcnow() + timedelta(hours=2)
    code = make_coupon(v1, starts_at=iso(starts), expires_at=iso(ends))["code"]
    body = order_body(product, code)
    assert_invalid(v1.post("/v1/orders/quote", json=body), "coupon")
    clock.advance(3600)
    assert json_body(v1.post("/v1/orders/quote", json=body))["discount_cents"] == 1225
    clock.advance(3600)
    assert json_body(v1.post("/v1/orders/quote", json=body))["discount_cents"] == 1225
    clock.advance(1)
    assert_invalid(v1.post("/v1/orders/quote", json=body), "coupon")


# --- free orders, once per customer, redemptions given back -------------------------------

def test_a_100_percent_coupon_makes_a_free_order_delivered_at_once(v1, app_db):
    product, pool = key_product(v1, 3)
    coupon = make_coupon(v1, percent_off=100)
    order = place_order(v1, product["id"], qty=2, coupon=coupon["code"])
    assert order["status"] == "completed" and order["payment"] is None
    assert (order["subtotal_cents"], order["discount_cents"], order["total_cents"]) == \
        (9800, 9800, 0)
    assert order["paid_at"] and set(order["delivery"]["keys"]) <= set(pool)
    assert event_types(app_db, order["id"]) == {"order.created": 1, "order.paid": 1,
                                                "order.delivered": 1}
    (data,), = app_db.query("SELECT data FROM events WHERE type = 'order.paid' AND "
                            "json_extract(data, '$.object.id') = ?", (order["id"],))
    shown = json.loads(data)["object"]
    assert (shown["coupon"], shown["discount_cents"]) == (coupon["code"], 9800)
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1


def test_once_per_customer_goes_by_the_buyers_email(v1):
    product, _ = key_product(v1, 5)
    coupon = make_coupon(v1, once_per_customer=True)
    email = buyer("once")
    place_order(v1, product["id"], customer_email=email, coupon=coupon["code"])
    refused = v1.post("/v1/orders", json=order_body(product, coupon["code"],
                                                    customer_email=f" {email.upper()} "))
    assert_invalid(refused, "coupon", exact=True)
    place_order(v1, product["id"], customer_email=email)  # without the coupon: fine
    place_order(v1, product["id"], coupon=coupon["code"])  # another buyer: fine
    assert coupon_of(v1, coupon["id"])["redemptions"] == 2


def test_an_order_expiring_unpaid_gives_its_redemption_back(v1, clock, tick):
    product, _ = key_product(v1, 5)
    coupon = make_coupon(v1, max_redemptions=1, once_per_customer=True)
    email = buyer("expiry")
    order = place_order(v1, product["id"], customer_email=email, coupon=coupon["code"])
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1
    assert_invalid(v1.post("/v1/orders", json=order_body(product, coupon["code"])), "coupon")

    clock.advance(60 * 60)
    tick("poll_payments")
    failed = fetch(v1, order["id"])
    assert failed["status"] == "failed" and failed["coupon"] == coupon["code"]
    assert coupon_of(v1, coupon["id"])["redemptions"] == 0
    again = place_order(v1, product["id"], customer_email=email, coupon=coupon["code"])
    assert again["discount_cents"] == 1225
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1


def test_a_late_payment_takes_the_redemption_again(v1, clock):
    product, _ = key_product(v1, 5)
    coupon = make_coupon(v1, max_redemptions=1)
    order = expire(v1, place_order(v1, product["id"], coupon=coupon["code"])["id"])
    assert coupon_of(v1, coupon["id"])["redemptions"] == 0
    paid = pay(v1, order["id"])
    assert paid["status"] == "completed" and paid["payment"]["paid_cents"] == 3675
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1


def test_a_late_payment_is_given_back_when_the_coupon_was_used_up_meanwhile(v1, clock, tick):
    product, _ = key_product(v1, 5)
    coupon = make_coupon(v1, max_redemptions=1)
    order = expire(v1, place_order(v1, product["id"], coupon=coupon["code"])["id"])
    place_order(v1, product["id"], coupon=coupon["code"])  # another buyer takes it
    late = pay(v1, order["id"])
    assert late["status"] == "failed" and "keys" not in late["delivery"]
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1
    assert get_product(v1, product["id"])["stock"] == 4
    assert_given_back(v1, clock, tick, order["id"], 3675)


def test_a_disabled_coupon_leaves_its_orders_alone(v1):
    product, _ = key_product(v1, 5)
    coupon = make_coupon(v1)
    order = place_order(v1, product["id"], coupon=coupon["code"])
    json_body(v1.delete(f"/v1/coupons/{coupon['id']}"))
    paid = pay(v1, order["id"])
    assert paid["status"] == "completed" and paid["total_cents"] == 3675
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1


def test_a_test_coupon_is_unknown_to_live_orders(client, v1):
    coupon = make_coupon(v1)
    live = client.keyed(mode="live")
    product = make_product(live, type="account", delivery_text="x")
    refused = live.post("/v1/orders/quote", json=order_body(product, coupon["code"]))
    assert "no coupon" in assert_invalid(refused, "coupon")["errors"]["coupon"]


def test_a_live_shop_without_blockpn_quotes_only_free_orders(client):
    """As it creates only free ones."""
    live = client.keyed(mode="live")
    product = make_product(live, type="account", delivery_text="x")
    assert_invalid(live.post("/v1/orders/quote", json=order_body(product, None)), "payment",
                   exact=True)
    free = make_coupon(live, percent_off=100)["code"]
    quote = json_body(live.post("/v1/orders/quote", json=order_body(product, free)))
    assert quote["total_cents"] == 0


# --- the storefront, in process ----------------------------------------------------------------

def storefront_checkout(client, product: dict, **fields):
    page = client.get(f"/test/product/{product['slug']}")
    assert page.status_code == 200 and 'name="coupon"' in page.text
    return client.post(f"/test/product/{product['slug']}/checkout", data={
        "csrf_token": form_token(page.text), "email": buyer("shop"), **fields})


def test_the_storefront_takes_a_coupon_and_shows_the_discount(client, v1):
    product, _ = key_product(v1, 3)
    coupon = make_coupon(v1, code="SHOP10", percent_off=10)
    answer = storefront_checkout(client, product, qty="2", coupon=" shop10 ")
    assert answer.status_code == 303, answer.text
    order_id = ORDER_PATH.search(answer.headers["Location"]).group(2)
    order = fetch(v1, order_id)
    assert (order["coupon"], order["discount_cents"], order["total_cents"]) == \
        ("SHOP10", 980, 8820)
    text = page_text(client.get(answer.headers["Location"]).text)
    assert "88.20 USD" in text and "98.00 USD less 9.80 USD with coupon SHOP10" in text
    assert coupon_of(v1, coupon["id"])["redemptions"] == 1


@pytest.mark.parametrize("code, message", [
    ("NOPE-NOPE", "There is no coupon with this code."),
    ("a b", "Please check the coupon code."),
])
def test_a_refused_coupon_is_shown_next_to_its_field(client, v1, code, message):
    product, _ = key_product(v1, 3)
    answer = storefront_checkout(client, product, coupon=code)
    assert answer.status_code == 422
    html = answer.text
    field = html.index('name="coupon"')
    error = html.index(f'<p class="error" role="alert">{message}</p>')
    assert field < error < html.index("</form>")
    assert f'value="{code}"' in html  # what the buyer typed stays
    assert get_product(v1, product["id"])["stock"] == 3


# --- the dashboard, in process -----------------------------------------------------------------

def test_the_dashboard_creates_lists_and_disables_a_coupon_with_its_redemptions(app, client,
                                                                                 v1):
    dashboard = signed_in_dashboard(app, client)
    product, _ = key_product(v1, 3)
    listing = dashboard.get("/dashboard/coupons").text
    assert "No coupons yet." in listing and product["name"] in listing
    form = hidden_fields(listing, "/dashboard/coupons")
    created = dashboard.post("/dashboard/coupons", data={
        **form, "code": "DASH5", "kind": "amount", "value": "5.00", "currency": "usd",
        "product_ids": [product["id"]], "max_redemptions": "3", "once_per_customer": "1",
        "expires_at": "2099-12-31"})
    assert created.status_code == 303, created.text
    [coupon] = json_body(v1.get("/v1/coupons"))["data"]
    assert created.headers["Location"] == f"/dashboard/coupons/{coupon['id']}"
    assert (coupon["code"], coupon["amount_off_cents"], coupon["currency"],
            coupon["product_ids"], coupon["max_redemptions"], coupon["once_per_customer"],
            coupon["expires_at"]) == ("DASH5", 500, "USD", [product["id"]], 3, True,
                                      "2099-12-31T23:59:59Z")

    json_body(v1.patch(f"/v1/coupons/{coupon['id']}", json={"metadata": {"team": "<b>"}}))
    order = place_order(v1, product["id"], coupon="dash5")
    page = dashboard.get(created.headers["Location"]).text
    assert order["id"] in page and order["customer_email"] in page
    assert "1 of 3" in page and product["name"] in page
    assert "<code>team</code>: &lt;b&gt;" in page
    shown = page_text(dashboard.get(f"/dashboard/orders/{order['id']}").text)
    assert "49.00 USD less 5.00 USD with coupon DASH5" in shown
    filtered = dashboard.get("/dashboard/coupons", params={"code": "dash5"}).text
    assert f"/dashboard/coupons/{coupon['id']}" in filtered
    status_form = {**hidden_fields(page, f"/dashboard/coupons/{coupon['id']}/status"),
                   "status": "disabled"}
    assert dashboard.post(f"/dashboard/coupons/{coupon['id']}/status",
                          data=status_form).status_code == 303
    assert coupon_of(v1, coupon["id"])["status"] == "disabled"
    assert ">Enable<" in dashboard.get(created.headers["Location"]).text
    assert "DASH5" in dashboard.get("/dashboard/coupons").text


def test_the_dashboard_shows_the_apis_message_and_wants_the_csrf_token(app, client, v1):
    dashboard = signed_in_dashboard(app, client)
    form = hidden_fields(dashboard.get("/dashboard/coupons").text, "/dashboard/coupons")
    refused = dashboard.post("/dashboard/coupons", data={**form, "code": "two words",
                                                         "value": "5"}, follow_redirects=True)
    assert "code: must be 3 to 40 letters" in refused.text
    no_token = {k: v for k, v in form.items() if k != "csrf_token"}
    answer = dashboard.post("/dashboard/coupons", data={**no_token, "code": "NOCSRF",
                                                        "value": "5"})
    assert answer.status_code == 400
    assert json_body(v1.get("/v1/coupons"))["data"] == []


# --- over the real server --------------------------------------------------------------------

RACERS, LIMIT = 50, 5


def test_max_redemptions_holds_in_a_50_way_race(server, api, test_key):
    product, _ = key_product(api, RACERS + 10)
    coupon = make_coupon(api, max_redemptions=LIMIT)

    def checkout(_):
        client = server.client(test_key)
        return client.post("/v1/orders", json=order_body(product, coupon["code"]))

    with ThreadPoolExecutor(RACERS) as pool:
        answers = list(pool.map(checkout, range(RACERS)))
    created = [a.json() for a in answers if a.status_code == 201]
    refused = [a for a in answers if a.status_code != 201]
    assert len(created) == LIMIT and all(o["coupon"] == coupon["code"] for o in created)
    assert len(refused) == RACERS - LIMIT
    for answer in refused:
        assert "used up" in assert_invalid(answer, "coupon", exact=True)["errors"]["coupon"]
    assert coupon_of(api, coupon["id"])["redemptions"] == LIMIT
    assert get_product(api, product["id"])["stock"] == RACERS + 10 - LIMIT
    assert server.query("SELECT count(*) FROM coupon_redemptions WHERE coupon_id = ?",
                        (coupon["id"],)) == [(LIMIT,)]


def test_a_coupon_in_the_browser(server, api, browser, artifacts):
    product, _ = key_product(api, 3, name="Coupon Game")
    make_coupon(api, code="BROWSER20", percent_off=20)
    context = browser.new_context(**DEVICES["phone"])
    try:
        page = context.new_page()
        assert page.goto(product_url(server, product["slug"])).status == 200
        page.get_by_label("Email").fill(buyer("browser"))
        page.get_by_label("Coupon code").fill("nope-nope")
        page.get_by_role("button", name="Check out").click()
        assert page.get_by_role("alert").inner_text() == "There is no coupon with this code."
        snapshot(page, artifacts, "phone", "coupon-refused")
        page.get_by_label("Coupon code").fill("browser20")
        page.get_by_role("button", name="Check out").click()
        page.wait_for_url(re.compile(r"/test/order/ord_\w+\?t="))
        text = page.locator("main").inner_text()
        assert "39.20 USD" in text and "with coupon BROWSER20" in text
        snapshot(page, artifacts, "phone", "coupon-order")
        order = fetch(api, ORDER_PATH.search(page.url).group(2))
        assert (order["total_cents"], order["coupon"]) == (3920, "BROWSER20")
    finally:
        context.close()
