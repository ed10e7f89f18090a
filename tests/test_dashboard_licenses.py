"""Licenses and key pools in the dashboard: an order's and a buyer's licenses with Disable,
Enable and the activation limit, a delivered key replaced from its order, the licenses list
searched by key, a product's pool by status with Delete, and the low-stock threshold on the
product forms. In process, except one journey in Chromium against a real server."""

from __future__ import annotations

import re
import signal

import pytest
from playwright.sync_api import expect
from test_dashboard import (
    DESKTOP,
    FormCollector,
    PageWatch,
    flashes,
    paid_order,
    sign_in_page,
    start_shop,
)

from support import (
    get_product,
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)

CSRF_REFUSED = "The form has expired or was not sent by this site"


# --- helpers ------------------------------------------------------------------------------

def forms(html: str, action: str) -> list[dict]:
    """The hidden fields of each form of the page posting to `action`, in page order."""
    collector = FormCollector()
    collector.feed(html)
    return [fields for found, fields in collector.forms if found == action]


def status_form(html: str, license_id: str) -> dict:
    """The Disable or Enable form of a license."""
    [form] = [f for f in forms(html, f"/dashboard/licenses/{license_id}") if "status" in f]
    return form


def limit_form(html: str, license_id: str) -> dict:
    [form] = [f for f in forms(html, f"/dashboard/licenses/{license_id}") if "status" not in f]
    return form


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def licenses_of(v1, **filters) -> list[dict]:
    return json_body(v1.get("/v1/licenses", params=filters))["data"]


def license_row(html: str, license_id: str) -> str:
    """The table row of one license."""
    match = re.search(rf'<tr id="{license_id}">.*?</tr>', html, re.S)
    assert match, f"no row for {license_id}"
    return match.group(0)


def status_shown(html: str, license_id: str) -> str:
    return re.search(r'class="license-status">(\w+)<', license_row(html, license_id)).group(1)


def sold(v1, qty: int = 1, keys: int = 3, **order) -> tuple[dict, dict]:
    """A license_key product and a paid order of `qty` of its keys."""
    product, _ = key_product(v1, keys)
    return product, pay(v1, place_order(v1, product["id"], qty=qty, **order)["id"])


@pytest.fixture
def dashboard(app, client):
    return signed_in_dashboard(app, client)


# --- the order page -----------------------------------------------------------------------

def test_the_order_page_lists_its_licenses_and_disables_and_enables_one(dashboard, v1):
    _, order = sold(v1, qty=2)
    first, second = sorted(licenses_of(v1, order_id=order["id"]), key=lambda lic: lic["key"])
    path = f"/dashboard/orders/{order['id']}"
    html = text_of(dashboard.get(path))
    assert "<h2>Licenses</h2>" in html
    for lic in (first, second):
        row = license_row(html, lic["id"])
        assert f"<code>{lic['key']}</code>" in row and "0 of unlimited" in row
        assert status_shown(html, lic["id"]) == "active" and ">Disable<" in row

    answer = dashboard.post(f"/dashboard/licenses/{first['id']}",
                            data=status_form(html, first["id"]))
    assert answer.status_code == 303 and answer.headers["Location"] == path
    assert json_body(v1.get(f"/v1/licenses/{first['id']}"))["status"] == "disabled"
    assert [lic["id"] for lic in licenses_of(v1, status="disabled")] == [first["id"]]
    html = text_of(dashboard.get(path))
    assert status_shown(html, first["id"]) == "disabled"
    assert ">Enable<" in license_row(html, first["id"])
    assert status_shown(html, second["id"]) == "active"
    assert any("is disabled" in message for message in flashes(html, "info"))

    dashboard.post(f"/dashboard/licenses/{first['id']}", data=status_form(html, first["id"]))
    assert json_body(v1.get(f"/v1/licenses/{first['id']}"))["status"] == "active"


def test_an_order_without_licenses_has_no_licenses_section(dashboard, v1):
    product, _ = key_product(v1, 1)
    unpaid = place_order(v1, product["id"])
    assert "<h2>Licenses</h2>" not in text_of(dashboard.get(f"/dashboard/orders/{unpaid['id']}"))


