"""Metadata on products, orders and customers (docs/api.md, Metadata): set on create, merged
on PATCH (null removes a key), at most 20 keys of 1-40 characters with string values of at
most 500, shown on the objects, carried in their events and on the dashboard."""

from __future__ import annotations

import json

import pytest
from standardwebhooks.webhooks import Webhook

from conftest import GENEROUS_LIMITS, assert_problem
from support import (
    assert_invalid,
    buyer,
    json_body,
    key_product,
    listen_to_orders,
    make_product,
    place_order,
    signed_in_dashboard,
)

BAD_METADATA = {
    "too many keys": {f"k{i}": "v" for i in range(21)},
    "empty key": {"": "v"},
    "41-character key": {"k" * 41: "v"},
    "501-character value": {"k": "v" * 501},
    "number value": {"k": 1},
    "object value": {"k": {"nested": "v"}},
    "list value": {"k": ["v"]},
    "null on create": {"k": None},
    "not an object": ["k", "v"],
}


def events_about(app_db, object_id: str, event_type: str) -> list[dict]:
    """The `data` of each event of `event_type` about the object, oldest first."""
    rows = app_db.query("SELECT data FROM events WHERE type = ? AND "
                        "json_extract(data, '$.object.id') = ? ORDER BY id",
                        (event_type, object_id))
    return [json.loads(data) for (data,) in rows]


def an_order(v1, **extra) -> dict:
    product, _ = key_product(v1, 2)
    return place_order(v1, product["id"], **extra)


# The objects whose metadata PATCH changes: how to make one, its path, its event.
def _customer(v1):
    order = an_order(v1)
    return json_body(v1.get(f"/v1/customers/{order['customer_id']}"))


OBJECTS = {
    "product": (make_product, "/v1/products/{}", "product.updated"),
    "order": (an_order, "/v1/orders/{}", "order.updated"),
    "customer": (_customer, "/v1/customers/{}", "customer.updated"),
}
every_object = pytest.mark.parametrize("kind", list(OBJECTS))


def patch_metadata(v1, kind: str, object_id: str, metadata):
    return v1.patch(OBJECTS[kind][1].format(object_id), json={"metadata": metadata})


# --- set on create ------------------------------------------------------------------------

def test_a_product_keeps_the_metadata_it_is_created_with(v1, app_db):
    product = make_product(v1, metadata={"sku": "A-1", "note": "<b>bold</b>"})
    assert product["metadata"] == {"sku": "A-1", "note": "<b>bold</b>"}
    assert json_body(v1.get(f"/v1/products/{product['id']}"))["metadata"] == product["metadata"]
    created, = events_about(app_db, product["id"], "product.created")
    assert created["object"]["metadata"] == {"sku": "A-1", "note": "<b>bold</b>"}


def test_an_order_keeps_the_metadata_it_is_created_with(v1, app_db):
    order = an_order(v1, metadata={"crm_id": "C-1042"})
    assert order["metadata"] == {"crm_id": "C-1042"}
    created, = events_about(app_db, order["id"], "order.created")
    assert created["object"]["metadata"] == {"crm_id": "C-1042"}


def test_objects_without_metadata_show_an_empty_object(v1):
    order = an_order(v1)
    customer = json_body(v1.get(f"/v1/customers/{order['customer_id']}"))
    listed = json_body(v1.get("/v1/customers"))["data"][0]
    product = json_body(v1.get(f"/v1/products/{order['items'][0]['product_id']}"))
    assert order["metadata"] == customer["metadata"] == listed["metadata"] == {}
    assert product["metadata"] == {}


@pytest.mark.parametrize("create", ["product", "order"])
@pytest.mark.parametrize("case", list(BAD_METADATA))
def test_bad_metadata_on_create_is_422(v1, create, case):
    if create == "product":
        response = v1.post("/v1/products", json={
            "name": "Bad", "type": "account", "price_cents": 100, "currency": "USD",
            "metadata": BAD_METADATA[case]})
    else:
        product, _ = key_product(v1, 1)
        response = v1.post("/v1/orders", json={
            "product_id": product["id"], "customer_email": buyer(),
            "metadata": BAD_METADATA[case]})
    assert_invalid(response, "metadata", exact=True)


# --- merged on PATCH ----------------------------------------------------------------------

@every_object
def test_patch_merges_and_null_removes(v1, app_db, kind):
    made = OBJECTS[kind][0](v1)
    first = json_body(patch_metadata(v1, kind, made["id"], {"a": "1", "b": "2"}))
    assert first["metadata"] == {"a": "1", "b": "2"}
    second = json_body(patch_metadata(v1, kind, made["id"], {"b": None, "c": "3",
                                                             "gone": None}))
    assert second["metadata"] == {"a": "1", "c": "3"}
    fetched = json_body(v1.get(OBJECTS[kind][1].format(made["id"])))
    assert fetched["metadata"] == {"a": "1", "c": "3"}

    updates = events_about(app_db, made["id"], OBJECTS[kind][2])
    assert [u["previous_attributes"] for u in updates] == [{"metadata": {}},
                                                          {"metadata": {"a": "1", "b": "2"}}]
    assert [u["object"]["metadata"] for u in updates] == [{"a": "1", "b": "2"},
                                                          {"a": "1", "c": "3"}]


@every_object
def test_a_patch_that_changes_nothing_emits_nothing(v1, app_db, kind):
    made = OBJECTS[kind][0](v1)
    json_body(patch_metadata(v1, kind, made["id"], {"a": "1"}))
    for same in ({"a": "1"}, {"absent": None}, {}):
        assert json_body(patch_metadata(v1, kind, made["id"], same))["metadata"] == {"a": "1"}
    assert len(events_about(app_db, made["id"], OBJECTS[kind][2])) == 1


