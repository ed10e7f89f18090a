"""Webhooks and events (docs/webhooks.md): endpoints, Standard
Webhooks and Sellix signatures, the durable outbox with retries, test fire, the delivery log,
disabling a failing endpoint, and crash safety, delivering to a real HTTP receiver on
loopback. The retry schedule, event patterns, cancelling and disabling run in process, the
delivery job ticked by hand and the clock moved by each step; the rest through the real
server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time
from functools import partial

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sellix_lite.clock import iso, utcnow
from sellix_lite.services.webhooks import EVENT_TYPES

from conftest import (
    GENEROUS_LIMITS,
    ULID,
    Server,
    assert_problem,
    free_port,
    mint_via_api,
    running_server,
    wait_until,
)
from support import Received, Reply, assert_invalid, email_rows, make_product

ENDPOINT_ID = re.compile(rf"wh_{ULID}")
EVENT_ID = re.compile(rf"evt_{ULID}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
SECRET = re.compile(r"^whsec_[A-Za-z0-9+/=]{32,}$")
PRODUCT = {"name": "Widget", "type": "account", "price_cents": 500, "currency": "USD"}
EVENT_KEYS = {"id", "type", "created_at", "mode", "data"}

# Fast jobs and short retries, so a whole retry schedule plays out in a few seconds.
FAST = "[jobs]\ntick_seconds = 1\n[webhooks]\nretry_schedule = [1, 1, 1]\ntimeout_seconds = 2\n"
# The in-process app's retries, which the tests play out by moving the clock.
RETRY_SCHEDULE = (60, 120, 300)
IN_PROCESS = GENEROUS_LIMITS + f"[webhooks]\nretry_schedule = {list(RETRY_SCHEDULE)}\n"


# --- helpers ------------------------------------------------------------------------------

def key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix("whsec_"))


def verify_standard(request: Received, secret: str) -> dict:
    """Standard Webhooks verification with the reference library; returns the payload."""
    return Webhook(secret).verify(request.body, request.headers)


def verify_sellix(request: Received, secret: str) -> None:
    """`X-Signature: sha256=<hex HMAC-SHA256 of "{timestamp}.{body}">`."""
    timestamp = request.headers["x-webhook-timestamp"]
    digest = hmac.new(key_of(secret), f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert hmac.compare_digest(request.headers["x-signature"], "sha256=" + digest.hexdigest())


def verify(request: Received, secret: str) -> dict:
    payload = verify_standard(request, secret)
    verify_sellix(request, secret)
    return payload


# A new product, a "Widget" at 500 USD unless told otherwise.
create_product = partial(make_product, **PRODUCT)


class Hooks:
    """Webhook calls of one client; remembers the endpoints it created."""

    def __init__(self, client):
        self.client = client
        self.created: list[str] = []

    def create(self, url: str, events=("product.*",), **fields) -> dict:
        response = self.client.post("/v1/webhooks",
                                    json={"url": url, "events": list(events), **fields})
        assert response.status_code == 201, response.text
        self.created.append(response.json()["id"])
        return response.json()

    def get(self, endpoint_id: str) -> dict:
        response = self.client.get(f"/v1/webhooks/{endpoint_id}")
        assert response.status_code == 200, response.text
        return response.json()

    def deliveries(self, endpoint_id: str, **params) -> list[dict]:
        response = self.client.get(f"/v1/webhooks/{endpoint_id}/deliveries", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["object"] == "list"
        return page["data"]

    def wait_delivery(self, endpoint_id: str, status: str, attempts: int | None = None,
                      timeout: float = 20) -> dict:
        """Wait until the endpoint's only delivery is in `status` (with that many attempts)."""
        def settled():
            data = self.deliveries(endpoint_id)
            assert len(data) <= 1, data
            if data and data[0]["status"] == status and (
                    attempts is None or len(data[0]["attempts"]) == attempts):
                return data[0]
            return None
        return wait_until(settled, timeout, what=f"a {status} delivery")

    def cleanup(self) -> None:
        for endpoint_id in self.created:
            self.client.delete(f"/v1/webhooks/{endpoint_id}")


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Server:
    """This module's shared server: fast ticks, short retries and timeout, generous limits."""
    with running_server(tmp_path_factory.mktemp("webhooks"), GENEROUS_LIMITS + FAST) as server:
        yield server


@pytest.fixture
def app_config() -> str:
    return IN_PROCESS


