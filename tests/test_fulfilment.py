"""Refunds, resend, and the remaining delivery kinds (docs/api.md, Refunds and Delivery), through
the real server: refunds in the test-mode sandbox (full, partial, replayed, raced) and in
live mode against the BlockPN simulator, re-sent delivery emails, file downloads behind
signed expiring links, dynamic products calling a real HTTP receiver on loopback, physical
orders fulfilled with tracking, and subscriptions with their renewal and expiry."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from unittest import mock

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from sellix_lite.security import Signer
from sellix_lite.services.links import DOWNLOAD_LINK

from conftest import GENEROUS_LIMITS, ULID, Server, assert_problem, running_server, wait_until
from support import (
    Reply,
    assert_invalid,
    buyer,
    email_rows,
    event_types,
    fetch,
    get_product,
    invoice_of,
    live_mode_shop,
    make_product,
    pay,
    place_order,
    wait_for_status,
)

REFUND_ID = re.compile(rf"rf_{ULID}")
SUBSCRIPTION_ID = re.compile(rf"sub_{ULID}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
REFUND_KEYS = {"id", "order_id", "status", "amount_cents", "reason", "note", "destination_tx",
               "created_at"}
ADDRESS = {"name": "Ada Lovelace", "line1": "12 Analytical Street", "line2": "Flat 3",
           "city": "London", "state": "Greater London", "postal_code": "N1 9GU",
           "country": "GB"}

# Every job of the shared server runs each second (renewals run at the payment poll pace),
# a failing dynamic URL is retried twice one second apart (3 attempts in all), and download
# links live one hour, so an expired link only needs a token signed two hours ago.
FAST = ("[shop]\ndownload_link_hours = 1\n[jobs]\ntick_seconds = 1\npayment_poll_seconds = 1\n"
        "[webhooks]\nretry_schedule = [1, 1]\ntimeout_seconds = 5\n")


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """The module's shared test-mode server, with fast jobs and short retries (see FAST)."""
    with running_server(tmp_path_factory.mktemp("fulfilment"), GENEROUS_LIMITS + FAST) as shop:
        yield shop


@pytest.fixture(scope="module")
def live_shop(tmp_path_factory):
    """A shop in live mode whose BlockPN is the simulator; jobs run every second."""
    with live_mode_shop(tmp_path_factory) as shop:
        yield shop


# --- helpers ------------------------------------------------------------------------------

# A new account product with a login to deliver; any field can be given otherwise.
account_product = partial(make_product, type="account", delivery_text="user: demo / pass: demo")


def bought(client, **product_fields) -> dict:
    """A paid order of a new product (an account product by default)."""
    product = account_product(client, **product_fields)
    return pay(client, place_order(client, product["id"])["id"])


def refund(client, order_id: str, body: dict | None = None,
           key: str | None = None) -> requests.Response:
    return client.post(f"/v1/orders/{order_id}/refund", json=body or {},
                       headers={"Idempotency-Key": key or secrets.token_hex(12)})


def refunds_of(client, order_id: str) -> list[dict]:
    response = client.get(f"/v1/orders/{order_id}/refunds", params={"limit": 100})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "list" and page["has_more"] is False
    return page["data"]


def wait_settled(client, order_id: str, count: int, timeout: float = 20) -> list[dict]:
    """Wait until the order has `count` refunds and none is processing; returns them."""
    def settled():
        found = refunds_of(client, order_id)
        return len(found) == count and all(r["status"] != "processing" for r in found) \
            and found
    return wait_until(settled, timeout, what=f"{count} settled refunds of {order_id}")


def last_event(server: Server, order_id: str, kind: str) -> dict:
    rows = server.query("SELECT data FROM events WHERE type = ? AND "
                        "json_extract(data, '$.object.id') = ? ORDER BY id", (kind, order_id))
    assert rows, f"no {kind} event for {order_id}"
    return json.loads(rows[-1][0])["object"]


def count_refund_rows(server: Server, order_id: str) -> int:
    (count,), = server.query("SELECT count(*) FROM refunds WHERE order_id = ?", (order_id,))
    return count


def customer(client, address: str) -> dict:
    response = client.get("/v1/customers", params={"email": address})
    assert response.status_code == 200, response.text
    (found,) = response.json()["data"]
    return found


