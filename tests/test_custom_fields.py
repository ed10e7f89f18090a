"""Custom checkout fields (docs/api.md, Custom fields): the definitions a product takes, the
values an order keeps and every error of both, the values in events, in the dynamic
delivery request and in `delivery_text`; the storefront form (plain posts and Chromium) and
the dashboard's product form and order page."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta

import pytest
from playwright.sync_api import expect

from sellix_lite.services import custom_fields

from conftest import assert_problem
from support import (
    Reply,
    assert_invalid,
    buyer,
    fetch,
    get_product,
    json_body,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)

DISCORD = {"name": "discord", "label": "Discord username", "type": "text", "required": True,
           "max_length": 32}
SIZE = {"name": "size", "label": "T-shirt size", "type": "select", "required": False,
        "options": ["S", "M", "L"]}
SEATS = {"name": "seats", "label": "Seats", "type": "number", "required": False}
BILLING = {"name": "billing", "label": "Billing email", "type": "email", "required": False}
TERMS = {"name": "terms", "label": "I accept the terms", "type": "checkbox", "required": True}
EVERY_KIND = [DISCORD, SIZE, SEATS, BILLING, TERMS]
GOOD = {"discord": "ada#1815", "size": "M", "seats": 2.5, "billing": "ap@example.com",
        "terms": True}


def fielded(v1, fields=EVERY_KIND, **extra) -> dict:
    """An account product asking `fields`, delivering a text that uses one."""
    return make_product(v1, type="account", custom_fields=fields,
                        delivery_text=extra.pop("delivery_text", "invite for {{ custom.discord }}"),
                        **extra)


def order_with(v1, product: dict, values: dict):
    return v1.post("/v1/orders", json={"product_id": product["id"], "customer_email": buyer(),
                                       "custom_fields": values})


# --- definitions ----------------------------------------------------------------------------

def test_definitions_are_kept_shown_and_replaced_on_patch(v1):
    plain = make_product(v1, type="account", delivery_text="x")
    assert plain["custom_fields"] == [] and get_product(v1, plain["id"])["custom_fields"] == []
    product = fielded(v1, [{"name": "discord", "label": " Discord ", "type": "text"}, SIZE])
    expected = [{"name": "discord", "label": "Discord", "type": "text", "required": False,
                 "max_length": 500}, SIZE]
    assert product["custom_fields"] == expected
    assert get_product(v1, product["id"])["custom_fields"] == expected
    patched = json_body(v1.patch(f"/v1/products/{product['id']}",
                                 json={"custom_fields": [TERMS]}))
    assert patched["custom_fields"] == [TERMS]
    assert get_product(v1, product["id"])["custom_fields"] == [TERMS]
    cleared = json_body(v1.patch(f"/v1/products/{product['id']}", json={"custom_fields": []}))
    assert cleared["custom_fields"] == []


@pytest.mark.parametrize("fields, says", [
    ([{**DISCORD, "name": "Discord"}], "item 0: name must be 1 to 40 lowercase"),
    ([{**DISCORD, "name": "d" * 41}], "item 0: name must be 1 to 40"),
    ([{**DISCORD, "name": ""}], "item 0: name must be 1 to 40"),
    ([{**DISCORD, "label": ""}], "item 0: label must be a string of 1 to 100"),
    ([{**DISCORD, "label": "x" * 101}], "item 0: label must be a string of 1 to 100"),
    ([{**DISCORD, "type": "date"}], "item 0: type must be one of: text, number"),
    ([{**DISCORD, "required": "yes"}], "item 0: required must be true or false"),
    ([{"label": "x", "type": "text"}], "item 0: name is required"),
    ([{**DISCORD, "colour": "red"}], "item 0: colour is not a known parameter"),
    ([DISCORD, {**SIZE, "options": []}], "item 1: options must be a list of 1 to 50"),
    ([{**SIZE, "options": [str(n) for n in range(51)]}], "item 0: options must be a list"),
    ([{**SIZE, "options": [""]}], "item 0: options item 0: must be a string of 1 to 100"),
    ([{**SIZE, "options": None}], "options must not be null"),
    ([{k: v for k, v in SIZE.items() if k != "options"}], "item 0 (size): a select field "
                                                         "needs options"),
    ([SIZE, {**DISCORD, "options": ["a"]}], "item 1 (discord): options is only for select fields"),
    ([{**SEATS, "max_length": 5}], "item 0 (seats): max_length is only for text fields"),
    ([{**DISCORD, "max_length": 501}], "item 0: max_length must be an integer from 1 to 500"),
    ([{**DISCORD, "max_length": 0}], "item 0: max_length must be an integer from 1 to 500"),
    ([DISCORD, SIZE, {**TERMS, "name": "size"}], "item 2 (size): its name is used by an "
                                                 "earlier field"),
    ([{**DISCORD, "name": f"f{n}"} for n in range(11)], "must be a list of 0 to 10 items"),
    ({"discord": DISCORD}, "must be a list"),
    (["discord"], "item 0: must be an object"),
])
def test_each_definition_rule_is_a_422_naming_the_item(v1, fields, says):
    for response in (v1.post("/v1/products", json={
            "name": "Fielded", "type": "account", "price_cents": 100, "currency": "USD",
            "custom_fields": fields}),
            v1.patch(f"/v1/products/{make_product(v1)['id']}",
                     json={"custom_fields": fields})):
        body = assert_invalid(response, "custom_fields", exact=True)
        assert says in body["errors"]["custom_fields"], body


def test_ten_fields_and_fifty_options_are_the_limits(v1):
    ten = [{**DISCORD, "name": f"f{n}"} for n in range(9)] + \
        [{**SIZE, "options": [f"o{n}" for n in range(50)]}]
    assert len(fielded(v1, ten)["custom_fields"]) == 10


# --- order values ------------------------------------------------------------------------------

def test_values_are_kept_on_the_order_in_the_api_and_events(v1, app_db):
    product = fielded(v1)
    order = json_body(order_with(v1, product, {**GOOD, "billing": " AP@example.com "}), 201)
    kept = {**GOOD, "billing": "AP@example.com"}
    assert order["custom_fields"] == kept
    assert fetch(v1, order["id"])["custom_fields"] == kept
    assert list(order["custom_fields"]) == ["discord", "size", "seats", "billing", "terms"]
    pay(v1, order["id"])
    events = {kind: json.loads(data)["object"] for kind, data in app_db.query(
        "SELECT type, data FROM events WHERE json_extract(data, '$.object.id') = ?",
        (order["id"],))}
    assert {"order.created", "order.paid"} <= set(events)
    for kind in ("order.created", "order.paid"):
        assert events[kind]["custom_fields"] == kept, kind
    listed = json_body(v1.get("/v1/orders", params={"customer_email": order["customer_email"]}))
    assert listed["data"][0]["custom_fields"] == kept


def test_an_order_without_fields_shows_an_empty_object(v1):
    product = make_product(v1, type="account", delivery_text="x")
    assert place_order(v1, product["id"])["custom_fields"] == {}
    optional = fielded(v1, [SIZE, SEATS])
    assert place_order(v1, optional["id"])["custom_fields"] == {}


def test_unknown_names_are_one_error_on_custom_fields(v1):
    product = fielded(v1)
    body = assert_invalid(order_with(v1, product, {**GOOD, "twitter": "@ada", "x": 1}),
                          "custom_fields", exact=True)
    assert "'twitter', 'x'" in body["errors"]["custom_fields"]
    assert "it takes: discord, size, seats, billing, terms" in body["errors"]["custom_fields"]
    plain = make_product(v1, type="account", delivery_text="x")
    body = assert_invalid(order_with(v1, plain, {"discord": "ada"}), "custom_fields",
                          exact=True)
    assert "(it takes: none)" in body["errors"]["custom_fields"]


@pytest.mark.parametrize("name, value", [
    ("discord", 42), ("discord", ""), ("discord", "x" * 33), ("discord", "tab\there"),
    ("discord", None), ("discord", ["ada"]),
    ("seats", "2"), ("seats", True), ("seats", None), ("seats", {"n": 2}),
    ("billing", "not-an-email"), ("billing", "ada@localhost"), ("billing", "Ada <a@b.co>"),
    ("billing", 7),
    ("size", "XL"), ("size", "m"), ("size", 1),
    ("terms", "true"), ("terms", 1), ("terms", False),
])
def test_a_value_of_the_wrong_kind_is_an_error_on_its_field(v1, name, value):
    product = fielded(v1)
    response = order_with(v1, product, {**GOOD, name: value})
    body = assert_invalid(response, f"custom_fields.{name}", exact=True)
    assert not body["errors"][f"custom_fields.{name}"].startswith("custom_fields")


@pytest.mark.parametrize("name", ["discord", "terms"])
def test_a_required_value_missing_is_an_error_on_its_field(v1, name):
    values = {key: value for key, value in GOOD.items() if key != name}
    body = assert_invalid(order_with(v1, fielded(v1), values), f"custom_fields.{name}",
                          exact=True)
    assert body["errors"][f"custom_fields.{name}"] == "is required"


def test_every_error_of_an_order_is_reported_at_once_and_nothing_is_reserved(v1):
    product = fielded(v1, stock=1)
    body = assert_invalid(order_with(v1, product, {"seats": "2", "nick": "x"}),
                          "custom_fields", "custom_fields.discord", "custom_fields.seats",
                          "custom_fields.terms", exact=True)
    assert body["errors"]["custom_fields.seats"].startswith("must be a number")
    assert get_product(v1, product["id"])["stock"] == 1


def test_a_quote_refuses_the_values_create_refuses_and_prices_good_ones(v1):
    product = fielded(v1, price_cents=700)
    bad = {"product_id": product["id"], "customer_email": buyer(),
           "custom_fields": {"seats": "2", "nick": "x"}}
    quoted = v1.post("/v1/orders/quote", json=bad)
    assert quoted.json()["errors"] == v1.post("/v1/orders", json=bad).json()["errors"]
    assert_invalid(quoted, "custom_fields", "custom_fields.discord", "custom_fields.seats",
                   "custom_fields.terms", exact=True)
    good = {**bad, "custom_fields": GOOD}
    assert json_body(v1.post("/v1/orders/quote", json=good))["total_cents"] == 700


@pytest.mark.parametrize("seats", [10 ** 309, -(10 ** 400), 2 ** 53 + 1, 1e300])
def test_a_number_beyond_what_json_readers_hold_exactly_is_refused(v1, seats):
    product = fielded(v1)
    for path in ("/v1/orders/quote", "/v1/orders"):
        body = assert_invalid(v1.post(path, json={
            "product_id": product["id"], "customer_email": buyer(),
            "custom_fields": {**GOOD, "seats": seats}}), "custom_fields.seats", exact=True)
        assert body["errors"]["custom_fields.seats"] == (
            "must be a number from -9007199254740992 to 9007199254740992")


def test_the_largest_numbers_and_trimmed_text_are_kept(v1):
    order = json_body(order_with(v1, fielded(v1), {**GOOD, "seats": -(2 ** 53),
                                                   "discord": "  ada  "}), 201)
    assert order["custom_fields"]["seats"] == -(2 ** 53)
    assert order["custom_fields"]["discord"] == "ada"
    body = assert_invalid(order_with(v1, fielded(v1), {**GOOD, "discord": "   "}),
                          "custom_fields.discord", exact=True)
    assert body["errors"]["custom_fields.discord"].startswith("must be")


def test_values_are_an_object(v1):
    response = order_with(v1, fielded(v1), ["ada"])
    assert assert_invalid(response, "custom_fields", exact=True)["errors"][
        "custom_fields"] == "must be an object of values by field name"


def test_not_a_number_is_not_a_number(v1):
    response = v1.post("/v1/orders", data='{"product_id": "%s", "customer_email": "a@b.co", '
                       '"custom_fields": {"discord": "ada", "terms": true, "seats": NaN}}'
                       % fielded(v1)["id"], headers={"Content-Type": "application/json"})
    assert_invalid(response, "custom_fields.seats", exact=True)


def test_values_for_codes_say_required_or_invalid():
    product = {"custom_fields": json.dumps(EVERY_KIND)}
    with pytest.raises(Exception) as caught:
        custom_fields.values_for(product, {"terms": False, "seats": "x"})
    assert caught.value.codes == {"custom_fields.discord": "required",
                                  "custom_fields.terms": "required",
                                  "custom_fields.seats": "invalid"}


# --- where the values go --------------------------------------------------------------------

def test_delivery_text_takes_the_values_as_plain_text(v1):
    product = fielded(v1, [DISCORD, SIZE, SEATS, TERMS, {**BILLING, "name": "other"}],
                      delivery_text="Hi {{ custom.discord }} ({{custom.size}}, "
                                    "{{ custom.seats }}, {{ custom.terms }}, "
                                    "[{{ custom.other }}] {{ custom.unknown }}) {{ other }}")
    order = json_body(order_with(v1, product, {
        "discord": "{{ custom.size }}<b>", "size": "L", "seats": 3, "terms": True}), 201)
    delivered = pay(v1, order["id"])
    assert delivered["delivery"]["text"] == \
        "Hi {{ custom.size }}<b> (L, 3, yes, [] ) {{ other }}"


def test_a_script_in_a_value_stays_text_on_the_buyers_page(v1, client):
    product = fielded(v1, [DISCORD], delivery_text="user: {{ custom.discord }}")
    order = json_body(order_with(v1, product, {"discord": "<script>alert(1)</script>"}), 201)
    pay(v1, order["id"])
    path = order["payment"]["checkout_url"].split("://", 1)[1].split("/", 1)[1]
    html = client.get("/" + path).get_data(as_text=True)
    assert "user: &lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html


def test_the_dynamic_delivery_request_carries_the_values(v1, tick, receiver):
    receiver.plan("goods", Reply(200, b"KEY-1"))
    product = make_product(v1, type="dynamic", dynamic_url=receiver.url("goods"),
                           custom_fields=[DISCORD, SEATS])
    order = json_body(order_with(v1, product, {"discord": "ada", "seats": 4}), 201)
    pay(v1, order["id"])
    tick("deliver_dynamic")
    (request,) = receiver.requests("goods")
    assert json.loads(request.body)["custom_fields"] == {"discord": "ada", "seats": 4}
    assert fetch(v1, order["id"])["delivery"]["text"] == "KEY-1"


def test_a_dynamic_fallback_text_takes_the_values(v1, tick, receiver, clock):
    receiver.plan("down", Reply(500, b"down"))
    product = make_product(v1, type="dynamic", dynamic_url=receiver.url("down"),
                           custom_fields=[DISCORD], delivery_text="for {{ custom.discord }}")
    order = json_body(order_with(v1, product, {"discord": "grace"}), 201)
    pay(v1, order["id"])
    for _ in range(20):
        tick("deliver_dynamic")
        clock.advance(86400)
    assert fetch(v1, order["id"])["delivery"]["text"] == "for grace"


def test_a_renewal_keeps_the_values_the_product_still_defines(v1, clock, tick):
    product = make_product(v1, type="subscription", custom_fields=[DISCORD, SIZE],
                           delivery_text="seat of {{ custom.discord }}")
    first = pay(v1, json_body(order_with(v1, product, {"discord": "ada", "size": "S"}),
                              201)["id"])
    json_body(v1.patch(f"/v1/products/{product['id']}", json={"custom_fields": [DISCORD]}))
    end = first["subscription"]["current_period_end"]
    clock.set(_moment(end) - timedelta(days=1))
    tick("renew_subscriptions")
    renewal_id = json_body(v1.get(f"/v1/subscriptions/{first['subscription']['id']}"))[
        "renewal_order_id"]
    renewal = fetch(v1, renewal_id)
    assert renewal["custom_fields"] == {"discord": "ada"}
    assert pay(v1, renewal_id)["delivery"]["text"] == "seat of ada"


def test_a_renewal_opens_although_the_fields_were_added_to_or_tightened(v1, clock, tick):
    product = make_product(v1, type="subscription", custom_fields=[DISCORD],
                           delivery_text="seat of {{ custom.discord }}")
    first = pay(v1, json_body(order_with(v1, product, {"discord": "ada#1815"}), 201)["id"])
    json_body(v1.patch(f"/v1/products/{product['id']}", json={"custom_fields": [
        {**DISCORD, "max_length": 3}, TERMS]}))  # "ada#1815" is too long now, terms required
    clock.set(_moment(first["subscription"]["current_period_end"]) - timedelta(days=1))
    tick("renew_subscriptions")
    renewal_id = json_body(v1.get(f"/v1/subscriptions/{first['subscription']['id']}"))[
        "renewal_order_id"]
    assert renewal_id is not None
    assert fetch(v1, renewal_id)["custom_fields"] == {"discord": "ada#1815"}


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_the_document_describes_definitions_and_values(client):
    spec = json_body(client.get("/v1/openapi.json"))
    schemas = spec["components"]["schemas"]
    assert "custom_fields" in schemas["Product"]["required"]
    assert "custom_fields" in schemas["Order"]["required"]
    created = schemas["AccountProductCreate"]["properties"]["custom_fields"]
    variants = created["items"]["oneOf"]
    assert [v["properties"]["type"]["enum"] for v in variants] == \
        [["text"], ["select"], ["number", "email", "checkbox"]]
    assert "options" in variants[1]["required"] and "options" not in variants[0]["properties"]
    body = spec["paths"]["/v1/orders"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["properties"]["custom_fields"]["type"] == "object"


def test_a_problem_for_a_bad_value_is_a_422_problem(v1):
    assert_problem(order_with(v1, fielded(v1), {}), 422, "unprocessable")


# --- the storefront form ----------------------------------------------------------------------

def form_of(client, path: str) -> tuple[str, str]:
    """The page's HTML and the first form's CSRF token."""
    html = client.get(path).get_data(as_text=True)
    return html, re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def inputs(html: str) -> dict:
    """Each `custom.NAME` control's opening tag, by name."""
    return {match.group(2): match.group(0) for match in re.finditer(
        r'<(input|select)[^>]*name="custom\.(\w+)"[^>]*>', html)}


