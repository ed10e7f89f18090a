"""Free orders in process: an order whose total is 0 opens no invoice and comes back from
`POST /v1/orders` paid — delivered at once, or `delivering` for dynamic and physical kinds —
with the events and customer counts of a paid order, under the same limits; a free
subscription renews itself without asking for a payment; there is nothing to pay, expire
or refund."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import jsonschema_rs

from sellix_lite.web.api.openapi import document

from support import (
    Reply,
    assert_invalid,
    buyer,
    event_types,
    fetch,
    get_product,
    goods,
    json_body,
    key_product,
    listen_to_orders,
    make_product,
    order_events_received,
    place_order,
    product_of_kind,
)

PAID_EVENTS = ["order.created", "order.paid", "order.delivered"]


def customer_of(v1, email: str) -> dict:
    customer, = json_body(v1.get("/v1/customers", params={"email": email}))["data"]
    return customer


def test_free_orders_of_every_kind_are_paid_at_once_without_an_invoice(
        v1, app_db, clock, tick, receiver):
    secret = listen_to_orders(v1, receiver, "orders")
    receiver.plan("goods", Reply(200, b"FREE-LICENSE"))
    balance = json_body(v1.get("/v1/balance"))
    email = buyer("free")
    created = {}
    for kind in ("license_key", "account", "file_download", "subscription", "dynamic",
                 "physical"):
        product, extra = product_of_kind(v1, kind, 0, receiver.url("goods"))
        created[kind] = place_order(v1, product["id"], customer_email=email, **extra)

    for kind, order in created.items():
        assert order["paid_at"] == order["created_at"] and order["payment"] is None, kind
        assert order["total_cents"] == 0 and order["failure_reason"] is None, kind
        waits = kind in ("dynamic", "physical")
        assert order["status"] == ("delivering" if waits else "completed"), kind
        assert bool(goods(order)) == (kind != "dynamic"), kind
    assert created["subscription"]["subscription"]["status"] == "active"
    assert app_db.query("SELECT count(*) FROM sandbox_invoices") == [(0,)]
    assert customer_of(v1, email)["orders_count"] == 6
    assert customer_of(v1, email)["lifetime_cents"] == 0
    assert json_body(v1.get("/v1/balance")) == balance

    tick("deliver_dynamic")
    assert fetch(v1, created["dynamic"]["id"])["delivery"]["text"] == "FREE-LICENSE"
    shipped = v1.post(f"/v1/orders/{created['physical']['id']}/fulfill", json={})
    assert shipped.status_code == 200 and shipped.json()["status"] == "completed"
    tick("deliver_webhooks")
    for kind, order in created.items():
        assert event_types(app_db, order["id"]) == Counter(PAID_EVENTS), kind
        events = order_events_received(receiver, "orders", secret, order["id"])
        assert list(events) == PAID_EVENTS, kind
        assert events["order.paid"]["payment"] is None, kind
        assert goods(events["order.delivered"]), kind


def test_a_free_order_matches_the_documented_order(v1):
    spec = document()
    schema = {**spec["components"]["schemas"]["Order"], "components": spec["components"]}
    product, _ = product_of_kind(v1, "license_key", 0)
    order = place_order(v1, product["id"])
    assert order["payment"] is None
    assert jsonschema_rs.validator_for(schema).is_valid(order), order


def test_free_order_events_are_written_in_the_transaction_that_creates_it(v1, app_db, clock):
    product, _ = product_of_kind(v1, "account", 0)
    order = place_order(v1, product["id"])
    rows = app_db.query("SELECT type, created_at, json_extract(data, '$.object.status') FROM "
                        "events WHERE json_extract(data, '$.object.id') = ? ORDER BY id",
                        (order["id"],))
    assert rows == [("order.created", order["created_at"], "paid"),
                    ("order.paid", order["created_at"], "completed"),
                    ("order.delivered", order["created_at"], "completed")]


def test_free_license_keys_are_one_per_unit_and_the_limits_hold(v1, app_db):
    product, pool = key_product(v1, 3, price_cents=0)
    first = place_order(v1, product["id"], qty=2)
    keys = first["delivery"]["keys"]
    assert len(set(keys)) == 2 and set(keys) <= set(pool)
    assert get_product(v1, product["id"])["stock"] == 1

    orders_before = app_db.query("SELECT count(*) FROM orders")
    body = {"product_id": product["id"], "customer_email": buyer()}
    assert_invalid(v1.post("/v1/orders", json={**body, "qty": 2}), "qty")  # one key left
    assert_invalid(v1.post("/v1/orders", json={**body, "qty": 101}), "qty")  # per-order limit
    assert app_db.query("SELECT count(*) FROM orders") == orders_before  # nothing left behind

    last = place_order(v1, product["id"])
    assert set(last["delivery"]["keys"]) == set(pool) - set(keys)
    assert app_db.query("SELECT order_id, count(*) FROM license_keys WHERE product_id = ? "
                        "GROUP BY order_id ORDER BY count(*)", (product["id"],)) == \
        [(last["id"], 1), (first["id"], 2)]
    assert_invalid(v1.post("/v1/orders", json={**body, "qty": 1}), "qty")  # sold out


def test_a_live_shop_without_blockpn_gives_free_orders_but_takes_no_paid_ones(client):
    live = client.keyed(mode="live")
    free = make_product(live, type="account", delivery_text="gift", price_cents=0)
    paid = make_product(live, type="account", delivery_text="gift", price_cents=100)
    order = place_order(live, free["id"])
    assert order["mode"] == "live" and order["status"] == "completed"
    assert order["delivery"]["text"] == "gift"
    email = buyer()
    assert_invalid(live.post("/v1/orders", json={"product_id": paid["id"],
                                                 "customer_email": email}), "payment")
    assert json_body(live.get("/v1/customers", params={"email": email}))["data"] == []


def test_a_free_subscription_renews_without_a_payment(v1, app_db, clock, tick):
    product = make_product(v1, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=0)
    first = place_order(v1, product["id"])
    subscription = first["subscription"]
    clock.set(datetime.fromisoformat(subscription["current_period_end"]) - timedelta(days=1))
    assert tick("renew_subscriptions") == 1
    renewed = json_body(v1.get(f"/v1/subscriptions/{subscription['id']}"))
    assert renewed["status"] == "active" and renewed["renewal_order_id"] is None
    assert renewed["current_period_end"] > subscription["current_period_end"]
    renewal, = app_db.query("SELECT id, status FROM orders WHERE subscription_id = ? AND "
                            "id != ?", (subscription["id"], first["id"]))
    assert renewal[1] == "completed"
    assert app_db.query("SELECT count(*) FROM emails WHERE kind = 'subscription_renewal'") == \
        [(0,)]


def test_a_free_order_has_nothing_to_pay_expire_or_refund(v1):
    product, _ = product_of_kind(v1, "account", 0)
    order = place_order(v1, product["id"])
    for helper in ("pay", "expire"):
        assert_invalid(v1.post(f"/v1/test_helpers/orders/{order['id']}/{helper}", json={}),
                       "order")
    refund = v1.post(f"/v1/orders/{order['id']}/refund", json={},
                     headers={"Idempotency-Key": "free-refund"})
    assert refund.status_code == 422, refund.text
    assert fetch(v1, order["id"]) == order