def parse_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def signer_of(server: Server) -> Signer:
    """A signer with the server's own secret key, kept in its data folder."""
    return Signer((server.root / "data" / "secret_key").read_text().strip())


def token_signed_ago(server: Server, order_id: str, seconds: float) -> str:
    """A genuine download token for the order, as if it had been made `seconds` ago."""
    with mock.patch("time.time", return_value=time.time() - seconds):
        return signer_of(server).sign_timed(order_id, DOWNLOAD_LINK)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(url: str) -> tuple[requests.Response, str]:
    """GET a download link without credentials, streaming; (response, sha256 of the body)."""
    digest = hashlib.sha256()
    with requests.get(url, stream=True, timeout=30) as response:
        for chunk in response.iter_content(64 * 1024):
            digest.update(chunk)
    return response, digest.hexdigest()


def assert_html_refusal(response, status: int) -> str:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("text/html")
    assert "attachment" not in response.headers.get("Content-Disposition", "")
    assert "<html" in response.text.lower()
    return response.text


# --- 1. refunds ---------------------------------------------------------------------------

def test_full_refund_settles_and_replays(server, api):
    address = buyer("refund")
    product = account_product(api)
    order = pay(api, place_order(api, product["id"], customer_email=address)["id"])
    assert order["status"] == "completed" and order["refunded_cents"] == 0
    assert customer(api, address)["lifetime_cents"] == 4900

    # Money moves only with an Idempotency-Key.
    response = api.post(f"/v1/orders/{order['id']}/refund", json={})
    body = assert_problem(response, 400, "invalid_request")
    assert "Idempotency-Key" in body["errors"], body
    assert count_refund_rows(server, order["id"]) == 0

    key = "refund-" + secrets.token_hex(8)
    request_body = {"reason": "requested_by_buyer", "note": "asked by email"}
    first = refund(api, order["id"], request_body, key)
    assert first.status_code == 200, first.text
    created = first.json()
    assert REFUND_KEYS <= set(created), created
    assert REFUND_ID.fullmatch(created["id"])
    assert created["order_id"] == order["id"]
    assert created["status"] == "processing"
    assert created["amount_cents"] == 4900  # everything paid, by default
    assert created["reason"] == "requested_by_buyer"
    assert created["note"] == "asked by email"
    assert created["destination_tx"] is None
    assert TIMESTAMP.fullmatch(created["created_at"])
    # The amount is taken off what may be refunded at once, before the provider settles.
    assert fetch(api, order["id"])["refunded_cents"] == 4900

    (settled,) = wait_settled(api, order["id"], 1)
    assert settled["id"] == created["id"]
    assert settled["status"] == "succeeded"
    assert isinstance(settled["destination_tx"], str) and settled["destination_tx"]
    assert (settled["amount_cents"], settled["reason"], settled["note"]) == (
        4900, "requested_by_buyer", "asked by email")
    assert settled["created_at"] == created["created_at"]

    done = wait_for_status(api, order["id"], "refunded")
    assert done["refunded_cents"] == done["total_cents"] == 4900
    assert event_types(server, order["id"])["order.refunded"] == 1
    event = last_event(server, order["id"], "order.refunded")
    assert event["status"] == "refunded" and event["refunded_cents"] == 4900
    mails = wait_until(lambda: email_rows(server, order["id"], "order_refunded"),
                       what="the refund email")
    assert len(mails) == 1 and mails[0]["to_address"] == address
    assert order["id"] in mails[0]["subject"] + mails[0]["body_text"]
    buyer_now = customer(api, address)
    assert buyer_now["lifetime_cents"] == 0
    assert buyer_now["orders_count"] == 1

    # A replay is the first answer again, byte for byte, and nothing runs twice.
    replay = refund(api, order["id"], request_body, key)
    assert replay.status_code == 200, replay.text
    assert replay.headers.get("Idempotent-Replayed") == "true"
    assert replay.content == first.content
    assert count_refund_rows(server, order["id"]) == 1
    assert fetch(api, order["id"])["refunded_cents"] == 4900
    assert len(email_rows(server, order["id"], "order_refunded")) == 1
    assert event_types(server, order["id"])["order.refunded"] == 1
    # The same key with another body is a conflict, not a second refund.
    assert_problem(refund(api, order["id"], {"reason": "fraud"}, key), 409, "conflict")

    # Nothing is left to refund.
    assert_invalid(refund(api, order["id"]), "amount_cents")
    assert_invalid(refund(api, order["id"], {"amount_cents": 1}), "amount_cents")
    assert count_refund_rows(server, order["id"]) == 1


