"""Licenses, in process: one per delivered key with the product's activation limit, listed,
filtered and changed through the API (with `license.*` events), disabled by a full refund,
behind their own abilities and within their mode."""

from __future__ import annotations

from support import assert_invalid, buyer, json_body, key_product, make_product, pay, place_order


def licenses(v1, **filters) -> list[dict]:
    return json_body(v1.get("/v1/licenses", params={"limit": 100, **filters}))["data"]


def license_events(v1, event_type: str, license_id: str) -> list[dict]:
    events = json_body(v1.get("/v1/events", params={"type": event_type, "limit": 100}))["data"]
    return [e for e in events if e["data"]["object"]["id"] == license_id]


def delivered(v1, qty: int = 1, **fields) -> tuple[dict, dict]:
    """A paid order of `qty` keys of a new license_key product, and the product."""
    product, _ = key_product(v1, 5, **fields)
    return pay(v1, place_order(v1, product["id"], qty=qty)["id"]), product


def test_each_delivered_key_becomes_a_license_with_the_products_limit(v1):
    order, product = delivered(v1, qty=3, activation_limit=2)
    assert product["activation_limit"] == 2
    found = licenses(v1, order_id=order["id"])
    assert sorted(lic["key"] for lic in found) == sorted(order["delivery"]["keys"])
    for lic in found:
        assert lic["id"].startswith("lic_")
        assert lic == {**lic, "status": "active", "product_id": product["id"],
                       "order_id": order["id"], "customer_email": order["customer_email"],
                       "mode": "test", "activation_limit": 2, "activations": 0,
                       "expires_at": None}
        assert len(license_events(v1, "license.created", lic["id"])) == 1
    detail = json_body(v1.get(f"/v1/licenses/{found[0]['id']}"))
    assert detail == {**found[0], "instances": []}


def test_the_activation_limit_is_set_on_create_and_patch_and_copied_as_it_was(v1):
    product, _ = key_product(v1, 4)
    assert product["activation_limit"] is None
    first = pay(v1, place_order(v1, product["id"])["id"])
    changed = json_body(v1.patch(f"/v1/products/{product['id']}",
                                 json={"activation_limit": 5}))
    assert changed["activation_limit"] == 5
    second = pay(v1, place_order(v1, product["id"])["id"])
    assert licenses(v1, order_id=first["id"])[0]["activation_limit"] is None
    assert licenses(v1, order_id=second["id"])[0]["activation_limit"] == 5
    for bad in (0, -1, "3", 1.5):
        assert_invalid(v1.patch(f"/v1/products/{product['id']}",
                                json={"activation_limit": bad}), "activation_limit")
    assert make_product(v1, type="account", delivery_text="x", activation_limit=None)[
        "activation_limit"] is None


def test_the_list_filters_by_status_product_order_and_buyer(v1):
    email = buyer()
    product, _ = key_product(v1, 5)
    one = pay(v1, place_order(v1, product["id"], qty=2, customer_email=email)["id"])
    other, _ = delivered(v1)
    assert {lic["order_id"] for lic in licenses(v1, product_id=product["id"])} == {one["id"]}
    assert len(licenses(v1, customer_email=email)) == 2
    assert len(licenses(v1, order_id=other["id"])) == 1
    target = licenses(v1, order_id=one["id"])[0]
    v1.patch(f"/v1/licenses/{target['id']}", json={"status": "disabled"})
    assert [lic["id"] for lic in licenses(v1, status="disabled")] == [target["id"]]
    page = json_body(v1.get("/v1/licenses", params={"limit": 1}))
    assert len(page["data"]) == 1 and page["has_more"] is True
    assert_invalid(v1.get("/v1/licenses", params={"status": "sold"}), "status")


def test_patch_changes_status_and_limit_with_one_updated_event(v1):
    order, _ = delivered(v1)
    lic = licenses(v1, order_id=order["id"])[0]
    changed = json_body(v1.patch(f"/v1/licenses/{lic['id']}",
                                 json={"status": "disabled", "activation_limit": 3}))
    assert changed["status"] == "disabled" and changed["activation_limit"] == 3
    assert changed["instances"] == []
    events = license_events(v1, "license.updated", lic["id"])
    assert len(events) == 1
    assert events[0]["data"]["previous_attributes"] == {"status": "active",
                                                        "activation_limit": None}
    json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"status": "disabled"}))
    assert len(license_events(v1, "license.updated", lic["id"])) == 1  # nothing changed
    json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"activation_limit": None}))
    assert json_body(v1.get(f"/v1/licenses/{lic['id']}"))["activation_limit"] is None
    for body in ({"status": "expired"}, {"activation_limit": 0}):
        assert_invalid(v1.patch(f"/v1/licenses/{lic['id']}", json=body), *body)


