"""The authorization matrix (docs/api.md, Authentication): every /v1 operation × {no key, bad key,
revoked key, key without the ability, key of the other mode}.

The operations come from `sellix_lite.web.api.pipeline.OPERATIONS`, so an operation added later is
covered without touching this file. The pipeline checks, in order: authentication → rate
limit → ability → idempotency → validation → lookup. Hence:

- no key, bad key, revoked key → 401 `unauthenticated` (with `WWW-Authenticate: Bearer`),
  whatever the path ids, body or headers: dummy ids are used;
- key without the ability → 403 `forbidden_scope` naming the ability, before the
  Idempotency-Key (even where it is required), the body or the ids are looked at: dummy ids
  and no body;
- key of the other mode → `404 not_found`. That can only show where the operation
  addresses an existing object by a path id, so the operations fall into three classes,
  computed from their rule and response:

  1. **By id** (the rule has a path parameter): the other mode's key is sent the ids of
     real objects of the first mode, with a body that passes validation (and an
     Idempotency-Key where one is required), so the answer depends on the lookup alone:
     404. Today: `DELETE /api-keys/{key_id}`, `GET|PATCH /orders/{order_id}`,
     `GET|PATCH /customers/{customer_id}`, `POST /test_helpers/orders/{order_id}/pay|expire`,
     `POST /orders/{order_id}/refund|resend|fulfill`, `GET /orders/{order_id}/refunds`,
     `GET /subscriptions/{subscription_id}`, `GET /payouts/{payout_id}`,
     `POST /test_helpers/payouts/{payout_id}/fail`, `GET|PATCH|DELETE /products/{product_id}`,
     `POST /products/{product_id}/keys|rotate-dynamic-secret`, `PUT /products/{product_id}/file`,
     `GET|PATCH|DELETE /webhooks/{endpoint_id}`, `POST /webhooks/{endpoint_id}/test|rotate-secret`,
     `GET /webhooks/{endpoint_id}/deliveries`,
     `POST /webhooks/{endpoint_id}/deliveries/{delivery_id}/retry`, `GET /events/{event_id}`,
     `GET|PATCH /licenses/{license_id}`, `DELETE /licenses/{license_id}/instances/{instance_id}`.
  2. **Lists** (no path parameter, a `list:` response): the other mode's key must see none
     of the first mode's objects, and each mode's list must not be empty (so the check
     means something). Today: `GET /api-keys`, `/orders`, `/customers`, `/subscriptions`,
     `/payouts`, `/products`, `/webhooks`, `/events`.
  3. **Others** (no path parameter, one object: creates and the balance): nothing of the
     other mode can be named in the path, so the other mode's key is only checked to pass
     authentication and the ability check; and where this file knows a valid body, what it
     creates belongs to the key's own mode and is invisible (404) to the other mode. Today:
     `POST /api-keys`, `POST /orders`, `POST /payouts`, `POST /products`, `POST /webhooks`,
     `GET /balance`.

Both directions are checked: test-mode objects against a live key and live-mode objects
against a test key. The public license checks take no API key at all, so they are left out
of the matrix and checked apart: with no key or a bad one they answer as they always do.
Live mode pays through a BlockPN simulator process.
"""

from __future__ import annotations

import re
import secrets
import string

import pytest
import requests

from sellix_lite.services.api_keys import ABILITIES

# Importing the pipeline imports the API package, which registers every route.
from sellix_lite.web.api.pipeline import OPERATIONS, Operation

from conftest import GENEROUS_LIMITS, assert_problem, wait_until
from support import (
    Receiver,
    buyer,
    invoice_of,
    json_body,
    key_product,
    live_mode_shop,
    make_product,
    pay,
    place_order,
    wait_for_status,
)

MODES = ("test", "live")
PATH_PARAMETER = re.compile(r"<(?:\w+:)?(\w+)>")
TRON_ADDRESS = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"
CONFIG = (GENEROUS_LIMITS + "failed_auths_per_minute_per_ip = 100000\n"
          "[jobs]\npayment_poll_seconds = 1\npayout_poll_seconds = 1\n"
          "[webhooks]\nallow_private_targets = true\nretry_schedule = [1, 1, 1, 1, 1, 1, 1]\n")