def test_partial_refunds_add_up_to_refunded(server, api):
    address = buyer("partial")
    product = account_product(api)
    order = pay(api, place_order(api, product["id"], customer_email=address)["id"])

    first = refund(api, order["id"], {"amount_cents": 1000, "reason": "other"})
    assert first.status_code == 200, first.text
    assert first.json()["amount_cents"] == 1000
    wait_settled(api, order["id"], 1)
    wait_until(lambda: event_types(server, order["id"])["order.refunded"] == 1,
               what="order.refunded of the partial refund")
    partly = fetch(api, order["id"])
    assert partly["status"] == "completed"
    assert partly["refunded_cents"] == 1000
    assert partly["delivery"]["state"] == "delivered"
    assert customer(api, address)["lifetime_cents"] == 3900

    # More than what is left, nothing, or less than nothing: refused, nothing reserved.
    body = assert_invalid(refund(api, order["id"], {"amount_cents": 4000}), "amount_cents")
    assert "3900" in body["errors"]["amount_cents"]
    assert_invalid(refund(api, order["id"], {"amount_cents": 0}), "amount_cents")
    assert_invalid(refund(api, order["id"], {"amount_cents": -100}), "amount_cents")
    assert_invalid(refund(api, order["id"], {"amount_cents": "12"}), "amount_cents")
    assert_invalid(refund(api, order["id"], {"reason": "changed_my_mind"}), "reason")
    assert count_refund_rows(server, order["id"]) == 1
    assert fetch(api, order["id"])["refunded_cents"] == 1000

    rest = refund(api, order["id"], {})  # what is left: 3900
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount_cents"] == 3900
    settled = wait_settled(api, order["id"], 2)
    assert [r["id"] for r in settled] == [rest.json()["id"], first.json()["id"]]  # newest first
    assert all(r["status"] == "succeeded" and r["destination_tx"] for r in settled)
    done = wait_for_status(api, order["id"], "refunded")
    assert done["refunded_cents"] == 4900
    wait_until(lambda: event_types(server, order["id"])["order.refunded"] == 2,
               what="the second order.refunded")
    assert len(email_rows(server, order["id"], "order_refunded")) == 2
    assert customer(api, address)["lifetime_cents"] == 0


def test_refund_refusals(server, api, live):
    product = account_product(api)
    unpaid = place_order(api, product["id"])
    assert_invalid(refund(api, unpaid["id"]))
    assert_invalid(refund(api, unpaid["id"], {"amount_cents": 100}))
    assert count_refund_rows(server, unpaid["id"]) == 0
    assert fetch(api, unpaid["id"])["refunded_cents"] == 0

    paid = pay(api, place_order(api, product["id"])["id"])
    # Another mode's order, or no order at all: 404.
    assert_problem(refund(live, paid["id"]), 404, "not_found")
    assert_problem(live.get(f"/v1/orders/{paid['id']}/refunds"), 404, "not_found")
    assert_problem(refund(api, "ord_" + "0" * 26), 404, "not_found")
    assert_problem(api.get(f"/v1/orders/ord_{'0' * 26}/refunds"), 404, "not_found")
    assert count_refund_rows(server, paid["id"]) == 0
    assert refunds_of(api, paid["id"]) == []
    assert fetch(api, paid["id"])["status"] == "completed"


@pytest.mark.parametrize("racers", [2, 10])
def test_racing_refunds_of_the_remainder_refund_once(server, api, test_key, racers):
    order = bought(api)
    start = threading.Barrier(racers)

    def race(_):
        client = server.client(test_key)
        try:
            start.wait()
            return refund(client, order["id"])
        finally:
            client.close()

    with ThreadPoolExecutor(racers) as pool:
        answers = list(pool.map(race, range(racers)))
    codes = Counter(response.status_code for response in answers)
    assert codes == Counter({200: 1, 422: racers - 1}), [r.text for r in answers]
    for response in answers:
        if response.status_code == 422:
            assert_invalid(response, "amount_cents")
    assert count_refund_rows(server, order["id"]) == 1
    assert fetch(api, order["id"])["refunded_cents"] == 4900
    (settled,) = wait_settled(api, order["id"], 1)
    assert settled["amount_cents"] == 4900
    done = wait_for_status(api, order["id"], "refunded")
    assert done["refunded_cents"] == 4900
    (total,), = server.query("SELECT coalesce(sum(amount_cents), 0) FROM refunds WHERE "
                             "order_id = ?", (order["id"],))
    assert total == 4900


