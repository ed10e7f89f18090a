"""Orders, checkout and payments (docs/api.md, Orders; docs/blockpn.md), through the real server:
the test-mode sandbox driven by the test helpers, delivery of license keys and account
texts, the buyer's email (outbox folder and real SMTP), customers, concurrent checkouts, and
live mode end to end against the BlockPN simulator over HTTP."""

from __future__ import annotations

import email
import email.policy
import hashlib
import hmac
import json
import re
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
import requests

from conftest import ULID, Server, assert_problem, free_port, mint_via_api, wait_until
from support import (
    SIM_IPN_SECRET,
    Mailbox,
    assert_invalid,
    buyer,
    email_rows,
    event_types,
    expire,
    fetch,
    get_product,
    invoice_of,
    key_product,
    live_mode_shop,
    make_product,
    pay,
    place_order,
    smtp_config,
    wait_for_status,
)

ORDER_ID = re.compile(rf"ord_{ULID}")
CUSTOMER_ID = re.compile(rf"cus_{ULID}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
ORDER_KEYS = {"id", "mode", "status", "total_cents", "refunded_cents", "currency",
              "customer_email", "customer_id", "created_at", "paid_at", "payment", "items",
              "delivery"}
PAYMENT_KEYS = {"provider", "chain", "asset", "address", "asset_amount", "expires_at",
                "paid_cents", "tx_hash", "checkout_url"}
CUSTOMER_KEYS = {"id", "email", "orders_count", "lifetime_cents", "first_seen_at",
                 "last_seen_at"}
# Orders a product can't take as asked: (product fields, extra order fields, errors key).
REFUSED_ORDERS = {
    "file_download without a file": ({"type": "file_download"}, {}, "product_id"),
    "physical without an address": ({"type": "physical", "stock": 5}, {}, "shipping_address"),
    "an address for an account": ({"type": "account", "stock": 5, "delivery_text": "x"},
                                  {"shipping_address": {"name": "A", "line1": "B", "city": "C",
                                                        "postal_code": "1", "country": "DE"}},
                                  "shipping_address"),
}


# --- helpers ------------------------------------------------------------------------------

def stock_of(client, product_id: str):
    return get_product(client, product_id)["stock"]


def order_events(server: Server, order_id: str) -> list[tuple[str, dict]]:
    """(type, data) of every event about the order, oldest first."""
    rows = server.query("SELECT type, data FROM events WHERE json_extract(data, '$.object.id')"
                        " = ? ORDER BY id", (order_id,))
    return [(kind, json.loads(data)) for kind, data in rows]


def customer_created_events(server: Server, address: str) -> list[dict]:
    rows = server.query("SELECT data FROM events WHERE type = 'customer.created' AND "
                        "json_extract(data, '$.object.email') = ?", (address,))
    return [json.loads(data) for (data,) in rows]


def key_rows(server: Server, product_id: str) -> list[tuple[str, str, str | None]]:
    """(key, state, order_id) of a product's pool."""
    return server.query("SELECT key, state, order_id FROM license_keys WHERE product_id = ? "
                        "ORDER BY id", (product_id,))


def parse_mail(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def find_customer(client, address: str) -> dict | None:
    response = client.get("/v1/customers", params={"email": address})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert len(data) <= 1, data
    return data[0] if data else None


def list_orders(client, **params) -> dict:
    response = client.get("/v1/orders", params=params)
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "list"
    return page


def ids(page: dict) -> list[str]:
    return [order["id"] for order in page["data"]]


def shifted(stamp: str, seconds: int = 0, offset_hours: int = 0) -> str:
    """`stamp` moved by `seconds`, written in the time zone UTC+`offset_hours`."""
    moment = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    moment += timedelta(seconds=seconds)
    return moment.astimezone(timezone(timedelta(hours=offset_hours))).isoformat()


def same(order: dict, other: dict) -> bool:
    """Equal orders, but for the signature in `payment.checkout_url` (checked on its own)."""
    def without_token(o):
        payment = {**o["payment"], "checkout_url": o["payment"]["checkout_url"].split("?")[0]}
        return {**o, "payment": payment}
    return without_token(order) == without_token(other)


def order_link(server: Server, order: dict) -> str:
    """The order page's URL up to its token: `<public url>[/test]/order/<id>?t=`."""
    prefix = "/test" if order["mode"] == "test" else ""
    return f"{server.url}{prefix}/order/{order['id']}?t="


def day_of(stamp: str, days: int = 0) -> str:
    return (datetime.strptime(stamp[:10], "%Y-%m-%d") + timedelta(days=days)).strftime(
        "%Y-%m-%d")


# --- 1. the test-mode flow: order, payment, delivery, events, email -------------------------

def test_order_flow_in_test_mode(server, api):
    product, pool = key_product(api, 10, price_cents=4900)
    assert stock_of(api, product["id"]) == 10

    response = api.post("/v1/orders", json={"product_id": product["id"], "qty": 2,
                                            "customer_email": "Buyer@Example.com"})
    assert response.status_code == 201, response.text
    order = response.json()
    assert ORDER_KEYS <= set(order), order
    assert ORDER_ID.fullmatch(order["id"])
    assert CUSTOMER_ID.fullmatch(order["customer_id"])
    assert order["mode"] == "test"
    assert order["status"] == "awaiting_payment"
    assert order["total_cents"] == 9800
    assert order["refunded_cents"] == 0
    assert order["currency"] == "USD"
    assert order["customer_email"] == "buyer@example.com"
    assert TIMESTAMP.fullmatch(order["created_at"])
    assert order["paid_at"] is None

    payment = order["payment"]
    assert PAYMENT_KEYS <= set(payment), payment
    assert payment["provider"] == "blockpn"
    assert (payment["chain"], payment["asset"]) == ("tron", "USDT")
    assert isinstance(payment["address"], str) and payment["address"].strip()
    assert payment["asset_amount"] == "98.000000"
    assert TIMESTAMP.fullmatch(payment["expires_at"])
    ttl = (datetime.fromisoformat(payment["expires_at"].replace("Z", "+00:00"))
           - datetime.fromisoformat(order["created_at"].replace("Z", "+00:00")))
    assert timedelta(minutes=59) <= ttl <= timedelta(minutes=61)  # invoice_ttl_minutes = 60
    assert payment["paid_cents"] == 0
    assert payment["tx_hash"] is None
    assert re.fullmatch(rf"{re.escape(server.url)}/test/order/{order['id']}\?t=\S+",
                        payment["checkout_url"]), payment["checkout_url"]

    assert order["items"] == [{"product_id": product["id"], "product": product["name"],
                               "qty": 2, "unit_price_cents": 4900, "subtotal_cents": 9800}]
    delivery = order["delivery"]
    assert delivery["kind"] == "license_key"
    assert delivery["state"] == "pending"
    assert not delivery.get("keys")
    assert stock_of(api, product["id"]) == 8
    assert same(fetch(api, order["id"]), order)

    paid = pay(api, order["id"])
    assert paid["status"] == "completed"
    assert TIMESTAMP.fullmatch(paid["paid_at"])
    assert paid["payment"]["paid_cents"] == 9800
    assert paid["payment"]["overpaid_cents"] == 0
    assert paid["payment"]["tx_hash"]
    assert paid["delivery"]["state"] == "delivered"
    assert TIMESTAMP.fullmatch(paid["delivery"]["delivered_at"])
    keys = paid["delivery"]["keys"]
    assert len(keys) == 2 and len(set(keys)) == 2 and set(keys) <= set(pool)
    assert same(fetch(api, order["id"]), paid)
    assert stock_of(api, product["id"]) == 8
    pool_state = {key: (state, owner) for key, state, owner in key_rows(server, product["id"])}
    assert all(pool_state[key] == ("delivered", order["id"]) for key in keys)
    assert sum(1 for state, _ in pool_state.values() if state == "available") == 8

    # Events: each once, in order, each carrying the order as it was then.
    events = order_events(server, order["id"])
    assert [kind for kind, _ in events] == ["order.created", "order.paid", "order.delivered"]
    for _, data in events:
        assert data["object"]["id"] == order["id"]
        assert ORDER_KEYS <= set(data["object"])
    by_type = dict(events)
    assert by_type["order.created"]["object"]["status"] == "awaiting_payment"
    assert by_type["order.paid"]["object"]["paid_at"] == paid["paid_at"]
    assert by_type["order.delivered"]["object"]["status"] == "completed"
    assert by_type["order.delivered"]["object"]["delivery"]["keys"] == keys
    created = customer_created_events(server, "buyer@example.com")
    assert len(created) == 1
    assert created[0]["object"]["id"] == order["customer_id"]

    # The buyer's email: a row, then (no SMTP configured) an .eml file in the outbox folder.
    rows = email_rows(server, order["id"])
    assert len(rows) == 1, rows
    assert rows[0]["kind"] == "order_delivered"
    assert rows[0]["to_address"] == "buyer@example.com"
    assert rows[0]["mode"] == "test"
    eml = server.root / "data" / "outbox" / f"{rows[0]['id']}.eml"
    wait_until(eml.exists, what="the delivery email in the outbox folder")
    message = parse_mail(eml.read_bytes())
    assert message["To"] == "buyer@example.com"
    text = message.get_content()
    for key in keys:
        assert key in text
    assert order_link(server, paid) in text
    assert wait_until(lambda: email_rows(server, order["id"])[0]["status"] == "outbox")


def test_an_unpaid_order_hides_the_goods_and_is_not_a_sale(server, api):
    product, _ = key_product(api, 3)
    order = place_order(api, product["id"])
    again = fetch(api, order["id"])
    assert again["status"] == "awaiting_payment"
    assert again["paid_at"] is None
    assert again["delivery"]["state"] == "pending" and not again["delivery"].get("keys")
    assert event_types(server, order["id"]) == Counter({"order.created": 1})
    assert email_rows(server, order["id"]) == []


def test_checkout_url_is_a_stable_property_of_the_order(server, api):
    product, _ = key_product(api, 1)
    order = place_order(api, product["id"])
    link = order["payment"]["checkout_url"]
    # Read again in a later second: a buyer may already hold the link, it can't change.
    after = time.time()
    wait_until(lambda: int(time.time()) > int(after), interval=0.02, what="the next second")
    assert fetch(api, order["id"])["payment"]["checkout_url"] == link
    paid = pay(api, order["id"])
    assert paid["payment"]["checkout_url"] == link
    (body,), = server.query("SELECT body_text FROM emails WHERE related_id = ?",
                            (order["id"],))
    assert link in body
    (data,), = server.query("SELECT data FROM events WHERE type = 'order.created' AND "
                            "json_extract(data, '$.object.id') = ?", (order["id"],))
    assert json.loads(data)["object"]["payment"]["checkout_url"] == link


# --- 2. partial payments and overpayment --------------------------------------------------

def test_partial_payments_add_up(server, api):
    product, pool = key_product(api, 5)
    order = place_order(api, product["id"])

    partly = pay(api, order["id"], 1000)
    assert partly["status"] == "awaiting_payment"
    assert partly["payment"]["paid_cents"] == 1000
    assert partly["paid_at"] is None
    assert partly["delivery"]["state"] == "pending" and not partly["delivery"].get("keys")
    assert fetch(api, order["id"])["payment"]["paid_cents"] == 1000
    assert "order.paid" not in event_types(server, order["id"])
    assert email_rows(server, order["id"]) == []
    assert [state for _, state, owner in key_rows(server, product["id"])
            if owner == order["id"]] == ["reserved"]

    second = pay(api, order["id"], 1500)
    assert second["status"] == "awaiting_payment"
    assert second["payment"]["paid_cents"] == 2500

    rest = pay(api, order["id"])  # pays what is still due: 2400
    assert rest["status"] == "completed"
    assert rest["payment"]["paid_cents"] == 4900
    assert rest["payment"]["overpaid_cents"] == 0
    assert len(rest["delivery"]["keys"]) == 1 and rest["delivery"]["keys"][0] in pool
    assert event_types(server, order["id"]) == Counter(
        {"order.created": 1, "order.paid": 1, "order.delivered": 1})


def test_overpayment_completes_and_is_shown(server, api):
    product, _ = key_product(api, 2)
    order = place_order(api, product["id"])
    paid = pay(api, order["id"], 6000)
    assert paid["status"] == "completed"
    assert paid["payment"]["paid_cents"] == 6000
    assert paid["payment"]["overpaid_cents"] == 1100
    assert paid["total_cents"] == 4900
    assert len(paid["delivery"]["keys"]) == 1


def test_a_settled_order_can_not_be_paid_again(api):
    product, _ = key_product(api, 2)
    order = place_order(api, product["id"])
    done = pay(api, order["id"])
    response = api.post(f"/v1/test_helpers/orders/{order['id']}/pay", json={})
    assert_invalid(response)
    response = api.post(f"/v1/test_helpers/orders/{order['id']}/expire")
    assert_invalid(response)
    assert same(fetch(api, order["id"]), done)


def test_pay_helper_validates_the_amount(api):
    product, _ = key_product(api, 1)
    order = place_order(api, product["id"])
    for amount in (0, -5, "100", 1.5):
        response = api.post(f"/v1/test_helpers/orders/{order['id']}/pay",
                            json={"amount_cents": amount})
        assert_invalid(response, "amount_cents")
    assert fetch(api, order["id"])["payment"]["paid_cents"] == 0


# --- 3. expiry ----------------------------------------------------------------------------

def test_expiry_fails_the_order_and_releases_the_keys(server, api):
    product, _ = key_product(api, 10)
    order = place_order(api, product["id"], qty=3)
    assert stock_of(api, product["id"]) == 7

    failed = expire(api, order["id"])
    assert failed["status"] == "failed"
    assert isinstance(failed["failure_reason"], str) and failed["failure_reason"]
    assert failed["paid_at"] is None
    assert failed["delivery"]["state"] != "delivered" and not failed["delivery"].get("keys")
    assert same(fetch(api, order["id"]), failed)
    assert stock_of(api, product["id"]) == 10
    assert all(state == "available" and owner is None
               for _, state, owner in key_rows(server, product["id"]))
    assert event_types(server, order["id"]) == Counter({"order.created": 1, "order.failed": 1})
    failed_event = dict(order_events(server, order["id"]))["order.failed"]
    assert failed_event["object"]["status"] == "failed"

    assert same(fetch(api, order["id"]), failed)
    assert email_rows(server, order["id"]) == []

    # The released keys can be sold again.
    again = place_order(api, product["id"], qty=10)
    assert len(pay(api, again["id"])["delivery"]["keys"]) == 10


def test_partly_paid_then_expired_fails_without_delivery(server, api):
    product, _ = key_product(api, 4)
    order = place_order(api, product["id"], qty=2)
    pay(api, order["id"], 1000)
    failed = expire(api, order["id"])
    assert failed["status"] == "failed"
    assert "partial" in failed["failure_reason"].lower()
    assert failed["payment"]["paid_cents"] == 1000
    assert failed["paid_at"] is None
    assert failed["delivery"]["state"] != "delivered" and not failed["delivery"].get("keys")
    assert stock_of(api, product["id"]) == 4
    types = event_types(server, order["id"])
    assert types == Counter({"order.created": 1, "order.failed": 1})
    assert email_rows(server, order["id"]) == []


# --- 4. account products ------------------------------------------------------------------

def test_account_product_delivers_its_text(server, api):
    text = "login: alice@example.net\npassword: c0rrect-h0rse"
    product = make_product(api, type="account", price_cents=1500, delivery_text=text, stock=3)
    order = place_order(api, product["id"])
    assert order["delivery"] == {**order["delivery"], "kind": "account", "state": "pending"}
    assert not order["delivery"].get("text")
    assert stock_of(api, product["id"]) == 2

    paid = pay(api, order["id"])
    assert paid["status"] == "completed"
    assert paid["delivery"]["state"] == "delivered"
    assert paid["delivery"]["text"] == text
    assert "keys" not in paid["delivery"]
    assert stock_of(api, product["id"]) == 2
    rows = email_rows(server, order["id"])
    assert len(rows) == 1 and text in rows[0]["body_text"]

    other = place_order(api, product["id"], qty=2)
    assert stock_of(api, product["id"]) == 0
    expire(api, other["id"])
    assert stock_of(api, product["id"]) == 2


def test_unlimited_account_product(api):
    product = make_product(api, type="account", price_cents=700, delivery_text="invite: xyz")
    assert product["stock"] is None
    order = place_order(api, product["id"], qty=100)
    assert order["total_cents"] == 70000
    assert pay(api, order["id"])["delivery"]["text"] == "invite: xyz"
    assert stock_of(api, product["id"]) is None


# --- 5. validation ------------------------------------------------------------------------

def test_missing_required_fields_are_400_naming_each(api):
    body = assert_problem(api.post("/v1/orders", json={}), 400, "invalid_request")
    assert {"product_id", "customer_email"} <= set(body["errors"])
    body = assert_problem(api.post("/v1/orders", json={"product_id": "prod_x", "qty": 1}),
                          400, "invalid_request")
    assert set(body["errors"]) == {"customer_email"}


def test_invalid_values_are_422_and_reserve_nothing(server, api):
    product, _ = key_product(api, 10)
    address = buyer("invalid")
    base = {"product_id": product["id"], "customer_email": address}
    cases = [
        ({"customer_email": "not-an-email"}, "customer_email"),
        ({"customer_email": "two@@example.com"}, "customer_email"),
        ({"qty": 0}, "qty"),
        ({"qty": -1}, "qty"),
        ({"qty": "2"}, "qty"),
        ({"qty": 101}, "qty"),
        ({"surprise": True}, "surprise"),
    ]
    for change, field in cases:
        assert_invalid(api.post("/v1/orders", json={**base, **change}), field)
    # A pair outside blockpn.accepted: the error names the chain or the asset.
    for pair in ({"chain": "bitcoin", "asset": "USDT"}, {"chain": "dogecoin", "asset": "DOGE"}):
        body = assert_invalid(api.post("/v1/orders", json={**base, **pair}))
        assert {"chain", "asset"} & set(body["errors"]), body
    assert stock_of(api, product["id"]) == 10
    assert find_customer(api, address) is None
    assert list_orders(api, customer_email=address)["data"] == []


def test_max_qty_per_order_is_accepted(api):
    product = make_product(api, type="account", price_cents=100, delivery_text="x")
    assert place_order(api, product["id"], qty=100)["items"][0]["qty"] == 100
    assert_invalid(api.post("/v1/orders", json={"product_id": product["id"], "qty": 101,
                                                "customer_email": buyer()}), "qty")


def test_accepted_pairs_other_than_the_default(api):
    product, _ = key_product(api, 2)
    order = place_order(api, product["id"], chain="ethereum", asset="USDC")
    assert (order["payment"]["chain"], order["payment"]["asset"]) == ("ethereum", "USDC")
    assert order["payment"]["address"]


def test_out_of_stock_is_422_and_changes_nothing(server, api):
    product, _ = key_product(api, 10)
    address = buyer("greedy")
    response = api.post("/v1/orders", json={"product_id": product["id"], "qty": 11,
                                            "customer_email": address})
    assert_invalid(response, "qty")
    assert stock_of(api, product["id"]) == 10
    assert all(state == "available" for _, state, _ in key_rows(server, product["id"]))
    assert find_customer(api, address) is None
    assert server.query("SELECT count(*) FROM orders WHERE product_id = ?",
                        (product["id"],)) == [(0,)]

    finite = make_product(api, type="account", price_cents=100, delivery_text="x", stock=2)
    assert_invalid(api.post("/v1/orders", json={"product_id": finite["id"], "qty": 3,
                                                "customer_email": address}), "qty")
    assert stock_of(api, finite["id"]) == 2

    place_order(api, product["id"], qty=10)
    assert_invalid(api.post("/v1/orders", json={"product_id": product["id"],
                                                "customer_email": address}), "qty")


def test_products_not_for_sale_are_422(api, live):
    archived, _ = key_product(api, 3)
    assert api.delete(f"/v1/products/{archived['id']}").status_code == 200
    draft, _ = key_product(api, 3, status="draft")
    other_mode = make_product(live, type="account", delivery_text="x")
    for product_id in (archived["id"], draft["id"], other_mode["id"], "prod_nope",
                       "prod_01J2PVQR41AAAAAAAAAAAAAAAA"):
        response = api.post("/v1/orders", json={"product_id": product_id,
                                                "customer_email": buyer()})
        assert_invalid(response, "product_id")
    assert stock_of(api, archived["id"]) == 3
    assert stock_of(api, draft["id"]) == 3


@pytest.mark.parametrize("case", sorted(REFUSED_ORDERS))
def test_orders_a_product_cannot_take_are_422(server, api, case):
    fields, extra, error_key = REFUSED_ORDERS[case]
    product = make_product(api, **fields)
    address = buyer("refused")
    response = api.post("/v1/orders", json={"product_id": product["id"],
                                            "customer_email": address, **extra})
    assert_invalid(response, error_key)
    assert stock_of(api, product["id"]) == product["stock"]
    assert server.query("SELECT count(*) FROM orders WHERE product_id = ?",
                        (product["id"],)) == [(0,)]
    assert find_customer(api, address) is None


def test_bad_bodies(api):
    assert_problem(api.post("/v1/orders", data="{", headers={
        "Content-Type": "application/json"}), 400, "invalid_request")
    assert_problem(api.post("/v1/orders", json=["product_id"]), 400, "invalid_request")
    assert_problem(api.post("/v1/orders", data="product_id=x", headers={
        "Content-Type": "application/x-www-form-urlencoded"}), 415, "unsupported_media_type")


# --- 6. test helpers: test mode only, orders:write ----------------------------------------

def test_helpers_are_test_mode_only(server, api, live):
    product, _ = key_product(api, 2)
    order = place_order(api, product["id"])
    for path, body in (("pay", {}), ("pay", {"amount_cents": 100}), ("pay", {"amount_cents": 0}),
                       ("expire", None)):
        response = live.post(f"/v1/test_helpers/orders/{order['id']}/{path}", json=body)
        assert_problem(response, 404, "not_found")
        response = live.post(f"/v1/test_helpers/orders/ord_{'0' * 26}/{path}", json=body)
        assert_problem(response, 404, "not_found")
    assert same(fetch(api, order["id"]), order)
    assert_problem(api.post(f"/v1/test_helpers/orders/ord_{'0' * 26}/pay", json={}),
                   404, "not_found")


def test_orders_abilities(server, api):
    product, _ = key_product(api, 2)
    order = place_order(api, product["id"])
    reader = server.client(mint_via_api(server, "orders:read"))
    for path in ("pay", "expire"):
        body = assert_problem(reader.post(f"/v1/test_helpers/orders/{order['id']}/{path}",
                                          json={}), 403, "forbidden_scope")
        assert "orders:write" in body["detail"]
    assert_problem(reader.post("/v1/orders", json={"product_id": product["id"],
                                                   "customer_email": buyer()}),
                   403, "forbidden_scope")
    assert reader.get(f"/v1/orders/{order['id']}").status_code == 200

    writer = server.client(mint_via_api(server, "orders:write"))
    assert_problem(writer.get(f"/v1/orders/{order['id']}"), 403, "forbidden_scope")
    assert_problem(writer.get("/v1/orders"), 403, "forbidden_scope")
    assert fetch(api, order["id"])["status"] == "awaiting_payment"
    assert stock_of(api, product["id"]) == 1


# --- 7. listing orders ----------------------------------------------------------------------

def test_list_filters_pagination_and_modes(server, api, live):
    product, _ = key_product(api, 10)
    address = buyer("lister")
    first = place_order(api, product["id"], customer_email=address)
    second = place_order(api, product["id"], customer_email=address)
    third = place_order(api, product["id"], customer_email=address.upper())
    pay(api, first["id"])
    expire(api, second["id"])
    place_order(api, product["id"])  # someone else's order
    newest_first = [third["id"], second["id"], first["id"]]

    assert ids(list_orders(api, customer_email=address)) == newest_first
    assert ids(list_orders(api, customer_email=address.upper())) == newest_first
    assert ids(list_orders(api, customer_email=address, status="completed")) == [first["id"]]
    assert ids(list_orders(api, customer_email=address, status="failed")) == [second["id"]]
    assert ids(list_orders(api, customer_email=address, status="awaiting_payment")) == [
        third["id"]]
    assert list_orders(api, customer_email=address, status="refunded")["data"] == []
    assert all(o["status"] == "completed" for o in list_orders(api, status="completed",
                                                               limit=100)["data"])

    # from/to: dates (a date-only `to` includes the whole day) and date-times, inclusive.
    start, end = first["created_at"], third["created_at"]
    window = {
        (("to", day_of(end)),): newest_first,
        (("from", day_of(start)),): newest_first,
        (("from", day_of(start)), ("to", day_of(end))): newest_first,
        (("from", day_of(end, 1)),): [],
        (("to", day_of(start, -1)),): [],
        (("from", start),): newest_first,
        (("to", end),): newest_first,
        (("from", start), ("to", end)): newest_first,
        (("from", shifted(end, 1)),): [],
        (("to", shifted(start, -1)),): [],
        (("from", shifted(start, 0, 2)),): newest_first,      # the same instant in UTC+2
        (("to", shifted(start, -1, -5)),): [],               # a second earlier, in UTC-5
        (("from", shifted(end, 1).replace("+00:00", "Z")),): [],
    }
    for params, expected in window.items():
        page = list_orders(api, customer_email=address, **dict(params))
        assert ids(page) == expected, params

    for params, field in ((("from", "not-a-date"), "from"), (("to", "2026-02-30"), "to"),
                          (("from", "2026-01-01T25:00:00Z"), "from"), (("to", "2026"), "to"),
                          (("status", "lost"), "status")):
        assert_invalid(api.get("/v1/orders", params=dict([params])), field)

    # Pagination: keyset cursors, newest first.
    page = list_orders(api, customer_email=address, limit=2)
    assert ids(page) == newest_first[:2]
    assert page["has_more"] is True and page["next_cursor"]
    rest = list_orders(api, customer_email=address, limit=2, cursor=page["next_cursor"])
    assert ids(rest) == newest_first[2:]
    assert rest["has_more"] is False and rest["next_cursor"] is None
    assert_invalid(api.get("/v1/orders", params={"limit": 0}), "limit")

    # Modes: a live key never sees test orders.
    assert list_orders(live, customer_email=address)["data"] == []
    assert all(o["mode"] == "live" for o in list_orders(live, limit=100)["data"])
    for order_id in newest_first:
        assert_problem(live.get(f"/v1/orders/{order_id}"), 404, "not_found")
    assert_problem(api.get(f"/v1/orders/ord_{'0' * 26}"), 404, "not_found")


# --- 8. customers -------------------------------------------------------------------------

def test_customers(server, api, live):
    product, _ = key_product(api, 10)
    address = f"Loyal.Buyer-{secrets.token_hex(4)}@Example.COM"
    lower = address.lower()
    first = place_order(api, product["id"], customer_email=address)
    customer = find_customer(api, lower)
    assert customer is not None and CUSTOMER_KEYS <= set(customer)
    assert CUSTOMER_ID.fullmatch(customer["id"]) and customer["id"] == first["customer_id"]
    assert customer["email"] == lower
    assert customer["orders_count"] == 0 and customer["lifetime_cents"] == 0
    assert TIMESTAMP.fullmatch(customer["first_seen_at"])
    assert customer["first_seen_at"] == customer["last_seen_at"]
    first_seen = customer["first_seen_at"]

    # last_seen_at follows new orders (pushed into the past so the change is visible).
    server.execute("UPDATE customers SET last_seen_at = '2000-01-01T00:00:00Z' WHERE id = ?",
                   params=(customer["id"],))
    second = place_order(api, product["id"], qty=2, customer_email=lower.upper())
    third = place_order(api, product["id"], customer_email=lower)
    fourth = place_order(api, product["id"], customer_email=lower)
    assert {o["customer_id"] for o in (second, third, fourth)} == {customer["id"]}
    pay(api, first["id"], 6000)          # overpaid: lifetime counts what was paid
    pay(api, second["id"])
    expire(api, third["id"])             # never paid: not counted

    response = api.get(f"/v1/customers/{customer['id']}")
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["email"] == lower
    assert detail["orders_count"] == 2
    assert detail["lifetime_cents"] == 6000 + 9800
    assert detail["first_seen_at"] == first_seen
    assert detail["last_seen_at"] >= fourth["created_at"] > "2000"
    assert [o["id"] for o in detail["orders"]] == [fourth["id"], third["id"], second["id"],
                                                    first["id"]]
    statuses = {o["id"]: (o["status"], o["total_cents"], o["paid_at"] is not None)
                for o in detail["orders"]}
    assert statuses == {first["id"]: ("completed", 4900, True),
                        second["id"]: ("completed", 9800, True),
                        third["id"]: ("failed", 4900, False),
                        fourth["id"]: ("awaiting_payment", 4900, False)}
    listed = find_customer(api, address.upper())
    assert listed == {k: v for k, v in detail.items() if k != "orders"}
    assert len(customer_created_events(server, lower)) == 1

    pay(api, fourth["id"])
    again = find_customer(api, lower)
    assert again["orders_count"] == 3 and again["lifetime_cents"] == 6000 + 4900 + 9800

    # Lists, abilities, modes.
    response = api.get("/v1/customers", params={"limit": 100})
    assert response.status_code == 200 and response.json()["object"] == "list"
    assert customer["id"] in [c["id"] for c in response.json()["data"]]
    orders_only = server.client(mint_via_api(server, "orders:read", "orders:write"))
    assert_problem(orders_only.get("/v1/customers"), 403, "forbidden_scope")
    body = assert_problem(orders_only.get(f"/v1/customers/{customer['id']}"), 403,
                          "forbidden_scope")
    assert "customers:read" in body["detail"]
    reader = server.client(mint_via_api(server, "customers:read"))
    assert reader.get(f"/v1/customers/{customer['id']}").status_code == 200
    assert find_customer(live, lower) is None
    assert_problem(live.get(f"/v1/customers/{customer['id']}"), 404, "not_found")
    assert_problem(api.get(f"/v1/customers/cus_{'0' * 26}"), 404, "not_found")


def test_one_customer_per_email_and_mode(server, api, live):
    address = buyer("twice")
    product, _ = key_product(api, 2)
    a = place_order(api, product["id"], customer_email=address)
    b = place_order(api, product["id"], customer_email=address)
    assert a["customer_id"] == b["customer_id"]
    assert server.query("SELECT count(*) FROM customers WHERE email = ?", (address,)) == [(1,)]
    assert server.query("SELECT mode FROM customers WHERE email = ?", (address,)) == [("test",)]


# --- 9. concurrency ---------------------------------------------------------------------------

def test_concurrent_checkouts_never_oversell(server, api, test_key):
    product, pool = key_product(api, 10)
    address = buyer("rush")
    barrier = threading.Barrier(50)

    def checkout(_):
        client = server.client(test_key)
        try:
            barrier.wait(timeout=30)
            return client.post("/v1/orders", json={"product_id": product["id"], "qty": 1,
                                                   "customer_email": address})
        finally:
            client.close()

    with ThreadPoolExecutor(50) as threads:
        responses = list(threads.map(checkout, range(50)))
    statuses = Counter(r.status_code for r in responses)
    assert statuses == Counter({201: 10, 422: 40}), statuses
    for response in responses:
        if response.status_code == 422:
            assert_invalid(response, "qty")
    created = [r.json()["id"] for r in responses if r.status_code == 201]
    assert len(set(created)) == 10
    assert stock_of(api, product["id"]) == 0

    def settle(order_id):
        client = server.client(test_key)
        try:
            response = client.post(f"/v1/test_helpers/orders/{order_id}/pay", json={})
            assert response.status_code == 200, response.text
            return response.json()
        finally:
            client.close()

    with ThreadPoolExecutor(10) as threads:
        paid = list(threads.map(settle, created))
    assert all(o["status"] == "completed" for o in paid)
    delivered = [key for o in paid for key in o["delivery"]["keys"]]
    assert len(delivered) == 10 and set(delivered) == set(pool)

    rows = key_rows(server, product["id"])
    assert Counter(state for _, state, _ in rows) == Counter({"delivered": 10})
    owner_of = {key: owner for key, _, owner in rows}
    assert sorted(owner_of.values()) == sorted(created)
    for order in paid:
        assert [owner_of[key] for key in order["delivery"]["keys"]] == [order["id"]]
    assert server.query("SELECT status, count(*) FROM orders WHERE product_id = ? "
                        "GROUP BY status", (product["id"],)) == [("completed", 10)]
    customer = find_customer(api, address)
    assert customer["orders_count"] == 10 and customer["lifetime_cents"] == 49000
    assert len(customer_created_events(server, address)) == 1


# --- 10. email through real SMTP ----------------------------------------------------------

SENDER = "shop@example.org"


def test_delivery_email_through_smtp(make_server):
    with Mailbox() as mailbox:
        srv = make_server(config=smtp_config(mailbox.port, SENDER))
        client = srv.client(srv.mint())
        product, _ = key_product(client, 3)
        paid = pay(client, place_order(client, product["id"], qty=2,
                                       customer_email="Mail.Buyer@Example.com")["id"])
        assert paid["status"] == "completed"
        wait_until(lambda: mailbox.envelopes, what="the delivery email over SMTP")
        envelope = mailbox.envelopes[0]
        assert envelope.rcpt_tos == ["mail.buyer@example.com"]
        assert envelope.mail_from == "shop@example.org"
        message = parse_mail(envelope.original_content or envelope.content)
        assert message["To"] == "mail.buyer@example.com"
        assert message["Subject"]
        text = message.get_content()
        for key in paid["delivery"]["keys"]:
            assert key in text
        assert order_link(srv, paid) in text
        wait_until(lambda: email_rows(srv, paid["id"])[0]["status"] == "sent",
                   what="the email marked sent")
        assert len(mailbox.envelopes) == 1
        assert not (srv.root / "data" / "outbox").exists() or not list(
            (srv.root / "data" / "outbox").glob("*.eml"))


def test_smtp_down_keeps_the_email_queued_until_it_is_back(make_server):
    port = free_port()  # nothing listens here yet
    srv = make_server(config=smtp_config(port, SENDER))
    client = srv.client(srv.mint())
    product, _ = key_product(client, 2)
    paid = pay(client, place_order(client, product["id"])["id"])
    assert paid["status"] == "completed"
    assert fetch(client, paid["id"])["status"] == "completed"

    def failed_once():
        rows = email_rows(srv, paid["id"])
        return rows and rows[0]["attempts"] >= 1 and rows[0]["last_error"] and rows[0]
    row = wait_until(failed_once, what="a failed SMTP attempt")
    assert row["status"] == "pending"
    assert fetch(client, paid["id"])["status"] == "completed"

    with Mailbox(port) as mailbox:
        srv.execute("UPDATE emails SET next_attempt_at = '2000-01-01T00:00:00Z'")
        wait_until(lambda: email_rows(srv, paid["id"])[0]["status"] == "sent",
                   what="the retried email marked sent")
        assert len(mailbox.envelopes) == 1
        text = parse_mail(mailbox.envelopes[0].original_content
                          or mailbox.envelopes[0].content).get_content()
        assert paid["delivery"]["keys"][0] in text
        assert order_link(srv, paid) in text


# --- 11. live mode against the BlockPN simulator over HTTP --------------------------------

@pytest.fixture(scope="module")
def live_shop(tmp_path_factory):
    """A shop in live mode whose BlockPN is the simulator; polls open invoices every second."""
    with live_mode_shop(tmp_path_factory) as shop:
        yield shop


def callback_body(order: dict, invoice_id: str, **changes) -> bytes:
    """An `invoice.updated` callback reporting the order's invoice paid in full."""
    payment = order["payment"]
    invoice = {"id": invoice_id, "reference": order["id"], "chain": payment["chain"],
               "asset": payment["asset"], "address": payment["address"],
               "amount_cents": order["total_cents"], "currency": order["currency"],
               "asset_amount": payment["asset_amount"], "paid_cents": order["total_cents"],
               "asset_paid": payment["asset_amount"], "tx_hash": "0x" + "ab" * 32,
               "status": "paid", "expires_at": payment["expires_at"], **changes}
    return json.dumps({"type": "invoice.updated", "invoice": invoice}).encode()


def signed(body: bytes, secret: str = SIM_IPN_SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def post_ipn(shop: Server, body: bytes, signature: str | None) -> requests.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["X-BlockPN-Signature"] = signature
    return requests.post(shop.url + "/ipn/blockpn", data=body, headers=headers, timeout=30)


def test_live_order_paid_through_the_ipn_callback(live_shop):
    shop, client = live_shop, live_shop.live
    product, pool = key_product(client, 5)
    order = place_order(client, product["id"], qty=2, customer_email="Live.Buyer@Example.com")
    assert order["mode"] == "live" and order["status"] == "awaiting_payment"
    assert order["customer_email"] == "live.buyer@example.com"
    assert order["payment"]["address"]
    assert order["payment"]["asset_amount"] == "98.000000"
    assert re.fullmatch(rf"{re.escape(shop.url)}/order/{order['id']}\?t=\S+",
                        order["payment"]["checkout_url"])
    assert stock_of(client, product["id"]) == 3
    invoice_id = invoice_of(shop, order["id"])
    (address,), = shop.query("SELECT pay_address FROM orders WHERE id = ?", (order["id"],))
    assert address == order["payment"]["address"]

    report = shop.sim.post(f"/sim/invoices/{invoice_id}/pay", {"notify": True}).json()
    callback = report["callback"]
    assert callback["url"] == f"{shop.url}/ipn/blockpn"
    assert callback["delivered"] is True and callback["response_code"] == 200, callback
    done = wait_for_status(client, order["id"], "completed")
    assert done["paid_at"] and done["payment"]["paid_cents"] == 9800
    assert done["delivery"]["state"] == "delivered"
    assert len(done["delivery"]["keys"]) == 2 and set(done["delivery"]["keys"]) <= set(pool)
    wait_until(lambda: "POST /ipn/blockpn 200" in shop.output(),
               what="the simulator's callback reaching /ipn/blockpn")
    assert event_types(shop, order["id"]) == Counter(
        {"order.created": 1, "order.paid": 1, "order.delivered": 1})
    assert len(email_rows(shop, order["id"])) == 1

    # The test mode's helpers and objects stay out of live mode, and the other way round.
    assert_problem(client.post(f"/v1/test_helpers/orders/{order['id']}/pay", json={}),
                   404, "not_found")
    tester = shop.client(shop.mint())
    assert_problem(tester.get(f"/v1/orders/{order['id']}"), 404, "not_found")


def test_live_order_with_a_lost_callback_is_completed_by_polling(live_shop):
    shop, client = live_shop, live_shop.live
    product, _ = key_product(client, 3)
    order = place_order(client, product["id"])
    shop.sim.post(f"/sim/invoices/{invoice_of(shop, order['id'])}/pay", {"notify": False})
    done = wait_for_status(client, order["id"], "completed")
    assert done["payment"]["paid_cents"] == 4900
    assert len(done["delivery"]["keys"]) == 1
    assert event_types(shop, order["id"]) == Counter(
        {"order.created": 1, "order.paid": 1, "order.delivered": 1})


def test_live_partial_payment_then_the_rest(live_shop):
    shop, client = live_shop, live_shop.live
    product, _ = key_product(client, 2)
    order = place_order(client, product["id"])
    invoice_id = invoice_of(shop, order["id"])
    shop.sim.post(f"/sim/invoices/{invoice_id}/pay", {"amount_cents": 1000, "notify": True})
    wait_until(lambda: fetch(client, order["id"])["payment"]["paid_cents"] == 1000,
               what="the partial payment")
    assert fetch(client, order["id"])["status"] == "awaiting_payment"
    shop.sim.post(f"/sim/invoices/{invoice_id}/pay", {"notify": True})
    assert wait_for_status(client, order["id"], "completed")["payment"]["paid_cents"] == 4900


def test_live_expired_invoice_fails_the_order(live_shop):
    shop, client = live_shop, live_shop.live
    product, _ = key_product(client, 2)
    order = place_order(client, product["id"])
    assert stock_of(client, product["id"]) == 1
    shop.sim.post(f"/sim/invoices/{invoice_of(shop, order['id'])}/expire")
    failed = wait_for_status(client, order["id"], "failed")
    assert failed["failure_reason"]
    assert stock_of(client, product["id"]) == 2


def test_forged_callbacks_are_401_and_change_nothing(live_shop):
    shop, client = live_shop, live_shop.live
    product, _ = key_product(client, 2)
    order = place_order(client, product["id"])
    invoice_id = invoice_of(shop, order["id"])
    body = callback_body(order, invoice_id)
    forgeries = [
        (body, None),
        (body, ""),
        (body, "nonsense"),
        (body, signed(body, secret="not-the-secret")),
        (body, signed(callback_body(order, invoice_id, paid_cents=1))),   # another body's
        (body, signed(body).replace("v1=", "v1=00")),
        (body, signed(body, at=int(time.time()) - 600)),   # genuine but 10 minutes old
    ]
    for payload, signature in forgeries:
        response = post_ipn(shop, payload, signature)
        assert_problem(response, 401, "unauthenticated")
    after = fetch(client, order["id"])
    assert after["status"] == "awaiting_payment"
    assert after["payment"]["paid_cents"] == 0 and after["paid_at"] is None
    assert event_types(shop, order["id"]) == Counter({"order.created": 1})
    assert stock_of(client, product["id"]) == 1


def test_provider_unreachable_at_checkout_reserves_nothing(live_shop):
    shop, client = live_shop, live_shop.live
    product, _ = key_product(client, 3)
    address = buyer("unlucky")
    shop.sim.post("/sim/faults", {"error_rate": 1})
    try:
        response = client.post("/v1/orders", json={"product_id": product["id"], "qty": 2,
                                                   "customer_email": address})
    finally:
        shop.sim.post("/sim/faults", {"error_rate": 0})
    assert response.status_code >= 500, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert stock_of(client, product["id"]) == 3
    assert all(state == "available" for _, state, _ in key_rows(shop, product["id"]))
    assert [o["status"] for o in list_orders(client, customer_email=address)["data"]
            if o["status"] != "failed"] == []
    # Once the provider answers again, checkout works.
    assert place_order(client, product["id"], qty=3)["status"] == "awaiting_payment"


def test_replayed_callback_changes_nothing_the_second_time(live_shop):
    shop, client = live_shop, live_shop.live
    product, _ = key_product(client, 3)
    order = place_order(client, product["id"])
    invoice_id = invoice_of(shop, order["id"])
    # The buyer pays; the simulator's own callback is dropped, ours is the genuine one.
    shop.sim.post(f"/sim/invoices/{invoice_id}/pay", {"notify": False})
    body = callback_body(order, invoice_id)
    signature = signed(body)
    first = post_ipn(shop, body, signature)
    assert first.status_code == 200, first.text
    done = wait_for_status(client, order["id"], "completed")
    replay = post_ipn(shop, body, signature)
    assert replay.status_code < 500, replay.text
    if replay.status_code != 200:
        assert replay.headers["Content-Type"] == "application/problem+json"
    assert same(fetch(client, order["id"]), done)
    assert event_types(shop, order["id"]) == Counter(
        {"order.created": 1, "order.paid": 1, "order.delivered": 1})
    assert len(email_rows(shop, order["id"])) == 1
    assert [state for _, state, owner in key_rows(shop, product["id"])
            if owner == order["id"]] == ["delivered"]


def test_live_mode_without_blockpn_is_422_and_consumes_nothing(server, live):
    product, _ = key_product(live, 10)
    address = buyer("unconfigured")
    response = live.post("/v1/orders", json={"product_id": product["id"], "qty": 2,
                                             "customer_email": address})
    body = assert_problem(response, 422, "unprocessable")
    assert "blockpn" in body["detail"].lower() or "live payments" in body["detail"].lower()
    assert stock_of(live, product["id"]) == 10
    assert all(state == "available" for _, state, _ in key_rows(server, product["id"]))
    assert server.query("SELECT count(*) FROM orders WHERE product_id = ?",
                        (product["id"],)) == [(0,)]
    assert list_orders(live, customer_email=address)["data"] == []
    assert find_customer(live, address) is None
    # The IPN endpoint of a shop without BlockPN does not exist.
    response = post_ipn(server, b'{"type": "invoice.updated", "invoice": {}}', "t=1,v1=00")
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