@pytest.fixture
def hooks(api):
    """Endpoints of the shared server, deleted after the test so they stop receiving."""
    hooks = Hooks(api)
    yield hooks
    hooks.cleanup()


def started(make_server, config: str):
    """A server of this test with `config`, and a test-mode client of it."""
    srv = make_server(config=config)
    return srv, srv.client(srv.mint())


# --- 1. endpoints: create, read, validate, delete, modes ----------------------------------

def test_create_shows_the_secret_once(hooks, api, receiver):
    created = hooks.create(receiver.url("crud"), events=["product.*", "order.paid"],
                           description="accounting")
    assert ENDPOINT_ID.fullmatch(created["id"])
    assert created["url"] == receiver.url("crud")
    assert created["events"] == ["product.*", "order.paid"]
    assert created["description"] == "accounting"
    assert created["status"] == "active" and created["mode"] == "test"
    assert TIMESTAMP.fullmatch(created["created_at"])
    assert SECRET.fullmatch(created["signing_secret"])
    assert len(key_of(created["signing_secret"])) >= 24

    one = api.get(f"/v1/webhooks/{created['id']}")
    assert one.status_code == 200, one.text
    assert "signing_secret" not in one.json() and "whsec_" not in one.text
    expected = {k: v for k, v in created.items() if k != "signing_secret"}
    assert {k: one.json()[k] for k in expected} == expected

    listing = api.get("/v1/webhooks")
    assert listing.status_code == 200, listing.text
    assert "whsec_" not in listing.text
    page = listing.json()
    assert set(page) == {"object", "data", "has_more", "next_cursor"}
    assert created["id"] in [item["id"] for item in page["data"]]
    assert all("signing_secret" not in item for item in page["data"])


