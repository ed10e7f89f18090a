"""The blacklist: rules by email, email domain, IP or CIDR block, and country; a matching
checkout (API or storefront) refused with one message before anything is reserved, each
refusal recorded against its rule and shown in the dashboard. In process, except the
trusted proxy's country header (a real server behind it and one without it) and a refused
checkout in Chromium."""

from __future__ import annotations

import html
import ipaddress
import re
from datetime import datetime, timedelta

import pytest
import requests
from playwright.sync_api import expect

from sellix_lite.services.blacklist import CUSTOMER_IP
from sellix_lite.validation import FieldError

from conftest import GENEROUS_LIMITS, assert_problem
from support import (
    SHIPPING_ADDRESS,
    assert_invalid,
    buyer,
    get_product,
    json_body,
    key_product,
    make_product,
    pay,
    place_order,
    signed_in_dashboard,
)

REFUSED = "this buyer can't check out in this shop"
SHOWN = "This buyer can't check out in this shop."


def add_rule(client, kind: str, value: str, **extra) -> dict:
    return json_body(client.post("/v1/blacklist", json={"type": kind, "value": value,
                                                         **extra}), 201)


def order_attempt(client, product_id: str, email: str, **extra):
    return client.post("/v1/orders", json={"product_id": product_id, "customer_email": email,
                                           **extra})


def assert_refused(response) -> dict:
    """The one refusal, whatever rule matched: 422, `customer_email`, nothing else."""
    body = assert_problem(response, 422, "unprocessable")
    assert body["errors"] == {"customer_email": REFUSED}, body
    return body


def refusals(db, rule_id: str) -> list[tuple]:
    return db.query("SELECT customer_email, customer_ip, country, product_id, surface "
                    "FROM blacklist_refusals WHERE rule_id = ? ORDER BY id", (rule_id,))


def form_token(page_html: str) -> str:
    return re.search(r'name="csrf_token"\s+value="([^"]+)"', page_html).group(1)


# --- rules: create, list, delete, validation ---------------------------------------------

@pytest.mark.parametrize("kind, value, kept", [
    ("email", " Fraud@Example.COM ", "fraud@example.com"),
    ("email_domain", "Fraud.Example", "fraud.example"),
    ("ip", "203.0.113.7", "203.0.113.7"),
    ("ip", "203.0.113.7/32", "203.0.113.7"),
    ("ip", "203.0.113.0/24", "203.0.113.0/24"),
    ("ip", "::ffff:203.0.113.9", "203.0.113.9"),
    ("ip", "::ffff:198.51.100.0/120", "198.51.100.0/24"),
    ("ip", "2001:DB8:0::/32", "2001:db8::/32"),
    ("ip", "2001:db8::1/128", "2001:db8::1"),
    ("country", "ru", "RU"),
])
def test_a_rule_keeps_its_value_in_canonical_form(v1, kind, value, kept):
    rule = add_rule(v1, kind, value, note="seen in May")
    assert re.fullmatch(r"bl_[0-9A-Z]{26}", rule["id"])
    assert rule == {"id": rule["id"], "type": kind, "value": kept, "note": "seen in May",
                    "mode": "test", "created_at": rule["created_at"]}
    assert json_body(v1.get("/v1/blacklist"))["data"] == [rule]


def test_rules_are_listed_newest_first_filtered_by_type_and_deleted(v1):
    first = add_rule(v1, "email", "a@example.com")
    second = add_rule(v1, "country", "DE")
    assert second["note"] is None
    listed = json_body(v1.get("/v1/blacklist"))
    assert [rule["id"] for rule in listed["data"]] == [second["id"], first["id"]]
    assert json_body(v1.get("/v1/blacklist", params={"type": "email"}))["data"] == [first]
    assert json_body(v1.delete(f"/v1/blacklist/{first['id']}")) == {"id": first["id"],
                                                                     "deleted": True}
    assert json_body(v1.get("/v1/blacklist"))["data"] == [second]
    assert_problem(v1.delete(f"/v1/blacklist/{first['id']}"), 404, "not_found")


