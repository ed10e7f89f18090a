"""Who reads which events: `webhooks:read` and the read ability of each event's object, so no
ability reaches through the events log what it can't read directly; and which families a
webhook endpoint can subscribe to."""

from __future__ import annotations

import pytest

from sellix_lite.services.webhooks import EVENT_TYPES

from conftest import assert_problem, mint_via_api
from support import (
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    wait_for_status,
)

# The read ability each event family needs besides webhooks:read.
FAMILY_ABILITY = {"order": "orders:read", "product": "products:read",
                  "payout": "payouts:read", "customer": "customers:read"}
TRON_ADDRESS = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def family(event: dict) -> str:
    return event["type"].split(".")[0]


def every_event(client, **params) -> list[dict]:
    """The whole events list of a key, page by page (`limit` as given)."""
    found, cursor = [], None
    while True:
        page = json_body(client.get("/v1/events", params={
            **params, **({"cursor": cursor} if cursor else {})}))
        found.extend(page["data"])
        if not page["has_more"]:
            return found
        assert page["data"], "an empty page that says there is more"
        cursor = page["next_cursor"]


@pytest.fixture(scope="module")
def history(server):
    """Events of every family this build emits, newest last: a paid license-key order (its
    product, customer and order events) and a payout."""
    root = server.admin
    product, _ = key_product(root, 3)
    order = place_order(root, product["id"])
    pay(root, order["id"])
    wait_for_status(root, order["id"], "completed")
    pay(root, place_order(root, product["id"])["id"])  # balance for the payout
    json_body(root.post("/v1/payouts", json={
        "chain": "tron", "asset": "USDT", "amount_cents": 100,
        "destination_address": TRON_ADDRESS}, headers={"Idempotency-Key": "events-payout"}),
        201)
    events = every_event(root, limit=100)
    assert {family(e) for e in events} >= set(FAMILY_ABILITY), events
    return {"order": order, "events": events}


def test_webhooks_read_alone_reads_no_object_through_events(server, history):
    """The leak: delivered license keys and buyer emails through GET /v1/events."""
    client = server.client(mint_via_api(server, "webhooks:read"))
    assert every_event(client, limit=100) == []
    order_event = next(e for e in history["events"] if e["type"] == "order.delivered")
    assert order_event["data"]["object"]["delivery"]["keys"]
    assert_problem(client.get(f"/v1/events/{order_event['id']}"), 404, "not_found")
    assert json_body(client.get("/v1/events", params={"type": "order.delivered"}))["data"] == []


@pytest.mark.parametrize("readable", list(FAMILY_ABILITY))
def test_each_family_needs_its_objects_read_ability(server, history, readable):
    client = server.client(mint_via_api(server, "webhooks:read", FAMILY_ABILITY[readable]))
    seen = every_event(client, limit=100)
    assert seen and {family(e) for e in seen} == {readable}
    assert len(seen) == sum(1 for e in every_event(server.admin, limit=100)
                            if family(e) == readable)
    for event in history["events"]:
        response = client.get(f"/v1/events/{event['id']}")
        if family(event) == readable:
            assert json_body(response) == event
        else:
            assert_problem(response, 404, "not_found")


def test_pages_are_full_of_readable_events(server, history):
    """Filtered in the query, not after it: a page holds `limit` events the key can read,
    `has_more` is right, and walking the pages finds each readable event once."""
    client = server.client(mint_via_api(server, "webhooks:read", "payouts:read",
                                        "customers:read"))
    expected = [e["id"] for e in every_event(server.admin, limit=100)
                if family(e) in ("payout", "customer")]
    assert len(expected) >= 2
    first = json_body(client.get("/v1/events", params={"limit": 1}))
    assert len(first["data"]) == 1 and first["has_more"] is True
    walked = [e["id"] for e in every_event(client, limit=1)]
    assert walked == expected


def test_webhooks_read_is_still_needed(server, history):
    client = server.client(mint_via_api(server, *FAMILY_ABILITY.values()))
    body = assert_problem(client.get("/v1/events"), 403, "forbidden_scope")
    assert body["ability"] == "webhooks:read"


@pytest.mark.parametrize("pattern", ["*", *sorted({t.split(".")[0] + ".*" for t in EVENT_TYPES})])
def test_every_family_wildcard_can_be_subscribed(api, pattern):
    response = api.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                              "events": [pattern]})
    assert json_body(response, 201)["events"] == [pattern]


def test_an_order_wildcard_endpoint_receives_order_events_only(api, receiver):
    json_body(api.post("/v1/webhooks", json={"url": receiver.url("orders"),
                                             "events": ["order.*"]}), 201)
    product = make_product(api, type="account", delivery_text="user: a / pass: b")
    order = place_order(api, product["id"])
    pay(api, order["id"])
    wait_for_status(api, order["id"], "completed")
    got = receiver.wait_for("orders", 3)
    types = {r.json()["type"] for r in got}
    assert {"order.created", "order.paid", "order.delivered"} <= types
    assert all(t.startswith("order.") for t in types)