# Bodies that pass validation, so that a by-id write is decided by the lookup alone.
VALID_BODIES = {
    ("PATCH", "/products/<product_id>"): {"description": "changed by the other mode"},
    ("POST", "/products/<product_id>/keys"): {"keys": ["OTHER-MODE-KEY"]},
    ("POST", "/orders/<order_id>/replace"): {"key": "OTHER-MODE-KEY"},
    ("PATCH", "/orders/<order_id>"): {"metadata": {"changed_by": "the other mode"}},
    ("PATCH", "/customers/<customer_id>"): {"metadata": {"changed_by": "the other mode"}},
    ("PATCH", "/webhooks/<endpoint_id>"): {"description": "changed by the other mode"},
    ("PATCH", "/coupons/<coupon_id>"): {"metadata": {"changed_by": "the other mode"}},
}


def _parameters(op: Operation) -> list[str]:
    return PATH_PARAMETER.findall(op.rule)


def _name(op: Operation) -> str:
    return f"{op.method} {op.rule}"


assert OPERATIONS, "the /v1 routes were not imported"
KEYED = [op for op in OPERATIONS if not op.public]
PUBLIC = [op for op in OPERATIONS if op.public]
BY_ID = [op for op in KEYED if _parameters(op)]
LISTS = [op for op in KEYED if not _parameters(op) and op.response.startswith("list:")]
OTHERS = [op for op in KEYED if not _parameters(op)
          and not op.response.startswith("list:")]
every_operation = pytest.mark.parametrize("op", KEYED, ids=_name)


def _random_secret(mode: str) -> str:
    alphabet = string.ascii_letters + string.digits
    return f"sx_{mode}_" + "".join(secrets.choice(alphabet) for _ in range(40))


BAD_AUTHORIZATIONS = {
    "unknown test key": lambda: "Bearer " + _random_secret("test"),
    "unknown live key": lambda: "Bearer " + _random_secret("live"),
    "malformed": lambda: "Bearer not-a-key",
    "wrong scheme": lambda: "Basic dXNlcjpwYXNz",
    "empty bearer": lambda: "Bearer ",
}


# --- the shop, its keys and real objects of each mode ----------------------------------------

@pytest.fixture(scope="module")
def shop(tmp_path_factory, module_receiver):
    """A live-mode shop on a BlockPN simulator, with `keys[mode]` (every ability) and
    `ids[mode]`: an id of a real object of that mode for every path parameter."""
    with live_mode_shop(tmp_path_factory, CONFIG, name="authz") as shop:
        shop.keys = {"live": shop.live, "test": shop.client(shop.mint(name="test root"))}
        shop.ids = {mode: _populate(shop, mode, module_receiver) for mode in MODES}
        yield shop