def test_idempotent_create_registers_one_endpoint(hooks, api, receiver):
    body = {"url": receiver.url("once"), "events": ["*"]}
    headers = {"Idempotency-Key": secrets.token_hex(8)}
    first = api.post("/v1/webhooks", json=body, headers=headers)
    assert first.status_code == 201, first.text
    hooks.created.append(first.json()["id"])
    again = api.post("/v1/webhooks", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    urls = [item["url"] for item in api.get("/v1/webhooks").json()["data"]]
    assert urls.count(receiver.url("once")) == 1


def test_create_validates_events_and_required_fields(api, receiver):
    url = receiver.url("v")
    assert_invalid(api.post("/v1/webhooks", json={"url": url, "events": ["product.exploded"]}),
                   "events")
    assert_invalid(api.post("/v1/webhooks", json={"url": url, "events": []}), "events")
    assert_invalid(api.post("/v1/webhooks", json={"url": url, "events": "product.*"}), "events")
    missing = assert_problem(api.post("/v1/webhooks", json={"events": ["*"]}),
                             400, "invalid_request")
    assert "url" in missing["errors"]
    missing = assert_problem(api.post("/v1/webhooks", json={"url": url}), 400, "invalid_request")
    assert "events" in missing["errors"]
    assert all(item["url"] != url for item in api.get("/v1/webhooks").json()["data"])


def test_url_rules_per_mode(hooks, api, live, receiver):
    # Test mode: plain http to loopback is fine (a laptop integration).
    hooks.create(receiver.url("loopback"))
    for url in ("ftp://x", "ftp://example.com/hook", "not a url", "https://"):
        assert_invalid(api.post("/v1/webhooks", json={"url": url, "events": ["*"]}), "url")
    # Live mode: https to a public address only.
    for url in ("http://example.com/hook", receiver.url("loopback"), "https://127.0.0.1/hook",
                "https://10.0.0.1/hook", "https://localhost/hook", "https://192.168.1.5/x",
                "https://[::1]/hook", "ftp://x"):
        assert_invalid(live.post("/v1/webhooks", json={"url": url, "events": ["*"]}), "url")
    response = live.post("/v1/webhooks", json={"url": "https://example.com/hook",
                                                "events": ["*"]})
    assert response.status_code == 201, response.text
    assert response.json()["mode"] == "live"
    assert live.delete(f"/v1/webhooks/{response.json()['id']}").status_code == 200


def test_delete_then_gone(hooks, api, receiver):
    endpoint = hooks.create(receiver.url("gone"))
    response = api.delete(f"/v1/webhooks/{endpoint['id']}")
    assert response.status_code == 200, response.text
    assert response.json() == {"id": endpoint["id"], "deleted": True}
    assert_problem(api.get(f"/v1/webhooks/{endpoint['id']}"), 404, "not_found")
    assert_problem(api.delete(f"/v1/webhooks/{endpoint['id']}"), 404, "not_found")
    assert_problem(api.get(f"/v1/webhooks/{endpoint['id']}/deliveries"), 404, "not_found")
    assert endpoint["id"] not in [e["id"] for e in api.get("/v1/webhooks").json()["data"]]
    assert_problem(api.get("/v1/webhooks/wh_01J0000000000000000000000"), 404, "not_found")


def test_modes_are_separate(hooks, api, live, receiver):
    mine = hooks.create(receiver.url("test-mode"))
    theirs = live.post("/v1/webhooks", json={"url": "https://example.com/live-hook",
                                             "events": ["*"]})
    assert theirs.status_code == 201, theirs.text
    theirs = theirs.json()
    try:
        for client, other in ((live, mine["id"]), (api, theirs["id"])):
            assert_problem(client.get(f"/v1/webhooks/{other}"), 404, "not_found")
            assert_problem(client.patch(f"/v1/webhooks/{other}", json={"description": "x"}),
                           404, "not_found")
            assert_problem(client.get(f"/v1/webhooks/{other}/deliveries"), 404, "not_found")
            assert_problem(client.post(f"/v1/webhooks/{other}/rotate-secret"), 404, "not_found")
            assert_problem(client.post(f"/v1/webhooks/{other}/test", json={}), 404, "not_found")
            assert_problem(client.delete(f"/v1/webhooks/{other}"), 404, "not_found")
        assert theirs["id"] not in [e["id"] for e in api.get("/v1/webhooks").json()["data"]]
        assert mine["id"] not in [e["id"] for e in live.get("/v1/webhooks").json()["data"]]
        assert api.get(f"/v1/webhooks/{mine['id']}").status_code == 200  # still there
    finally:
        live.delete(f"/v1/webhooks/{theirs['id']}")


@pytest.mark.parametrize("app_config", [
    IN_PROCESS + "allow_private_targets = true\n"])  # in its [webhooks]
def test_live_mode_with_private_targets_allowed(client, tick, receiver):
    live = Hooks(client.keyed(mode="live"))
    test = Hooks(client.keyed())
    live_endpoint = live.create(receiver.url("live"))
    assert live_endpoint["mode"] == "live"
    test_endpoint = test.create(receiver.url("test"))
    assert_invalid(live.client.post("/v1/webhooks", json={"url": "ftp://x", "events": ["*"]}),
                   "url")

    # An endpoint receives the events of its own mode only.
    product = create_product(live.client)
    tick("deliver_webhooks")
    (request,) = receiver.requests("live")
    event = verify(request, live_endpoint["signing_secret"])
    assert event["mode"] == "live" and event["type"] == "product.created"
    assert event["data"]["object"]["id"] == product["id"]
    assert test.deliveries(test_endpoint["id"]) == []
    tick("deliver_webhooks")
    assert receiver.requests("test") == []
    assert len(receiver.requests("live")) == 1


# --- 2. a delivery, signed twice ----------------------------------------------------------

def test_delivery_is_signed_for_both_kinds_of_receiver(hooks, api, receiver):
    endpoint = hooks.create(receiver.url("signed"))
    product = create_product(api, name="Signed Widget")
    (request,) = receiver.wait_for("signed", 1)

    assert request.method == "POST"
    headers = request.headers
    assert headers["content-type"].split(";")[0] == "application/json"
    assert headers["user-agent"].startswith("sellix-lite-webhook/")
    payload = verify(request, endpoint["signing_secret"])
    event = request.json()
    assert payload == event
    assert set(event) == EVENT_KEYS
    assert EVENT_ID.fullmatch(event["id"])
    assert event["type"] == "product.created" and event["mode"] == "test"
    assert TIMESTAMP.fullmatch(event["created_at"])
    assert event["data"]["object"] == product
    assert headers["webhook-id"] == event["id"] == headers["x-event-id"]
    assert headers["x-event-type"] == "product.created"
    assert headers["webhook-timestamp"] == headers["x-webhook-timestamp"]
    assert re.fullmatch(r"\d+", headers["webhook-timestamp"])
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300
    assert re.fullmatch(r"v1,[A-Za-z0-9+/=]+", headers["webhook-signature"])
    assert re.fullmatch(r"sha256=[0-9a-f]{64}", headers["x-signature"])

    # A forged body or another secret fails verification.
    with pytest.raises(WebhookVerificationError):
        Webhook(endpoint["signing_secret"]).verify(request.body + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()).verify(
            request.body, headers)

    # The event as the API shows it is the one delivered.
    assert api.get(f"/v1/events/{event['id']}").json() == event
    delivery = hooks.wait_delivery(endpoint["id"], "succeeded")
    assert delivery["event_id"] == event["id"]
    assert [a["response_code"] for a in delivery["attempts"]] == [200]


# --- 3. subscriptions ---------------------------------------------------------------------

def test_event_patterns(v1, tick, receiver):
    hooks = Hooks(v1)
    subscriptions = {"all": ["*"], "family": ["product.*"], "archived": ["product.archived"],
                     "payouts": ["payout.*"]}
    endpoints = {name: hooks.create(receiver.url(name), events=events)
                 for name, events in subscriptions.items()}
    product = create_product(v1)
    assert v1.delete(f"/v1/products/{product['id']}").status_code == 200
    # Deliveries are queued with the event, so the unsubscribed endpoint has none at once.
    assert hooks.deliveries(endpoints["payouts"]["id"]) == []

    tick("deliver_webhooks")
    tick("deliver_webhooks")
    expected = {"all": ["product.archived", "product.created"],
                "family": ["product.archived", "product.created"],
                "archived": ["product.archived"]}
    for name, types in expected.items():
        got = receiver.requests(name)
        assert sorted(r.json()["type"] for r in got) == types, name
        assert all(r.json()["data"]["object"]["id"] == product["id"] for r in got)
        for r in got:
            verify(r, endpoints[name]["signing_secret"])
    assert receiver.requests("payouts") == []


# --- 4. retries, the delivery log, failures -----------------------------------------------

def test_retries_until_success_and_logs_every_attempt(v1, clock, tick, receiver):
    hooks = Hooks(v1)
    receiver.plan("flaky", 500, Reply(500, body=b"e" * 10240), 200)
    endpoint = hooks.create(receiver.url("flaky"))
    create_product(v1)
    tick("deliver_webhooks")
    for step in RETRY_SCHEDULE[:2]:  # each retry waits its step, not a second less
        sent = len(receiver.requests("flaky"))
        clock.advance(step - 1)
        tick("deliver_webhooks")
        assert len(receiver.requests("flaky")) == sent
        clock.advance(1)
        tick("deliver_webhooks")
        assert len(receiver.requests("flaky")) == sent + 1
    requests = receiver.requests("flaky")
    ids = {r.headers["webhook-id"] for r in requests}
    assert len(ids) == 1  # the same event id on every retry
    stamps = [int(r.headers["webhook-timestamp"]) for r in requests]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == list(RETRY_SCHEDULE[:2])
    for r in requests:
        verify(r, endpoint["signing_secret"])

    (delivery,) = hooks.deliveries(endpoint["id"])
    assert delivery["status"] == "succeeded"
    assert delivery["event_id"] == ids.pop()
    assert delivery["event_type"] == "product.created"
    attempts = delivery["attempts"]
    assert [a["response_code"] for a in attempts] == [500, 500, 200]
    for attempt in attempts:
        assert TIMESTAMP.fullmatch(attempt["attempted_at"])
        assert isinstance(attempt["duration_ms"], int) and attempt["duration_ms"] >= 0
    assert [a["attempted_at"] for a in attempts] == sorted(a["attempted_at"] for a in attempts)
    assert attempts[0]["error"] and attempts[1]["error"]
    assert attempts[2]["error"] is None
    kept = attempts[1]["response_body"]
    assert 0 < len(kept) <= 4096 and kept == "e" * len(kept)
    clock.advance(RETRY_SCHEDULE[-1] * 10)
    tick("deliver_webhooks")
    assert len(receiver.requests("flaky")) == 3  # a success is final


def test_exhausted_schedule_fails_and_can_be_retried_by_hand(v1, clock, tick, receiver):
    hooks = Hooks(v1)
    receiver.plan("down", 500, 500, 500, 500, 200)
    endpoint = hooks.create(receiver.url("down"))
    create_product(v1)
    tick("deliver_webhooks")
    for step in RETRY_SCHEDULE:
        clock.advance(step)
        tick("deliver_webhooks")
    (delivery,) = hooks.deliveries(endpoint["id"])
    assert delivery["status"] == "failed"
    assert [a["response_code"] for a in delivery["attempts"]] == [500] * 4
    assert delivery["next_attempt_at"] is None
    clock.advance(86400)
    tick("deliver_webhooks")
    assert len(receiver.requests("down")) == 4  # 1 + len(retry_schedule) attempts, no more
    assert [d["id"] for d in hooks.deliveries(endpoint["id"], status="failed")] == \
        [delivery["id"]]
    assert hooks.deliveries(endpoint["id"], status="pending") == []

    # 5. Manual retry of the failed delivery: one more request, same event id.
    assert_problem(v1.post(f"/v1/webhooks/{endpoint['id']}/deliveries/whd_nope/retry"),
                   404, "not_found")
    response = v1.post(f"/v1/webhooks/{endpoint['id']}/deliveries/{delivery['id']}/retry")
    assert response.status_code == 200, response.text
    assert response.json()["id"] == delivery["id"]
    tick("deliver_webhooks")
    requests = receiver.requests("down")
    assert len(requests) == 5
    assert requests[4].headers["webhook-id"] == requests[0].headers["webhook-id"]
    verify_sellix(requests[4], endpoint["signing_secret"])  # hours ahead of real time
    (retried,) = hooks.deliveries(endpoint["id"])
    assert retried["status"] == "succeeded"
    assert [a["response_code"] for a in retried["attempts"]] == [500] * 4 + [200]
    clock.advance(86400)
    tick("deliver_webhooks")
    assert len(receiver.requests("down")) == 5


def test_redirect_is_a_failure_and_not_followed(hooks, api, receiver):
    receiver.plan("moved", Reply(302, headers=(("Location", receiver.url("target")),)))
    endpoint = hooks.create(receiver.url("moved"))
    create_product(api)
    receiver.wait_for("moved", 2)  # retried: the 302 was not a success

    def first_attempt():
        data = hooks.deliveries(endpoint["id"])
        return data and data[0]["attempts"] and data[0]
    delivery = wait_until(first_attempt, what="the first attempt")
    assert delivery["status"] in ("pending", "failed")
    assert delivery["attempts"][0]["response_code"] == 302
    assert delivery["attempts"][0]["error"]
    assert receiver.requests("target") == []


def test_hanging_receiver_times_out(hooks, api, receiver):
    receiver.plan("slow", Reply(hang=15), 200)  # timeout_seconds = 2
    endpoint = hooks.create(receiver.url("slow"))
    create_product(api)
    requests = receiver.wait_for("slow", 2)  # timed out, then retried
    assert requests[0].headers["webhook-id"] == requests[1].headers["webhook-id"]
    delivery = hooks.wait_delivery(endpoint["id"], "succeeded", attempts=2)
    timed_out = delivery["attempts"][0]
    assert timed_out["response_code"] is None
    assert re.search(r"time[sd]? ?out", timed_out["error"], re.I), timed_out
    assert delivery["attempts"][1]["response_code"] == 200


# --- 6. deleting an endpoint cancels its pending retries ----------------------------------

def test_delete_cancels_pending_retries(v1, clock, tick, receiver, app_db):
    hooks = Hooks(v1)
    receiver.plan("failing", 500)
    endpoint = hooks.create(receiver.url("failing"))
    create_product(v1)
    tick("deliver_webhooks")
    (pending,) = hooks.deliveries(endpoint["id"])
    assert pending["status"] == "pending" and len(pending["attempts"]) == 1

    assert v1.delete(f"/v1/webhooks/{endpoint['id']}").status_code == 200
    assert_problem(v1.get(f"/v1/webhooks/{endpoint['id']}/deliveries"), 404, "not_found")
    rows = app_db.query("SELECT status, next_attempt_at FROM webhook_deliveries "
                        "WHERE endpoint_id = ?", (endpoint["id"],))
    assert rows == [("cancelled", None)]
    # Even made due again, a cancelled delivery is never sent.
    app_db.execute("UPDATE webhook_deliveries SET next_attempt_at = ? WHERE endpoint_id = ?",
                   params=(iso(utcnow()), endpoint["id"]))
    clock.advance(sum(RETRY_SCHEDULE))
    tick("deliver_webhooks")
    assert len(receiver.requests("failing")) == 1
    assert app_db.query("SELECT status FROM webhook_deliveries WHERE endpoint_id = ?",
                        (endpoint["id"],)) == [("cancelled",)]


# --- 7. test fire -------------------------------------------------------------------------

def test_fire_a_test_event(hooks, api, receiver):
    endpoint = hooks.create(receiver.url("fire"), events=["*"])
    response = api.post(f"/v1/webhooks/{endpoint['id']}/test", json={})
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result) == {"delivered", "response_code", "delivery_ms"}
    assert result["delivered"] is True and result["response_code"] == 200
    assert isinstance(result["delivery_ms"], int) and result["delivery_ms"] >= 0
    (request,) = receiver.requests("fire")  # sent synchronously
    event = verify(request, endpoint["signing_secret"])
    assert set(event) == EVENT_KEYS
    assert event["type"] == "order.paid" == request.headers["x-event-type"]
    assert EVENT_ID.fullmatch(event["id"]) and event["id"] == request.headers["webhook-id"]
    assert event["mode"] == "test" and TIMESTAMP.fullmatch(event["created_at"])
    assert isinstance(event["data"]["object"], dict)

    response = api.post(f"/v1/webhooks/{endpoint['id']}/test", json={"event": "payout.confirmed"})
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] is True
    request = receiver.requests("fire")[1]
    assert verify(request, endpoint["signing_secret"])["type"] == "payout.confirmed"
    assert request.headers["x-event-type"] == "payout.confirmed"

    assert_invalid(api.post(f"/v1/webhooks/{endpoint['id']}/test", json={"event": "nope"}),
                   "event")
    assert_invalid(api.post(f"/v1/webhooks/{endpoint['id']}/test", json={"event": "product.*"}),
                   "event")
    assert_problem(api.post("/v1/webhooks/wh_01J0000000000000000000000/test", json={}),
                   404, "not_found")
    assert len(receiver.requests("fire")) == 2


