"""Replacing a delivered key, in process: the old key burned with its license disabled, the
pool's oldest key delivered in its place with a new license, the buyer emailed and
`order.key_replaced` written, all at once or not at all; refused for orders and keys that
can't be replaced, once per Idempotency-Key and once per key under a race. Then once
through the real server, with the email over SMTP and the webhook verified."""

from __future__ import annotations

import email
import email.policy
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import GENEROUS_LIMITS, assert_problem, running_server, wait_until
from support import (
    Mailbox,
    assert_invalid,
    email_rows,
    fetch,
    get_product,
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    smtp_config,
)

OWNER = "owner@shop.example"


@pytest.fixture
def app_config() -> str:
    return GENEROUS_LIMITS + f'[shop]\nowner_email = "{OWNER}"\n'


def replace(client, order_id: str, key: str, idempotency_key: str = "replace-1", **body):
    return client.post(f"/v1/orders/{order_id}/replace", json={"key": key, **body},
                       headers={"Idempotency-Key": idempotency_key})


def delivered(v1, keys: int = 4, qty: int = 2, **fields) -> tuple[dict, dict, list[str]]:
    """A completed order of `qty` keys, its product and the product's whole pool."""
    product, pool = key_product(v1, keys, **fields)
    return pay(v1, place_order(v1, product["id"], qty=qty)["id"]), product, pool


def pool(v1, product_id: str, status: str) -> list[str]:
    page = json_body(v1.get(f"/v1/products/{product_id}/keys",
                            params={"status": status, "limit": 100}))
    return sorted(k["key"] for k in page["data"])


def licenses_by_key(v1, order_id: str) -> dict[str, dict]:
    page = json_body(v1.get("/v1/licenses", params={"order_id": order_id, "limit": 100}))
    return {lic["key"]: lic for lic in page["data"]}


def events_of(v1, event_type: str) -> list[dict]:
    return json_body(v1.get("/v1/events", params={"type": event_type, "limit": 100}))["data"]


def snapshot(v1, app_db, order: dict) -> dict:
    """Everything a replacement changes, to show that a refused one changed nothing."""
    product_id = order["items"][0]["product_id"]
    return {"order": fetch(v1, order["id"]), "product": get_product(v1, product_id),
            "licenses": licenses_by_key(v1, order["id"]),
            "pool": {s: pool(v1, product_id, s) for s in ("available", "sold", "burned")},
            "events": app_db.query("SELECT count(*) FROM events"),
            "emails": app_db.query("SELECT count(*) FROM emails")}


def test_a_key_is_replaced_in_place_with_a_new_license_event_and_email(v1, app_db):
    order, product, keys = delivered(v1, keys=4, qty=2, activation_limit=3)
    old, kept = order["delivery"]["keys"]
    fresh = keys[2]  # the oldest key left in the pool
    replaced = json_body(replace(v1, order["id"], old, reason="reported as not working"))

    assert replaced["delivery"]["keys"] == [fresh, kept]
    assert replaced == {**fetch(v1, order["id"]), "delivery": replaced["delivery"]}
    assert pool(v1, product["id"], "burned") == [old]
    assert pool(v1, product["id"], "sold") == sorted([kept, fresh])
    assert pool(v1, product["id"], "available") == [keys[3]]
    assert get_product(v1, product["id"])["stock"] == 1
    assert app_db.query("SELECT reason FROM burned_keys") == [("reported as not working",)]

    licenses = licenses_by_key(v1, order["id"])
    assert licenses[old]["status"] == "disabled"
    assert licenses[kept]["status"] == "active"
    assert licenses[fresh] == {**licenses[fresh], "status": "active", "activation_limit": 3,
                               "order_id": order["id"], "activations": 0,
                               "customer_email": order["customer_email"]}
    (updated,) = [e for e in events_of(v1, "license.updated")
                  if e["data"]["object"]["id"] == licenses[old]["id"]]
    assert updated["data"]["previous_attributes"] == {"status": "active"}
    assert [e["data"]["object"]["id"] for e in events_of(v1, "license.created")
            if e["data"]["object"]["key"] == fresh] == [licenses[fresh]["id"]]

    (event,) = events_of(v1, "order.key_replaced")
    assert event["data"]["object"] == replaced
    assert event["data"]["replacement"] == {"old_key": old, "new_key": fresh,
                                            "reason": "reported as not working"}

    (mail,) = app_db.query("SELECT to_address, subject, body_text, status FROM emails "
                           "WHERE kind = 'key_replaced' AND related_id = ?", (order["id"],))
    to, subject, body, status = mail
    assert (to, status) == (order["customer_email"], "pending")
    assert product["name"] in subject
    assert fresh in body and old in body and "reported" not in body


