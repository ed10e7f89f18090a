"""Refunds of what was received, against the real server: 20 concurrent refund requests,
identical or not, with one Idempotency-Key or each its own, never refund more than the
order received; and a live order paid in part through `blockpn-sim`, then expired, is
given back through the simulator."""

from __future__ import annotations

import secrets
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from support import (
    assert_invalid,
    expire,
    fetch,
    invoice_of,
    live_mode_shop,
    make_product,
    pay,
    place_order,
    wait_for_status,
    wait_until,
)

RACERS = 20


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory):
    with live_mode_shop(tmp_path_factory, name="refund-races") as shop:
        yield shop


def account_order(client, price_cents: int = 4900) -> dict:
    product = make_product(client, type="account", price_cents=price_cents, stock=5,
                           delivery_text="login: racer")
    return place_order(client, product["id"])


def race(server, secret: str, order_id: str, bodies: list[dict], keys: list[str]) -> list:
    """Send the refund requests all at once, each from its own connection."""
    start = threading.Barrier(len(bodies))

    def send(index: int):
        client = server.client(secret)
        try:
            start.wait()
            return client.post(f"/v1/orders/{order_id}/refund", json=bodies[index],
                               headers={"Idempotency-Key": keys[index]})
        finally:
            client.close()

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(send, range(len(bodies))))


def refunded_in_rows(server, order_id: str) -> int:
    (total,), = server.query("SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE "
                             "order_id = ?", (order_id,))
    return total


def partly_paid_and_expired(api, paid_cents: int = 1000) -> dict:
    order = account_order(api)
    pay(api, order["id"], paid_cents)
    return expire(api, order["id"])


# (bodies, one key for all): identical or different requests, one key or one each.
CASES = {
    "identical, a key each": ([{}] * RACERS, False),
    "identical, one key": ([{}] * RACERS, True),
    "different, a key each": ([{"amount_cents": 100 + i} for i in range(RACERS)], False),
    "different, one key": ([{"amount_cents": 100 + i} for i in range(RACERS)], True),
}


@pytest.mark.parametrize("case", CASES)
def test_concurrent_refunds_never_exceed_what_was_received(server, api, test_key, case):
    bodies, one_key = CASES[case]
    order = partly_paid_and_expired(api, 1000)
    assert order["status"] == "failed" and order["refundable_cents"] == 1000
    keys = [secrets.token_hex(8)] * RACERS if one_key else [secrets.token_hex(8)
                                                           for _ in range(RACERS)]
    answers = race(server, test_key, order["id"], bodies, keys)
    codes = Counter(answer.status_code for answer in answers)
    assert set(codes) <= {200, 409, 422}, [answer.text for answer in answers]
    accepted = {answer.json()["id"]: answer.json()["amount_cents"]
                for answer in answers if answer.status_code == 200}
    after = fetch(api, order["id"])
    assert after["refunded_cents"] == sum(accepted.values()) == refunded_in_rows(
        server, order["id"]) <= 1000
    assert after["refundable_cents"] == 1000 - after["refunded_cents"]
    if one_key:
        assert len(accepted) == 1
    elif bodies[0] == {}:
        assert accepted and list(accepted.values()) == [1000]
        assert codes[422] == RACERS - 1
    else:  # 100 to 119 cents each: as many as fit in 1000, in whatever order they came
        assert len(accepted) in (8, 9)
    for answer in answers:
        if answer.status_code == 422:
            assert_invalid(answer, "amount_cents")


def test_live_partly_paid_then_expired_order_is_refunded_through_the_simulator(live_shop):
    shop, client = live_shop, live_shop.live
    order = account_order(client, price_cents=3000)
    invoice_id = invoice_of(shop, order["id"])
    shop.sim.post(f"/sim/invoices/{invoice_id}/pay", {"amount_cents": 1200, "notify": True})
    shop.sim.post(f"/sim/invoices/{invoice_id}/expire", {"notify": True})
    failed = wait_for_status(client, order["id"], "failed")
    assert failed["payment"]["paid_cents"] == 1200 and failed["refundable_cents"] == 1200
    assert failed["payment"]["invoice_id"] == invoice_id

    answer = client.post(f"/v1/orders/{order['id']}/refund", json={"reason": "other"},
                         headers={"Idempotency-Key": secrets.token_hex(8)})
    assert answer.status_code == 200, answer.text
    created = answer.json()
    assert created["amount_cents"] == 1200

    def settled():
        found = client.get(f"/v1/orders/{order['id']}/refunds").json()["data"]
        return found if found and found[0]["status"] == "succeeded" else None
    (done,) = wait_until(settled, what="the refund succeeded")
    (provider_id,), = shop.query("SELECT provider_refund_id FROM refunds WHERE id = ?",
                                 (created["id"],))
    remote = shop.sim.get(f"/v1/refunds/{provider_id}").json()
    assert remote["invoice_id"] == invoice_id and remote["amount_cents"] == 1200
    assert remote["destination_tx"] == done["destination_tx"]
    after = fetch(client, order["id"])
    assert after["status"] == "failed"
    assert after["refunded_cents"] == 1200 and after["refundable_cents"] == 0