def test_every_event_type_can_be_fired(hooks, api, receiver):
    endpoint = hooks.create(receiver.url("every-type"), events=["*"])
    for event_type in EVENT_TYPES:
        response = api.post(f"/v1/webhooks/{endpoint['id']}/test", json={"event": event_type})
        assert response.status_code == 200, (event_type, response.text)
    received = [verify(request, endpoint["signing_secret"])["type"]
                for request in receiver.requests("every-type")]
    assert received == list(EVENT_TYPES)


def test_fire_reports_failures(hooks, api, receiver):
    receiver.plan("refuses", 500)
    failing = hooks.create(receiver.url("refuses"))
    response = api.post(f"/v1/webhooks/{failing['id']}/test", json={})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivered"] is False and result["response_code"] == 500
    assert isinstance(result["delivery_ms"], int)
    assert len(receiver.requests("refuses")) == 1

    receiver.plan("hangs", Reply(hang=15))  # longer than timeout_seconds = 2
    hanging = hooks.create(receiver.url("hangs"))
    response = api.post(f"/v1/webhooks/{hanging['id']}/test", json={})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivered"] is False and result["response_code"] is None

    closed = hooks.create(f"http://127.0.0.1:{free_port()}/nobody-home")
    response = api.post(f"/v1/webhooks/{closed['id']}/test", json={"event": "order.refunded"})
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["delivered"] is False and result["response_code"] is None
    assert isinstance(result["delivery_ms"], int)