def test_the_reason_is_optional_and_bounded(v1):
    order, _, _ = delivered(v1, qty=1)
    (key,) = order["delivery"]["keys"]
    assert_invalid(replace(v1, order["id"], key, reason="x" * 501), "reason", exact=True)
    assert_invalid(replace(v1, order["id"], "", "empty"), "key", exact=True)
    assert_problem(v1.post(f"/v1/orders/{order['id']}/replace", json={},
                           headers={"Idempotency-Key": "none"}), 400, "invalid_request")
    assert json_body(replace(v1, order["id"], f"  {key} ", "ok"))["delivery"]["keys"] != [key]


def test_a_replacement_that_takes_the_stock_low_alerts_the_owner(v1, app_db):
    order, product, _ = delivered(v1, keys=3, qty=1, low_stock_threshold=1)
    assert not events_of(v1, "product.stock_low")  # 3 → 2
    json_body(replace(v1, order["id"], order["delivery"]["keys"][0]))  # 2 → 1: crossed
    (alert,) = events_of(v1, "product.stock_low")
    assert alert["data"]["object"]["id"] == product["id"]
    assert alert["data"]["object"]["stock"] == 1
    assert app_db.query("SELECT to_address FROM emails WHERE kind = 'stock_low'") == [(OWNER,)]


def test_an_empty_pool_refuses_and_changes_nothing(v1, app_db):
    order, product, _ = delivered(v1, keys=2, qty=2)
    before = snapshot(v1, app_db, order)
    refused = replace(v1, order["id"], order["delivery"]["keys"][0])
    assert_invalid(refused, "key", exact=True)
    assert "pool" in refused.json()["errors"]["key"]
    assert snapshot(v1, app_db, order) == before
    assert app_db.query("SELECT count(*) FROM burned_keys") == [(0,)]


def test_the_idempotency_key_is_required_and_a_replay_swaps_once(v1, app_db):
    order, product, keys = delivered(v1, keys=5, qty=1)
    (old,) = order["delivery"]["keys"]
    missing = v1.post(f"/v1/orders/{order['id']}/replace", json={"key": old})
    assert assert_problem(missing, 400, "invalid_request")["errors"] == {
        "Idempotency-Key": "is required"}

    first = replace(v1, order["id"], old, "once")
    again = replace(v1, order["id"], old, "once")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.data == first.data
    assert pool(v1, product["id"], "burned") == [old]
    assert get_product(v1, product["id"])["stock"] == 3
    assert len(events_of(v1, "order.key_replaced")) == 1
    assert len(email_rows(app_db, order["id"], "key_replaced")) == 1


def test_a_burned_or_unknown_key_is_refused(v1):
    order, _, keys = delivered(v1, keys=5, qty=1)
    (old,) = order["delivery"]["keys"]
    json_body(replace(v1, order["id"], old, "first"))
    burned = assert_invalid(replace(v1, order["id"], old, "burned"), "key", exact=True)
    assert "already" in burned["errors"]["key"]
    for key in ("NOT-A-KEY", keys[-1]):  # never sold, or in the pool still
        assert_invalid(replace(v1, order["id"], key, f"unknown {key}"), "key", exact=True)
    other, _, _ = delivered(v1, qty=1)
    assert_invalid(replace(v1, order["id"], other["delivery"]["keys"][0], "other's"), "key")


def test_orders_that_cant_have_a_key_replaced(v1, clock, tick):
    account = make_product(v1, type="account", delivery_text="login: ada", stock=3)
    paid_account = pay(v1, place_order(v1, account["id"])["id"])
    assert_invalid(replace(v1, paid_account["id"], "login: ada", "account"), "order",
                   exact=True)

    product, _ = key_product(v1, 4)
    unpaid = place_order(v1, product["id"])
    assert_invalid(replace(v1, unpaid["id"], "X", "unpaid"), "order", exact=True)

    refunded = pay(v1, place_order(v1, product["id"])["id"])
    json_body(v1.post(f"/v1/orders/{refunded['id']}/refund", json={},
                      headers={"Idempotency-Key": "refund"}))
    tick("process_refunds")  # sends
    clock.advance(1)
    tick("process_refunds")  # settles
    assert fetch(v1, refunded["id"])["status"] == "refunded"
    problem = assert_invalid(replace(v1, refunded["id"], refunded["delivery"]["keys"][0],
                                     "refunded"), "order", exact=True)
    assert "refunded" in problem["errors"]["order"]

    assert_problem(replace(v1, "ord_unknown", "X", "unknown"), 404, "not_found")


def test_replacing_needs_orders_write_and_the_orders_mode(client, v1):
    order, _, _ = delivered(v1, qty=1)
    key = order["delivery"]["keys"][0]
    assert replace(client.keyed("orders:read"), order["id"], key).status_code == 403
    assert_problem(replace(client.keyed(mode="live"), order["id"], key), 404, "not_found")
    assert fetch(v1, order["id"])["delivery"]["keys"] == [key]