def test_the_product_page_has_one_plain_input_per_field(v1, client):
    product = fielded(v1)
    html, _ = form_of(client, f"/test/product/{product['slug']}")
    tags = inputs(html)
    assert list(tags) == ["discord", "size", "seats", "billing", "terms"]
    assert 'type="text"' in tags["discord"] and "required" in tags["discord"] \
        and 'maxlength="32"' in tags["discord"]
    assert tags["size"].startswith("<select") and "required" not in tags["size"]
    assert re.findall(r'<option value="([^"]*)"', html.split('name="custom.size"')[1]
                      .split("</select>")[0]) == ["", "S", "M", "L"]
    assert 'type="number"' in tags["seats"] and 'step="any"' in tags["seats"]
    assert 'type="email"' in tags["billing"] and "required" not in tags["billing"]
    assert 'type="checkbox"' in tags["terms"] and "required" in tags["terms"]
    assert "Discord username" in html and "T-shirt size <span class=\"muted\">(optional)" in html
    assert "<script" not in html.split('class="checkout"')[1].split("</form>")[0]


@pytest.mark.parametrize("typed, kept", [("3", 3), ("-2.5", -2.5), ("", None)])
def test_a_plain_form_post_gives_json_values(v1, client, typed, kept):
    product = fielded(v1)
    path = f"/test/product/{product['slug']}"
    _, token = form_of(client, path)
    answer = client.post(path + "/checkout", data={
        "csrf_token": token, "email": buyer(), "custom.discord": " ada ",
        "custom.size": "L", "custom.seats": typed, "custom.billing": "",
        "custom.terms": "true"})
    assert answer.status_code == 303, answer.get_data(as_text=True)
    order_id = re.search(r"/order/(ord_\w+)", answer.headers["Location"]).group(1)
    expected = {"discord": "ada", "size": "L", "terms": True}
    if kept is not None:
        expected["seats"] = kept
    assert fetch(v1, order_id)["custom_fields"] == expected
    page = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert re.search(r"<dt>Discord username</dt><dd>ada</dd>.*<dt>I accept the terms</dt>"
                     r"<dd>yes</dd>", page, re.S)


