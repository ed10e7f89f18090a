"""Fulfilment in process: license keys go out once whatever runs again, download links last
their lifetime on the clock, subscriptions renew or expire as the clock passes their
period's end, and dynamic deliveries are retried on the clock."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sellix_lite.clock import iso

from support import (
    Reply,
    assert_invalid,
    email_rows,
    fetch,
    key_product,
    make_product,
    pay,
    place_order,
)

FILE = secrets.token_bytes(2048)


def test_license_keys_are_delivered_once(v1, tick, app_db):
    product, pool = key_product(v1, 5)
    order = pay(v1, place_order(v1, product["id"], qty=2)["id"])
    keys = order["delivery"]["keys"]
    assert len(set(keys)) == 2 and set(keys) <= set(pool)

    for job in ("poll_payments", "deliver_dynamic", "send_emails"):
        tick(job)
    assert_invalid(v1.post(f"/v1/test_helpers/orders/{order['id']}/pay", json={}))
    assert v1.post(f"/v1/orders/{order['id']}/resend").status_code == 200
    assert fetch(v1, order["id"])["delivery"]["keys"] == keys
    assert app_db.query("SELECT key, state FROM license_keys WHERE order_id = ? ORDER BY key",
                        (order["id"],)) == [(key, "delivered") for key in sorted(keys)]
    mails = email_rows(app_db, order["id"], "order_delivered")
    assert len(mails) == 2 and all(key in mails[1]["body_text"] for key in keys)

    other = pay(v1, place_order(v1, product["id"], qty=3)["id"])
    assert set(other["delivery"]["keys"]) == set(pool) - set(keys)


def bought_file(v1) -> dict:
    """A paid order of a file_download product holding FILE."""
    product = make_product(v1, type="file_download", price_cents=1500)
    uploaded = v1.put(f"/v1/products/{product['id']}/file?filename=pack.bin", data=FILE,
                      headers={"Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 200, uploaded.text
    return pay(v1, place_order(v1, product["id"])["id"])


def test_a_download_link_lasts_its_lifetime_then_the_order_page_gives_a_fresh_one(
        v1, client, clock):
    order = bought_file(v1)
    path = urlsplit(order["delivery"]["download_url"]).path
    assert client.get(path).data == FILE

    clock.advance(72 * 3600)  # [shop] download_link_hours
    assert client.get(path).data == FILE
    clock.advance(1)
    expired = client.get(path)
    assert expired.status_code == 410 and FILE not in expired.data

    fresh = fetch(v1, order["id"])["delivery"]["download_url"]
    assert client.get(urlsplit(fresh).path).data == FILE


def subscribed(v1) -> dict:
    """A paid first order of a monthly subscription; its `subscription` is active."""
    product = make_product(v1, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=999)
    return pay(v1, place_order(v1, product["id"])["id"])


def period_end(v1, subscription_id: str) -> datetime:
    response = v1.get(f"/v1/subscriptions/{subscription_id}")
    assert response.status_code == 200, response.text
    return datetime.fromisoformat(response.json()["current_period_end"].replace("Z", "+00:00"))


def test_a_subscription_ending_within_the_notice_gets_one_renewal_order(v1, clock, tick,
                                                                        app_db):
    first = subscribed(v1)
    sub_id = first["subscription"]["id"]
    end = period_end(v1, sub_id)
    clock.set(end - timedelta(days=3, seconds=1))  # [shop] renewal_notice_days = 3
    assert tick("renew_subscriptions") == 0

    clock.advance(1)
    assert tick("renew_subscriptions") == 1
    assert tick("renew_subscriptions") == 0  # one renewal however often the job runs
    (renewal_id,), = app_db.query("SELECT id FROM orders WHERE subscription_id = ? AND "
                                  "id != ?", (sub_id, first["id"]))
    renewal = fetch(v1, renewal_id)
    assert renewal["status"] == "awaiting_payment"
    assert renewal["payment"]["expires_at"] == iso(end)
    (mail,) = email_rows(app_db, renewal_id, "subscription_renewal")
    assert renewal["payment"]["checkout_url"] in mail["body_text"]

    clock.advance(3600)
    paid = pay(v1, renewal_id)
    assert paid["status"] == "completed" and paid["delivery"]["text"] == "welcome"
    extended = period_end(v1, sub_id)
    assert (extended.month - end.month) % 12 == 1 and extended > end


def test_a_subscription_whose_renewal_is_unpaid_expires_at_its_end(v1, clock, tick):
    first = subscribed(v1)
    sub_id = first["subscription"]["id"]
    end = period_end(v1, sub_id)
    clock.set(end - timedelta(days=1))
    tick("renew_subscriptions")

    clock.set(end - timedelta(seconds=1))
    tick("renew_subscriptions")
    assert v1.get(f"/v1/subscriptions/{sub_id}").json()["status"] == "active"
    clock.advance(1)
    tick("renew_subscriptions")
    assert v1.get(f"/v1/subscriptions/{sub_id}").json()["status"] == "expired"
    assert fetch(v1, first["id"])["subscription"]["status"] == "expired"


def dynamic_order(v1, url: str, fallback: str | None) -> dict:
    """A paid order of a new dynamic product calling `url`, with `fallback` as its text."""
    product = make_product(v1, type="dynamic", dynamic_url=url, delivery_text=fallback)
    order = pay(v1, place_order(v1, product["id"])["id"])
    assert order["status"] == "delivering"
    return order


def test_a_dynamic_delivery_is_retried_on_the_clock_then_falls_back_or_fails(
        v1, clock, tick, receiver):
    receiver.plan("flaky", Reply(500, b"busy"), Reply(500, b"busy"), Reply(200, b"KEY-3"))
    receiver.plan("down-text", Reply(500, b"down"))
    receiver.plan("down", Reply(500, b"down"))
    flaky = dynamic_order(v1, receiver.url("flaky"), "fallback")
    with_text = dynamic_order(v1, receiver.url("down-text"), "fallback")
    without = dynamic_order(v1, receiver.url("down"), None)
    tick("deliver_dynamic")
    tick("deliver_dynamic")  # the next attempts wait for their step of the schedule
    assert [len(receiver.requests(name)) for name in ("flaky", "down-text", "down")] == \
        [1, 1, 1]

    for _ in range(20):  # a day per run: past any step of the schedule
        clock.advance(86400)
        tick("deliver_dynamic")
    done = fetch(v1, flaky["id"])
    assert done["status"] == "completed" and done["delivery"]["text"] == "KEY-3"
    assert len(receiver.requests("flaky")) == 3
    done = fetch(v1, with_text["id"])
    assert done["status"] == "completed" and done["delivery"]["text"] == "fallback"
    failed = fetch(v1, without["id"])
    assert failed["status"] == "failed" and failed["delivery"]["state"] == "failed"
    assert len(receiver.requests("down")) == len(receiver.requests("down-text")) > 3