def test_live_refund_goes_through_the_simulator(live_shop):
    shop, client = live_shop, live_shop.live
    product = account_product(client, price_cents=2500)
    order = place_order(client, product["id"])
    invoice_id = invoice_of(shop, order["id"])
    shop.sim.post(f"/sim/invoices/{invoice_id}/pay", {"notify": True})
    paid = wait_for_status(client, order["id"], "completed")
    assert paid["mode"] == "live" and paid["payment"]["paid_cents"] == 2500

    response = refund(client, order["id"], {"reason": "duplicate"})
    assert response.status_code == 200, response.text
    created = response.json()
    assert created["status"] == "processing" and created["amount_cents"] == 2500
    (settled,) = wait_settled(client, order["id"], 1)
    assert settled["status"] == "succeeded" and settled["destination_tx"]
    done = wait_for_status(client, order["id"], "refunded")
    assert done["refunded_cents"] == 2500

    # The simulator holds the same refund, referenced by our refund's id.
    (provider_id,), = shop.query("SELECT provider_refund_id FROM refunds WHERE id = ?",
                                 (created["id"],))
    assert provider_id
    remote = shop.sim.get(f"/v1/refunds/{provider_id}").json()
    assert remote["reference"] == created["id"]
    assert remote["invoice_id"] == invoice_id
    assert remote["amount_cents"] == 2500 and remote["currency"] == "USD"
    assert remote["status"] == "succeeded"
    assert remote["destination_tx"] == settled["destination_tx"]
    assert event_types(shop, order["id"])["order.refunded"] == 1
    assert len(email_rows(shop, order["id"], "order_refunded")) == 1


# --- 2. resend ----------------------------------------------------------------------------

def test_resend_the_delivery_email(server, api):
    address = buyer("resend")
    product = account_product(api, delivery_text="login: resend-me")
    order = pay(api, place_order(api, product["id"], customer_email=address)["id"])
    assert len(email_rows(server, order["id"], "order_delivered")) == 1

    response = api.post(f"/v1/orders/{order['id']}/resend")
    assert response.status_code == 200, response.text
    sent = response.json()
    assert set(sent) >= {"sent_at", "recipient", "delivery_kind"}
    assert TIMESTAMP.fullmatch(sent["sent_at"])
    assert sent["recipient"] == address
    assert sent["delivery_kind"] == "account"
    rows = email_rows(server, order["id"], "order_delivered")
    assert len(rows) == 2
    assert all(row["to_address"] == address for row in rows)
    assert "login: resend-me" in rows[1]["body_text"]
    assert fetch(api, order["id"])["status"] == "completed"

    unpaid = place_order(api, product["id"])
    assert_invalid(api.post(f"/v1/orders/{unpaid['id']}/resend"))
    assert email_rows(server, unpaid["id"]) == []
    assert_problem(api.post(f"/v1/orders/ord_{'0' * 26}/resend"), 404, "not_found")


# --- 3. file downloads --------------------------------------------------------------------

