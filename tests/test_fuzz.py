"""Fuzzing (docs/api.md, Errors): malformed input is a client error, never a crash.

- Property tests (Hypothesis) on the pieces every request goes through: `Schema.validate`
  of every body and query schema the API declares, on arbitrary JSON objects and on
  near-valid ones, raises nothing but `InvalidRequest` (400) or `Unprocessable` (422);
  decoding a list cursor from any string raises nothing but `Unprocessable`; `Signer.unsign`
  of any text raises nothing but `BadToken`, and a token altered in any way is refused.
- Over HTTP, against a real server: schemathesis with negative data generation on every
  operation of the OpenAPI document, and tampered cursors and order-page tokens, checking
  only that no answer is a 5xx.
"""

from __future__ import annotations

import secrets

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, example, given, settings, strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig

from sellix_lite.config import Config
from sellix_lite.db import connect
from sellix_lite.errors import InvalidRequest, Unprocessable
from sellix_lite.migrations import migrate
from sellix_lite.security import BadToken, Signer
from sellix_lite.services.links import Links
from sellix_lite.services.scope import CURSOR_NAMESPACE, Scope
from sellix_lite.validation import Array, Boolean, Enum, Integer, Object, Schema, String
from sellix_lite.web.api.openapi import document
from sellix_lite.web.api.pipeline import OPERATIONS  # importing the API registers every route

from conftest import GENEROUS_LIMITS, Server
from support import json_body, make_product, place_order

SECRET_KEY = "fuzzing-secret-key-" + "x" * 30
PROPERTY_SETTINGS = settings(max_examples=200, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck))
HTTP_SETTINGS = settings(max_examples=40, deadline=None, database=None,
                         suppress_health_check=list(HealthCheck))

# --- strategies -----------------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10)


def _schemas() -> list[tuple[str, Schema]]:
    """Every body and query schema of the API, nested object schemas included."""
    found: dict[int, tuple[str, Schema]] = {}

    def add(name: str, schema: Schema) -> None:
        if id(schema) in found:
            return
        found[id(schema)] = (name, schema)
        for field_name, field in schema.fields.items():
            inner = field.items if isinstance(field, Array) else field
            if isinstance(inner, Object):
                add(f"{name}.{field_name}", inner.schema)

    for op in OPERATIONS:
        if op.body is not None:
            add(f"{op.method} {op.rule} body", op.body)
        add(f"{op.method} {op.rule} query", op.query)
    return list(found.values())


SCHEMAS = _schemas()


def near_valid(field) -> st.SearchStrategy:
    """Values around what `field` accepts, or anything at all."""
    if isinstance(field, Integer):
        low = -5 if field.minimum is None else field.minimum - 2
        high = 5 if field.maximum is None else field.maximum + 2
        typed = st.integers(low, high) | st.integers() | st.floats()
    elif isinstance(field, Enum):
        typed = st.sampled_from(field.choices) | st.text(max_size=12)
    elif isinstance(field, Boolean):
        typed = st.booleans() | st.sampled_from(["true", "false", 0, 1])
    elif isinstance(field, String):
        size = min(field.max_length or 30, 30)
        typed = st.text(max_size=size + 2) | st.text(" \t\n", max_size=4)
        if field.pattern is not None:
            typed |= st.from_regex(field.pattern, fullmatch=True)
    elif isinstance(field, Array):
        typed = st.lists(near_valid(field.items), max_size=6)
    elif isinstance(field, Object):
        typed = objects(field.schema)
    else:
        typed = st.nothing()
    return typed | JSON


def objects(schema: Schema) -> st.SearchStrategy:
    """JSON objects using the schema's field names (and others) with near-valid values."""
    named = st.fixed_dictionaries({}, optional={name: near_valid(field)
                                                for name, field in schema.fields.items()})
    extra = st.dictionaries(st.text(max_size=8), JSON, max_size=2)
    return st.tuples(named, extra).map(lambda pair: {**pair[1], **pair[0]})


def query_strings(schema: Schema) -> st.SearchStrategy:
    """Query strings as Flask hands them over: names to text values."""
    values = st.text(max_size=20) | st.integers().map(str) | st.from_regex(r"-?\d{1,25}",
                                                                          fullmatch=True)
    names = st.sampled_from(sorted(schema.fields) or ["limit"]) | st.text(max_size=8)
    return st.dictionaries(names, values, max_size=4)


def _check_client_error(error: Exception) -> None:
    assert isinstance(error, (InvalidRequest, Unprocessable)), repr(error)
    assert isinstance(error.errors, dict) and error.errors, error.errors
    for name, message in error.errors.items():
        assert isinstance(name, str) and isinstance(message, str) and message