def _populate(shop, mode: str, receiver: Receiver) -> dict:
    client = shop.keys[mode]
    endpoint = json_body(client.post("/v1/webhooks", json={
        "url": receiver.url(f"authz-{mode}"), "events": ["*"]}), 201)
    product, _ = key_product(client, 5, price_cents=5000)
    subscribed = make_product(client, type="subscription", interval="month",
                              delivery_text="member area: https://example.com")
    order = place_order(client, product["id"])
    subscription_order = place_order(client, subscribed["id"])
    for placed in (order, subscription_order):
        if mode == "test":
            pay(client, placed["id"])
        else:
            shop.sim.post(f"/sim/invoices/{invoice_of(shop, placed['id'])}/pay", {})
        wait_for_status(client, placed["id"], "completed")
    refund = client.post(f"/v1/orders/{order['id']}/refund", json={"amount_cents": 100},
                         headers={"Idempotency-Key": secrets.token_hex(8)})
    assert refund.status_code == 200, refund.text
    payout = json_body(client.post("/v1/payouts", json={
        "chain": "tron", "asset": "USDT", "amount_cents": 100,
        "destination_address": TRON_ADDRESS},
        headers={"Idempotency-Key": secrets.token_hex(8)}), 201)
    minted = json_body(client.post("/v1/api-keys", json={
        "name": f"{mode} object", "abilities": ["products:read"]}), 201)
    coupon = json_body(client.post("/v1/coupons", json={"code": f"{mode}-coupon",
                                                        "percent_off": 10}), 201)
    subscriptions = json_body(client.get("/v1/subscriptions"))["data"]
    deliveries = wait_until(
        lambda: json_body(client.get(f"/v1/webhooks/{endpoint['id']}/deliveries"))["data"],
        what=f"a {mode} delivery")
    events = json_body(client.get("/v1/events"))["data"]
    licenses = json_body(client.get("/v1/licenses", params={"order_id": order["id"]}))["data"]
    assert subscriptions and events and licenses
    rule = json_body(client.post("/v1/blacklist", json={
        "type": "email", "value": f"authz-{mode}@blocked.example"}), 201)
    instance = json_body(shop.client().post("/v1/licenses/activate", json={
        "license_key": licenses[0]["key"], "instance_name": mode}), 201)["instance"]
    return {"instance_id": instance["id"],"key_id": minted["id"], "order_id": order["id"],
            "customer_id": order["customer_id"], "subscription_id": subscriptions[0]["id"],
            "payout_id": payout["id"], "product_id": product["id"],
            "endpoint_id": endpoint["id"], "delivery_id": deliveries[0]["id"],
            "event_id": events[0]["id"], "license_id": licenses[0]["id"],
            "coupon_id": coupon["id"], "rule_id": rule["id"]}


@pytest.fixture(scope="module")
def revoked(shop) -> dict:
    """A revoked key of each mode, with every ability."""
    found = {}
    for mode in MODES:
        client = shop.keys[mode]
        minted = json_body(client.post("/v1/api-keys", json={
            "name": "to revoke", "abilities": list(ABILITIES)}), 201)
        assert shop.client(minted["secret"]).get("/v1/api-keys").status_code == 200
        json_body(client.delete(f"/v1/api-keys/{minted['id']}"))
        found[mode] = minted["secret"]
    return found


@pytest.fixture(scope="module")
def lacking(shop):
    """`lacking(mode, ability)`: a key of `mode` with every ability but that one."""
    cache: dict = {}

    def get(mode: str, ability: str) -> str:
        if (mode, ability) not in cache:
            cache[mode, ability] = json_body(shop.keys[mode].post("/v1/api-keys", json={
                "name": f"all but {ability}",
                "abilities": [a for a in ABILITIES if a != ability]}), 201)["secret"]
        return cache[mode, ability]
    return get


# --- sending an operation ---------------------------------------------------------------------

def _path(op: Operation, ids: dict | None) -> str:
    def fill(match):
        name = match.group(1)
        if ids is None:
            return f"{name.split('_')[0]}_01J0000000000000000000000Z"
        assert name in ids, (f"{_name(op)}: no real object for <{name}>; add one to "
                             "_populate so the matrix covers it")
        return ids[name]
    return "/v1" + PATH_PARAMETER.sub(fill, op.rule)


def send(shop, op: Operation, *, authorization: str | None = None, ids: dict | None = None,
         valid: bool = False) -> requests.Response:
    """Send `op` with that Authorization header (none if None). With `valid`, a body that
    passes validation and an Idempotency-Key; otherwise no body and no extra header."""
    headers = {} if authorization is None else {"Authorization": authorization}
    kwargs: dict = {}
    if valid:
        if op.upload:
            headers["Content-Type"] = "application/octet-stream"
            kwargs["data"] = b"the product's file"
        elif op.method in ("POST", "PATCH"):
            kwargs["json"] = VALID_BODIES.get((op.method, op.rule), {})
        if op.method in ("POST", "PATCH", "DELETE"):
            headers["Idempotency-Key"] = secrets.token_hex(12)
    return requests.request(op.method, shop.url + _path(op, ids), headers=headers,
                            timeout=30, **kwargs)


def assert_401(response: requests.Response) -> None:
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