@pytest.mark.parametrize("token", [None, "forged"])
def test_a_license_form_without_its_csrf_token_is_refused(dashboard, v1, token):
    _, order = sold(v1)
    [lic] = licenses_of(v1, order_id=order["id"])
    fields = status_form(text_of(dashboard.get(f"/dashboard/orders/{order['id']}")), lic["id"])
    fields.pop("csrf_token") if token is None else fields.update(csrf_token=token)
    answer = dashboard.post(f"/dashboard/licenses/{lic['id']}", data=fields)
    assert answer.status_code == 400
    assert CSRF_REFUSED in answer.get_data(as_text=True)
    assert json_body(v1.get(f"/v1/licenses/{lic['id']}"))["status"] == "active"


def test_a_license_form_sent_twice_runs_once(dashboard, v1):
    """Disable, then enable, then the Disable form again (a reload): it lands where it did
    the first time and the license stays enabled."""
    _, order = sold(v1)
    [lic] = licenses_of(v1, order_id=order["id"])
    path = f"/dashboard/orders/{order['id']}"
    disable = status_form(text_of(dashboard.get(path)), lic["id"])
    first = dashboard.post(f"/dashboard/licenses/{lic['id']}", data=disable)
    dashboard.post(f"/dashboard/licenses/{lic['id']}",
                   data=status_form(text_of(dashboard.get(path)), lic["id"]))
    again = dashboard.post(f"/dashboard/licenses/{lic['id']}", data=disable)
    assert again.status_code == 303 and again.headers["Location"] == first.headers["Location"]
    assert json_body(v1.get(f"/v1/licenses/{lic['id']}"))["status"] == "active"
    updates = json_body(v1.get("/v1/events", params={"type": "license.updated"}))["data"]
    assert len(updates) == 2


def test_the_activation_limit_is_set_and_cleared_with_the_apis_messages(dashboard, v1):
    _, order = sold(v1)
    [lic] = licenses_of(v1, order_id=order["id"])
    path = f"/dashboard/orders/{order['id']}"
    for typed, kept in (("3", 3), ("", None)):
        fields = limit_form(text_of(dashboard.get(path)), lic["id"])
        answer = dashboard.post(f"/dashboard/licenses/{lic['id']}",
                                data={**fields, "activation_limit": typed})
        assert answer.status_code == 303 and answer.headers["Location"] == path
        assert json_body(v1.get(f"/v1/licenses/{lic['id']}"))["activation_limit"] == kept
        assert f"0 of {kept or 'unlimited'}" in license_row(text_of(dashboard.get(path)),
                                                            lic["id"])

    expected = v1.patch(f"/v1/licenses/{lic['id']}", json={"activation_limit": 0}).json()
    fields = limit_form(text_of(dashboard.get(path)), lic["id"])
    dashboard.post(f"/dashboard/licenses/{lic['id']}", data={**fields, "activation_limit": "0"})
    [message] = flashes(text_of(dashboard.get(path)), "error")
    assert expected["errors"]["activation_limit"] in message
    assert json_body(v1.get(f"/v1/licenses/{lic['id']}"))["activation_limit"] is None


def test_a_license_of_the_other_mode_is_not_found(dashboard, v1):
    _, order = sold(v1)
    [lic] = licenses_of(v1, order_id=order["id"])
    fields = status_form(text_of(dashboard.get(f"/dashboard/orders/{order['id']}")), lic["id"])
    with dashboard.session_transaction("/dashboard/") as session:
        session["mode"] = "live"
    assert dashboard.post(f"/dashboard/licenses/{lic['id']}", data=fields).status_code == 303
    html = text_of(dashboard.get("/dashboard/licenses"))  # the order page is not found either
    assert any(lic["id"] in message for message in flashes(html, "error"))
    assert lic["key"] not in html
    assert json_body(v1.get(f"/v1/licenses/{lic['id']}"))["status"] == "active"