def test_refused_values_are_shown_by_their_inputs_and_kept(v1, client):
    product = fielded(v1)
    path = f"/test/product/{product['slug']}"
    _, token = form_of(client, path)
    answer = client.post(path + "/checkout", data={
        "csrf_token": token, "email": "kept@example.com", "custom.discord": "  ",
        "custom.size": "XL", "custom.seats": "lots", "custom.billing": "nope"})
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    after = {name: html.split(f'name="custom.{name}"', 1)[1] for name in inputs(html)}
    shown = {name: re.search(r'<p class="error" role="alert">([^<]+)</p>', rest).group(1)
             for name, rest in after.items()}
    assert shown == {"discord": "Please fill in this field.",
                     "size": "Please choose one of the options.",
                     "seats": "Please enter a number.",
                     "billing": "Please enter a valid email address.",
                     "terms": "Please tick this box."}
    tags = inputs(html)
    assert 'value="lots"' in tags["seats"] and 'value="nope"' in tags["billing"]
    assert "checked" not in tags["terms"] and 'value="kept@example.com"' in html
    _, token = form_of(client, path)
    too_long = client.post(path + "/checkout", data={
        "csrf_token": token, "email": buyer(), "custom.discord": "x" * 33,
        "custom.terms": "true"}).get_data(as_text=True)
    assert "Please use plain text of at most 32 characters." in too_long
    assert 'value="' + "x" * 33 + '"' in too_long