# --- 1. Schema.validate ------------------------------------------------------------------------

def test_every_declared_schema_is_fuzzed():
    names = [name for name, _ in SCHEMAS]
    assert any("shipping_address" in name for name in names)  # nested schemas are reached
    assert len(names) >= len(OPERATIONS)


@PROPERTY_SETTINGS
@given(data=st.data())
def test_validate_bodies_raises_only_400_or_422(data):
    name, schema = data.draw(st.sampled_from(SCHEMAS), label="schema")
    body = data.draw(objects(schema) | st.dictionaries(st.text(max_size=8), JSON),
                     label="body")
    try:
        cleaned = schema.validate(body)
    except Exception as error:  # noqa: BLE001  (the property: nothing else escapes)
        _check_client_error(error)
    else:
        assert isinstance(cleaned, dict) and set(cleaned) <= set(schema.fields), name


@PROPERTY_SETTINGS
@given(data=st.data())
def test_validate_query_strings_raises_only_400_or_422(data):
    name, schema = data.draw(st.sampled_from(SCHEMAS), label="schema")
    query = data.draw(query_strings(schema), label="query")
    try:
        cleaned = schema.validate(query, from_query=True)
    except Exception as error:  # noqa: BLE001
        _check_client_error(error)
    else:
        assert set(cleaned) <= set(schema.fields), name


# --- 2. Cursors and signed tokens ------------------------------------------------------------

SIGNER = Signer(SECRET_KEY)
VALID_CURSOR = SIGNER.sign_text("test:products:prod_01J0000000000000000000000Z",
                                CURSOR_NAMESPACE)
NON_ASCII = "é"


@pytest.fixture(scope="module")
def scope(tmp_path_factory):
    db = connect(tmp_path_factory.mktemp("fuzz-db") / "sellix.db")
    migrate(db)
    yield Scope(db, "test", Config(), Links("http://shop.example", SIGNER))
    db.close()


def tamper(token: str, kind: str, index: int, char: str) -> str:
    """`token` changed once: a character inserted, replaced or deleted, or it is cut."""
    i = index % (len(token) + 1)
    if kind == "insert":
        return token[:i] + char + token[i:]
    if kind == "replace" and i < len(token):
        return token[:i] + char + token[i + 1:]
    if kind == "delete" and i < len(token):
        return token[:i] + token[i + 1:]
    return token[:i]


TAMPERINGS = st.tuples(st.sampled_from(["insert", "replace", "delete", "cut"]),
                       st.integers(-200, 200), st.characters())
STRINGS = (st.text(max_size=120) | st.text("ABCDEFabcdef0123456789-_.=", max_size=120)
           | st.binary(max_size=60).map(lambda raw: raw.decode("latin-1")))


@PROPERTY_SETTINGS
@given(text=STRINGS)
def test_arbitrary_cursor_strings_are_only_422(scope, text):
    query = {"limit": 5, "cursor": text}
    try:
        scope.page("products", query, dict)
    except Unprocessable as error:
        assert set(error.errors) == {"cursor"}


@PROPERTY_SETTINGS
@given(change=TAMPERINGS)
@example(change=("insert", -3, NON_ASCII))  # inside the signature
@example(change=("replace", -1, NON_ASCII))
def test_tampered_cursors_are_only_422(scope, change):
    tampered = tamper(VALID_CURSOR, *change)
    if tampered == VALID_CURSOR:
        return
    with pytest.raises(Unprocessable) as caught:
        scope.page("products", {"limit": 5, "cursor": tampered}, dict)
    assert set(caught.value.errors) == {"cursor"}


@PROPERTY_SETTINGS
@given(value=JSON, namespace=st.sampled_from([CURSOR_NAMESPACE, "order-link", "other"]),
       table=st.sampled_from(["products", "orders"]))
def test_genuine_tokens_of_the_wrong_shape_are_only_422(scope, value, namespace, table):
    """Signed with the real key, but not a cursor of this list: refused, never a crash."""
    with pytest.raises(Unprocessable) as caught:
        scope.page(table, {"limit": 5, "cursor": SIGNER.sign(value, namespace)}, dict)
    assert set(caught.value.errors) == {"cursor"}


@PROPERTY_SETTINGS
@given(text=STRINGS, namespace=st.sampled_from([CURSOR_NAMESPACE, "order-link", "other"]),
       table=st.sampled_from(["products", "orders"]))