@pytest.mark.parametrize("kind, value, words", [
    ("email", "not-an-email", "email address"),
    ("email", "a@b", "email address"),
    ("email_domain", "fraud@example.com", "without @"),
    ("email_domain", "localhost", "domain"),
    ("ip", "203.0.113.300", "CIDR block"),
    ("ip", "203.0.113.0/33", "CIDR block"),
    ("ip", "203.0.113.7/24", "the block is 203.0.113.0/24"),
    ("ip", "fraud.example", "CIDR block"),
    ("country", "XX", "ISO 3166-1"),
    ("country", "DEU", "ISO 3166-1"),
])
def test_a_value_that_is_not_of_its_type_is_refused(v1, kind, value, words):
    body = assert_invalid(v1.post("/v1/blacklist", json={"type": kind, "value": value}),
                          "value", exact=True)
    assert words in body["errors"]["value"]
    assert json_body(v1.get("/v1/blacklist"))["data"] == []


def test_an_unknown_type_or_a_missing_value_is_refused(v1):
    assert_invalid(v1.post("/v1/blacklist", json={"type": "phone", "value": "1"}), "type")
    assert_problem(v1.post("/v1/blacklist", json={"type": "email"}), 400, "invalid_request")


def test_the_same_rule_twice_is_refused_naming_the_first(v1):
    rule = add_rule(v1, "email_domain", "fraud.example")
    body = assert_invalid(v1.post("/v1/blacklist", json={"type": "email_domain",
                                                          "value": "FRAUD.example"}),
                          "value", exact=True)
    assert rule["id"] in body["errors"]["value"]


def test_reading_and_writing_rules_need_their_abilities(client):
    reader = client.keyed("blacklist:read")
    writer = client.keyed("blacklist:write")
    assert_problem(reader.post("/v1/blacklist", json={"type": "country", "value": "DE"}),
                   403, "forbidden_scope")
    rule = add_rule(writer, "country", "DE")
    assert_problem(writer.get("/v1/blacklist"), 403, "forbidden_scope")
    assert [r["id"] for r in json_body(reader.get("/v1/blacklist"))["data"]] == [rule["id"]]
    assert_problem(reader.delete(f"/v1/blacklist/{rule['id']}"), 403, "forbidden_scope")
    assert_problem(client.keyed("orders:write").get("/v1/blacklist"), 403, "forbidden_scope")


# --- matching ------------------------------------------------------------------------------

# (rule type, rule value, what the order says) -> refused?
MATCHES = [
    ("email", "Fraud@Example.com", {"customer_email": "fRAUD@example.COM"}, True),
    ("email", "fraud@example.com", {"customer_email": "fraud2@example.com"}, False),
    ("email_domain", "Fraud.Example", {"customer_email": "anyone@FRAUD.example"}, True),
    ("email_domain", "fraud.example", {"customer_email": "a@mail.Fraud.example"}, True),
    ("email_domain", "fraud.example", {"customer_email": "a@notfraud.example"}, False),
    ("email_domain", "mail.fraud.example", {"customer_email": "a@fraud.example"}, False),
    ("ip", "203.0.113.7", {"customer_ip": "203.0.113.7"}, True),
    ("ip", "203.0.113.7", {"customer_ip": "203.0.113.8"}, False),
    ("ip", "203.0.113.7", {}, False),
    ("ip", "203.0.113.0/24", {"customer_ip": "203.0.113.200"}, True),
    ("ip", "203.0.113.0/24", {"customer_ip": "::ffff:203.0.113.200"}, True),
    ("ip", "203.0.113.0/24", {"customer_ip": "203.0.114.1"}, False),
    ("ip", "2001:db8:aa::/48", {"customer_ip": "2001:DB8:AA:1::9"}, True),
    ("ip", "2001:db8:aa::/48", {"customer_ip": "2001:db8:ab::9"}, False),
    ("ip", "2001:db8::1", {"customer_ip": "2001:0db8:0:0:0:0:0:1"}, True),
]