# --- the dashboard ------------------------------------------------------------------------------

def dashboard_form(dashboard, path: str, action: str) -> dict:
    """The hidden fields (CSRF token, form id) of the form posting to `action`."""
    html = dashboard.get(path).get_data(as_text=True)
    token, form_id = re.search(r'action="' + re.escape(action) + r'".*?name="csrf_token" '
                               r'value="([^"]+)".*?name="form_id" value="([^"]+)"',
                               html, re.S).groups()
    return {"csrf_token": token, "form_id": form_id}


def test_the_dashboard_defines_edits_and_removes_fields(app, client, v1):
    dashboard = signed_in_dashboard(app, client)
    created = dashboard.post("/dashboard/products", data={
        **dashboard_form(dashboard, "/dashboard/products", "/dashboard/products"),
        "name": "Fielded account", "type": "account", "price": "5", "currency": "USD",
        "delivery_text": "hi {{ custom.discord }}",
        "field-0-name": "discord", "field-0-label": "Discord username", "field-0-type": "text",
        "field-0-required": "on", "field-0-max_length": "32",
        "field-1-name": "size", "field-1-label": "Size", "field-1-type": "select",
        "field-1-options": "S\r\nM\r\n\r\n L \r\n", "field-2-name": "", "field-2-label": ""})
    assert created.status_code == 303, created.get_data(as_text=True)
    product_id = created.headers["Location"].rsplit("/", 1)[1]
    assert get_product(v1, product_id)["custom_fields"] == [
        DISCORD, {**SIZE, "label": "Size", "options": ["S", "M", "L"]}]

    path = f"/dashboard/products/{product_id}"
    html = dashboard.get(path).get_data(as_text=True)
    assert 'name="field-0-name" aria-label="Field 0 name" value="discord"' in html
    assert ">S\nM\nL</textarea>" in html and 'name="field-4-name"' in html
    assert "<code>{{ custom.name }}</code>" in html
    edited = {**dashboard_form(dashboard, path, path), "name": "Fielded account",
              "field-0-name": "", "field-0-label": "", "field-0-type": "text",
              "field-1-name": "size", "field-1-label": "Size", "field-1-type": "select",
              "field-1-options": "S\nM", "field-1-required": "on",
              "field-2-name": "terms", "field-2-label": "I accept the terms",
              "field-2-type": "checkbox", "field-2-required": "on"}
    assert dashboard.post(path, data=edited).status_code == 303
    assert get_product(v1, product_id)["custom_fields"] == [
        {**SIZE, "label": "Size", "options": ["S", "M"], "required": True}, TERMS]

    refused = {**edited, **dashboard_form(dashboard, path, path), "field-1-type": "text"}
    followed = dashboard.post(path, data=refused, follow_redirects=True).get_data(as_text=True)
    assert "item 0 (size): options is only for text fields" not in followed
    assert "custom_fields: item 0 (size): options is only for select fields" in followed
    cleared = {**dashboard_form(dashboard, path, path), "name": "Fielded account",
               "field-0-name": "", "field-0-label": ""}
    assert dashboard.post(path, data=cleared).status_code == 303
    assert get_product(v1, product_id)["custom_fields"] == []


