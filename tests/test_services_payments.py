"""Checkout and payments in process: an order reserves its stock and opens a sandbox invoice
for the invoice lifetime; the test helper pays it in full or in part; an invoice left
unpaid expires once the clock passes `expires_at` and the poll job runs."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

from sellix_lite.clock import iso, utcnow

from support import (
    assert_invalid,
    event_types,
    fetch,
    get_product,
    key_product,
    pay,
    place_order,
)


def test_checkout_reserves_stock_and_opens_an_invoice_for_its_lifetime(v1, clock):
    product, _ = key_product(v1, 5)
    order = place_order(v1, product["id"], qty=2)
    assert order["status"] == "awaiting_payment"
    assert order["total_cents"] == 2 * 4900
    assert order["created_at"] == iso(utcnow())
    assert order["payment"]["expires_at"] == iso(utcnow() + timedelta(minutes=60))
    assert get_product(v1, product["id"])["stock"] == 3
    assert_invalid(v1.post("/v1/orders", json={"product_id": product["id"], "qty": 4,
                                               "customer_email": "late@example.com"}), "qty")
    assert get_product(v1, product["id"])["stock"] == 3


def test_payment_in_full_completes_and_delivers(v1, app_db, clock):
    product, _ = key_product(v1, 5)
    order = place_order(v1, product["id"])
    clock.advance(90)
    paid = pay(v1, order["id"])
    assert paid["status"] == "completed"
    assert paid["paid_at"] == iso(utcnow())
    assert paid["payment"]["paid_cents"] == 4900 and paid["payment"]["tx_hash"]
    assert len(paid["delivery"]["keys"]) == 1
    assert event_types(app_db, order["id"]) == Counter(
        {"order.created": 1, "order.paid": 1, "order.delivered": 1})


def test_partial_payments_add_up(v1, app_db):
    product, _ = key_product(v1, 5)
    order = place_order(v1, product["id"], qty=2)
    part = pay(v1, order["id"], 1000)
    assert part["status"] == "awaiting_payment"
    assert part["payment"]["paid_cents"] == 1000 and part["paid_at"] is None
    assert "keys" not in part["delivery"]
    paid = pay(v1, order["id"], 2 * 4900 - 1000)
    assert paid["status"] == "completed" and paid["payment"]["paid_cents"] == 9800
    assert len(paid["delivery"]["keys"]) == 2
    assert event_types(app_db, order["id"])["order.paid"] == 1


def test_an_unpaid_invoice_expires_when_the_clock_passes_it(v1, clock, tick, app_db):
    product, _ = key_product(v1, 10)
    order = place_order(v1, product["id"], qty=3)
    clock.advance(60 * 60 - 1)
    tick("poll_payments")
    assert fetch(v1, order["id"])["status"] == "awaiting_payment"

    clock.advance(1)
    tick("poll_payments")
    failed = fetch(v1, order["id"])
    assert failed["status"] == "failed"
    assert failed["failure_reason"] == "the invoice expired unpaid"
    assert get_product(v1, product["id"])["stock"] == 10
    assert event_types(app_db, order["id"]) == Counter({"order.created": 1, "order.failed": 1})
    tick("poll_payments")
    assert fetch(v1, order["id"]) == failed


def test_a_partly_paid_invoice_expires_with_its_partial_payment(v1, clock, tick):
    product, _ = key_product(v1, 4)
    order = place_order(v1, product["id"], qty=2)
    pay(v1, order["id"], 1000)
    clock.advance(60 * 60)
    tick("poll_payments")
    failed = fetch(v1, order["id"])
    assert failed["status"] == "failed"
    assert "partial payment of 1000" in failed["failure_reason"]
    assert failed["payment"]["paid_cents"] == 1000 and failed["paid_at"] is None
    assert get_product(v1, product["id"])["stock"] == 4