@pytest.mark.parametrize("kind, value, order, refused", MATCHES)
def test_rules_match_email_case_domain_and_subdomains_ip_and_blocks(v1, kind, value, order,
                                                                    refused):
    product, _ = key_product(v1, 2)
    add_rule(v1, kind, value)
    response = order_attempt(v1, product["id"], **{"email": buyer(), **{
        ("email" if k == "customer_email" else k): v for k, v in order.items()}})
    if refused:
        assert_refused(response)
    else:
        assert response.status_code == 201, response.text


def test_a_country_rule_matches_the_shipping_country(v1):
    product = make_product(v1, type="physical", price_cents=2500)
    add_rule(v1, "country", "fr")
    assert_refused(order_attempt(v1, product["id"], buyer(), shipping_address={
        **SHIPPING_ADDRESS, "country": "FR"}))
    shipped_to_germany = order_attempt(v1, product["id"], buyer(),
                                       shipping_address=SHIPPING_ADDRESS)
    assert shipped_to_germany.status_code == 201, shipped_to_germany.text


def test_customer_ip_is_an_ip_address_kept_on_the_order(v1, app_db):
    product, _ = key_product(v1, 2)
    assert_invalid(order_attempt(v1, product["id"], buyer(), customer_ip="203.0.113"),
                   "customer_ip", exact=True)
    assert_invalid(order_attempt(v1, product["id"], buyer(), customer_ip="fe80::1%eth0"),
                   "customer_ip", exact=True)
    order = place_order(v1, product["id"], customer_ip="::ffff:198.51.100.4")
    plain = place_order(v1, product["id"])
    kept = dict(app_db.query("SELECT id, customer_ip FROM orders"))
    assert kept == {order["id"]: "198.51.100.4", plain["id"]: None}


@pytest.mark.parametrize("value", [
    "0.0.0.0", "255.255.255.255", "::", "::1", "1::", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8", "FFFF::abcd", "::ffff:1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "1::1.2.3.4",
    "1:2:3:4:5::1.2.3.4", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6::7:8", "1::2::3", "01.2.3.4",
    "1.2.3.256", "1.2.3", "::1.2.3.04", "1::2:3:4:5:6:1.2.3.4", "12345::", "fe80::1%eth0",
    " 1.2.3.4", "1.2.3.4/32", ":::", "1:2",
])
def test_customer_ip_takes_exactly_the_addresses_pythons_ipaddress_reads(value):
    """The field's pattern (which the OpenAPI document carries) and `ipaddress` agree."""
    try:
        ipaddress.ip_address(value)
        readable = "%" not in value
    except ValueError:
        readable = False
    try:
        CUSTOMER_IP.clean(value)
        accepted = True
    except FieldError:
        accepted = False
    assert accepted == readable, value


def test_the_refusal_is_the_same_whichever_rule_matched(v1):
    """Byte for byte, apart from the request id: a buyer learns nothing of the rule."""
    physical = make_product(v1, type="physical", price_cents=2500)
    add_rule(v1, "email", "one@example.com")
    add_rule(v1, "email_domain", "two.example")
    add_rule(v1, "ip", "192.0.2.0/24")
    add_rule(v1, "country", "NZ")
    attempts = [("one@example.com", {}), ("x@two.example", {}),
                (buyer(), {"customer_ip": "192.0.2.55"}),
                (buyer(), {"shipping_address": {**SHIPPING_ADDRESS, "country": "NZ"}})]
    bodies = set()
    for email, extra in attempts:
        response = order_attempt(v1, physical["id"], email, **extra)
        request_id = assert_refused(response)["request_id"]
        bodies.add(response.get_data().replace(request_id.encode(), b"req_"))
    assert len(bodies) == 1, bodies