def test_file_download_delivery(server, api):
    product = make_product(api, type="file_download", price_cents=1500, delivery_text=None)
    # No file yet: nothing to sell.
    response = api.post("/v1/orders", json={"product_id": product["id"],
                                            "customer_email": buyer()})
    assert_invalid(response, "product_id")

    data = secrets.token_bytes(3 * 1024 * 1024)
    response = api.put(f"/v1/products/{product['id']}/file?filename=course-pack.bin",
                       data=data, headers={"Content-Type": "application/octet-stream"})
    assert response.status_code == 200, response.text
    assert response.json()["file"]["sha256"] == sha256(data)

    unpaid = place_order(api, product["id"])
    assert unpaid["delivery"]["state"] == "pending"
    assert not unpaid["delivery"].get("download_url")

    order = pay(api, place_order(api, product["id"])["id"])
    assert order["status"] == "completed"
    delivery = order["delivery"]
    assert delivery["kind"] == "file_download"
    assert delivery["state"] == "delivered"
    assert delivery["file_name"] == "course-pack.bin"
    link = delivery["download_url"]
    assert re.fullmatch(rf"{re.escape(server.url)}/download/[A-Za-z0-9_.\-]+", link), link

    got, digest = download(link)  # no Authorization: the link is the credential
    assert got.status_code == 200
    disposition = got.headers["Content-Disposition"]
    assert disposition.startswith("attachment") and "course-pack.bin" in disposition
    assert digest == sha256(data)
    assert int(got.headers["Content-Length"]) == len(data)

    # The email carries a working link.
    (mail,) = email_rows(server, order["id"], "order_delivered")
    emailed = re.search(rf"{re.escape(server.url)}/download/\S+", mail["body_text"])
    assert emailed, mail["body_text"]
    assert "course-pack.bin" in mail["body_text"]
    got, digest = download(emailed.group(0))
    assert got.status_code == 200 and digest == sha256(data)

    # Tampered, forged and misused tokens are refused with a page, never the file.
    token = link.rsplit("/", 1)[1]
    middle = len(token) // 2
    tampered = token[:middle] + ("A" if token[middle] != "A" else "B") + token[middle + 1:]
    for bad in (tampered, token[:-1], "not-a-token",
                Signer("another-shop-secret").sign_timed(order["id"], DOWNLOAD_LINK),
                order["payment"]["checkout_url"].split("?t=")[1]):  # another purpose's token
        assert_html_refusal(requests.get(f"{server.url}/download/{bad}", timeout=30), 403)
    # A genuine token for an order that was never paid gives nothing either.
    unpaid_token = signer_of(server).sign_timed(unpaid["id"], DOWNLOAD_LINK)
    assert_html_refusal(requests.get(f"{server.url}/download/{unpaid_token}", timeout=30),
                        403)

    # Links expire after [shop] download_link_hours (1 hour here).
    old = token_signed_ago(server, order["id"], 2 * 3600)
    page = assert_html_refusal(requests.get(f"{server.url}/download/{old}", timeout=30), 410)
    assert "expired" in page.lower()
    recent = token_signed_ago(server, order["id"], 30 * 60)
    got, digest = download(f"{server.url}/download/{recent}")
    assert got.status_code == 200 and digest == sha256(data)

    # Refunded in full: no link on the order, and the old ones stop working.
    assert refund(api, order["id"]).status_code == 200
    refunded = wait_for_status(api, order["id"], "refunded")
    assert refunded["delivery"]["download_url"] is None
    assert_html_refusal(requests.get(link, timeout=30), 403)
    fresh = signer_of(server).sign_timed(order["id"], DOWNLOAD_LINK)
    assert_html_refusal(requests.get(f"{server.url}/download/{fresh}", timeout=30), 403)


# --- 4. dynamic products ------------------------------------------------------------------

def test_dynamic_delivery_calls_the_url(server, api, receiver):
    release = threading.Event()
    receiver.plan("happy", Reply(200, b"LICENSE-XYZ", hold=release))
    try:
        product = make_product(api, type="dynamic", dynamic_url=receiver.url("happy"),
                               delivery_text="fallback")
        secret = product["dynamic_signing_secret"]  # shown in the create response only
        assert isinstance(secret, str) and secret.startswith("whsec_")
        address = buyer("dynamic")
        order = pay(api, place_order(api, product["id"], customer_email=address)["id"])
        # The receiver has not answered yet: the order waits for the delivery job.
        assert order["status"] == "delivering"
        assert order["delivery"]["state"] == "pending" and not order["delivery"].get("text")
        assert order["paid_at"]
        (call,) = receiver.wait_for("happy", 1)
        waiting = fetch(api, order["id"])
        assert waiting["status"] == "delivering"
        assert "order.delivered" not in event_types(server, order["id"])
    finally:
        release.set()

    payload = Webhook(secret).verify(call.body, call.headers)
    assert payload["id"] == order["id"]
    assert payload["customer_email"] == address
    assert payload["items"][0]["product_id"] == product["id"]
    assert call.headers["content-type"] == "application/json"

    done = wait_for_status(api, order["id"], "completed")
    assert done["delivery"]["state"] == "delivered"
    assert done["delivery"]["text"] == "LICENSE-XYZ"
    assert done["delivery"]["delivered_at"]
    types = event_types(server, order["id"])
    assert types["order.paid"] == 1 and types["order.delivered"] == 1
    assert "order.failed" not in types
    assert last_event(server, order["id"], "order.delivered")["delivery"]["text"] == \
        "LICENSE-XYZ"
    (mail,) = email_rows(server, order["id"], "order_delivered")
    assert mail["to_address"] == address and "LICENSE-XYZ" in mail["body_text"]
    assert len(receiver.requests("happy")) == 1


