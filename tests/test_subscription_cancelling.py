"""Cancelling a subscription: at its period end (no renewal, expired at the end) or now
(canceled, its licenses expire), through the API and the dashboard, with its event."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from standardwebhooks.webhooks import Webhook

from sellix_lite.clock import now_iso
from sellix_lite.services import renewals

from conftest import assert_problem
from support import (
    fetch,
    get_product,
    json_body,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)

STOCK = 5


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def subscribe(v1) -> tuple[dict, dict]:
    """A paid first order of a monthly subscription product with a stock; returns the
    product and the subscription."""
    product = make_product(v1, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=999, stock=STOCK)
    first = pay(v1, place_order(v1, product["id"])["id"])
    return product, get_subscription(v1, first["subscription"]["id"])


def get_subscription(v1, subscription_id: str) -> dict:
    return json_body(v1.get(f"/v1/subscriptions/{subscription_id}"))


def cancel(v1, subscription_id: str, status: int = 200, **body) -> dict:
    return json_body(v1.post(f"/v1/subscriptions/{subscription_id}/cancel", json=body), status)


def open_renewal(v1, clock, tick, subscription: dict) -> str:
    """Move into the notice window and run the renewal job; returns the renewal's id."""
    clock.set(moment(subscription["current_period_end"]) - timedelta(days=1))
    assert tick("renew_subscriptions") == 1
    return get_subscription(v1, subscription["id"])["renewal_order_id"]


def events_of(v1, event_type: str, object_id: str) -> list[dict]:
    listing = json_body(v1.get("/v1/events", params={"type": event_type, "limit": 100}))
    return [e for e in listing["data"] if e["data"]["object"]["id"] == object_id]