COUNTS = ["SELECT count(*) FROM orders", "SELECT count(*) FROM customers",
          "SELECT count(*) FROM events", "SELECT count(*) FROM emails",
          "SELECT count(*) FROM sandbox_invoices",
          "SELECT count(*) FROM license_keys WHERE order_id IS NOT NULL"]


def test_a_refused_checkout_reserves_nothing_and_is_recorded_against_its_rule(v1, app_db):
    product, _ = key_product(v1, 3)
    rule = add_rule(v1, "email_domain", "fraud.example")
    other = add_rule(v1, "email", "someone-else@example.com")
    place_order(v1, product["id"])  # the shop is not empty
    counts = {sql: app_db.query(sql) for sql in COUNTS}
    stock = get_product(v1, product["id"])["stock"]
    assert_refused(order_attempt(v1, product["id"], "mallory@fraud.example", qty=2,
                                 customer_ip="203.0.113.9"))
    assert {sql: app_db.query(sql) for sql in COUNTS} == counts
    assert get_product(v1, product["id"])["stock"] == stock
    assert refusals(app_db, rule["id"]) == [
        ("mallory@fraud.example", "203.0.113.9", None, product["id"], "api")]
    assert refusals(app_db, other["id"]) == []


def test_a_quote_is_refused_as_its_checkout_would_be(v1, app_db):
    product, _ = key_product(v1, 3)
    rule = add_rule(v1, "email", "mallory@example.com")
    body = {"product_id": product["id"], "customer_email": "Mallory@example.com"}
    assert_refused(v1.post("/v1/orders/quote", json=body))
    assert refusals(app_db, rule["id"]) == []  # only checkouts are recorded
    assert json_body(v1.post("/v1/orders/quote", json={**body, "customer_email": buyer()}))


def test_rules_apply_only_to_checkouts_of_their_mode(client, app_db):
    test_key, live_key = client.keyed(), client.keyed(mode="live")
    product, _ = key_product(test_key, 2)
    rule = add_rule(live_key, "email", "twice@example.com")
    assert json_body(test_key.get("/v1/blacklist"))["data"] == []
    assert place_order(test_key, product["id"], customer_email="twice@example.com")
    assert_problem(test_key.delete(f"/v1/blacklist/{rule['id']}"), 404, "not_found")
    add_rule(test_key, "email", "twice@example.com")  # its own rule, in test mode
    assert_refused(order_attempt(test_key, product["id"], "twice@example.com"))
    assert refusals(app_db, rule["id"]) == []


def test_a_renewal_is_not_a_checkout_and_is_not_refused(v1, clock, tick, app_db):
    """A subscription sold before the rule renews: cancelling it is the merchant's call."""
    product = make_product(v1, type="subscription", interval="month",
                           delivery_text="welcome", price_cents=999)
    placed = place_order(v1, product["id"], customer_email="sub@late.example")
    first = pay(v1, placed["id"])
    rule = add_rule(v1, "email_domain", "late.example")
    assert_refused(order_attempt(v1, product["id"], "sub@late.example"))
    subscription = json_body(v1.get(f"/v1/subscriptions/{first['subscription']['id']}"))
    end = datetime.fromisoformat(subscription["current_period_end"].replace("Z", "+00:00"))
    clock.set(end - timedelta(days=1))
    assert tick("renew_subscriptions") == 1
    assert app_db.query("SELECT count(*) FROM orders WHERE subscription_id = ?",
                        (subscription["id"],)) == [(2,)]
    assert len(refusals(app_db, rule["id"])) == 1


# --- the storefront, in process ------------------------------------------------------------

def storefront_checkout(client, product: dict, email: str, **headers):
    url = f"/test/product/{product['slug']}"
    token = form_token(client.get(url).get_data(as_text=True))
    return client.post(url + "/checkout", data={"csrf_token": token, "email": email,
                                                "qty": "1"}, headers=headers)