def settle_refund(v1, clock, tick, order_id: str, key: str, **body) -> None:
    """Refund (all unless told) and let the provider settle it."""
    response = v1.post(f"/v1/orders/{order_id}/refund", json=body,
                       headers={"Idempotency-Key": key})
    assert response.status_code in (200, 201), response.text
    tick("process_refunds")  # sends
    clock.advance(1)
    tick("process_refunds")  # settles


def test_a_full_refund_disables_the_orders_licenses(v1, clock, tick):
    order, _ = delivered(v1, qty=2)

    def refund(key: str, **body) -> list[str]:
        settle_refund(v1, clock, tick, order["id"], key, **body)
        return [lic["status"] for lic in licenses(v1, order_id=order["id"])]

    assert refund("part", amount_cents=100) == ["active", "active"]
    assert refund("rest") == ["disabled", "disabled"]
    for lic in licenses(v1, order_id=order["id"]):
        assert len(license_events(v1, "license.updated", lic["id"])) == 1


def test_licenses_need_their_abilities(client, v1):
    order, _ = delivered(v1)
    lic_id = licenses(v1, order_id=order["id"])[0]["id"]
    # Reading events takes webhooks:read, and each family the ability that reads its object.
    orders_only = client.keyed("orders:read", "orders:write", "webhooks:read")
    assert orders_only.get("/v1/licenses").status_code == 403
    assert orders_only.get(f"/v1/licenses/{lic_id}").status_code == 403
    reader = client.keyed("licenses:read", "webhooks:read")
    assert reader.get(f"/v1/licenses/{lic_id}").status_code == 200
    assert reader.patch(f"/v1/licenses/{lic_id}", json={"status": "disabled"}).status_code == 403
    assert json_body(reader.get("/v1/events", params={"type": "license.created"}))["data"]
    assert not json_body(orders_only.get("/v1/events",
                                         params={"type": "license.created"}))["data"]


def test_a_license_is_invisible_from_the_other_mode(client, v1):
    order, _ = delivered(v1)
    lic_id = licenses(v1, order_id=order["id"])[0]["id"]
    live = client.keyed(mode="live")
    assert live.get(f"/v1/licenses/{lic_id}").status_code == 404
    assert live.patch(f"/v1/licenses/{lic_id}", json={"status": "disabled"}).status_code == 404
    assert json_body(live.get("/v1/licenses"))["data"] == []


def test_license_events_can_be_subscribed_to(v1):
    response = v1.post("/v1/webhooks", json={
        "url": "https://example.com/hook", "events": ["license.*", "license.updated"]})
    assert response.status_code == 201, response.text


def assert_stays_disabled(client, v1, lic: dict, word: str) -> None:
    """Enabling is refused, naming `word`, with no event; the key still doesn't validate;
    its limit can still be changed."""
    updates = len(license_events(v1, "license.updated", lic["id"]))
    refused = assert_invalid(v1.patch(f"/v1/licenses/{lic['id']}", json={"status": "active"}),
                             "status", exact=True)
    assert word in refused["errors"]["status"]
    assert_invalid(v1.patch(f"/v1/licenses/{lic['id']}",
                            json={"status": "active", "activation_limit": 2}), "status")
    check = json_body(client.post("/v1/licenses/validate", json={"license_key": lic["key"]}))
    assert (check["valid"], check["reason"]) == (False, "disabled")
    assert len(license_events(v1, "license.updated", lic["id"])) == updates
    changed = json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"activation_limit": 4}))
    assert (changed["status"], changed["activation_limit"]) == ("disabled", 4)


def test_a_replaced_keys_license_can_not_be_enabled_again(client, v1):
    order, _ = delivered(v1)
    [old] = order["delivery"]["keys"]
    json_body(v1.post(f"/v1/orders/{order['id']}/replace", json={"key": old},
                      headers={"Idempotency-Key": "replace"}))
    [lic] = licenses(v1, order_id=order["id"], status="disabled")
    assert lic["key"] == old
    assert_stays_disabled(client, v1, lic, "replaced")


def test_a_fully_refunded_orders_licenses_can_not_be_enabled_again(client, v1, clock, tick):
    order, _ = delivered(v1)
    [lic] = licenses(v1, order_id=order["id"])
    settle_refund(v1, clock, tick, order["id"], "part", amount_cents=100)
    for status in ("disabled", "active"):  # a partial refund leaves the merchant's word
        assert json_body(v1.patch(f"/v1/licenses/{lic['id']}",
                                  json={"status": status}))["status"] == status
    settle_refund(v1, clock, tick, order["id"], "rest")
    [lic] = licenses(v1, order_id=order["id"])
    assert lic["status"] == "disabled"
    assert_stays_disabled(client, v1, lic, "refunded in full")