def test_dynamic_delivery_retries_then_falls_back_or_fails(server, api, receiver):
    receiver.plan("flaky", Reply(500, b"busy"), Reply(500, b"busy"), Reply(200, b"KEY-3"))
    receiver.plan("down-text", Reply(500, b"down"))
    receiver.plan("down", Reply(500, b"down"))
    flaky = bought(api, type="dynamic", dynamic_url=receiver.url("flaky"),
                   delivery_text="fallback")
    with_text = bought(api, type="dynamic", dynamic_url=receiver.url("down-text"),
                       delivery_text="fallback")
    without = bought(api, type="dynamic", dynamic_url=receiver.url("down"),
                     delivery_text=None)

    # 500, 500, then 200: delivered on the third attempt with the answer.
    done = wait_for_status(api, flaky["id"], "completed")
    assert done["delivery"]["text"] == "KEY-3"
    assert len(receiver.requests("flaky")) == 3
    assert event_types(server, flaky["id"])["order.delivered"] == 1

    # Always 500, with a delivery_text: the text is delivered after the last attempt.
    done = wait_for_status(api, with_text["id"], "completed")
    assert done["delivery"]["state"] == "delivered"
    assert done["delivery"]["text"] == "fallback"
    assert len(receiver.requests("down-text")) == 3
    assert event_types(server, with_text["id"])["order.delivered"] == 1
    assert "order.failed" not in event_types(server, with_text["id"])
    assert "fallback" in email_rows(server, with_text["id"], "order_delivered")[0]["body_text"]

    # Always 500 and nothing to fall back on: the order fails for good.
    failed = wait_for_status(api, without["id"], "failed")
    assert failed["delivery"]["state"] == "failed"
    assert failed["failure_reason"]
    assert not failed["delivery"].get("text")
    assert len(receiver.requests("down")) == 3
    types = event_types(server, without["id"])
    assert types["order.failed"] == 1 and "order.delivered" not in types
    assert last_event(server, without["id"], "order.failed")["status"] == "failed"
    assert email_rows(server, without["id"], "order_delivered") == []

    # Every attempt was signed for the same order.
    ((secret,),) = server.query("SELECT dynamic_secret FROM products WHERE id = ?",
                                (without["items"][0]["product_id"],))
    for call in receiver.requests("down"):
        assert Webhook(secret).verify(call.body, call.headers)["id"] == without["id"]


# --- 5. physical products -----------------------------------------------------------------