def test_the_storefront_refuses_by_the_buyers_address_and_says_so(client, v1, app_db):
    product, _ = key_product(v1, 2)
    rule = add_rule(v1, "ip", "127.0.0.0/8", note="the test client")
    email = buyer()
    response = storefront_checkout(client, product, email)
    assert response.status_code == 422
    assert SHOWN in html.unescape(response.get_data(as_text=True))
    assert app_db.query("SELECT count(*) FROM orders") == [(0,)]
    assert refusals(app_db, rule["id"]) == [(email, "127.0.0.1", None, product["id"],
                                             "storefront")]
    json_body(v1.delete(f"/v1/blacklist/{rule['id']}"))
    assert storefront_checkout(client, product, email).status_code == 303
    assert app_db.query("SELECT customer_ip FROM orders") == [("127.0.0.1",)]


PROXIED = GENEROUS_LIMITS + ('[server]\ntrusted_proxy = "127.0.0.1"\n'
                             'country_header = "CF-IPCountry"\n')


@pytest.mark.parametrize("app_config", [PROXIED])
def test_the_proxys_country_header_counts_only_on_proxied_storefront_requests(client, v1,
                                                                               app_db):
    product, _ = key_product(v1, 3)
    rule = add_rule(v1, "country", "KP")
    proxied = {"X-Forwarded-For": "198.51.100.23", "CF-IPCountry": "kp"}
    assert storefront_checkout(client, product, buyer(), **proxied).status_code == 422
    # no X-Forwarded-For: not through the proxy (waitress strips it from anyone else)
    assert storefront_checkout(client, product, buyer(), **{"CF-IPCountry": "KP"}) \
        .status_code == 303
    # the API takes no header: its caller is the merchant's own server
    api_call = v1.post("/v1/orders", json={"product_id": product["id"],
                                           "customer_email": buyer()}, headers=proxied)
    assert api_call.status_code == 201, api_call.text
    [(country, surface)] = app_db.query("SELECT country, surface FROM blacklist_refusals "
                                        "WHERE rule_id = ?", (rule["id"],))
    assert (country, surface) == ("KP", "storefront")


# --- the dashboard -------------------------------------------------------------------------

def test_the_dashboard_lists_rules_with_their_refusals_and_adds_and_removes_them(app, client,
                                                                                v1, app_db):
    dashboard = signed_in_dashboard(app, client)
    product, _ = key_product(v1, 2)
    page = dashboard.get("/dashboard/blacklist").get_data(as_text=True)
    assert 'href="/dashboard/blacklist"' in page and "No rules in this mode." in page
    fields = dict(re.findall(r'name="(csrf_token|form_id)" value="([^"]+)"',
                             page.split('action="/dashboard/blacklist"')[1]))
    form = {**fields, "type": "email_domain", "value": "Fraud.Example", "note": "ring"}
    assert dashboard.post("/dashboard/blacklist", data=form).status_code == 303
    assert dashboard.post("/dashboard/blacklist", data=form).status_code == 303  # runs once
    [rule] = json_body(v1.get("/v1/blacklist"))["data"]
    assert (rule["value"], rule["note"]) == ("fraud.example", "ring")
    for _ in range(2):
        assert_refused(order_attempt(v1, product["id"], "eve@fraud.example",
                                     customer_ip="203.0.113.5"))
    page = dashboard.get("/dashboard/blacklist").get_data(as_text=True)
    row = re.search(rf'<tr><td>email_domain</td>.*?{rule["id"]}.*?</tr>', page, re.S).group(0)
    assert "fraud.example" in row and "<td>2</td>" in row
    detail = dashboard.get(f"/dashboard/blacklist/{rule['id']}").get_data(as_text=True)
    assert detail.count("eve@fraud.example") == 2 and "203.0.113.5" in detail
    assert product["id"] in detail and "<td>api</td>" in detail
    delete = dict(re.findall(r'name="(csrf_token|form_id)" value="([^"]+)"', detail.split(
        f'action="/dashboard/blacklist/{rule["id"]}/delete"')[1]))
    assert dashboard.post(f"/dashboard/blacklist/{rule['id']}/delete",
                          data=delete).status_code == 303
    assert json_body(v1.get("/v1/blacklist"))["data"] == []
    assert refusals(app_db, rule["id"]) == []  # the rule's record went with it
    assert place_order(v1, product["id"], customer_email="eve@fraud.example")