# --- 8. secret rotation -------------------------------------------------------------------

def test_rotation_signs_with_both_secrets(hooks, api, receiver):
    endpoint = hooks.create(receiver.url("rotating"))
    old = endpoint["signing_secret"]
    response = api.post(f"/v1/webhooks/{endpoint['id']}/rotate-secret")
    assert response.status_code == 200, response.text
    new = response.json()["signing_secret"]
    assert SECRET.fullmatch(new) and new != old
    assert len(key_of(new)) >= 24
    assert response.json()["id"] == endpoint["id"]
    assert "whsec_" not in api.get(f"/v1/webhooks/{endpoint['id']}").text

    create_product(api)
    (request,) = receiver.wait_for("rotating", 1)
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2 and all(s.startswith("v1,") for s in signatures)
    assert verify_standard(request, old) == verify_standard(request, new) == request.json()
    verify_sellix(request, new)
    with pytest.raises(AssertionError):
        verify_sellix(request, old)


# --- 9. disabling a failing endpoint, re-enabling and editing it --------------------------

@pytest.mark.parametrize("app_config", [
    IN_PROCESS + '[shop]\nowner_email = "owner@example.com"\n'])
def test_failing_endpoint_is_disabled_and_owner_emailed(v1, clock, tick, receiver, app_db):
    hooks = Hooks(v1)
    receiver.plan("broken", 500)
    endpoint = hooks.create(receiver.url("broken"))
    product = create_product(v1)
    tick("deliver_webhooks")
    (first,) = receiver.requests("broken")
    clock.advance(48 * 3600 - 1)
    tick("deliver_webhooks")  # failing a second short of [webhooks] disable_after_hours
    assert hooks.get(endpoint["id"])["status"] == "active"
    clock.advance(RETRY_SCHEDULE[1])
    tick("deliver_webhooks")  # failing for longer, without a single success

    disabled = hooks.get(endpoint["id"])
    assert disabled["status"] == "disabled"
    assert disabled["disabled_at"] == iso(utcnow())
    clock.advance(RETRY_SCHEDULE[2])
    tick("deliver_webhooks")
    assert len(receiver.requests("broken")) == 3  # a disabled endpoint gets nothing
    tick("send_emails")
    (mail,) = email_rows(app_db, endpoint["id"], "webhook_disabled")
    assert mail["to_address"] == "owner@example.com" and mail["status"] == "outbox"
    assert endpoint["url"] in mail["subject"]
    assert hooks.deliveries(endpoint["id"])[0]["status"] == "pending"  # kept

    # Re-enabled: the pending delivery goes out once the receiver is fixed. Its requests
    # are signed days ahead of real time, so only the time-free signature is checked.
    receiver.plan("broken", 200)
    response = v1.patch(f"/v1/webhooks/{endpoint['id']}", json={"status": "active"})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    assert hooks.get(endpoint["id"])["status"] == "active"
    tick("deliver_webhooks")
    second = receiver.requests("broken")[3]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    verify_sellix(second, endpoint["signing_secret"])
    assert second.json()["data"]["object"]["id"] == product["id"]
    assert hooks.deliveries(endpoint["id"])[0]["status"] == "succeeded"

    # PATCH edits url, events and description; the next delivery follows them.
    response = v1.patch(f"/v1/webhooks/{endpoint['id']}", json={
        "url": receiver.url("moved"), "events": ["product.updated"],
        "description": "moved"})
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["url"] == receiver.url("moved")
    assert changed["events"] == ["product.updated"]
    assert changed["description"] == "moved"
    assert "signing_secret" not in changed
    assert hooks.get(endpoint["id"]) == changed
    assert_invalid(v1.patch(f"/v1/webhooks/{endpoint['id']}", json={"events": ["nope"]}),
                   "events")
    assert_invalid(v1.patch(f"/v1/webhooks/{endpoint['id']}", json={"url": "ftp://x"}), "url")
    create_product(v1, name="Not subscribed")  # product.created: no longer wanted
    renamed = v1.patch(f"/v1/products/{product['id']}", json={"name": "Renamed"})
    assert renamed.status_code == 200, renamed.text
    tick("deliver_webhooks")
    (moved,) = receiver.requests("moved")
    verify_sellix(moved, endpoint["signing_secret"])
    assert moved.json()["type"] == "product.updated"
    assert moved.json()["data"]["object"]["name"] == "Renamed"
    clock.advance(60)
    tick("deliver_webhooks")
    assert len(receiver.requests("moved")) == 1
    assert len(receiver.requests("broken")) == 4