def test_physical_orders_ship_with_tracking(server, api):
    product = make_product(api, type="physical", price_cents=2500, stock=5, delivery_text=None)
    account = account_product(api)
    address = buyer("physical")

    def order_with(shipping=None, product_id=product["id"]):
        body = {"product_id": product_id, "customer_email": address}
        if shipping is not None:
            body["shipping_address"] = shipping
        return api.post("/v1/orders", json=body)

    assert_invalid(order_with(), "shipping_address")
    assert_invalid(order_with({**ADDRESS, "country": "XX"}), "shipping_address")
    assert_invalid(order_with({k: v for k, v in ADDRESS.items() if k != "city"}),
                   "shipping_address")
    assert_invalid(order_with("Baker Street 221b"), "shipping_address")
    assert_invalid(order_with(ADDRESS, account["id"]), "shipping_address")
    assert get_product(api, product["id"])["stock"] == 5

    response = order_with(ADDRESS)
    assert response.status_code == 201, response.text
    order = response.json()
    assert get_product(api, product["id"])["stock"] == 4
    paid = pay(api, order["id"])
    assert paid["status"] == "delivering"
    assert paid["delivery"]["kind"] == "physical"
    assert paid["delivery"]["state"] == "awaiting_shipment"
    assert paid["delivery"]["shipping_address"] == ADDRESS
    assert not paid["delivery"].get("tracking")
    assert get_product(api, product["id"])["stock"] == 4
    types = event_types(server, order["id"])
    assert types["order.paid"] == 1 and "order.delivered" not in types

    # Only a paid physical order awaiting shipment can be fulfilled.
    unpaid = order_with(ADDRESS).json()
    assert_invalid(api.post(f"/v1/orders/{unpaid['id']}/fulfill", json={"tracking": "X"}))
    assert fetch(api, unpaid["id"])["delivery"]["state"] == "pending"
    other = pay(api, place_order(api, account["id"])["id"])
    assert_invalid(api.post(f"/v1/orders/{other['id']}/fulfill", json={"tracking": "X"}))
    assert fetch(api, other["id"])["delivery"]["state"] == "delivered"
    assert_invalid(api.post(f"/v1/orders/{order['id']}/fulfill", json={"tracking": 123}),
                   "tracking")

    response = api.post(f"/v1/orders/{order['id']}/fulfill", json={"tracking": "DHL 123"})
    assert response.status_code == 200, response.text
    shipped = response.json()
    assert shipped["id"] == order["id"]
    assert shipped["status"] == "completed"
    assert shipped["delivery"]["state"] == "shipped"
    assert shipped["delivery"]["tracking"] == "DHL 123"
    assert shipped["delivery"]["shipping_address"] == ADDRESS
    assert shipped["delivery"]["delivered_at"]
    assert fetch(api, order["id"]) == shipped
    assert event_types(server, order["id"])["order.delivered"] == 1
    assert last_event(server, order["id"], "order.delivered")["delivery"]["tracking"] == \
        "DHL 123"
    rows = email_rows(server, order["id"], "order_delivered")
    assert rows and rows[-1]["to_address"] == address
    assert "DHL 123" in rows[-1]["body_text"]

    again = api.post(f"/v1/orders/{order['id']}/fulfill", json={"tracking": "UPS 9"})
    assert_invalid(again)
    assert fetch(api, order["id"])["delivery"]["tracking"] == "DHL 123"
    assert event_types(server, order["id"])["order.delivered"] == 1
    assert get_product(api, product["id"])["stock"] == 3  # the unpaid order's reservation


# --- 6. subscriptions ---------------------------------------------------------------------

def subscription_row(server: Server, subscription_id: str) -> dict:
    columns = ("status", "current_period_end", "renewal_order_id")
    (row,) = server.query(f"SELECT {', '.join(columns)} FROM subscriptions WHERE id = ?",
                          (subscription_id,))
    return dict(zip(columns, row))


def get_subscription(client, subscription_id: str) -> dict:
    response = client.get(f"/v1/subscriptions/{subscription_id}")
    assert response.status_code == 200, response.text
    return response.json()


def set_period_end(server: Server, subscription_id: str, moment: datetime) -> None:
    server.execute("UPDATE subscriptions SET current_period_end = ? WHERE id = ?",
                   params=(stamp(moment), subscription_id))


def assert_one_month_after(later: str, earlier: str) -> None:
    before, after = parse_time(earlier), parse_time(later)
    assert timedelta(days=28) <= after - before <= timedelta(days=31), (earlier, later)
    assert after.time() == before.time()
    if before.day <= 28:
        assert after.day == before.day


def test_subscription_starts_a_period(server, api, live):
    product = make_product(api, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=999)
    address = buyer("subscriber")
    order = pay(api, place_order(api, product["id"], customer_email=address)["id"])
    assert order["status"] == "completed"
    assert order["delivery"]["kind"] == "subscription"
    assert order["delivery"]["state"] == "delivered"
    assert order["delivery"]["text"] == "welcome"
    sub = order["subscription"]
    assert SUBSCRIPTION_ID.fullmatch(sub["id"])
    assert sub["interval"] == "month" and sub["status"] == "active"
    assert TIMESTAMP.fullmatch(sub["current_period_end"])
    assert_one_month_after(sub["current_period_end"], order["paid_at"])

    shown = get_subscription(api, sub["id"])
    assert shown["id"] == sub["id"]
    assert (shown["status"], shown["interval"], shown["current_period_end"]) == (
        "active", "month", sub["current_period_end"])
    assert shown["product_id"] == product["id"]
    assert shown["customer_id"] == order["customer_id"]
    assert shown["customer_email"] == address
    assert shown["renewal_order_id"] is None
    response = api.get("/v1/subscriptions", params={"limit": 100})
    assert response.status_code == 200, response.text
    page = response.json()
    assert page["object"] == "list"
    assert shown in page["data"]
    assert_problem(live.get(f"/v1/subscriptions/{sub['id']}"), 404, "not_found")
    assert sub["id"] not in [s["id"] for s in live.get("/v1/subscriptions").json()["data"]]

    (mail,) = email_rows(server, order["id"], "order_delivered")
    assert "welcome" in mail["body_text"]
    assert sub["current_period_end"] in mail["body_text"]


