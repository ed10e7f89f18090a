"""Refunds and payouts in process: the jobs send them to the sandbox and follow them, one
step per run and per provider check, the clock moved between runs."""

from __future__ import annotations

import secrets

from sellix_lite.clock import iso, utcnow

from support import email_rows, fetch, make_product, pay, place_order

TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def paid_order(v1, price_cents: int = 10000) -> dict:
    product = make_product(v1, type="account", delivery_text="x", price_cents=price_cents)
    return pay(v1, place_order(v1, product["id"])["id"])


def posted(v1, path: str, body: dict) -> dict:
    """POST with a fresh Idempotency-Key; the answer must be a 200 or 201."""
    response = v1.post(path, json=body, headers={"Idempotency-Key": secrets.token_hex(8)})
    assert response.status_code in (200, 201), response.text
    return response.json()


def events_about(app_db, object_id: str) -> list[str]:
    return [kind for (kind,) in app_db.query(
        "SELECT type FROM events WHERE json_extract(data, '$.object.id') = ? ORDER BY rowid",
        (object_id,))]


def test_a_refund_is_sent_then_settled_by_the_job(v1, clock, tick, app_db):
    order = paid_order(v1)
    refund = posted(v1, f"/v1/orders/{order['id']}/refund", {"amount_cents": 2500})
    assert refund["status"] == "processing"
    assert fetch(v1, order["id"])["refunded_cents"] == 2500

    assert tick("process_refunds") == 1  # sent: the sandbox answers `processing`
    assert tick("process_refunds") == 0  # asked again only at the next check
    clock.advance(1)  # [jobs] tick_seconds
    assert tick("process_refunds") == 1
    (settled,) = v1.get(f"/v1/orders/{order['id']}/refunds").json()["data"]
    assert settled["status"] == "succeeded" and settled["destination_tx"]
    assert settled["updated_at"] == iso(utcnow())
    assert fetch(v1, order["id"])["status"] == "completed"  # part of it refunded
    assert events_about(app_db, order["id"])[-1] == "order.refunded"
    assert len(email_rows(app_db, order["id"], "order_refunded")) == 1

    clock.advance(1)
    assert tick("process_refunds") == 0
    posted(v1, f"/v1/orders/{order['id']}/refund", {})
    tick("process_refunds")
    clock.advance(1)
    tick("process_refunds")
    assert fetch(v1, order["id"])["status"] == "refunded"


def test_a_payout_confirms_once_the_sandbox_chain_has_had_its_time(v1, clock, tick, app_db):
    paid_order(v1)
    payout = posted(v1, "/v1/payouts", {"chain": "tron", "asset": "USDT",
                                        "amount_cents": 4321, "destination_address": TRON})
    assert payout["status"] == "queued"
    assert tick("process_payouts") == 1  # sent; the sandbox queues it
    assert tick("process_payouts") == 0

    clock.advance(1)
    tick("process_payouts")
    broadcast = v1.get(f"/v1/payouts/{payout['id']}").json()
    assert broadcast["status"] == "broadcast" and broadcast["tx_hash"]
    assert broadcast["broadcast_at"] == iso(utcnow())

    clock.advance(1)  # [sandbox] payout_confirm_seconds = 2 after it was queued
    tick("process_payouts")
    confirmed = v1.get(f"/v1/payouts/{payout['id']}").json()
    assert confirmed["status"] == "confirmed"
    assert confirmed["confirmed_at"] == iso(utcnow())
    assert events_about(app_db, payout["id"]) == [
        "payout.queued", "payout.broadcast", "payout.confirmed"]
    clock.advance(60)
    assert tick("process_payouts") == 0  # a confirmed payout is never asked about again
    assert v1.get("/v1/balance").json()["available_cents"] == 10000 - 4321
