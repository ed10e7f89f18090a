"""Late payments in process, on the moved clock: the sandbox pay helper on an order whose
invoice expired is a payment reaching an expired invoice. Within `[blockpn]
late_payment_hours` it is recorded (`payment.late`); paid in full, the order is delivered
after all ("deliver") or the money goes back ("refund", or the stock is gone)."""

from __future__ import annotations

import json

import pytest

from sellix_lite import db as storage
from sellix_lite.config import ConfigError, config_from_dict
from sellix_lite.providers.sandbox import SandboxLedger

from conftest import GENEROUS_LIMITS
from support import expire, fetch, get_product, json_body, key_product, pay, place_order

REFUND_MODE = GENEROUS_LIMITS + '[blockpn]\nlate_payment = "refund"\n'


def expired_order(v1, keys: int = 3) -> tuple[dict, dict]:
    """A key product and an order of it whose invoice expired unpaid."""
    product, _ = key_product(v1, keys)
    order = place_order(v1, product["id"])
    failed = expire(v1, order["id"])
    assert failed["status"] == "failed" and failed["payment"]["late"] is False
    return product, failed


def refunds_of(v1, order_id: str) -> list[dict]:
    return json_body(v1.get(f"/v1/orders/{order_id}/refunds"))["data"]


def paid_events(app_db, order_id: str) -> list[dict]:
    rows = app_db.query("SELECT data FROM events WHERE type = 'order.paid' AND "
                        "json_extract(data, '$.object.id') = ?", (order_id,))
    return [json.loads(data)["object"] for (data,) in rows]


def assert_given_back(v1, clock, tick, order_id: str, amount: int) -> None:
    """The late payment is refunded in full, automatically, and the order stays failed."""
    (refund,) = refunds_of(v1, order_id)
    assert refund["amount_cents"] == amount
    assert refund["reason"] == "other" and refund["note"] == "late payment"
    tick("process_refunds")  # sent
    clock.advance(1)  # [jobs] tick_seconds
    tick("process_refunds")  # settled
    (refund,) = refunds_of(v1, order_id)
    assert refund["status"] == "succeeded"
    after = fetch(v1, order_id)
    assert after["status"] == "failed" and after["paid_at"] is None
    assert after["refunded_cents"] == amount and after["refundable_cents"] == 0


def test_a_late_payment_in_full_reserves_the_stock_again_and_delivers(v1, clock, app_db):
    product, order = expired_order(v1)
    assert get_product(v1, product["id"])["stock"] == 3
    clock.advance(23 * 3600)
    paid = pay(v1, order["id"])
    assert paid["status"] == "completed" and paid["failure_reason"] is None
    assert paid["payment"]["late"] is True and paid["payment"]["paid_cents"] == 4900
    assert len(paid["delivery"]["keys"]) == 1
    assert get_product(v1, product["id"])["stock"] == 2
    (event,) = paid_events(app_db, order["id"])
    assert event["payment"]["late"] is True and event["paid_at"]


def test_late_partial_payments_add_up_until_the_order_is_paid(v1, clock):
    product, _ = key_product(v1, 3)
    order = place_order(v1, product["id"])
    pay(v1, order["id"], 1000)
    expire(v1, order["id"])
    clock.advance(3600)
    part = pay(v1, order["id"], 1000)
    assert part["status"] == "failed" and part["payment"]["late"] is True
    assert part["payment"]["paid_cents"] == 2000 and part["refundable_cents"] == 2000
    done = pay(v1, order["id"])
    assert done["status"] == "completed" and done["payment"]["paid_cents"] == 4900


def test_a_late_payment_is_refunded_when_the_stock_is_gone(v1, clock, tick, app_db):
    product, order = expired_order(v1, keys=1)
    pay(v1, place_order(v1, product["id"])["id"])  # another buyer takes the last key
    late = pay(v1, order["id"])
    assert late["status"] == "failed" and late["payment"]["late"] is True
    assert late["payment"]["paid_cents"] == 4900 and "keys" not in late["delivery"]
    assert paid_events(app_db, order["id"]) == []
    assert_given_back(v1, clock, tick, order["id"], 4900)
    assert get_product(v1, product["id"])["stock"] == 0


@pytest.mark.parametrize("app_config", [REFUND_MODE])
def test_in_refund_mode_a_late_payment_goes_back(v1, clock, tick, app_db):
    product, order = expired_order(v1)
    late = pay(v1, order["id"], 6000)
    assert late["status"] == "failed" and late["payment"]["paid_cents"] == 6000
    assert get_product(v1, product["id"])["stock"] == 3
    assert_given_back(v1, clock, tick, order["id"], 6000)


def test_a_payment_after_the_late_window_is_ignored(v1, clock):
    _, order = expired_order(v1)
    clock.advance(24 * 3600 + 1)
    after = pay(v1, order["id"])
    assert after == order


def test_the_poll_finds_a_late_payment_whose_report_was_lost(app, v1, clock, tick, app_db):
    product, order = expired_order(v1)
    clock.advance(3600)
    db = storage.connect(app.extensions["sellix"].config.database_path)
    try:  # paid on the sandbox's side only, as when a callback is lost
        SandboxLedger(db, payout_confirm_seconds=1).pay(order["payment"]["invoice_id"], 4900)
    finally:
        db.close()
    assert fetch(v1, order["id"])["status"] == "failed"
    tick("poll_payments")
    paid = fetch(v1, order["id"])
    assert paid["status"] == "completed" and paid["payment"]["late"] is True
    assert len(paid_events(app_db, order["id"])) == 1


@pytest.mark.parametrize("blockpn,message", [
    ({"late_payment": "later"}, "blockpn.late_payment must be one of deliver, refund"),
    ({"late_payment_hours": -1}, "blockpn.late_payment_hours must be 0 or more"),
])
def test_the_late_payment_settings_are_checked_at_start(tmp_path, blockpn, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"blockpn": blockpn}, base_dir=tmp_path)