def wait_for_renewal(server: Server, subscription_id: str) -> str:
    return wait_until(lambda: subscription_row(server, subscription_id)["renewal_order_id"],
                      20, what="the renewal order")


def test_subscription_renewal_extends_the_period(server, api):
    product = make_product(api, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=999)
    address = buyer("renewing")
    first = pay(api, place_order(api, product["id"], customer_email=address)["id"])
    sub_id = first["subscription"]["id"]

    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2)
    set_period_end(server, sub_id, end)  # inside the 3-day notice
    renewal_id = wait_for_renewal(server, sub_id)
    assert renewal_id != first["id"]
    renewal = fetch(api, renewal_id)
    assert renewal["status"] == "awaiting_payment"
    assert renewal["customer_id"] == first["customer_id"]
    assert renewal["customer_email"] == address
    assert renewal["items"][0]["product_id"] == product["id"]
    assert renewal["total_cents"] == 999
    assert renewal["subscription"]["id"] == sub_id
    expires = parse_time(renewal["payment"]["expires_at"])
    assert abs(expires - end) <= timedelta(minutes=2), (renewal["payment"]["expires_at"], end)
    assert get_subscription(api, sub_id)["renewal_order_id"] == renewal_id

    (mail,) = wait_until(lambda: email_rows(server, renewal_id, "subscription_renewal"),
                         what="the renewal email")
    assert mail["to_address"] == address
    assert renewal["payment"]["checkout_url"] in mail["body_text"]
    # Only one renewal is opened however often the job runs.
    (opened,), = server.query("SELECT count(*) FROM orders WHERE subscription_id = ? AND "
                              "id != ?", (sub_id, first["id"]))
    assert opened == 1

    paid = pay(api, renewal_id)
    assert paid["status"] == "completed"
    assert paid["delivery"]["text"] == "welcome"
    after = get_subscription(api, sub_id)
    assert after["status"] == "active"
    assert after["renewal_order_id"] is None
    assert_one_month_after(after["current_period_end"], stamp(end))
    assert paid["subscription"] == {"id": sub_id, "interval": "month",
                                    "current_period_end": after["current_period_end"],
                                    "status": "active"}
    assert fetch(api, first["id"])["subscription"]["current_period_end"] == \
        after["current_period_end"]
    (count,), = server.query("SELECT count(*) FROM orders WHERE subscription_id = ?",
                             (sub_id,))
    assert count == 2


def test_subscription_expires_when_the_renewal_is_unpaid(server, api):
    product = make_product(api, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=999)
    first = pay(api, place_order(api, product["id"])["id"])
    sub_id = first["subscription"]["id"]
    set_period_end(server, sub_id, datetime.now(UTC) + timedelta(days=2))
    renewal_id = wait_for_renewal(server, sub_id)
    assert fetch(api, renewal_id)["status"] == "awaiting_payment"

    set_period_end(server, sub_id, datetime.now(UTC) - timedelta(seconds=1))
    wait_until(lambda: get_subscription(api, sub_id)["status"] == "expired",
               what="the subscription expired")
    assert fetch(api, first["id"])["subscription"]["status"] == "expired"
    # An ended subscription opens no further renewal.
    assert subscription_row(server, sub_id)["renewal_order_id"] == renewal_id
    (count,), = server.query("SELECT count(*) FROM orders WHERE subscription_id = ?",
                             (sub_id,))
    assert count == 2


def test_a_refunded_physical_order_can_not_be_shipped(server, api):
    product = make_product(api, type="physical", price_cents=2500, stock=3, delivery_text=None)
    order = pay(api, place_order(api, product["id"], shipping_address=ADDRESS)["id"])
    assert order["delivery"]["state"] == "awaiting_shipment"
    assert refund(api, order["id"]).status_code == 200
    refunded = wait_for_status(api, order["id"], "refunded")

    assert_invalid(api.post(f"/v1/orders/{order['id']}/fulfill", json={"tracking": "DHL 9"}))
    assert fetch(api, order["id"]) == refunded
    assert "order.delivered" not in event_types(server, order["id"])