def test_a_replaced_or_refunded_license_shows_why_and_offers_no_enable(dashboard, v1, clock,
                                                                        tick):
    _, order = sold(v1, qty=2, keys=3)
    old, kept = order["delivery"]["keys"]
    json_body(v1.post(f"/v1/orders/{order['id']}/replace", json={"key": old},
                      headers={"Idempotency-Key": "replace"}))
    by_key = {lic["key"]: lic for lic in licenses_of(v1, order_id=order["id"])}
    kept_id = by_key[kept]["id"]
    json_body(v1.patch(f"/v1/licenses/{kept_id}", json={"status": "disabled"}))
    path = f"/dashboard/orders/{order['id']}"
    for page in (path, "/dashboard/licenses",
                 f"/dashboard/customers/{order['customer_id']}"):
        html = text_of(dashboard.get(page))
        replaced = license_row(html, by_key[old]["id"])
        assert status_shown(html, by_key[old]["id"]) == "disabled"
        assert "replaced" in replaced and ">Enable<" not in replaced
        assert limit_form(html, by_key[old]["id"])  # the limit can still be changed
        assert ">Enable<" in license_row(html, kept_id)  # only disabled by the merchant
        assert "replaced" not in license_row(html, kept_id)

    json_body(v1.post(f"/v1/orders/{order['id']}/refund", json={},
                      headers={"Idempotency-Key": "refund"}))
    tick("process_refunds")  # sends
    clock.advance(1)
    tick("process_refunds")  # settles
    html = text_of(dashboard.get(path))
    refunded = license_row(html, kept_id)
    assert "refunded" in refunded and ">Enable<" not in refunded


# --- a license's instances on the order page --------------------------------------------

def activate(client, key: str, name: str, fingerprint: str) -> dict:
    """The public activation a buyer's program makes: no API key."""
    return json_body(client.post("/v1/licenses/activate", json={
        "license_key": key, "instance_name": name, "fingerprint": fingerprint}), 201)


def remove_forms(html: str, license_id: str) -> dict[str, dict]:
    """The Remove form of each of a license's instances, by the form's action."""
    collector = FormCollector()
    collector.feed(html)
    prefix = f"/dashboard/licenses/{license_id}/instances/"
    return {action: fields for action, fields in collector.forms if action.startswith(prefix)}


def test_the_order_page_shows_instances_and_removes_one_once(dashboard, client, v1):
    _, order = sold(v1)
    [lic] = licenses_of(v1, order_id=order["id"])
    json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"activation_limit": 2}))
    first = activate(client, lic["key"], "Ada's laptop", "fp-ada")["instance"]
    second = activate(client, lic["key"], "Build box", "fp-build")["instance"]
    path = f"/dashboard/orders/{order['id']}"
    html = text_of(dashboard.get(path))
    assert "2 of 2" in license_row(html, lic["id"])
    for instance, name in ((first, "Ada&#39;s laptop"), (second, "Build box")):
        row = re.search(rf'<tr id="{instance["id"]}">.*?</tr>', html, re.S).group(0)
        assert name in row and instance["fingerprint"] in row and instance["created_at"] in row
    forms_by_action = remove_forms(html, lic["id"])
    action = f"/dashboard/licenses/{lic['id']}/instances/{first['id']}/delete"
    assert len(forms_by_action) == 2 and action in forms_by_action

    refused = dashboard.post(action, data={k: v for k, v in forms_by_action[action].items()
                                           if k != "csrf_token"})
    assert refused.status_code == 400
    answer = dashboard.post(action, data=forms_by_action[action])
    assert answer.status_code == 303 and answer.headers["Location"] == path
    again = dashboard.post(action, data=forms_by_action[action])  # a reload
    assert again.status_code == 303 and again.headers["Location"] == path
    detail = json_body(v1.get(f"/v1/licenses/{lic['id']}"))
    assert [i["id"] for i in detail["instances"]] == [second["id"]]
    assert detail["activations"] == 1
    removals = json_body(v1.get("/v1/events", params={"type": "license.deactivated"}))["data"]
    assert len(removals) == 1
    html = text_of(dashboard.get(path))
    assert f'<tr id="{first["id"]}">' not in html and "1 of 2" in license_row(html, lic["id"])
    assert any("removed" in message for message in flashes(html, "info"))
    assert not flashes(html, "error")
    activate(client, lic["key"], "New laptop", "fp-new")  # the freed slot is taken