def test_two_racing_replacements_of_one_key_burn_it_once(app, v1, app_db):
    order, product, _ = delivered(v1, keys=6, qty=1)
    (old,) = order["delivery"]["keys"]
    start = threading.Barrier(2)

    def send(index: int):
        client = app.test_client()
        client.environ_base.update(v1.environ_base)  # the same API key, its own client
        start.wait()
        return replace(client, order["id"], old, f"racer-{index}")

    with ThreadPoolExecutor(2) as pool_:
        answers = list(pool_.map(send, range(2)))
    assert sorted(a.status_code for a in answers) == [200, 422]
    (won,) = [a.json() for a in answers if a.status_code == 200]
    assert app_db.query("SELECT count(*) FROM burned_keys WHERE order_id = ?",
                        (order["id"],)) == [(1,)]
    assert fetch(v1, order["id"])["delivery"]["keys"] == won["delivery"]["keys"]
    assert get_product(v1, product["id"])["stock"] == 4
    assert len(events_of(v1, "order.key_replaced")) == 1


@pytest.mark.e2e
def test_a_real_shop_emails_the_new_key_and_signs_the_event(tmp_path, receiver):
    """Through the real server: the buyer's email reaches the SMTP server with the new key,
    and the endpoint listening to `order.*` verifies `order.key_replaced`."""
    with Mailbox() as mailbox, running_server(
            tmp_path, GENEROUS_LIMITS + "[jobs]\ntick_seconds = 1\n"
            + smtp_config(mailbox.port, "shop@example.org")) as shop:
        v1 = shop.admin
        secret = json_body(v1.post("/v1/webhooks", json={
            "url": receiver.url("orders"), "events": ["order.*"]}), 201)["signing_secret"]
        order, _, _ = delivered(v1, keys=3, qty=1)
        (old,) = order["delivery"]["keys"]
        wait_until(lambda: len(mailbox.envelopes) == 1, what="the delivery email")

        replaced = json_body(replace(v1, order["id"], old, reason="leaked"))
        (fresh,) = replaced["delivery"]["keys"]
        wait_until(lambda: len(mailbox.envelopes) == 2, what="the replacement email")
        envelope = mailbox.envelopes[-1]
        assert envelope.rcpt_tos == [order["customer_email"]]
        message = email.message_from_bytes(envelope.original_content or envelope.content,
                                           policy=email.policy.default)
        assert fresh in message.get_content() and old in message.get_content()

        def key_replaced():
            for call in receiver.requests("orders"):
                event = Webhook(secret).verify(call.body, call.headers)
                if event["type"] == "order.key_replaced":
                    return event
            return None

        event = wait_until(key_replaced, what="order.key_replaced at the receiver")
        assert event["data"]["object"]["id"] == order["id"]
        assert event["data"]["object"]["delivery"]["keys"] == [fresh]
        assert event["data"]["replacement"] == {"old_key": old, "new_key": fresh,
                                                "reason": "leaked"}


def test_a_refund_of_everything_under_way_refuses_a_replacement(v1, app_db, clock, tick):
    """While a full refund is processing the order is still completed; a key replaced then
    would be spent from the pool and disabled when the refund settles."""
    order, product, _ = delivered(v1, keys=4, qty=1)
    [key] = order["delivery"]["keys"]
    json_body(v1.post(f"/v1/orders/{order['id']}/refund", json={"amount_cents": 100},
                      headers={"Idempotency-Key": "part"}))
    json_body(replace(v1, order["id"], key, "after a part"))  # a part leaves the sale
    order = fetch(v1, order["id"])
    json_body(v1.post(f"/v1/orders/{order['id']}/refund", json={},
                      headers={"Idempotency-Key": "rest"}))
    assert fetch(v1, order["id"])["status"] == "completed"
    before = snapshot(v1, app_db, order)
    refused = assert_invalid(replace(v1, order["id"], order["delivery"]["keys"][0], "in flight"),
                             "order", exact=True)
    assert "refund of the whole amount is under way" in refused["errors"]["order"]
    assert snapshot(v1, app_db, order) == before

    tick("process_refunds")  # sends
    clock.advance(1)
    tick("process_refunds")  # settles the part, and the rest
    assert fetch(v1, order["id"])["status"] == "refunded"
    assert pool(v1, product["id"], "available") == before["pool"]["available"]


def test_a_free_orders_key_can_be_replaced(v1):
    """Nothing was paid, so nothing is refundable: that is no refund under way."""
    product, _ = key_product(v1, 2, price_cents=0)
    order = fetch(v1, place_order(v1, product["id"])["id"])
    assert (order["status"], order["refundable_cents"]) == ("completed", 0)
    json_body(replace(v1, order["id"], order["delivery"]["keys"][0], "free"))
