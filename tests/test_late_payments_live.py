"""A late payment in live mode, end to end: `blockpn-sim` pays an invoice that expired, and
its signed callback alone (the poll is an hour away) delivers the order after all."""

from __future__ import annotations

import json

import pytest

from conftest import GENEROUS_LIMITS
from support import event_types, fetch, invoice_of, live_mode_shop, make_product, place_order

# Only callbacks can tell the shop anything here: the poll waits an hour.
CALLBACKS_ONLY = GENEROUS_LIMITS + "[jobs]\npayment_poll_seconds = 3600\n"


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory):
    with live_mode_shop(tmp_path_factory, CALLBACKS_ONLY, name="late-payments") as shop:
        yield shop


def test_a_late_payment_reported_by_callback_delivers_the_order(live_shop):
    shop, client = live_shop, live_shop.live
    product = make_product(client, type="account", price_cents=2500, stock=2,
                           delivery_text="login: late")
    order = place_order(client, product["id"])
    invoice_id = invoice_of(shop, order["id"])
    expired = shop.sim.post(f"/sim/invoices/{invoice_id}/expire").json()
    assert expired["callback"]["response_code"] == 200
    assert fetch(client, order["id"])["status"] == "failed"

    late = shop.sim.post(f"/sim/invoices/{invoice_id}/pay").json()
    assert late["invoice"]["status"] == "expired" and late["callback"]["response_code"] == 200
    paid = fetch(client, order["id"])
    assert paid["status"] == "completed" and paid["delivery"]["text"] == "login: late"
    assert paid["payment"]["late"] is True and paid["payment"]["paid_cents"] == 2500
    assert paid["refundable_cents"] == 2500
    (data,), = shop.query("SELECT data FROM events WHERE type = 'order.paid' AND "
                          "json_extract(data, '$.object.id') = ?", (order["id"],))
    assert json.loads(data)["object"]["payment"]["late"] is True
    assert event_types(shop, order["id"])["order.delivered"] == 1