def test_the_dashboard_order_page_shows_the_values_as_text(app, client, v1):
    product = fielded(v1, [DISCORD, SEATS, TERMS])
    order = json_body(order_with(v1, product, {"discord": "<b>ada</b>", "seats": 2,
                                               "terms": True}), 201)
    json_body(v1.patch(f"/v1/products/{product['id']}", json={"custom_fields": [TERMS]}))
    html = signed_in_dashboard(app, client).get(
        f"/dashboard/orders/{order['id']}").get_data(as_text=True)
    assert "<h2>Custom fields</h2>" in html
    assert "<dt>discord</dt><dd>&lt;b&gt;ada&lt;/b&gt;</dd>" in html
    assert "<dt>seats</dt><dd>2</dd><dt>I accept the terms</dt><dd>yes</dd>" in html
    plain = place_order(v1, make_product(v1, type="account", delivery_text="x")["id"])
    assert "Custom fields" not in signed_in_dashboard(app, client).get(
        f"/dashboard/orders/{plain['id']}").get_data(as_text=True)


# --- the storefront in Chromium, without JavaScript ----------------------------------------

def test_a_buyer_fills_the_fields_in_the_browser(server, api, browser, artifacts):
    product = fielded(api, [DISCORD, SIZE, TERMS])
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        assert page.goto(f"{server.url}/test/product/{product['slug']}").status == 200
        email = buyer("fields")
        page.get_by_label("Email").fill(email)
        page.get_by_label("Discord username").fill("   ")  # passes `required`, trims to none
        page.get_by_label("T-shirt size").select_option("M")
        page.get_by_label("I accept the terms").check()
        page.get_by_role("button", name="Check out").click()
        expect(page.locator("p.error")).to_have_text(["Please fill in this field."])
        expect(page.get_by_label("Email")).to_have_value(email)
        expect(page.get_by_label("T-shirt size")).to_have_value("M")
        expect(page.get_by_label("I accept the terms")).to_be_checked()
        page.screenshot(path=str(artifacts / "custom-fields-refused.png"), full_page=True)

        page.get_by_label("Discord username").fill("<b>ada</b>#1815")
        page.get_by_role("button", name="Check out").click()
        page.wait_for_url(re.compile(r"/test/order/ord_\w+\?t="))
        details = page.locator(".custom-values")
        expect(details).to_contain_text("Discord username")
        expect(details.locator("dd")).to_have_text(["<b>ada</b>#1815", "M", "yes"])
        page.screenshot(path=str(artifacts / "custom-fields-order.png"), full_page=True)
        order_id = re.search(r"/order/(ord_\w+)", page.url).group(1)
        assert fetch(api, order_id)["custom_fields"] == {
            "discord": "<b>ada</b>#1815", "size": "M", "terms": True}
    finally:
        context.close()
