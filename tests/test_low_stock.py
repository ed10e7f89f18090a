"""Low stock: a product's `low_stock_threshold`, one `product.stock_low` event and one
owner email when stock falls from above it to at or below it, and nothing more until stock
has risen above it again — in process, then once through the real server."""

from __future__ import annotations

import re

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import GENEROUS_LIMITS, running_server
from support import (
    assert_invalid,
    email_rows,
    event_types,
    expire,
    get_product,
    import_keys,
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)

OWNER = "owner@shop.example"


@pytest.fixture
def app_config() -> str:
    return GENEROUS_LIMITS + f'[shop]\nowner_email = "{OWNER}"\n'


def alerts(v1, app_db, product_id: str) -> tuple[list[dict], list[tuple]]:
    """The product's `product.stock_low` events and the owner emails about it."""
    events = json_body(v1.get("/v1/events", params={"type": "product.stock_low",
                                                    "limit": 100}))["data"]
    mails = app_db.query("SELECT to_address, subject FROM emails WHERE kind = 'stock_low' "
                         "AND related_id = ?", (product_id,))
    return [e for e in events if e["data"]["object"]["id"] == product_id], mails


def test_the_threshold_is_set_on_create_and_patch(v1):
    product = make_product(v1, type="account", delivery_text="login", stock=9,
                           low_stock_threshold=3)
    assert product["low_stock_threshold"] == 3
    changed = json_body(v1.patch(f"/v1/products/{product['id']}",
                                 json={"low_stock_threshold": None}))
    assert changed["low_stock_threshold"] is None
    assert make_product(v1)["low_stock_threshold"] is None
    for bad in (-1, "3", 1.5):
        assert_invalid(v1.patch(f"/v1/products/{product['id']}",
                                json={"low_stock_threshold": bad}), "low_stock_threshold")


def test_a_sale_crossing_the_threshold_alerts_once_until_stock_rises_again(v1, app_db):
    product = make_product(v1, type="account", delivery_text="login", stock=5,
                           low_stock_threshold=2)
    first = place_order(v1, product["id"], qty=3)  # 5 → 2: crossed
    events, mails = alerts(v1, app_db, product["id"])
    assert len(events) == 1 and events[0]["data"]["object"]["stock"] == 2
    assert mails == [(OWNER, f"Low stock: {product['name']} (2 left)")]

    pay(v1, place_order(v1, product["id"])["id"])  # 2 → 1: already low
    assert [len(found) for found in alerts(v1, app_db, product["id"])] == [1, 1]

    expire(v1, first["id"])  # 1 → 4: above again, re-armed
    place_order(v1, product["id"], qty=2)  # 4 → 2: crossed again
    assert [len(found) for found in alerts(v1, app_db, product["id"])] == [2, 2]


def test_a_deleted_key_crossing_alerts_and_an_import_re_arms(v1, app_db):
    product, _ = key_product(v1, 3, low_stock_threshold=2)
    keys = json_body(v1.get(f"/v1/products/{product['id']}/keys"))["data"]
    v1.delete(f"/v1/products/{product['id']}/keys/{keys[0]['id']}")  # 3 → 2
    assert [len(found) for found in alerts(v1, app_db, product["id"])] == [1, 1]
    place_order(v1, product["id"])  # 2 → 1: a reservation, already low
    assert [len(found) for found in alerts(v1, app_db, product["id"])] == [1, 1]

    import_keys(v1, product["id"], ["FRESH-1", "FRESH-2"])  # 1 → 3: re-armed
    place_order(v1, product["id"])  # 3 → 2
    events, _ = alerts(v1, app_db, product["id"])
    assert len(events) == 2 and get_product(v1, product["id"])["stock"] == 2


def test_no_threshold_or_unlimited_stock_never_alerts(v1, app_db):
    plain = make_product(v1, type="account", delivery_text="login", stock=2)
    unlimited = make_product(v1, type="account", delivery_text="login",
                             low_stock_threshold=5)
    for product in (plain, unlimited):
        place_order(v1, product["id"])
        assert alerts(v1, app_db, product["id"]) == ([], [])


def test_stock_low_events_are_read_with_products_read(v1, client):
    product = make_product(v1, type="account", delivery_text="login", stock=1,
                           low_stock_threshold=0)
    place_order(v1, product["id"])
    reader = client.keyed("webhooks:read", "products:read")
    listed = json_body(reader.get("/v1/events", params={"type": "product.stock_low"}))["data"]
    assert [e["data"]["object"]["id"] for e in listed] == [product["id"]]
    assert json_body(client.keyed("webhooks:read", "orders:read").get(
        "/v1/events", params={"type": "product.stock_low"}))["data"] == []


def test_the_dashboard_product_form_sets_and_clears_the_threshold(app, v1, client):
    product = make_product(v1, type="account", delivery_text="login", stock=4)
    dashboard = signed_in_dashboard(app, client)
    path = f"/dashboard/products/{product['id']}"
    for typed, kept in (("3", 3), ("", None)):
        html = dashboard.get(path).get_data(as_text=True)
        token, form_id = re.search(r'action="' + re.escape(path) + r'".*?name="csrf_token" '
                                   r'value="([^"]+)".*?name="form_id" value="([^"]+)"',
                                   html, re.S).groups()
        answer = dashboard.post(path, data={"csrf_token": token, "form_id": form_id,
                                            "name": product["name"],
                                            "low_stock_threshold": typed})
        assert answer.status_code == 303
        assert get_product(v1, product["id"])["low_stock_threshold"] == kept


@pytest.mark.e2e
def test_a_real_shop_signs_one_stock_low_webhook_per_crossing(tmp_path, receiver):
    """Through the real server: the crossing reaches a webhook receiver once, signed, with
    one owner email queued; a second sale below the threshold sends nothing until a stock
    rise re-arms it (deliveries to one endpoint go out in order, so the second webhook
    received is the re-armed one)."""
    with running_server(tmp_path, GENEROUS_LIMITS + f'[shop]\nowner_email = "{OWNER}"\n') \
            as shop:
        v1 = shop.admin
        secret = json_body(v1.post("/v1/webhooks", json={
            "url": receiver.url("low"), "events": ["product.stock_low"]}), 201)[
                "signing_secret"]
        product = make_product(v1, type="account", delivery_text="login", stock=3,
                               low_stock_threshold=1)
        pay(v1, place_order(v1, product["id"], qty=2)["id"])  # 3 → 1: crossed
        (first,) = receiver.wait_for("low", 1)
        event = Webhook(secret).verify(first.body, first.headers)
        assert event["type"] == "product.stock_low"
        assert event["data"]["object"]["id"] == product["id"]
        assert event["data"]["object"]["stock"] == 1
        assert [(m["to_address"], m["kind"]) for m in email_rows(shop, product["id"])] == [
            (OWNER, "stock_low")]

        pay(v1, place_order(v1, product["id"])["id"])  # 1 → 0: already low
        json_body(v1.patch(f"/v1/products/{product['id']}", json={"stock": 5}))  # re-armed
        pay(v1, place_order(v1, product["id"], qty=4)["id"])  # 5 → 1: crossed again
        calls = receiver.wait_for("low", 2)
        stocks = [Webhook(secret).verify(c.body, c.headers)["data"]["object"]["stock"]
                  for c in calls]
        assert stocks == [1, 1]
        assert event_types(shop, product["id"])["product.stock_low"] == 2
        assert len(email_rows(shop, product["id"], "stock_low")) == 2