@every_object
def test_twenty_keys_at_most_after_the_merge(v1, kind):
    made = OBJECTS[kind][0](v1)
    twenty = {f"k{i}": "v" for i in range(20)}
    assert json_body(patch_metadata(v1, kind, made["id"], twenty))["metadata"] == twenty
    assert_invalid(patch_metadata(v1, kind, made["id"], {"one_more": "v"}), "metadata",
                   exact=True)
    swapped = json_body(patch_metadata(v1, kind, made["id"], {"k0": None, "one_more": "v"}))
    assert len(swapped["metadata"]) == 20 and "k0" not in swapped["metadata"]


@every_object
@pytest.mark.parametrize("case", [c for c in BAD_METADATA if c != "null on create"])
def test_bad_metadata_on_patch_is_422(v1, kind, case):
    made = OBJECTS[kind][0](v1)
    assert_invalid(patch_metadata(v1, kind, made["id"], BAD_METADATA[case]), "metadata",
                   exact=True)


def test_the_limits_themselves_are_accepted(v1):
    order = an_order(v1)
    edge = {"k" * 40: "v" * 500, "x": ""}
    assert json_body(patch_metadata(v1, "order", order["id"], edge))["metadata"] == edge


@pytest.mark.parametrize("kind", ["order", "customer"])
@pytest.mark.parametrize("field", ["customer_email", "status", "qty"])
def test_orders_and_customers_take_metadata_only(v1, kind, field):
    made = OBJECTS[kind][0](v1)
    response = v1.patch(OBJECTS[kind][1].format(made["id"]),
                        json={"metadata": {"a": "1"}, field: "x"})
    assert_invalid(response, field, exact=True)
    assert json_body(v1.get(OBJECTS[kind][1].format(made["id"])))["metadata"] == {}


# --- who may change it ----------------------------------------------------------------------

def test_customers_write_is_needed_to_change_a_customer(v1):
    customer = _customer(v1)
    reader = v1.keyed("customers:read")
    refused = reader.patch(f"/v1/customers/{customer['id']}", json={"metadata": {"a": "1"}})
    assert assert_problem(refused, 403, "forbidden_scope")["ability"] == "customers:write"
    writer = v1.keyed("customers:write")
    assert json_body(writer.patch(f"/v1/customers/{customer['id']}",
                                  json={"metadata": {"a": "1"}}))["metadata"] == {"a": "1"}


def test_orders_write_is_needed_to_change_an_order(v1):
    order = an_order(v1)
    refused = v1.keyed("orders:read").patch(f"/v1/orders/{order['id']}",
                                            json={"metadata": {"a": "1"}})
    assert assert_problem(refused, 403, "forbidden_scope")["ability"] == "orders:write"


@every_object
def test_the_other_mode_cannot_see_or_change_it(v1, kind):
    made = OBJECTS[kind][0](v1)
    live = v1.keyed(mode="live")
    assert_problem(patch_metadata(live, kind, made["id"], {"a": "1"}), 404, "not_found")
    assert json_body(v1.get(OBJECTS[kind][1].format(made["id"])))["metadata"] == {}


def test_a_patch_is_replayed_under_its_idempotency_key(v1, app_db):
    order = an_order(v1)
    headers = {"Idempotency-Key": "meta-once"}
    first = v1.patch(f"/v1/orders/{order['id']}", json={"metadata": {"a": "1"}},
                     headers=headers)
    again = v1.patch(f"/v1/orders/{order['id']}", json={"metadata": {"a": "1"}},
                     headers=headers)
    assert json_body(again) == json_body(first)
    assert len(events_about(app_db, order["id"], "order.updated")) == 1


def test_later_order_events_carry_the_metadata(v1, app_db):
    order = an_order(v1, metadata={"crm_id": "C-7"})
    json_body(v1.post(f"/v1/test_helpers/orders/{order['id']}/pay", json={}))
    paid, = events_about(app_db, order["id"], "order.paid")
    assert paid["object"]["metadata"] == {"crm_id": "C-7"}


# --- the dashboard -------------------------------------------------------------------------

@every_object
def test_the_dashboard_shows_metadata_as_text(app, client, v1, kind):
    made = OBJECTS[kind][0](v1)
    json_body(patch_metadata(v1, kind, made["id"], {"note": "<script>alert(1)</script>"}))
    dashboard = signed_in_dashboard(app, client)
    page = dashboard.get(f"/dashboard/{kind}s/{made['id']}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<h2>Metadata</h2>" in html


def test_the_dashboard_shows_no_metadata_block_when_there_is_none(app, client, v1):
    order = an_order(v1)
    html = signed_in_dashboard(app, client).get(f"/dashboard/orders/{order['id']}")
    assert "<h2>Metadata</h2>" not in html.get_data(as_text=True)


# --- a real delivery -----------------------------------------------------------------------

def test_order_updated_is_delivered_signed(make_server, receiver):
    shop = make_server(GENEROUS_LIMITS + "[webhooks]\nallow_private_targets = true\n")
    api = shop.client(shop.mint())
    secret = listen_to_orders(api, receiver, "orders")
    order = an_order(api, metadata={"crm_id": "C-1"})
    json_body(api.patch(f"/v1/orders/{order['id']}",
                        json={"metadata": {"crm_id": None, "stage": "won"}}))
    events = {}
    for request in receiver.wait_for("orders", 2):
        event = Webhook(secret).verify(request.body, request.headers)
        events[event["type"]] = event["data"]
    assert events["order.created"]["object"]["metadata"] == {"crm_id": "C-1"}
    assert events["order.updated"]["object"]["metadata"] == {"stage": "won"}
    assert events["order.updated"]["previous_attributes"] == {"metadata": {"crm_id": "C-1"}}
