"""Order events in process, through a real receiver verified with the Standard Webhooks
library: `order.paid` carries the order as the payment's transaction leaves it — already
delivered with its goods for keys, accounts, downloads and subscriptions; `delivering` for
dynamic and physical products, whose `order.delivered` carries the goods."""

from __future__ import annotations

from support import (
    Reply,
    buyer,
    goods,
    listen_to_orders,
    order_events_received,
    pay,
    place_order,
    product_of_kind,
)


def test_order_paid_carries_the_goods_of_kinds_delivered_with_the_payment(
        v1, tick, receiver):
    secret = listen_to_orders(v1, receiver, "orders")
    paid = {}
    for kind in ("license_key", "account", "file_download", "subscription"):
        product, extra = product_of_kind(v1, kind, 1200)
        paid[kind] = pay(v1, place_order(v1, product["id"], customer_email=buyer(),
                                         **extra)["id"])
    tick("deliver_webhooks")

    events = {kind: order_events_received(receiver, "orders", secret, order["id"])
              for kind, order in paid.items()}
    for kind, order in paid.items():
        assert list(events[kind]) == ["order.created", "order.paid", "order.delivered"], kind
        announced = events[kind]["order.paid"]
        assert announced["status"] == "completed", kind
        assert announced["delivery"]["state"] == "delivered", kind
        assert goods(announced) and goods(announced).keys() == goods(order).keys(), kind
        assert announced["paid_at"] == order["paid_at"]
    assert events["license_key"]["order.paid"]["delivery"]["keys"] == \
        paid["license_key"]["delivery"]["keys"]
    assert events["account"]["order.paid"]["delivery"]["text"] == "user: ada / pass: lovelace"
    assert events["subscription"]["order.paid"]["subscription"]["status"] == "active"


def test_dynamic_and_physical_goods_come_with_order_delivered(v1, tick, receiver):
    secret = listen_to_orders(v1, receiver, "orders")
    receiver.plan("goods", Reply(200, b"LICENSE-42"))
    dynamic, _ = product_of_kind(v1, "dynamic", 700, receiver.url("goods"))
    physical, extra = product_of_kind(v1, "physical", 700)
    late = pay(v1, place_order(v1, dynamic["id"])["id"])
    shipped = pay(v1, place_order(v1, physical["id"], **extra)["id"])
    tick("deliver_dynamic")
    fulfilled = v1.post(f"/v1/orders/{shipped['id']}/fulfill", json={"tracking": "DHL 1"})
    assert fulfilled.status_code == 200, fulfilled.text
    tick("deliver_webhooks")

    events = order_events_received(receiver, "orders", secret, late["id"])
    assert list(events) == ["order.created", "order.paid", "order.delivered"]
    assert events["order.paid"]["status"] == "delivering"
    assert events["order.paid"]["delivery"]["state"] == "pending"
    assert "text" not in events["order.paid"]["delivery"]
    assert events["order.delivered"]["delivery"]["text"] == "LICENSE-42"

    events = order_events_received(receiver, "orders", secret, shipped["id"])
    assert list(events) == ["order.created", "order.paid", "order.delivered"]
    assert events["order.paid"]["status"] == "delivering"
    assert events["order.paid"]["delivery"]["state"] == "awaiting_shipment"
    assert events["order.delivered"]["delivery"]["tracking"] == "DHL 1"