# --- 10. crash safety ---------------------------------------------------------------------

def test_pending_delivery_survives_a_crash(make_server, receiver):
    # Only the run at start delivers: an hour between ticks.
    srv, client = started(make_server, "[jobs]\ntick_seconds = 3600\n")
    hooks = Hooks(client)
    endpoint = hooks.create(receiver.url("after-crash"))
    product = create_product(client)
    assert srv.query("SELECT status FROM webhook_deliveries WHERE endpoint_id = ?",
                 (endpoint["id"],)) == [("pending",)]
    assert receiver.requests("after-crash") == []

    srv.kill()
    srv.start()
    (request,) = receiver.wait_for("after-crash", 1, timeout=15)
    event = verify(request, endpoint["signing_secret"])
    assert event["type"] == "product.created"
    assert event["data"]["object"]["id"] == product["id"]
    hooks.wait_delivery(endpoint["id"], "succeeded")


def test_in_flight_delivery_is_retried_after_a_crash(make_server, receiver):
    srv, client = started(make_server, "[jobs]\ntick_seconds = 1\n"
                                       "[webhooks]\ntimeout_seconds = 60\n")
    hooks = Hooks(client)
    receiver.plan("in-flight", Reply(hang=30), 200)
    endpoint = hooks.create(receiver.url("in-flight"))
    create_product(client)
    (first,) = receiver.wait_for("in-flight", 1)

    srv.kill()  # while the receiver still holds the first attempt
    srv.start()
    second = receiver.wait_for("in-flight", 2, timeout=15)[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"]
    assert verify(second, endpoint["signing_secret"])["type"] == "product.created"
    delivery = hooks.wait_delivery(endpoint["id"], "succeeded")
    assert delivery["attempts"][-1]["response_code"] == 200


# --- 11. a hanging endpoint holds up no one else ------------------------------------------

def test_hanging_endpoint_does_not_block_others(make_server, receiver):
    srv, client = started(make_server, "[jobs]\ntick_seconds = 1\n"
                                       "[webhooks]\ntimeout_seconds = 30\n")
    hooks = Hooks(client)
    receiver.plan("stuck", Reply(hang=25))
    hooks.create(receiver.url("stuck"))
    fast = hooks.create(receiver.url("fast"))
    products = [create_product(client, name=f"Widget {n}") for n in range(3)]
    receiver.wait_for("stuck", 1)

    got = receiver.wait_for("fast", 3)
    assert len(receiver.requests("stuck")) == 1  # still hanging on its first
    assert sorted(verify(r, fast["signing_secret"])["data"]["object"]["id"] for r in got) == \
        sorted(p["id"] for p in products)
    response = client.get("/v1/products", timeout=5)
    assert response.status_code == 200, response.text


# --- 12. the events API -------------------------------------------------------------------

def test_events_api(server, api, live):
    product = create_product(api, name="Evented")
    assert api.patch(f"/v1/products/{product['id']}", json={"name": "Evented 2"}).status_code \
        == 200
    assert api.delete(f"/v1/products/{product['id']}").status_code == 200

    response = api.get("/v1/events")
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"object", "data", "has_more", "next_cursor"}
    assert page["object"] == "list"
    events = page["data"]
    assert [e["type"] for e in events[:3]] == ["product.archived", "product.updated",
                                                "product.created"]
    assert all(e["data"]["object"]["id"] == product["id"] for e in events[:3])
    assert [e["id"] for e in events] == sorted((e["id"] for e in events), reverse=True)
    assert [e["created_at"] for e in events] == sorted((e["created_at"] for e in events),
                                                       reverse=True)
    for event in events:
        assert set(event) == EVENT_KEYS
        assert EVENT_ID.fullmatch(event["id"]) and TIMESTAMP.fullmatch(event["created_at"])
        assert event["mode"] == "test"
    assert events[1]["data"]["previous_attributes"]["name"] == "Evented"

    created = api.get("/v1/events", params={"type": "product.created"}).json()["data"]
    assert created and all(e["type"] == "product.created" for e in created)
    assert created[0] == events[2]
    assert api.get("/v1/events", params={"type": "payout.failed"}).json()["data"] == []

    first = api.get("/v1/events", params={"limit": 2}).json()
    assert len(first["data"]) == 2 and first["has_more"] is True
    second = api.get("/v1/events", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert second["data"][0]["id"] < first["data"][1]["id"]
    assert [e["id"] for e in first["data"] + second["data"]] == [e["id"] for e in events[:4]]

    one = api.get(f"/v1/events/{events[0]['id']}")
    assert one.status_code == 200, one.text
    assert one.json() == events[0]
    assert_problem(api.get("/v1/events/evt_01J0000000000000000000000"), 404, "not_found")

    # Another mode's event is not found, both ways.
    assert_problem(live.get(f"/v1/events/{events[0]['id']}"), 404, "not_found")
    assert events[0]["id"] not in [e["id"] for e in live.get("/v1/events").json()["data"]]
    live_product = create_product(live)
    live_event = live.get("/v1/events", params={"type": "product.created"}).json()["data"][0]
    assert live_event["mode"] == "live"
    assert live_event["data"]["object"]["id"] == live_product["id"]
    assert_problem(api.get(f"/v1/events/{live_event['id']}"), 404, "not_found")


def test_webhook_abilities(server):
    products_only = server.client(mint_via_api(server, "products:read"))
    for path in ("/v1/events", "/v1/webhooks"):
        body = assert_problem(products_only.get(path), 403, "forbidden_scope")
        assert "webhooks:read" in json.dumps(body)
    reader = server.client(mint_via_api(server, "webhooks:read"))
    assert reader.get("/v1/events").status_code == 200
    assert reader.get("/v1/webhooks").status_code == 200
    body = assert_problem(reader.post("/v1/webhooks", json={
        "url": "http://127.0.0.1:9/x", "events": ["*"]}), 403, "forbidden_scope")
    assert "webhooks:write" in json.dumps(body)