def add_subscription_license(app_db, subscription: dict) -> str:
    """A license on the subscription's first order. No product type delivers keys with a
    subscription, so the row is written as a delivery would write it."""
    [(order_id, email)] = app_db.query(
        "SELECT id, customer_email FROM orders WHERE subscription_id = ?", (subscription["id"],))
    app_db.execute(
        "INSERT INTO licenses (id, key, status, product_id, order_id, customer_email, mode,"
        " activation_limit, activations, expires_at, created_at, updated_at) VALUES"
        " ('lic_sub', 'SUB-KEY-1', 'active', ?, ?, ?, 'test', NULL, 0, NULL,"
        " '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        params=(subscription["product_id"], order_id, email))
    return "lic_sub"


def test_a_new_subscription_is_not_cancelled(v1):
    _, subscription = subscribe(v1)
    assert subscription["cancel_at_period_end"] is False
    assert subscription["canceled_at"] is None


def test_cancelling_at_the_period_end_opens_no_renewal_and_expires_at_the_end(v1, clock,
                                                                               tick):
    _, subscription = subscribe(v1)
    canceled = cancel(v1, subscription["id"])
    assert canceled["status"] == "active" and canceled["cancel_at_period_end"] is True
    assert canceled["canceled_at"] == now_iso()
    [event] = events_of(v1, "subscription.canceled", subscription["id"])
    assert event["data"]["object"] == canceled
    clock.set(moment(subscription["current_period_end"]) - timedelta(days=1))
    assert tick("renew_subscriptions") == 0
    assert get_subscription(v1, subscription["id"])["renewal_order_id"] is None
    clock.set(moment(subscription["current_period_end"]) + timedelta(seconds=1))
    tick("renew_subscriptions")
    ended = get_subscription(v1, subscription["id"])
    assert (ended["status"], ended["canceled_at"]) == ("expired", canceled["canceled_at"])


def test_cancelling_at_the_period_end_fails_the_open_renewal_and_releases_its_stock(
        v1, clock, tick):
    product, subscription = subscribe(v1)
    renewal_id = open_renewal(v1, clock, tick, subscription)
    assert get_product(v1, product["id"])["stock"] == STOCK - 2
    canceled = cancel(v1, subscription["id"], at_period_end=True)
    assert canceled["renewal_order_id"] is None
    renewal = fetch(v1, renewal_id)
    assert (renewal["status"], renewal["failure_reason"]) == ("failed",
                                                              "the subscription was canceled")
    assert get_product(v1, product["id"])["stock"] == STOCK - 1
    assert events_of(v1, "order.failed", renewal_id)


def test_a_cancel_while_the_renewal_opens_fails_it(v1, clock, tick, monkeypatch):
    """The job opens the renewal, then records it: a cancel between the two wins."""
    product, subscription = subscribe(v1)
    opened = []

    def open_then_cancel(*args):
        opened.append(open_renewal_order(*args))
        cancel(v1, subscription["id"])
        return opened[0]

    open_renewal_order = renewals._open_renewal
    monkeypatch.setattr(renewals, "_open_renewal", open_then_cancel)
    clock.set(moment(subscription["current_period_end"]) - timedelta(days=1))
    tick("renew_subscriptions")
    assert fetch(v1, opened[0]["id"])["status"] == "failed"
    assert get_subscription(v1, subscription["id"])["renewal_order_id"] is None
    assert get_product(v1, product["id"])["stock"] == STOCK - 1


def test_cancelling_now_ends_it_and_its_licenses_and_fails_the_open_renewal(
        v1, clock, tick, app_db):
    product, subscription = subscribe(v1)
    license_id = add_subscription_license(app_db, subscription)
    renewal_id = open_renewal(v1, clock, tick, subscription)
    canceled = cancel(v1, subscription["id"], at_period_end=False)
    assert canceled["status"] == "canceled" and canceled["cancel_at_period_end"] is False
    assert canceled["canceled_at"] == now_iso()
    assert fetch(v1, renewal_id)["status"] == "failed"
    assert get_product(v1, product["id"])["stock"] == STOCK - 1
    license = json_body(v1.get(f"/v1/licenses/{license_id}"))
    assert (license["status"], license["expires_at"]) == ("expired", now_iso())
    [updated] = events_of(v1, "license.updated", license_id)
    assert updated["data"]["previous_attributes"] == {"expires_at": None}
    checked = json_body(v1.post("/v1/licenses/validate", json={"license_key": "SUB-KEY-1"}))
    assert (checked["valid"], checked["reason"]) == (False, "expired")
    clock.advance(86400 * 40)
    tick("renew_subscriptions")
    assert get_subscription(v1, subscription["id"])["status"] == "canceled"


def test_a_failed_renewal_paid_after_all_resumes_the_subscription(v1, clock, tick):
    _, subscription = subscribe(v1)
    renewal_id = open_renewal(v1, clock, tick, subscription)
    cancel(v1, subscription["id"])
    assert pay(v1, renewal_id)["status"] == "completed"  # late payments are delivered
    resumed = get_subscription(v1, subscription["id"])
    assert (resumed["status"], resumed["cancel_at_period_end"], resumed["canceled_at"]) == (
        "active", False, None)
    assert moment(resumed["current_period_end"]) > moment(subscription["current_period_end"])


def test_a_subscriptions_licenses_expire_at_its_period_end_and_a_renewal_moves_it(
        v1, clock, tick, app_db):
    _, subscription = subscribe(v1)
    license_id = add_subscription_license(app_db, subscription)
    renewal_id = open_renewal(v1, clock, tick, subscription)
    renewed = pay(v1, renewal_id)["subscription"]
    license = json_body(v1.get(f"/v1/licenses/{license_id}"))
    assert license["expires_at"] == renewed["current_period_end"]
    assert license["status"] == "active"


def test_cancelling_twice(v1):
    _, subscription = subscribe(v1)
    first = cancel(v1, subscription["id"])
    assert cancel(v1, subscription["id"]) == first  # at period end again: nothing changes
    assert len(events_of(v1, "subscription.canceled", subscription["id"])) == 1
    now = cancel(v1, subscription["id"], at_period_end=False)  # then now: it ends
    assert now["status"] == "canceled"
    for body in ({}, {"at_period_end": False}):
        problem = assert_problem(v1.post(f"/v1/subscriptions/{subscription['id']}/cancel",
                                         json=body), 422, "unprocessable")
        assert problem["errors"] == {"status": "the subscription is already canceled"}


def test_an_expired_subscription_cant_be_cancelled(v1, clock, tick):
    _, subscription = subscribe(v1)
    clock.set(moment(subscription["current_period_end"]) + timedelta(seconds=1))
    tick("renew_subscriptions")
    problem = assert_problem(v1.post(f"/v1/subscriptions/{subscription['id']}/cancel"), 422,
                             "unprocessable")
    assert problem["errors"] == {"status": "the subscription has expired"}


def test_the_body_is_checked(v1):
    _, subscription = subscribe(v1)
    problem = assert_problem(v1.post(f"/v1/subscriptions/{subscription['id']}/cancel",
                                     json={"at_period_end": "no"}), 422, "unprocessable")
    assert problem["errors"] == {"at_period_end": "must be true or false"}


def test_unknown_or_other_mode_is_not_found_and_orders_write_is_needed(client, v1):
    _, subscription = subscribe(v1)
    assert_problem(v1.post("/v1/subscriptions/sub_nope/cancel"), 404, "not_found")
    live = client.keyed("orders:write", "orders:read", mode="live")
    assert_problem(live.post(f"/v1/subscriptions/{subscription['id']}/cancel"), 404,
                   "not_found")
    reader = client.keyed("orders:read")
    assert_problem(reader.post(f"/v1/subscriptions/{subscription['id']}/cancel"), 403,
                   "forbidden_scope")
    assert get_subscription(v1, subscription["id"])["cancel_at_period_end"] is False


def test_an_idempotency_key_replays_the_first_answer(v1):
    _, subscription = subscribe(v1)
    url = f"/v1/subscriptions/{subscription['id']}/cancel"
    headers = {"Idempotency-Key": "cancel-once-1"}
    first = v1.post(url, json={"at_period_end": False}, headers=headers)
    again = v1.post(url, json={"at_period_end": False}, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()


# --- the dashboard -------------------------------------------------------------------------

def form_fields(page: str, action: str, occurrence: int = 1) -> dict:
    """The CSRF token and form id of the `occurrence`th form posting to `action`."""
    return dict(re.findall(r'name="(csrf_token|form_id)" value="([^"]+)"',
                           page.split(f'action="{action}"')[occurrence].split("</form>")[0]))


def test_the_dashboard_cancels_at_the_period_end_then_now(app, client, v1):
    dashboard = signed_in_dashboard(app, client)
    _, subscription = subscribe(v1)
    action = f"/dashboard/subscriptions/{subscription['id']}/cancel"
    page = dashboard.get("/dashboard/subscriptions").get_data(as_text=True)
    assert subscription["customer_email"] in page
    assert "Cancel at period end" in page and "Cancel now" in page
    at_end = form_fields(page, action, 1)
    assert dashboard.post(action, data=at_end).status_code == 303
    assert dashboard.post(action, data=at_end).status_code == 303  # a double click: once
    assert len(events_of(v1, "subscription.canceled", subscription["id"])) == 1
    assert get_subscription(v1, subscription["id"])["cancel_at_period_end"] is True
    page = dashboard.get("/dashboard/subscriptions").get_data(as_text=True)
    assert "ends at period end" in page and "Cancel at period end" not in page
    now = {**form_fields(page, action, 1), "when": "now"}
    assert dashboard.post(action, data=now).status_code == 303
    shown = get_subscription(v1, subscription["id"])
    assert shown["status"] == "canceled"
    page = dashboard.get("/dashboard/subscriptions").get_data(as_text=True)
    assert shown["canceled_at"] in page and "Cancel now" not in page


def test_the_dashboard_cancel_wants_the_csrf_token(app, client, v1):
    dashboard = signed_in_dashboard(app, client)
    _, subscription = subscribe(v1)
    answer = dashboard.post(f"/dashboard/subscriptions/{subscription['id']}/cancel",
                            data={"form_id": "x" * 22, "when": "now"})
    assert answer.status_code == 400
    assert get_subscription(v1, subscription["id"])["status"] == "active"


# --- end to end: the event over a real webhook ---------------------------------------------

def test_the_event_reaches_a_webhook_signed(api, receiver):
    endpoint = json_body(api.post("/v1/webhooks", json={
        "url": receiver.url("subs"), "events": ["subscription.*"]}), 201)
    _, subscription = subscribe(api)
    canceled = cancel(api, subscription["id"], at_period_end=False)
    [request] = receiver.wait_for("subs", 1)
    event = Webhook(endpoint["signing_secret"]).verify(request.body, request.headers)
    assert event["type"] == "subscription.canceled"
    assert event["data"]["object"] == canceled