def test_a_buyers_instance_name_is_shown_escaped(dashboard, client, v1):
    _, order = sold(v1)
    [lic] = licenses_of(v1, order_id=order["id"])
    activate(client, lic["key"], "<script>alert(1)</script>", '"><img src=x onerror=alert(2)>')
    html = text_of(dashboard.get(f"/dashboard/orders/{order['id']}"))
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;&gt;&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<script>alert(1)" not in html and "<img src=x" not in html


# --- replacing a key on the order page --------------------------------------------------------

def replace_forms(html: str, order_id: str) -> dict[str, dict]:
    """The Replace form of each delivered key, by key."""
    return {form["key"]: form for form in forms(html, f"/dashboard/orders/{order_id}/replace")}


def pool_of(v1, product_id: str, status: str) -> list[str]:
    return sorted(k["key"] for k in json_body(v1.get(
        f"/v1/products/{product_id}/keys", params={"status": status}))["data"])


def test_a_delivered_key_is_replaced_once_from_the_order_page(dashboard, v1):
    product, order = sold(v1, qty=2, keys=3)
    old, kept = order["delivery"]["keys"]
    [fresh] = pool_of(v1, product["id"], "available")
    path = f"/dashboard/orders/{order['id']}"
    html = text_of(dashboard.get(path))
    forms_by_key = replace_forms(html, order["id"])
    assert sorted(forms_by_key) == sorted([old, kept])
    sent = {**forms_by_key[old], "reason": "buyer says it is rejected"}

    answer = dashboard.post(f"{path}/replace", data=sent)
    assert answer.status_code == 303 and answer.headers["Location"] == path
    after = json_body(v1.get(f"/v1/orders/{order['id']}"))
    assert after["delivery"]["keys"] == [fresh, kept]
    assert pool_of(v1, product["id"], "burned") == [old]
    by_key = {lic["key"]: lic for lic in licenses_of(v1, order_id=order["id"])}
    assert {key: lic["status"] for key, lic in by_key.items()} == {
        old: "disabled", kept: "active", fresh: "active"}
    [event] = json_body(v1.get("/v1/events", params={"type": "order.key_replaced"}))["data"]
    assert event["data"]["replacement"]["reason"] == "buyer says it is rejected"
    html = text_of(dashboard.get(path))
    assert any(old in message and "burned" in message for message in flashes(html, "info"))
    assert sorted(replace_forms(html, order["id"])) == sorted([fresh, kept])
    assert status_shown(html, by_key[old]["id"]) == "disabled"

    again = dashboard.post(f"{path}/replace", data=sent)  # a double click or a reload
    assert again.status_code == 303 and again.headers["Location"] == path
    assert json_body(v1.get(f"/v1/orders/{order['id']}"))["delivery"]["keys"] == [fresh, kept]
    assert len(json_body(v1.get("/v1/events", params={"type": "order.key_replaced"}))[
        "data"]) == 1


def test_an_empty_pool_shows_the_apis_message_and_replaces_nothing(dashboard, v1):
    product, order = sold(v1, keys=1)
    [key] = order["delivery"]["keys"]
    path = f"/dashboard/orders/{order['id']}"
    expected = v1.post(f"/v1/orders/{order['id']}/replace", json={"key": key},
                       headers={"Idempotency-Key": "dashboard-empty-pool"}).json()
    form = replace_forms(text_of(dashboard.get(path)), order["id"])[key]
    assert dashboard.post(f"{path}/replace", data=form).status_code == 303
    [message] = flashes(text_of(dashboard.get(path)), "error")
    assert expected["errors"]["key"] in message
    assert json_body(v1.get(f"/v1/orders/{order['id']}"))["delivery"]["keys"] == [key]
    assert pool_of(v1, product["id"], "burned") == []


def test_a_replace_form_without_its_csrf_token_is_refused(dashboard, v1):
    _, order = sold(v1)
    [key] = order["delivery"]["keys"]
    path = f"/dashboard/orders/{order['id']}"
    form = replace_forms(text_of(dashboard.get(path)), order["id"])[key]
    del form["csrf_token"]
    answer = dashboard.post(f"{path}/replace", data=form)
    assert answer.status_code == 400 and CSRF_REFUSED in answer.get_data(as_text=True)
    assert json_body(v1.get(f"/v1/orders/{order['id']}"))["delivery"]["keys"] == [key]


