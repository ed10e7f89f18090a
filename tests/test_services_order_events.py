"""Order events in process, through a real receiver verified with the Standard Webhooks
library: `order.paid` carries the order as the payment's transaction leaves it — already
delivered with its goods for keys, accounts, downloads and subscriptions; `delivering` for
dynamic and physical products, whose `order.delivered` carries the goods."""

from __future__ import annotations

import secrets

from standardwebhooks.webhooks import Webhook

from support import Reply, buyer, json_body, key_product, make_product, pay, place_order

ADDRESS = {"name": "Ada", "line1": "1 Main St", "city": "Berlin", "postal_code": "10115",
           "country": "DE"}


def listen(v1, receiver, name: str) -> str:
    """Register an endpoint for every order event at `name`; returns its signing secret."""
    endpoint = json_body(v1.post("/v1/webhooks", json={
        "url": receiver.url(name), "events": ["order.*"]}), 201)
    return endpoint["signing_secret"]


def received(receiver, name: str, secret: str, order_id: str) -> dict:
    """The verified events about `order_id`, by type (each type arrives once)."""
    by_type = {}
    for request in receiver.requests(name):
        event = Webhook(secret).verify(request.body, request.headers)
        if event["data"]["object"]["id"] == order_id:
            assert event["type"] not in by_type
            by_type[event["type"]] = event["data"]["object"]
    return by_type


def product_of_kind(v1, kind: str, price_cents: int, dynamic_url: str) -> tuple[dict, dict]:
    """A product of `kind` ready to sell, and the extra fields its order needs."""
    if kind == "license_key":
        return key_product(v1, 3, price_cents=price_cents)[0], {}
    fields = {"account": {"delivery_text": "user: ada / pass: lovelace"},
              "subscription": {"interval": "month", "delivery_text": "welcome aboard"},
              "file_download": {}, "physical": {},
              "dynamic": {"dynamic_url": dynamic_url}}[kind]
    product = make_product(v1, type=kind, price_cents=price_cents, **fields)
    if kind == "file_download":
        uploaded = v1.put(f"/v1/products/{product['id']}/file?filename=pack.bin",
                          data=secrets.token_bytes(64),
                          headers={"Content-Type": "application/octet-stream"})
        assert uploaded.status_code == 200, uploaded.text
    return product, {"shipping_address": ADDRESS} if kind == "physical" else {}


def goods(order: dict) -> dict:
    """What a delivered order hands over, by kind."""
    delivery = order["delivery"]
    return {key: delivery[key] for key in ("keys", "text", "file_name", "download_url",
                                           "shipping_address") if delivery.get(key)}


def test_order_paid_carries_the_goods_of_kinds_delivered_with_the_payment(
        v1, tick, receiver):
    secret = listen(v1, receiver, "orders")
    paid = {}
    for kind in ("license_key", "account", "file_download", "subscription"):
        product, extra = product_of_kind(v1, kind, 1200, "")
        paid[kind] = pay(v1, place_order(v1, product["id"], customer_email=buyer(),
                                         **extra)["id"])
    tick("deliver_webhooks")

    for kind, order in paid.items():
        events = received(receiver, "orders", secret, order["id"])
        assert list(events) == ["order.created", "order.paid", "order.delivered"], kind
        announced = events["order.paid"]
        assert announced["status"] == "completed", kind
        assert announced["delivery"]["state"] == "delivered", kind
        assert goods(announced) and goods(announced).keys() == goods(order).keys(), kind
        assert announced["paid_at"] == order["paid_at"]
    keys = received(receiver, "orders", secret, paid["license_key"]["id"])["order.paid"]
    assert keys["delivery"]["keys"] == paid["license_key"]["delivery"]["keys"]
    account = received(receiver, "orders", secret, paid["account"]["id"])["order.paid"]
    assert account["delivery"]["text"] == "user: ada / pass: lovelace"
    subscription = received(receiver, "orders", secret, paid["subscription"]["id"])
    assert subscription["order.paid"]["subscription"]["status"] == "active"


def test_dynamic_and_physical_goods_come_with_order_delivered(v1, tick, receiver):
    secret = listen(v1, receiver, "orders")
    receiver.plan("goods", Reply(200, b"LICENSE-42"))
    dynamic, _ = product_of_kind(v1, "dynamic", 700, receiver.url("goods"))
    physical, extra = product_of_kind(v1, "physical", 700, "")
    late = pay(v1, place_order(v1, dynamic["id"])["id"])
    shipped = pay(v1, place_order(v1, physical["id"], **extra)["id"])
    tick("deliver_dynamic")
    fulfilled = v1.post(f"/v1/orders/{shipped['id']}/fulfill", json={"tracking": "DHL 1"})
    assert fulfilled.status_code == 200, fulfilled.text
    tick("deliver_webhooks")

    events = received(receiver, "orders", secret, late["id"])
    assert list(events) == ["order.created", "order.paid", "order.delivered"]
    assert events["order.paid"]["status"] == "delivering"
    assert events["order.paid"]["delivery"]["state"] == "pending"
    assert "text" not in events["order.paid"]["delivery"]
    assert events["order.delivered"]["delivery"]["text"] == "LICENSE-42"

    events = received(receiver, "orders", secret, shipped["id"])
    assert list(events) == ["order.created", "order.paid", "order.delivered"]
    assert events["order.paid"]["status"] == "delivering"
    assert events["order.paid"]["delivery"]["state"] == "awaiting_shipment"
    assert events["order.delivered"]["delivery"]["tracking"] == "DHL 1"