# --- 401: no key, bad key, revoked key --------------------------------------------------------

@every_operation
def test_no_key_is_401(shop, op):
    assert_401(send(shop, op))


@every_operation
@pytest.mark.parametrize("kind", list(BAD_AUTHORIZATIONS))
def test_bad_key_is_401(shop, op, kind):
    assert_401(send(shop, op, authorization=BAD_AUTHORIZATIONS[kind]()))


@every_operation
@pytest.mark.parametrize("mode", MODES)
def test_revoked_key_is_401(shop, revoked, op, mode):
    """Sent with real ids and a valid body: a revoked key gets nothing further."""
    response = send(shop, op, authorization=f"Bearer {revoked[mode]}", ids=shop.ids[mode],
                    valid=True)
    assert_401(response)


# --- 403: a key without the ability -----------------------------------------------------------

@every_operation
@pytest.mark.parametrize("mode", MODES)
def test_key_without_the_ability_is_403(shop, lacking, op, mode):
    assert op.ability, f"{_name(op)} names no ability"
    response = send(shop, op, authorization=f"Bearer {lacking(mode, op.ability)}")
    body = assert_problem(response, 403, "forbidden_scope")
    assert op.ability in body["detail"]


@every_operation
def test_the_ability_alone_passes_the_ability_check(shop, op):
    """The converse: a key with just the operation's ability is not refused with 403."""
    secret = json_body(shop.keys["test"].post("/v1/api-keys", json={
        "name": f"only {op.ability}", "abilities": [op.ability]}), 201)["secret"]
    response = send(shop, op, authorization=f"Bearer {secret}")
    assert response.status_code not in (401, 403), response.text
    assert response.status_code < 500, response.text


# --- 404: a key of the other mode ---------------------------------------------------------------

@pytest.mark.parametrize("op", BY_ID, ids=_name)
@pytest.mark.parametrize("owner", MODES)
def test_other_mode_key_gets_404_for_real_ids(shop, op, owner):
    other = "live" if owner == "test" else "test"
    response = send(shop, op, authorization=shop.keys[other].headers["Authorization"],
                    ids=shop.ids[owner], valid=True)
    assert_problem(response, 404, "not_found")


def test_the_ids_are_real_in_their_own_mode(shop):
    """The 404s above come from the mode rule, not from ids that name nothing."""
    reads = {"key_id": None, "order_id": "/v1/orders/{}", "customer_id": "/v1/customers/{}",
             "subscription_id": "/v1/subscriptions/{}", "payout_id": "/v1/payouts/{}",
             "product_id": "/v1/products/{}", "endpoint_id": "/v1/webhooks/{}",
             "event_id": "/v1/events/{}", "delivery_id": None, "coupon_id": "/v1/coupons/{}"}
    for mode in MODES:
        client, ids = shop.keys[mode], shop.ids[mode]
        for name, template in reads.items():
            if template:
                assert json_body(client.get(template.format(ids[name])))["id"] == ids[name]
        keys = json_body(client.get("/v1/api-keys?limit=100"))["data"]
        assert ids["key_id"] in {key["id"] for key in keys}
        deliveries = json_body(client.get(f"/v1/webhooks/{ids['endpoint_id']}/deliveries"
                                          "?limit=100"))["data"]
        assert ids["delivery_id"] in {d["id"] for d in deliveries}


def _all_ids(client, path: str) -> list[dict]:
    items, cursor = [], None
    for _ in range(50):  # bounded: at most 5,000 items
        response = client.get(path, params={"limit": 100, **({"cursor": cursor} if cursor
                                                              else {})})
        page = json_body(response)
        items.extend(page["data"])
        if not page["has_more"]:
            return items
        cursor = page["next_cursor"]
    raise AssertionError(f"{path}: too many pages")


@pytest.mark.parametrize("op", LISTS, ids=_name)
def test_lists_show_only_the_keys_mode(shop, op):
    path = _path(op, None)
    seen = {mode: _all_ids(shop.keys[mode], path) for mode in MODES}
    for mode in MODES:
        assert seen[mode], f"{path}: nothing to compare in {mode} mode"
        for item in seen[mode]:
            assert item.get("mode", mode) == mode, item
    test_ids = {item["id"] for item in seen["test"]}
    live_ids = {item["id"] for item in seen["live"]}
    assert not test_ids & live_ids