def test_only_a_completed_key_order_offers_replace(dashboard, v1):
    product, _ = key_product(v1, 2)
    unpaid = place_order(v1, product["id"])
    account = make_product(v1, type="account", delivery_text="login: a", stock=2)
    other = pay(v1, place_order(v1, account["id"])["id"])
    for order in (unpaid, other):
        html = text_of(dashboard.get(f"/dashboard/orders/{order['id']}"))
        assert not replace_forms(html, order["id"])


# --- the customer page --------------------------------------------------------------------

def test_the_customer_page_lists_the_buyers_licenses_and_acts_on_them(dashboard, v1):
    email = "licensed-buyer@example.com"
    product, order = sold(v1, customer_email=email)
    later = pay(v1, place_order(v1, product["id"], customer_email=email)["id"])
    sold(v1)  # another buyer's
    mine = licenses_of(v1, customer_email=email)
    assert {lic["order_id"] for lic in mine} == {order["id"], later["id"]}
    path = f"/dashboard/customers/{order['customer_id']}"
    html = text_of(dashboard.get(path))
    assert re.findall(r'<tr id="(lic_\w+)">', html) == [lic["id"] for lic in mine]
    assert f'href="/dashboard/orders/{later["id"]}"' in license_row(html, mine[0]["id"])

    answer = dashboard.post(f"/dashboard/licenses/{mine[1]['id']}",
                            data=status_form(html, mine[1]["id"]))
    assert answer.headers["Location"] == path
    assert status_shown(text_of(dashboard.get(path)), mine[1]["id"]) == "disabled"
    assert json_body(v1.get(f"/v1/licenses/{mine[1]['id']}"))["status"] == "disabled"


# --- the licenses list --------------------------------------------------------------------

def test_the_licenses_page_is_in_the_navigation(dashboard):
    assert 'href="/dashboard/licenses"' in text_of(dashboard.get("/dashboard/"))
    assert "No licenses." in text_of(dashboard.get("/dashboard/licenses"))


def test_the_licenses_list_finds_a_license_by_its_key_or_its_start(dashboard, v1):
    product = make_product(v1)
    keys = ["ALPHA-0001", "ALPHA-0002", "BETA-0001", "AL*PHA-9", "AL[PHA-9"]
    json_body(v1.post(f"/v1/products/{product['id']}/keys", json={"keys": keys}), 201)
    orders = [pay(v1, place_order(v1, product["id"])["id"]) for _ in keys]
    by_key = {o["delivery"]["keys"][0]: o for o in orders}

    def found(**params) -> list[str]:
        html = text_of(dashboard.get("/dashboard/licenses", params=params))
        return re.findall(r"<td><code>([^<]+)</code>", html)

    assert found(key="ALPHA-0002") == ["ALPHA-0002"]
    assert sorted(found(key="ALPHA")) == ["ALPHA-0001", "ALPHA-0002"]
    assert sorted(found(key=" AL")) == sorted(k for k in keys if k.startswith("AL"))
    assert found(key="AL*") == ["AL*PHA-9"]  # wildcards are plain characters
    assert found(key="AL[") == ["AL[PHA-9"]
    assert found(key="alpha") == [] and found(key="0001") == []
    html = text_of(dashboard.get("/dashboard/licenses", params={"key": "BETA-0001"}))
    assert f'href="/dashboard/orders/{by_key["BETA-0001"]["id"]}"' in html
    assert 'value="BETA-0001"' in html  # the search stays in the box


def test_the_licenses_list_filters_by_status_and_buyer_and_reports_bad_filters(dashboard, v1):
    _, order = sold(v1, qty=2, customer_email="Filter-Me@example.com")
    sold(v1)
    [disabled, active] = licenses_of(v1, order_id=order["id"])
    json_body(v1.patch(f"/v1/licenses/{disabled['id']}", json={"status": "disabled"}))

    def ids(**params) -> list[str]:
        html = text_of(dashboard.get("/dashboard/licenses", params=params))
        return re.findall(r'<tr id="(lic_\w+)">', html)

    assert ids(status="disabled") == [disabled["id"]]
    assert ids(customer_email="FILTER-me@example.com") == [disabled["id"], active["id"]]
    assert ids(customer_email="filter-me@example.com", status="active") == [active["id"]]
    assert len(ids()) == 3
    html = text_of(dashboard.get("/dashboard/licenses", params={"status": "lost"}))
    assert any("status" in message for message in flashes(html, "error"))
    assert len(re.findall(r'<tr id="lic_', html)) == 3  # the bad filter is dropped