def test_genuine_text_tokens_are_cursors_only_of_their_list(scope, text, namespace, table):
    token = SIGNER.sign_text(text, namespace)
    try:
        scope.page(table, {"limit": 5, "cursor": token}, dict)
    except Unprocessable as error:
        assert set(error.errors) == {"cursor"}
    else:
        assert namespace == CURSOR_NAMESPACE and text.startswith(f"test:{table}:") \
            and len(text) > len(f"test:{table}:")


@PROPERTY_SETTINGS
@given(text=STRINGS, namespace=st.sampled_from([CURSOR_NAMESPACE, "order-link"]))
def test_unsign_of_arbitrary_text_is_only_bad_token(text, namespace):
    for unsign in (lambda: SIGNER.unsign(text, namespace),
                   lambda: SIGNER.unsign_timed(text, namespace, 3600)):
        try:
            unsign()
        except BadToken:
            pass


@PROPERTY_SETTINGS
@given(value=JSON, change=TAMPERINGS)
@example(value="ord_01J0000000000000000000000Z", change=("insert", -3, NON_ASCII))
def test_unsign_refuses_every_altered_token(value, change):
    """Only the exact token `sign` made is accepted (docs/api.md: even one character)."""
    token = SIGNER.sign(value, "order-link")
    tampered = tamper(token, *change)
    if tampered == token:
        return
    with pytest.raises(BadToken):
        SIGNER.unsign(tampered, "order-link")


# --- 3. Over HTTP: schemathesis (negative data) and tampered tokens ---------------------------

schema = schemathesis.openapi.from_dict(
    document(), config=SchemathesisConfig.from_dict({"generation": {"mode": "negative"}}))


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    """A server with no limit in the way, a key with every ability, two products (so lists
    have cursors) and an order (with its signed order-page link)."""
    server = Server(tmp_path_factory.mktemp("fuzz"),
                    GENEROUS_LIMITS + "failed_auths_per_minute_per_ip = 100000\n").start()
    try:
        server.secret = server.mint()
        client = server.client(server.secret)
        products = [make_product(client, type="account", delivery_text="x") for _ in range(2)]
        page = json_body(client.get("/v1/products", params={"limit": 1}))
        server.cursor = page["next_cursor"]
        server.checkout_url = place_order(client, products[0]["id"],
                                          customer_email="fuzz@example.com")["payment"][
                                              "checkout_url"]
        yield server
    finally:
        server.stop()


@schema.parametrize()
@settings(max_examples=6, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_negative_requests_are_never_5xx(case, fuzz_server):
    case.call_and_validate(base_url=fuzz_server.url, checks=[not_a_server_error],
                           headers={"Authorization": f"Bearer {fuzz_server.secret}"})


@HTTP_SETTINGS
@given(change=TAMPERINGS)
@example(change=("insert", -3, NON_ASCII))
def test_tampered_cursor_over_http_is_a_client_error(fuzz_server, change):
    tampered = tamper(fuzz_server.cursor, *change)
    response = requests.get(fuzz_server.url + "/v1/products",
                            params={"limit": 1, "cursor": tampered},
                            headers={"Authorization": f"Bearer {fuzz_server.secret}"},
                            timeout=30)
    assert response.status_code < 500, f"{response.text} for cursor={tampered!r}"
    if tampered != fuzz_server.cursor:
        assert response.status_code in (400, 422), response.text
        assert response.headers["Content-Type"] == "application/problem+json"


@HTTP_SETTINGS
@given(change=TAMPERINGS)
@example(change=("insert", -3, NON_ASCII))
def test_tampered_order_page_token_is_never_5xx(fuzz_server, change):
    base, _, token = fuzz_server.checkout_url.partition("?t=")
    tampered = tamper(token, *change)
    response = requests.get(base, params={"t": tampered}, timeout=30)
    assert response.status_code < 500, f"{response.status_code} for t={tampered!r}"


@HTTP_SETTINGS
@given(text=STRINGS)
def test_arbitrary_cursor_over_http_is_a_client_error(fuzz_server, text):
    response = requests.get(fuzz_server.url + "/v1/orders", params={"cursor": text},
                            headers={"Authorization": f"Bearer {fuzz_server.secret}"},
                            timeout=30)
    assert response.status_code in (400, 422), response.text


def test_idempotency_key_header_fuzz_is_never_5xx(fuzz_server):
    """Header values schemathesis can't send through every client: odd lengths and bytes."""
    for key in ["", "a" * 255, "a" * 256, "\x7f", "é".encode().decode("latin-1"),
                secrets.token_urlsafe(300)]:
        response = requests.post(fuzz_server.url + "/v1/products", json={},
                                 headers={"Authorization": f"Bearer {fuzz_server.secret}",
                                          "Idempotency-Key": key.encode("latin-1")},
                                 timeout=30)
        assert response.status_code < 500, (key, response.text)