# Creates this file knows a valid body for: what they make belongs to the key's mode.
def _create_bodies(shop, mode: str) -> dict:
    ids = shop.ids[mode]
    return {
        "/products": ({"name": "made by mode", "type": "account", "price_cents": 100,
                       "currency": "USD", "delivery_text": "x"}, "/v1/products/{}"),
        "/webhooks": ({"url": "http://127.0.0.1:9/none", "events": ["order.paid"]},
                      "/v1/webhooks/{}"),
        "/orders": ({"product_id": ids["product_id"], "customer_email": buyer("mode")},
                    "/v1/orders/{}"),
        "/payouts": ({"chain": "tron", "asset": "USDT", "amount_cents": 1,
                      "destination_address": TRON_ADDRESS}, "/v1/payouts/{}"),
        "/api-keys": ({"name": "made by mode", "abilities": ["orders:read"]}, None),
        "/coupons": ({"code": f"MADE-{secrets.token_hex(4)}", "percent_off": 5},
                     "/v1/coupons/{}"),
    }


@pytest.mark.parametrize("op", OTHERS, ids=_name)
@pytest.mark.parametrize("mode", MODES)
def test_operations_without_ids_act_in_the_keys_mode(shop, op, mode):
    other = "live" if mode == "test" else "test"
    client = shop.keys[mode]
    known = _create_bodies(shop, mode).get(op.rule) if op.method == "POST" else None
    if known is None:
        response = send(shop, op, authorization=client.headers["Authorization"], valid=True)
        assert response.status_code not in (401, 403), response.text
        assert response.status_code < 500, response.text
        return
    body, read = known
    response = client.request(op.method, "/v1" + op.rule, json=body,
                              headers={"Idempotency-Key": secrets.token_hex(12)})
    assert response.status_code == op.status, response.text
    made = response.json()
    assert made.get("mode", mode) == mode
    if read:
        assert client.get(read.format(made["id"])).status_code == 200
        assert_problem(shop.keys[other].get(read.format(made["id"])), 404, "not_found")
    else:
        other_keys = {k["id"] for k in _all_ids(shop.keys[other], "/v1/api-keys")}
        assert made["id"] not in other_keys


@pytest.mark.parametrize("owner", MODES)
def test_a_body_naming_the_other_modes_product_is_refused(shop, owner):
    """The one id a create takes in its body is looked up in the key's mode too."""
    other = "live" if owner == "test" else "test"
    response = shop.keys[other].post("/v1/orders", json={
        "product_id": shop.ids[owner]["product_id"], "customer_email": buyer("cross")})
    body = assert_problem(response, 422, "unprocessable")
    assert "product_id" in body["errors"]


def test_a_test_key_cannot_mint_a_live_key(shop):
    response = shop.keys["test"].post("/v1/api-keys", json={
        "name": "escalation", "abilities": ["orders:read"], "mode": "live"})
    assert_problem(response, 403, "forbidden_scope")


def test_every_operation_is_classified():
    assert len(BY_ID) + len(LISTS) + len(OTHERS) + len(PUBLIC) == len(OPERATIONS)
    assert BY_ID and LISTS and OTHERS and PUBLIC


@pytest.mark.parametrize("op", PUBLIC, ids=_name)
@pytest.mark.parametrize("kind", ["no key", *BAD_AUTHORIZATIONS])
def test_the_public_checks_take_no_key(shop, op, kind):
    """The license key is their credential: with no API key or a bad one, an unknown
    license key is 404, never 401."""
    headers = {} if kind == "no key" else {"Authorization": BAD_AUTHORIZATIONS[kind]()}
    body = {name: "NO-SUCH-KEY" for name in op.body.fields}
    response = requests.request(op.method, shop.url + _path(op, None), json=body,
                                headers=headers, timeout=30)
    assert_problem(response, 404, "not_found")