def test_the_licenses_list_pages_with_its_filters(dashboard, v1):
    product, keys = key_product(v1, 3)
    for _ in keys:
        pay(v1, place_order(v1, product["id"])["id"])
    seen, url = [], "/dashboard/licenses?limit=1&key=" + keys[0][:8]
    while url:
        html = text_of(dashboard.get(url.replace("&amp;", "&")))
        seen += re.findall(r"<td><code>([^<]+)</code>", html)
        older = re.search(r'<a href="([^"]+)">Older', html)
        url = older and older.group(1)
    assert sorted(seen) == sorted(keys)


def test_every_list_pages_past_its_second_page(dashboard, v1):
    """The Older link keeps working on a page that already has a cursor."""
    product, _ = key_product(v1, 3)
    for _ in range(3):
        place_order(v1, product["id"])
    url, pages = "/dashboard/orders?limit=1", 0
    while url:
        html = text_of(dashboard.get(url.replace("&amp;", "&")))
        older = re.search(r'<a href="([^"]+)">Older', html)
        url, pages = older and older.group(1), pages + 1
    assert pages == 3


# --- the key pool on the product page -----------------------------------------------------

def pool_keys(html: str) -> list[tuple[str, str]]:
    """The pool table's (key, status) rows."""
    return re.findall(r"<tr><td><code>([^<]+)</code></td><td>(\w+)</td>", html)


def test_the_pool_is_shown_by_status(dashboard, v1):
    product, keys = key_product(v1, 4)
    sold_key = pay(v1, place_order(v1, product["id"])["id"])["delivery"]["keys"][0]
    reserved = place_order(v1, product["id"])
    path = f"/dashboard/products/{product['id']}"
    every = pool_keys(text_of(dashboard.get(path)))
    assert [key for key, _ in every] == keys[::-1]
    assert dict(every)[sold_key] == "sold"
    available = pool_keys(text_of(dashboard.get(path, params={"status": "available"})))
    assert len(available) == 2 and {status for _, status in available} == {"available"}
    assert pool_keys(text_of(dashboard.get(path, params={"status": "sold"}))) == [
        (sold_key, "sold")]
    [(_, status)] = pool_keys(text_of(dashboard.get(path, params={"status": "reserved"})))
    assert status == "reserved" and reserved["id"]
    html = text_of(dashboard.get(path, params={"status": "burned"}))
    assert pool_keys(html) == [] and "No burned keys." in html
    for tab in ("available", "reserved", "sold", "burned"):
        assert f'href="{path}?status={tab}"' in html
    assert f'href="{path}?status=burned" aria-current="page"' in html


def test_deleting_an_available_key_keeps_the_tab_and_updates_the_stock(dashboard, v1):
    product, keys = key_product(v1, 3)
    pay(v1, place_order(v1, product["id"])["id"])
    path = f"/dashboard/products/{product['id']}"
    tab = f"{path}?status=available"
    html = text_of(dashboard.get(tab))
    assert "stock 2" in html
    delete_forms = [(action, fields) for action, fields in _all_forms(html)
                    if action.endswith("/delete")]
    assert len(delete_forms) == 2  # the available keys only
    action, fields = delete_forms[0]
    answer = dashboard.post(action, data=fields)
    assert answer.status_code == 303 and answer.headers["Location"] == tab
    assert get_product(v1, product["id"])["stock"] == 1
    html = text_of(dashboard.get(tab))
    assert "stock 1" in html and len(pool_keys(html)) == 1

    action, fields = [(a, f) for a, f in _all_forms(html) if a.endswith("/delete")][0]
    refused = dashboard.post(action, data={k: v for k, v in fields.items()
                                           if k != "csrf_token"})
    assert refused.status_code == 400 and get_product(v1, product["id"])["stock"] == 1


