"""A license_key product's pool in process: listed newest first with each key's status,
paged, and an available key deleted with the stock following it."""

from __future__ import annotations

import re

from conftest import assert_problem
from support import (
    assert_invalid,
    get_product,
    key_product,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)


def pool(v1, product_id: str, **params) -> dict:
    response = v1.get(f"/v1/products/{product_id}/keys", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def test_the_pool_lists_every_key_with_its_status_newest_first(v1):
    product, keys = key_product(v1, 4)
    sold = pay(v1, place_order(v1, product["id"])["id"])
    reserved = place_order(v1, product["id"])

    listed = pool(v1, product["id"])["data"]
    assert [k["key"] for k in listed] == keys[::-1]
    assert all(k["id"].startswith("key_") for k in listed)
    by_key = {k["key"]: k for k in listed}
    assert by_key[sold["delivery"]["keys"][0]]["status"] == "sold"
    assert by_key[sold["delivery"]["keys"][0]]["order_id"] == sold["id"]
    assert [k["order_id"] for k in listed if k["status"] == "reserved"] == [reserved["id"]]
    assert len(pool(v1, product["id"], status="available")["data"]) == 2
    assert pool(v1, product["id"], status="burned")["data"] == []


def test_the_pool_pages_with_a_cursor(v1):
    product, keys = key_product(v1, 5)
    first = pool(v1, product["id"], limit=2)
    second = pool(v1, product["id"], limit=2, cursor=first["next_cursor"])
    last = pool(v1, product["id"], limit=2, cursor=second["next_cursor"])
    assert [k["key"] for page in (first, second, last) for k in page["data"]] == keys[::-1]
    assert first["has_more"] and second["has_more"] and not last["has_more"]


def test_deleting_an_available_key_drops_the_stock(v1):
    product, keys = key_product(v1, 3)
    key = pool(v1, product["id"])["data"][0]
    deleted = v1.delete(f"/v1/products/{product['id']}/keys/{key['id']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": key["id"], "deleted": True}
    assert get_product(v1, product["id"])["stock"] == 2
    assert key["key"] not in [k["key"] for k in pool(v1, product["id"])["data"]]
    assert_problem(v1.delete(f"/v1/products/{product['id']}/keys/{key['id']}"), 404,
                   "not_found")


def test_reserved_and_sold_keys_can_not_be_deleted(v1):
    product, _ = key_product(v1, 2)
    pay(v1, place_order(v1, product["id"])["id"])
    place_order(v1, product["id"])
    for key in pool(v1, product["id"])["data"]:
        assert_invalid(v1.delete(f"/v1/products/{product['id']}/keys/{key['id']}"), "key_id")
    assert get_product(v1, product["id"])["stock"] == 0


def test_only_a_license_key_product_has_a_pool(v1):
    other = make_product(v1, type="account", delivery_text="login", stock=3)
    assert_invalid(v1.get(f"/v1/products/{other['id']}/keys"), "product_id")
    assert_invalid(v1.delete(f"/v1/products/{other['id']}/keys/key_000000000001"),
                   "product_id")
    product, _ = key_product(v1, 1)
    for key_id in ("key_999999999999", "nope", "key_" + "9" * 40):
        assert_problem(v1.delete(f"/v1/products/{product['id']}/keys/{key_id}"), 404,
                       "not_found")
    assert_problem(v1.get("/v1/products/prod_missing/keys"), 404, "not_found")


def test_a_key_of_another_mode_is_not_found(v1, client):
    product, _ = key_product(v1, 1)
    key = pool(v1, product["id"])["data"][0]
    live = client.keyed(mode="live")
    assert_problem(live.get(f"/v1/products/{product['id']}/keys"), 404, "not_found")
    assert_problem(live.delete(f"/v1/products/{product['id']}/keys/{key['id']}"), 404,
                   "not_found")


def test_the_dashboard_lists_the_pool_and_deletes_an_available_key(app, v1, client):
    product, keys = key_product(v1, 2)
    sold = pay(v1, place_order(v1, product["id"])["id"])["delivery"]["keys"][0]
    html = signed_in_dashboard(app, client).get(
        f"/dashboard/products/{product['id']}").get_data(as_text=True)
    assert all(f"<code>{key}</code>" in html for key in keys)
    forms = re.findall(r'<form method="post" action="([^"]*/keys/[^"]*/delete)".*?'
                       r'name="csrf_token" value="([^"]+)".*?name="form_id" value="([^"]+)"',
                       html, re.S)
    assert len(forms) == 1  # the sold key has no delete button
    action, token, form_id = forms[0]
    answer = client.post(action, data={"csrf_token": token, "form_id": form_id})
    assert answer.status_code == 303
    assert get_product(v1, product["id"])["stock"] == 0
    assert [k["key"] for k in pool(v1, product["id"])["data"]] == [sold]


def test_a_burned_key_can_not_be_deleted_and_is_called_burned(v1):
    product, _ = key_product(v1, 2)
    order = pay(v1, place_order(v1, product["id"])["id"])
    [old] = order["delivery"]["keys"]
    response = v1.post(f"/v1/orders/{order['id']}/replace", json={"key": old},
                       headers={"Idempotency-Key": "replace"})
    assert response.status_code == 200, response.text
    [burned] = pool(v1, product["id"], status="burned")["data"]
    [sold] = pool(v1, product["id"], status="sold")["data"]
    for key, status in ((burned, "burned"), (sold, "sold")):
        refused = assert_invalid(v1.delete(f"/v1/products/{product['id']}/keys/{key['id']}"),
                                 "key_id")
        assert refused["errors"]["key_id"].startswith(f"the key is {status};")
    assert [k["key"] for k in pool(v1, product["id"])["data"]] == [sold["key"], old]