def test_a_dashboard_form_without_its_csrf_token_adds_nothing(app, client, v1):
    dashboard = signed_in_dashboard(app, client)
    answer = dashboard.post("/dashboard/blacklist", data={
        "form_id": "x" * 22, "type": "country", "value": "DE"})
    assert answer.status_code == 400
    assert json_body(v1.get("/v1/blacklist"))["data"] == []


# --- end to end: the trusted proxy's header, and a refusal in Chromium ---------------------

def real_checkout(shop, product: dict, email: str, **headers) -> requests.Response:
    session = requests.Session()
    url = f"{shop.url}/test/product/{product['slug']}"
    token = form_token(session.get(url, timeout=30).text)
    return session.post(url + "/checkout", data={"csrf_token": token, "email": email},
                        headers=headers, allow_redirects=False, timeout=30)


def test_behind_the_trusted_proxy_its_country_and_address_count(make_server):
    shop = make_server(GENEROUS_LIMITS, server_options='trusted_proxy = "127.0.0.1"\n'
                                                      'country_header = "CF-IPCountry"')
    api = shop.client(shop.mint())
    product, _ = key_product(api, 5)
    by_country = add_rule(api, "country", "IR")
    by_address = add_rule(api, "ip", "198.51.100.0/24")
    refused = real_checkout(shop, product, buyer(), **{"X-Forwarded-For": "192.0.2.1",
                                                        "CF-IPCountry": "IR"})
    assert refused.status_code == 422 and SHOWN in html.unescape(refused.text)
    refused = real_checkout(shop, product, buyer(), **{"X-Forwarded-For": "198.51.100.77"})
    assert refused.status_code == 422
    passed = real_checkout(shop, product, buyer(), **{"X-Forwarded-For": "192.0.2.1",
                                                       "CF-IPCountry": "DE"})
    assert passed.status_code == 303, passed.text
    assert shop.query("SELECT rule_id, customer_ip, country FROM blacklist_refusals "
                      "ORDER BY id") == [(by_country["id"], "192.0.2.1", "IR"),
                                         (by_address["id"], "198.51.100.77", None)]
    assert shop.query("SELECT customer_ip FROM orders") == [("192.0.2.1",)]


def test_without_a_trusted_proxy_the_country_header_is_ignored(make_server):
    shop = make_server(GENEROUS_LIMITS, server_options='country_header = "CF-IPCountry"')
    api = shop.client(shop.mint())
    product, _ = key_product(api, 2)
    add_rule(api, "country", "IR")
    add_rule(api, "ip", "198.51.100.0/24")
    passed = real_checkout(shop, product, buyer(), **{"X-Forwarded-For": "198.51.100.77",
                                                       "CF-IPCountry": "IR"})
    assert passed.status_code == 303, passed.text
    assert shop.query("SELECT count(*) FROM blacklist_refusals") == [(0,)]
    assert shop.query("SELECT customer_ip FROM orders") == [("127.0.0.1",)]


def test_a_blocked_buyer_in_the_browser_sees_the_message_and_no_order_is_made(server, api,
                                                                              browser):
    product, _ = key_product(api, 2)
    stock = get_product(api, product["id"])["stock"]
    add_rule(api, "email_domain", "blocked-in-browser.example")
    email = buyer("mallory").replace("example.com", "Blocked-In-Browser.example")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(f"{server.url}/test/product/{product['slug']}")
        page.get_by_label("Email").fill(email)
        page.get_by_role("button", name="Check out").click()
        expect(page.get_by_role("alert")).to_have_text(SHOWN)
        assert "/order/" not in page.url
    finally:
        context.close()
    assert json_body(api.get("/v1/orders", params={"customer_email": email.lower()}))["data"] == []
    assert get_product(api, product["id"])["stock"] == stock
