"""What was received, in process: every payment seen on an invoice counts in
`payment.paid_cents`, `refundable_cents` is what of it was not refunded, and refunds take
up to that in any status (a partly paid order that expired, an overpayment's excess)."""

from __future__ import annotations

from support import (
    assert_invalid,
    expire,
    fetch,
    json_body,
    key_product,
    pay,
    place_order,
    signed_in_dashboard,
)


def refund(v1, order_id: str, key: str, **body):
    return v1.post(f"/v1/orders/{order_id}/refund", json=body,
                   headers={"Idempotency-Key": key})


def settled(v1, clock, tick, order_id: str) -> dict:
    """The order once its refunds were sent and settled by the job."""
    tick("process_refunds")  # sends
    clock.advance(1)  # [jobs] tick_seconds
    tick("process_refunds")  # reads the sandbox's answer
    return fetch(v1, order_id)


def test_an_order_shows_its_invoice_what_it_received_and_what_is_refundable(v1):
    product, _ = key_product(v1, 3)
    order = place_order(v1, product["id"])
    assert order["payment"]["invoice_id"].startswith("inv_")
    assert order["payment"]["late"] is False
    assert order["refundable_cents"] == 0
    paid = pay(v1, order["id"], 6000)
    assert paid["payment"]["paid_cents"] == 6000 and paid["payment"]["overpaid_cents"] == 1100
    assert paid["refundable_cents"] == 6000


def test_the_excess_of_an_overpayment_can_be_given_back(v1, clock, tick):
    product, _ = key_product(v1, 3)
    order = pay(v1, place_order(v1, product["id"])["id"], 6000)
    excess = json_body(refund(v1, order["id"], "excess", amount_cents=1100))
    assert excess["amount_cents"] == 1100
    after = settled(v1, clock, tick, order["id"])
    assert after["status"] == "completed"
    assert after["refunded_cents"] == 1100 and after["refundable_cents"] == 4900


def test_a_partly_paid_order_that_expired_can_be_refunded(v1, clock, tick):
    product, _ = key_product(v1, 3)
    order = place_order(v1, product["id"])
    pay(v1, order["id"], 1000)
    failed = expire(v1, order["id"])
    assert failed["status"] == "failed" and failed["refundable_cents"] == 1000
    assert_invalid(refund(v1, order["id"], "too much", amount_cents=1001), "amount_cents")
    given = json_body(refund(v1, order["id"], "all"))
    assert given["amount_cents"] == 1000
    after = settled(v1, clock, tick, order["id"])
    assert after["status"] == "failed"
    assert after["refunded_cents"] == 1000 and after["refundable_cents"] == 0
    assert_invalid(refund(v1, order["id"], "again"), "amount_cents")


def test_an_order_that_received_nothing_has_nothing_to_refund(v1):
    product, _ = key_product(v1, 3)
    order = place_order(v1, product["id"])
    assert_invalid(refund(v1, order["id"], "open"), "order")
    expire(v1, order["id"])
    assert_invalid(refund(v1, order["id"], "expired"), "order")


def test_the_dashboard_order_page_offers_the_refundable_amount(app, v1, client):
    product, _ = key_product(v1, 3)
    order = place_order(v1, product["id"])
    pay(v1, order["id"], 1234)
    expire(v1, order["id"])
    page = signed_in_dashboard(app, client).get(f"/dashboard/orders/{order['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200, html
    assert '<span id="received">12.34 USD</span>' in html
    assert '<span id="refundable">12.34 USD</span>' in html
    assert 'name="amount" inputmode="decimal" value="12.34"' in html
    assert 'class="late"' not in html
    pay(v1, order["id"], 100)  # late
    html = client.get(f"/dashboard/orders/{order['id']}").get_data(as_text=True)
    assert '<span id="received">13.34 USD</span> <strong class="late">late</strong>' in html
    assert 'value="13.34"' in html


def test_the_refund_form_is_gone_once_nothing_is_refundable(app, v1, client, clock, tick):
    product, _ = key_product(v1, 3)
    order = place_order(v1, product["id"])
    page = signed_in_dashboard(app, client).get(f"/dashboard/orders/{order['id']}")
    assert "<h2>Refund</h2>" not in page.get_data(as_text=True)  # nothing received
    pay(v1, order["id"])
    json_body(refund(v1, order["id"], "all"))
    settled(v1, clock, tick, order["id"])
    html = client.get(f"/dashboard/orders/{order['id']}").get_data(as_text=True)
    assert "<h2>Refund</h2>" in html and 'class="refund-status">succeeded' in html
    assert 'name="amount"' not in html
    assert order["payment"]["invoice_id"] in html