def _all_forms(html: str) -> list[tuple[str, dict]]:
    collector = FormCollector()
    collector.feed(html)
    return collector.forms


# --- the low-stock threshold on the product forms ---------------------------------------

def test_the_new_product_form_sets_the_low_stock_threshold(dashboard, v1):
    html = text_of(dashboard.get("/dashboard/products"))
    [fields] = forms(html, "/dashboard/products")
    answer = dashboard.post("/dashboard/products", data={
        **fields, "name": "Threshold Keys", "type": "license_key", "price": "9.00",
        "currency": "USD", "low_stock_threshold": "4"})
    assert answer.status_code == 303
    product_id = answer.headers["Location"].rsplit("/", 1)[1]
    assert get_product(v1, product_id)["low_stock_threshold"] == 4
    assert 'name="low_stock_threshold" inputmode="numeric" value="4"' in text_of(
        dashboard.get(answer.headers["Location"]))


def create_key_product(dashboard, activation_limit: str) -> str:
    """A license_key product made with the new product form; its dashboard path."""
    [fields] = forms(text_of(dashboard.get("/dashboard/products")), "/dashboard/products")
    answer = dashboard.post("/dashboard/products", data={
        **fields, "name": "Limited Keys", "type": "license_key", "price": "9.00",
        "currency": "USD", "activation_limit": activation_limit})
    assert answer.status_code == 303
    return answer.headers["Location"]


def test_the_product_forms_set_and_clear_the_activation_limit(dashboard, v1):
    path = create_key_product(dashboard, "3")
    product_id = path.rsplit("/", 1)[1]
    assert get_product(v1, product_id)["activation_limit"] == 3
    field = 'name="activation_limit" inputmode="numeric" value="{}"'
    assert field.format(3) in text_of(dashboard.get(path))

    for typed, kept in (("5", 5), ("", None), ("0", None)):
        html = text_of(dashboard.get(path))
        [edit] = forms(html, path)
        dashboard.post(path, data={**edit, "name": "Limited Keys", "activation_limit": typed})
        assert get_product(v1, product_id)["activation_limit"] == kept
    html = text_of(dashboard.get(path))
    assert field.format("") in html
    assert any("activation_limit" in message for message in flashes(html, "error"))  # the 0

    unlimited = create_key_product(dashboard, "")
    assert get_product(v1, unlimited.rsplit("/", 1)[1])["activation_limit"] is None
    account = make_product(v1, type="account", delivery_text="login: a", stock=2)
    assert 'name="activation_limit"' not in text_of(
        dashboard.get(f"/dashboard/products/{account['id']}"))


# --- in Chromium --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """A real server with the dashboard password set."""
    server = start_shop(tmp_path_factory.mktemp("licenses"))
    yield server
    server.stop(signal.SIGKILL)


def test_find_a_license_by_key_and_disable_it_from_its_order(shop, browser):
    admin = shop.admin
    product, keys = key_product(admin, 2)
    order = paid_order(admin, product["id"])
    [lic] = licenses_of(admin, order_id=order["id"])
    context = browser.new_context(**DESKTOP)
    try:
        page = context.new_page()
        watch = PageWatch(page)
        sign_in_page(page, shop)
        page.get_by_role("link", name="Licenses").click()
        page.wait_for_url(re.compile(r"/dashboard/licenses$"))
        page.fill("input[name=key]", lic["key"][:12])
        page.get_by_role("button", name="Search").click()
        row = page.locator(f"tr#{lic['id']}")
        expect(row).to_contain_text(lic["key"])
        expect(page.locator("tr[id^=lic_]")).to_have_count(1)

        row.get_by_role("link", name=order["id"]).click()
        page.wait_for_url(re.compile(rf"/dashboard/orders/{order['id']}$"))
        row = page.locator(f"tr#{lic['id']}")
        row.get_by_role("button", name="Disable").click()
        expect(page.locator(".flash.info")).to_contain_text("disabled")
        expect(row.locator(".license-status")).to_have_text("disabled")
        expect(row.get_by_role("button", name="Enable")).to_be_visible()
        assert not watch.errors and not watch.csp_violations(), watch.console
    finally:
        context.close()
    assert json_body(admin.get(f"/v1/licenses/{lic['id']}"))["status"] == "disabled"
