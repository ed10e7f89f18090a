"""The OpenAPI document: complete, valid, true to every real response, and as strict as the
server on requests.

Stateless schemathesis (positive and negative data) checks every operation; a stateful
phase follows the document's links from creates to the operations taking the new id;
property and table tests hold each field's schema to its validator, value by value."""

from __future__ import annotations

import re
import secrets

import jsonschema_rs
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from openapi_spec_validator import validate
from schemathesis.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import ensure_resource_availability

from sellix_lite import chains
from sellix_lite.config import Config
from sellix_lite.services import orders, payouts, products, refunds, webhooks
from sellix_lite.validation import Array, FieldError, Object, Schema, String
from sellix_lite.web.api.objects import OBJECTS
from sellix_lite.web.api.openapi import document
from sellix_lite.web.api.pipeline import OPERATIONS
from sellix_lite.web.app import create_app

from conftest import GENEROUS_LIMITS, Server, free_port, running_server
from support import import_keys, make_product, pay, place_order

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance, negative_data_rejection,
          missing_required_header]
# Statuses with which the API rightly refuses a request that breaks the schema.
REJECTIONS = ["400", "401", "403", "404", "405", "409", "413", "415", "422", "429"]
schema = schemathesis.openapi.from_dict(
    document(), config=SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": REJECTIONS}}}))


@pytest.fixture(scope="module")
def conformance_server(tmp_path_factory):
    # No limit gets in the way of the many generated requests, unauthenticated ones included.
    server = Server(tmp_path_factory.mktemp("openapi"),
                    GENEROUS_LIMITS + "failed_auths_per_minute_per_ip = 100000\n").start()
    server.secret = server.mint()
    yield server
    server.stop()


def test_served_without_a_key_and_valid(server):
    response = server.client().get("/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    spec = response.json()
    validate(spec)
    assert spec["openapi"] == "3.1.0"
    assert spec["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"


def test_every_route_is_described(tmp_path):
    """A /v1 route added without `operation(...)`, a docstring or a response fails here."""
    app = create_app(Config(base_dir=tmp_path), "secret")
    declared = {(op.method, "/v1" + op.rule) for op in OPERATIONS}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/v1/") or rule.endpoint == "v1.openapi_json":
            continue
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (method, rule.rule) in declared, f"{method} {rule.rule} is not declared"
    for op in OPERATIONS:
        assert op.summary and op.description, f"{op.endpoint} has no summary or docstring"
        assert op.ability or op.public, f"{op.endpoint} names no ability"
        name = op.response.removeprefix("list:")
        assert name in OBJECTS or op.media_type != "application/json", \
            f"{op.endpoint} returns an undescribed object"


def test_operations_carry_parameters_and_errors():
    spec = document()
    payout = spec["paths"]["/v1/payouts"]["post"]
    assert payout["x-ability"] == "payouts:write"
    header = next(p for p in payout["parameters"] if p["name"] == "Idempotency-Key")
    assert header["required"] is True
    body = payout["requestBody"]["content"]["application/json"]["schema"]
    assert set(body["required"]) == {"chain", "asset", "amount_cents", "destination_address"}
    limit = next(p for p in spec["paths"]["/v1/products"]["get"]["parameters"]
                 if p["name"] == "limit")
    assert (limit["schema"]["minimum"], limit["schema"]["maximum"]) == (1, 100)
    for code in ("401", "403", "422", "429", "500"):
        assert code in payout["responses"]


@schema.parametrize()
@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
def test_responses_conform(case, conformance_server):
    case.call_and_validate(base_url=conformance_server.url, checks=CHECKS,
                           headers={"Authorization": f"Bearer {conformance_server.secret}"})


# --- The request side as strict as the server ------------------------------------------------

def _string_fields() -> list[tuple[str, String]]:
    """Every string field of every body and query schema, nested ones included."""
    found = []

    def add(label: str, schema: Schema) -> None:
        for name, field in schema.fields.items():
            inner = field.items if isinstance(field, Array) else field
            if isinstance(inner, Object):
                add(f"{label}.{name}", inner.schema)
            elif isinstance(inner, String):
                found.append((f"{label}.{name}", inner))

    for op in OPERATIONS:
        add(f"{op.method} {op.rule} query", op.query)
        if op.body is not None:
            add(f"{op.method} {op.rule} body", op.body)
    return found


STRING_FIELDS = _string_fields()
WHITESPACE_TEXT = st.text(st.characters(codec="utf-8").filter(str.isspace), max_size=3)
# Characters regex dialects disagree on: whitespace to Python only (\x1c-\x1f), to
# ECMA-262 only (\ufeff), digits of other scripts.
DIALECT_EDGES = st.sampled_from(["\x1c", "\x1f", "\x85", "\u00a0", "\ufeff", "\u0663"])


def _near(field: String) -> st.SearchStrategy:
    """Values at the edges of what `field` takes: padded, blank, long, off the pattern."""
    core = st.from_regex(field.json_schema()["pattern"]) if "pattern" in field.json_schema() \
        else st.text(max_size=(field.max_length or 20) + 2)
    core = core.filter(lambda value: len(value) < 3000)
    spliced = st.tuples(core, st.integers(0, 50), DIALECT_EDGES).map(
        lambda parts: parts[0][:parts[1]] + parts[2] + parts[0][parts[1]:])
    return st.one_of(
        core, st.text(max_size=12), WHITESPACE_TEXT, spliced,
        st.tuples(WHITESPACE_TEXT, core, WHITESPACE_TEXT).map("".join),
        st.integers(0, 3).map(lambda extra: "x" * ((field.max_length or 10) + extra - 1)))


@settings(max_examples=400, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_the_document_takes_exactly_the_strings_the_server_takes(data):
    """For every string field, the document's schema and the validator agree on any value:
    trimmed fields, URLs and dates included (formats aside, which the pattern carries)."""
    label, field = data.draw(st.sampled_from(STRING_FIELDS), label="field")
    value = data.draw(_near(field), label="value")
    schema = {key: item for key, item in field.json_schema().items() if key != "anyOf"}
    documented = jsonschema_rs.validator_for(schema).is_valid(value)
    try:
        field.clean(value)
        accepted = True
    except FieldError:
        accepted = False
    assert documented == accepted, (label, value)


@pytest.mark.parametrize("label, field", STRING_FIELDS, ids=[label for label, _ in STRING_FIELDS])
def test_regex_dialects_agree_on_whitespace_and_digits(label, field):
    """Python's `\\s` and `\\d` are not ECMA-262's: where a pattern uses them the document
    writes out the server's meaning, so both read a value the same way."""
    base = field.example if isinstance(field.example, str) else \
        {"uri": "https://example.com/x", "date": "2026-05-26"}.get(field.formats[:1] and
                                                                  field.formats[0], "ab")
    field.clean(base)
    validator = jsonschema_rs.validator_for(field.json_schema())
    for char in ("\x1c", "\x1f", "\x85", "\u00a0", "\ufeff", "\u0663"):
        for value in (char + base, base[:1] + char + base[1:], base + char):
            try:
                field.clean(value)
                accepted = True
            except FieldError:
                accepted = False
            assert validator.is_valid(value) == accepted, (label, value)


def test_dates_urls_and_trimmed_strings_carry_formats_and_patterns():
    spec = document()
    orders_list = {parameter["name"]: parameter["schema"]
                   for parameter in spec["paths"]["/v1/orders"]["get"]["parameters"]}
    for name in ("from", "to"):
        assert orders_list[name]["anyOf"] == [{"type": "string", "format": "date"},
                                              {"type": "string", "format": "date-time"}]
        assert "pattern" in orders_list[name]
    webhook = _body(spec, "/v1/webhooks", "post")["properties"]["url"]
    assert webhook["format"] == "uri" and webhook["pattern"].startswith("^https?://")
    dynamic = spec["components"]["schemas"]["DynamicProductCreate"]["properties"]["dynamic_url"]
    assert dynamic["format"] == "uri" and "pattern" in dynamic
    name = spec["components"]["schemas"]["AccountProductCreate"]["properties"]["name"]
    assert re.search(name["pattern"], "  Gift card ") and not re.search(name["pattern"], "   ")


def _body(spec: dict, path: str, method: str) -> dict:
    return spec["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"]


def test_product_create_is_one_variant_per_type_picked_by_type():
    spec = document()
    body = _body(spec, "/v1/products", "post")
    create = spec["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert create["discriminator"]["propertyName"] == "type"
    assert set(create["discriminator"]["mapping"]) == set(products.TYPES)
    schemas = spec["components"]["schemas"]
    assert "dynamic_url" in schemas["DynamicProductCreate"]["required"]
    assert "stock" not in schemas["LicenseKeyProductCreate"]["properties"]
    assert "interval" not in schemas["AccountProductCreate"]["properties"]
    assert schemas["PhysicalProductCreate"]["properties"]["requires_shipping"]["enum"] == [True]
    patch = spec["paths"]["/v1/products/{product_id}"]["patch"]["description"]
    assert "`dynamic_url` (dynamic)" in patch and "license_key" in patch


PRODUCT_BODIES = [
    {"type": "license_key"}, {"type": "license_key", "stock": 5},
    {"type": "license_key", "stock": None}, {"type": "license_key", "delivery_text": None},
    {"type": "license_key", "delivery_text": "x"}, {"type": "account", "delivery_text": "x"},
    {"type": "account", "interval": "month"}, {"type": "subscription", "interval": "year"},
    {"type": "physical", "requires_shipping": True}, {"type": "physical",
                                                      "requires_shipping": False},
    {"type": "account", "requires_shipping": True}, {"type": "dynamic"},
    {"type": "dynamic", "dynamic_url": None},
    {"type": "dynamic", "dynamic_url": "http://127.0.0.1:9/x"},
    {"type": "dynamic", "dynamic_url": " http://127.0.0.1:9/x"},
    {"type": "dynamic", "dynamic_url": "ftp://127.0.0.1/x"}, {"type": "file_download",
                                                               "stock": 3},
    {"type": "file_download", "dynamic_url": "http://127.0.0.1:9/x"},
    {"type": "account", "name": "   "}, {"type": "account", "name": "  Padded  "},
]


def test_product_bodies_are_valid_exactly_when_the_server_creates_them(conformance_server):
    spec = document()
    validator = jsonschema_rs.validator_for({**_body(spec, "/v1/products", "post"),
                                             "components": spec["components"]})
    client = conformance_server.client(conformance_server.secret)
    for extra in PRODUCT_BODIES:
        body = {"name": "Variant", "price_cents": 100, "currency": "USD", **extra}
        status = client.post("/v1/products", json=body).status_code
        assert status in (201, 422), (body, status)
        assert validator.is_valid(body) == (status == 201), (body, status)


def test_an_orders_limits_are_the_shops(conformance_server):
    """The served document offers the configured pairs, both or neither, and the configured
    largest quantity; an integral 1.0 is an integer to both."""
    client = conformance_server.client(conformance_server.secret)
    spec = client.get("/v1/openapi.json").json()
    body = _body(spec, "/v1/orders", "post")
    assert body["properties"]["chain"]["enum"] == ["tron", "ethereum", "bitcoin", "solana"]
    assert body["properties"]["asset"]["enum"] == ["USDT", "USDC", "BTC"]
    assert body["dependentRequired"] == {"chain": ["asset"], "asset": ["chain"]}
    assert body["properties"]["qty"]["maximum"] == 100
    validator = jsonschema_rs.validator_for(body)
    product = make_product(client, type="account", delivery_text="x")
    for extra in ({}, {"chain": "tron"}, {"asset": "USDT"}, {"chain": "tron", "asset": "USDT"},
                  {"chain": "base", "asset": "USDC"}, {"chain": "bitcoin", "asset": "BTC"},
                  {"qty": 1.0}, {"qty": 1.5}, {"qty": 100}, {"qty": 101}):
        order = {"product_id": product["id"], "customer_email": "pairs@example.com", **extra}
        status = client.post("/v1/orders", json=order).status_code
        assert validator.is_valid(order) == (status == 201), (extra, status)


def test_enums_wherever_the_server_has_one():
    schemas = document()["components"]["schemas"]
    assert schemas["Refund"]["properties"]["status"]["enum"] == list(refunds.STATUSES)
    assert schemas["Refund"]["properties"]["reason"]["anyOf"][0]["enum"] == list(refunds.REASONS)
    assert schemas["Order"]["properties"]["status"]["enum"] == list(orders.STATUSES)
    assert schemas["LicenseKeyDelivery"]["properties"]["state"]["enum"] == [
        "pending", "delivered", "failed", "awaiting_shipment", "shipped"]
    assert schemas["Payout"]["properties"]["status"]["enum"] == list(payouts.STATUSES)
    assert schemas["WebhookDelivery"]["properties"]["status"]["enum"] == [
        "pending", "succeeded", "failed", "cancelled"]
    assert schemas["WebhookDelivery"]["properties"]["event_type"]["anyOf"][0]["enum"] == list(
        webhooks.EVENT_TYPES)
    for name in ("Product", "Order"):
        assert schemas[name]["properties"]["currency"] == {"$ref": "#/components/schemas/Currency"}
    assert "USD" in schemas["Currency"]["enum"]
    assert set(schemas["Payout"]["properties"]["chain"]["enum"]) == set(chains.CHAINS)
    payment = schemas["Order"]["properties"]["payment"]["anyOf"][0]  # null: a free order
    assert "USDT" in payment["properties"]["asset"]["enum"]


# --- The response side: typed goods and events, headers, statuses, links ------------------------

def test_delivery_is_typed_per_kind_and_event_objects_per_type():
    schemas = document()["components"]["schemas"]
    delivery = schemas["Order"]["properties"]["delivery"]
    assert delivery["discriminator"]["propertyName"] == "kind"
    goods = {kind: schemas[ref.rsplit("/", 1)[-1]]["properties"]
             for kind, ref in delivery["discriminator"]["mapping"].items()}
    assert goods["license_key"]["keys"]["items"] == {"type": "string"}
    for kind in ("account", "dynamic", "subscription"):
        assert goods[kind]["text"]["type"] == "string"
    assert "download_url" in goods["file_download"]
    assert {"shipping_address", "tracking"} <= set(goods["physical"])
    events = schemas["Event"]["discriminator"]["mapping"]
    assert set(events) == set(webhooks.EVENT_TYPES)
    for event_type, ref in events.items():
        inner = schemas[ref.rsplit("/", 1)[-1]]["properties"]["data"]["properties"]["object"]
        family = event_type.split(".")[0]
        assert inner == {"$ref": f"#/components/schemas/{family.title()}"}, event_type


def test_paid_orders_of_every_kind_match_their_delivery_schema(conformance_server):
    """The typed goods are what the server really returns, kind by kind."""
    client = conformance_server.client(conformance_server.secret)
    spec = document()
    schemas = spec["components"]["schemas"]
    mapping = schemas["Order"]["properties"]["delivery"]["discriminator"]["mapping"]
    orders_made = []
    for kind in ("license_key", "account", "subscription", "physical"):
        product = make_product(client, type=kind, **(
            {"delivery_text": "secret text"} if kind in ("account", "subscription") else {}))
        if kind == "license_key":
            import_keys(client, product["id"], [f"KEY-{secrets.token_hex(4)}"])
        extra = {"shipping_address": {"name": "A", "line1": "B", "city": "C",
                                      "postal_code": "1", "country": "DE"}} \
            if kind == "physical" else {}
        orders_made.append(pay(client, place_order(client, product["id"], **extra)["id"]))
    for order in orders_made:
        delivery = order["delivery"]
        schema = {**schemas[mapping[delivery["kind"]].rsplit("/", 1)[-1]],
                  "components": spec["components"]}
        assert jsonschema_rs.validator_for(schema).is_valid(delivery), delivery
        assert delivery["state"] in ("delivered", "awaiting_shipment"), delivery


def _validate_with_headers(path: str, method: str, response,
                           path_parameters: dict | None = None) -> None:
    operation = schema[path][method]
    case = operation.Case(path_parameters=path_parameters or {})
    case.validate_response(response, checks=[status_code_conformance,
                                             response_schema_conformance,
                                             response_headers_conformance])


@pytest.mark.e2e
def test_response_headers_are_declared_and_true(tmp_path):
    spec = document()
    product_create = spec["paths"]["/v1/products"]["post"]["responses"]
    assert product_create["201"]["headers"].keys() == {
        "X-Request-Id", "RateLimit", "RateLimit-Policy", "Idempotent-Replayed"}
    assert "Retry-After" in product_create["429"]["headers"]
    assert "Idempotent-Replayed" not in spec["paths"]["/v1/products"]["get"]["responses"][
        "200"]["headers"]
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            for code, response in operation["responses"].items():
                assert "X-Request-Id" in response["headers"], (path, method, code)
                assert ("Retry-After" in response["headers"]) == (code == "429")
    with running_server(tmp_path, "[limits]\nreads_per_minute = 2\n") as server:
        client = server.admin
        for _ in range(2):
            _validate_with_headers("/v1/products", "GET", client.get("/v1/products"))
        limited = client.get("/v1/products")
        assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 0
        _validate_with_headers("/v1/products", "GET", limited)
        body = {"name": "Replayed", "type": "account", "price_cents": 1, "currency": "USD"}
        first = client.post("/v1/products", json=body, headers={"Idempotency-Key": "k1"})
        again = client.post("/v1/products", json=body, headers={"Idempotency-Key": "k1"})
        assert again.headers["Idempotent-Replayed"] == "true" and again.json() == first.json()
        for response in (first, again):
            _validate_with_headers("/v1/products", "POST", response)


def test_every_status_a_route_answers_is_declared():
    spec = document()
    create_order = spec["paths"]["/v1/orders"]["post"]["responses"]
    assert "502" in create_order
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            codes = set(operation["responses"])
            assert {"400", "413", "422", "429", "500"} <= codes, (path, method)
            if "{" in path:
                assert "404" in codes, path
            if operation.get("security") == []:  # no key: no 401, 403 or idempotency
                assert not {"401", "403", "409"} & codes, (path, method)
                continue
            assert {"401", "403"} <= codes, (path, method)
            if method in ("post", "patch", "delete"):
                assert "409" in codes, (path, method)


@pytest.mark.e2e
def test_502_when_blockpn_is_unreachable_conforms(tmp_path):
    """A live order whose provider can't be reached: a declared 502 with a problem body."""
    config = GENEROUS_LIMITS + (f'[blockpn]\nbase_url = "http://127.0.0.1:{free_port()}"\n'
                                'api_key = "k"\nipn_secret = "s"\n')
    with running_server(tmp_path, config) as server:
        live = server.client(server.mint(mode="live", name="live"))
        product = make_product(live, type="account", delivery_text="x")
        response = live.post("/v1/orders", json={"product_id": product["id"],
                                                 "customer_email": "buyer@example.com"})
        assert response.status_code == 502, response.text
        _validate_with_headers("/v1/orders", "POST", response)


def test_links_chain_each_create_to_the_operations_taking_its_id():
    spec = document()

    def links(path: str) -> dict:
        post = spec["paths"][path]["post"]["responses"]
        return next(response for code, response in post.items() if code == "201")["links"]

    expected = {
        "/v1/products": {"get_product", "update_product", "archive_product",
                         "import_license_keys", "upload_product_file", "create_order"},
        "/v1/orders": {"get_order", "refund_order", "list_refunds", "resend_order",
                       "fulfill_order", "pay_test_order", "expire_test_order"},
        "/v1/webhooks": {"get_webhook", "update_webhook", "delete_webhook", "test_webhook",
                         "rotate_webhook_secret", "list_deliveries", "retry_delivery"},
        "/v1/payouts": {"get_payout", "fail_test_payout"},
        "/v1/api-keys": {"revoke_api_key"},
    }
    for path, targets in expected.items():
        assert targets <= set(links(path)), (path, set(links(path)))
    assert links("/v1/orders")["refund_order"]["parameters"] == {"order_id": "$response.body#/id"}
    assert links("/v1/products")["create_order"]["requestBody"] == {
        "product_id": "$response.body#/id"}


# --- Stateful: create → use, through the links -----------------------------------------------

# Positive data only, so the negative checks stay with the stateless phase. `use_after_free`
# is left out on purpose: DELETE /v1/products/{id} archives, and an archived product stays
# readable (orders keep pointing at it).
STATEFUL_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                   response_schema_conformance, response_headers_conformance,
                   ensure_resource_availability]
WRITES = ("POST", "PATCH", "DELETE")


def test_stateful_links_conform(conformance_server):
    """Scenarios that follow the links (product → order → pay → refund, webhook → test and
    deliveries, key → revoke, ...), every response checked against the document."""
    secret = conformance_server.secret
    # The served document (its payment choices are the shop's), positive requests only:
    # scenarios need their creates to succeed (negative data is the stateless phase's job).
    served = conformance_server.client().get("/v1/openapi.json").json()
    stateful_schema = schemathesis.openapi.from_dict(
        served, config=SchemathesisConfig.from_dict({"generation": {"mode": "positive"}}))

    class Scenarios(stateful_schema.as_state_machine()):
        def get_call_kwargs(self, case):
            # A fresh Idempotency-Key per write, so generated keys don't collide into 409s.
            headers = {"Authorization": f"Bearer {secret}"}
            if case.method.upper() in WRITES:
                headers["Idempotency-Key"] = secrets.token_hex(12)
            return {"base_url": conformance_server.url, "headers": headers}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=STATEFUL_CHECKS,
                                   transport_kwargs=kwargs or None, recorder=self.recorder)

    # Generation only, as schemathesis runs its stateful phase: a replay against a server
    # whose state moved on can't reproduce the same scenario. For the same reason Hypothesis
    # may find a scenario's draws changed under it (FlakyStrategyDefinition): that run says
    # nothing about the API, so it is run again, a few times at most.
    for attempt in range(3):
        try:
            Scenarios.run(settings=settings(
                max_examples=60, stateful_step_count=8, phases=[Phase.generate],
                deadline=None, database=None, suppress_health_check=list(HealthCheck)))
            return
        except FlakyStrategyDefinition:
            if attempt == 2:
                raise


# What each create needs, and what a followed link's target needs besides the linked id.
SOURCES = {
    "/v1/products": {"name": "Linked", "type": "account", "delivery_text": "x",
                     "price_cents": 500, "currency": "USD"},
    "/v1/webhooks": {"url": "http://127.0.0.1:9/hook", "events": ["*"]},
    "/v1/api-keys": {"name": "linked", "abilities": ["orders:read"]},
    "/v1/payouts": {"chain": "tron", "asset": "USDT", "amount_cents": 100,
                    "destination_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"},
}
TARGET_BODIES = {"create_order": {"customer_email": "linked@example.com"},
                 "import_license_keys": {"keys": ["LINKED-1"]}}


def test_every_link_reaches_its_target(conformance_server):
    """Each link of each create, followed as its expressions say, finds the new object:
    no 404 where the link binds every path parameter, and every answer conforms."""
    client = conformance_server.client(conformance_server.secret)
    product = make_product(client, type="account", delivery_text="x")
    pay(client, place_order(client, product["id"])["id"])  # a balance for the payout
    sources = {**SOURCES, "/v1/orders": {"product_id": product["id"],
                                         "customer_email": "linked@example.com"}}
    spec = document()
    operations = {op["operationId"]: (path, method.upper(), op)
                  for path, methods in spec["paths"].items() for method, op in methods.items()}
    followed = 0
    for path, body in sources.items():
        created = client.post(path, json=body, headers={"Idempotency-Key": secrets.token_hex(8)})
        assert created.status_code == 201, created.text
        if path == "/v1/orders":
            pay(client, created.json()["id"])
        links = spec["paths"][path]["post"]["responses"]["201"]["links"]
        # Deleting ends the object's life: follow those links last.
        for link in sorted(links.values(),
                           key=lambda link: operations[link["operationId"]][1] == "DELETE"):
            target_path, method, target = operations[link["operationId"]]
            response, parameters = _follow(client, created.json(), link, target_path,
                                           method, target)
            if set(link.get("parameters", {})) == set(parameters):  # every one bound
                assert response.status_code != 404, (link, response.text)
            _validate_with_headers(target_path, method, response, parameters)
            followed += 1
    assert followed >= 20


def _follow(client, created: dict, link: dict, path: str, method: str, target: dict):
    """Call the link's target with the values its runtime expressions name (a made-up id
    for a path parameter the link can't know); the response and the path parameters."""
    def value(expression: str) -> str:
        assert expression == "$response.body#/id", expression
        return created["id"]

    parameters = {name: "none" for name in re.findall(r"{(\w+)}", path)}
    parameters.update({name: value(e) for name, e in link.get("parameters", {}).items()})
    url = path.format(**parameters)
    headers = {"Idempotency-Key": secrets.token_hex(8)} if method in WRITES else {}
    if method not in ("POST", "PATCH"):
        return client.request(method, url, headers=headers), parameters
    body = {**TARGET_BODIES.get(target["operationId"], {}),
            **{name: value(e) for name, e in link.get("requestBody", {}).items()}}
    return client.request(method, url, json=body, headers=headers), parameters


def test_a_product_created_archived_says_since_when(conformance_server):
    """Found by the stateful phase: created with `status: archived`, then DELETEd, the
    product answered `archived_at: null` where the document promises a time."""
    client = conformance_server.client(conformance_server.secret)
    product = make_product(client, type="account", status="archived")
    assert product["archived_at"] == product["created_at"]
    archived = client.delete(f"/v1/products/{product['id']}")
    assert archived.status_code == 200 and archived.json()["archived_at"] == product["archived_at"]


def test_repeats_and_query_digits_are_documented_as_the_server_takes_them(conformance_server):
    """Repeated abilities are taken (counted once), so the document has no `uniqueItems`;
    a query integer is ASCII digits, so `limit=٣` is refused as the document says."""
    spec = document()
    client = conformance_server.client(conformance_server.secret)
    body = {"name": "repeats", "abilities": ["orders:read", "orders:read"]}
    validator = jsonschema_rs.validator_for(_body(spec, "/v1/api-keys", "post"))
    assert validator.is_valid(body)
    minted = client.post("/v1/api-keys", json=body)
    assert minted.status_code == 201 and minted.json()["abilities"] == ["orders:read"]
    assert client.get("/v1/products", params={"limit": "٣"}).status_code == 422
    assert client.get("/v1/products", params={"limit": "3"}).status_code == 200
