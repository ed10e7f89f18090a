"""Catalog (docs/api.md, Products): products, license-key pools and product files, with their events
written to the outbox in the same transaction (docs/api.md, Events), through the real server."""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import threading
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import ULID, assert_problem, mint_via_api
from support import (
    Reply,
    assert_invalid,
    get_product,
    import_keys,
    make_product,
    pay,
    place_order,
)

PRODUCT_ID = re.compile(rf"prod_{ULID}")
EVENT_ID = re.compile(rf"evt_{ULID}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
TYPES = ("license_key", "account", "file_download", "dynamic", "physical", "subscription")
REQUIRED = {"name": "Widget", "type": "account", "price_cents": 500, "currency": "USD"}
WRITE = "products:write"
READ = "products:read"


# --- helpers ----------------------------------------------------------------------------

def create(client, **fields) -> dict:
    """A new product, REQUIRED with the given fields over it, as reads show it."""
    product = make_product(client, **{**REQUIRED, **fields})
    product.pop("dynamic_signing_secret", None)  # a dynamic product's, shown once
    return product


def create_dynamic(client, url: str = "http://127.0.0.1:9/goods") -> tuple[dict, str]:
    """A new dynamic product as reads show it, and its signing secret."""
    product = make_product(client, **{**REQUIRED, "type": "dynamic", "dynamic_url": url})
    return product, product.pop("dynamic_signing_secret")


def events_of(server, product_id: str) -> list[dict]:
    """The outbox events about one product, oldest first."""
    rows = server.query("SELECT id, type, mode, data, created_at FROM events "
                         "WHERE json_extract(data, '$.object.id') = ? ORDER BY rowid",
                 (product_id,))
    return [{"id": r[0], "type": r[1], "mode": r[2], "data": json.loads(r[3]),
             "created_at": r[4]} for r in rows]


def pool(server, product_id: str) -> list[str]:
    return [r[0] for r in server.query("SELECT key FROM license_keys WHERE product_id = ?",
                                (product_id,))]


def walk(client, url: str, limit: int) -> list[str]:
    """Every id of a list, following cursors."""
    separator = "&" if "?" in url else "?"
    ids, next_url = [], f"{url}{separator}limit={limit}"
    while True:
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        page = response.json()
        assert set(page) == {"object", "data", "has_more", "next_cursor"}
        assert page["object"] == "list" and len(page["data"]) <= limit
        ids += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return ids
        next_url = f"{url}{separator}limit={limit}&cursor={page['next_cursor']}"


# --- create -----------------------------------------------------------------------------

@pytest.mark.parametrize("product_type, extra, expected", [
    ("license_key", {}, {"stock": 0}),
    ("account", {"delivery_text": "user: a / pass: b"},
     {"stock": None, "delivery_text": "user: a / pass: b"}),
    ("account", {"stock": 7}, {"stock": 7}),
    ("file_download", {}, {"stock": None}),
    ("dynamic", {"dynamic_url": "http://127.0.0.1:9/x", "delivery_text": "fallback"},
     {"stock": None, "dynamic_url": "http://127.0.0.1:9/x", "delivery_text": "fallback"}),
    ("physical", {"stock": 0}, {"stock": 0, "requires_shipping": True}),
    ("subscription", {}, {"stock": None, "interval": "month"}),
    ("subscription", {"interval": "year", "delivery_text": "welcome"},
     {"stock": None, "interval": "year", "delivery_text": "welcome"}),
])
def test_create_returns_the_full_object(api, product_type, extra, expected):
    body = {"name": "Adobe Creative Cloud Key", "type": product_type, "price_cents": 12900,
            "currency": "USD", **extra}
    response = api.post("/v1/products", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"] == "application/json"
    product = response.json()
    assert PRODUCT_ID.fullmatch(product["id"])
    assert re.fullmatch(r"adobe-creative-cloud-key(-\d+)?", product["slug"])
    assert TIMESTAMP.fullmatch(product["created_at"])
    assert product["updated_at"] == product["created_at"]
    # A dynamic product's signing secret is shown in this response alone.
    secret = product.pop("dynamic_signing_secret", None)
    if product_type == "dynamic":
        assert re.fullmatch(r"whsec_[A-Za-z0-9+/=]{40,}", secret)
    else:
        assert secret is None
    assert product == {
        "id": product["id"], "name": "Adobe Creative Cloud Key", "slug": product["slug"],
        "type": product_type, "price_cents": 12900, "currency": "USD", "description": "",
        "status": "active", "mode": "test", "created_at": product["created_at"],
        "updated_at": product["created_at"], "archived_at": None, "metadata": {},
        "delivery_text": None, "dynamic_url": None, "interval": None,
        "requires_shipping": False, "file": None, "image_url": None,
        "low_stock_threshold": None, "custom_fields": [], "activation_limit": None, **expected,
    }
    assert get_product(api, product["id"]) == product


def test_create_with_optional_fields(api):
    product = create(api, name="  Padded Name  ", description="# Title\n\n*bold*",
                     status="draft", price_cents=0, currency="JPY")
    assert product["name"] == "Padded Name"
    assert product["description"] == "# Title\n\n*bold*"
    assert product["status"] == "draft" and product["archived_at"] is None
    assert (product["price_cents"], product["currency"]) == (0, "JPY")


def test_create_at_the_length_limits(api):
    product = create(api, name="n" * 200, description="d" * 20000)
    assert len(product["name"]) == 200 and len(product["description"]) == 20000


def test_missing_required_fields_are_400_naming_each(api):
    body = assert_problem(api.post("/v1/products", json={}), 400, "invalid_request")
    assert body["errors"] == {"name": "is required", "type": "is required",
                              "price_cents": "is required", "currency": "is required"}
    body = assert_problem(api.post("/v1/products", json={"name": "x", "type": "account"}),
                          400, "invalid_request")
    assert set(body["errors"]) == {"price_cents", "currency"}


def test_empty_body_is_400(api):
    response = api.post("/v1/products", data=b"", headers={"Content-Type": "application/json"})
    body = assert_problem(response, 400, "invalid_request")
    assert set(body["errors"]) == {"name", "type", "price_cents", "currency"}


@pytest.mark.parametrize("overrides, field", [
    ({"price_cents": -1}, "price_cents"),
    ({"price_cents": 12.5}, "price_cents"),
    ({"price_cents": "100"}, "price_cents"),
    ({"price_cents": True}, "price_cents"),
    ({"price_cents": None}, "price_cents"),
    ({"price_cents": 10**19}, "price_cents"),
    ({"currency": "XYZ"}, "currency"),
    ({"currency": "usd"}, "currency"),
    ({"currency": 840}, "currency"),
    ({"name": ""}, "name"),
    ({"name": "   "}, "name"),
    ({"name": "n" * 201}, "name"),
    ({"name": 5}, "name"),
    ({"type": "ebook"}, "type"),
    ({"type": None}, "type"),
    ({"description": "d" * 20001}, "description"),
    ({"description": None}, "description"),
    ({"status": "deleted"}, "status"),
    ({"stock": -1}, "stock"),
    ({"stock": "5"}, "stock"),
    ({"stock": 1.5}, "stock"),
    ({"stock": 10**19}, "stock"),  # past what the database can hold: a 422, never a 500
    ({"colour": "red"}, "colour"),
    ({"slug": "my-own-slug"}, "slug"),
    ({"id": "prod_mine"}, "id"),
    ({"mode": "live"}, "mode"),
    # type-specific fields on the wrong type
    ({"type": "license_key", "delivery_text": "x"}, "delivery_text"),
    ({"type": "license_key", "stock": 5}, "stock"),
    ({"type": "license_key", "stock": None}, "stock"),
    ({"type": "account", "dynamic_url": "http://127.0.0.1:9/x"}, "dynamic_url"),
    ({"type": "account", "interval": "month"}, "interval"),
    ({"type": "account", "requires_shipping": True}, "requires_shipping"),
    ({"type": "physical", "requires_shipping": False}, "requires_shipping"),
    ({"type": "physical", "delivery_text": "x"}, "delivery_text"),
    ({"type": "subscription", "interval": "week"}, "interval"),
    ({"type": "file_download", "interval": "year"}, "interval"),
    # dynamic products and their URL
    ({"type": "dynamic"}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": None}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": ""}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": "ftp://example.com/x"}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": "javascript:alert(1)"}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": "not a url"}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": "http://"}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": "http://example.com:99999/x"}, "dynamic_url"),
    ({"type": "dynamic", "dynamic_url": "https://example.com/" + "x" * 2048}, "dynamic_url"),
])
def test_invalid_values_are_422_per_field(server, api, overrides, field):
    count = server.query("SELECT count(*) FROM products")[0][0]
    response = api.post("/v1/products", json={**REQUIRED, **overrides})
    body = assert_invalid(response, field, exact=True)
    assert body["detail"] == "1 field is invalid"
    assert server.query("SELECT count(*) FROM products")[0][0] == count


def test_every_invalid_field_is_reported_at_once(api):
    response = api.post("/v1/products", json={**REQUIRED, "price_cents": -1,
                                              "currency": "XYZ", "extra": 1})
    body = assert_invalid(response, "price_cents", "currency", "extra", exact=True)
    assert body["detail"] == "3 fields are invalid"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x", "http://example.com", "https://127.0.0.1/x", "https://localhost/x",
    "https://10.0.0.1/x", "https://192.168.1.20/x", "https://[::1]/x", "https://shop.local/x",
])
def test_live_mode_dynamic_url_must_be_https_and_public(live, url):
    response = live.post("/v1/products", json={**REQUIRED, "type": "dynamic",
                                               "dynamic_url": url})
    assert_invalid(response, "dynamic_url", exact=True)


def test_live_mode_accepts_a_public_https_dynamic_url(live):
    product = create(live, type="dynamic", dynamic_url="https://example.com/deliver")
    assert (product["mode"], product["dynamic_url"]) == ("live", "https://example.com/deliver")
    response = live.patch(f"/v1/products/{product['id']}",
                          json={"dynamic_url": "http://127.0.0.1/x"})
    assert_invalid(response, "dynamic_url", exact=True)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/x", "http://localhost:8080/hook",
                                 "http://10.0.0.1/x", "https://example.com/x"])
def test_test_mode_accepts_loopback_and_private_dynamic_urls(api, url):
    assert create(api, type="dynamic", dynamic_url=url)["dynamic_url"] == url


def test_create_with_an_idempotency_key_runs_once(server, api):
    headers = {"Idempotency-Key": f"create-{time.monotonic_ns()}"}
    body = {**REQUIRED, "name": "Idempotent product"}
    first = api.post("/v1/products", json=body, headers=headers)
    again = api.post("/v1/products", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content
    product_id = first.json()["id"]
    assert server.query("SELECT count(*) FROM products WHERE name = ?",
                 ("Idempotent product",)) == [(1,)]
    assert [e["type"] for e in events_of(server, product_id)] == ["product.created"]


# --- slugs ------------------------------------------------------------------------------

def test_slugs_are_unique_per_mode(api, live):
    slugs = [create(api, name="Same Name")["slug"] for _ in range(3)]
    assert slugs == ["same-name", "same-name-2", "same-name-3"]
    assert create(live, name="Same Name")["slug"] == "same-name"
    assert create(live, name="Same Name")["slug"] == "same-name-2"


def test_concurrent_creates_get_distinct_slugs(server, test_key):
    barrier = threading.Barrier(6)
    results: list = []

    def run():
        client = server.client(test_key)
        barrier.wait()
        response = client.post("/v1/products", json={**REQUIRED, "name": "Rush Hour"})
        results.append((response.status_code, response.json().get("slug")))

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(results) == sorted(
        [(201, "rush-hour")] + [(201, f"rush-hour-{n}") for n in range(2, 7)])


def test_slug_of_a_non_ascii_name_is_ascii(api):
    assert create(api, name="Café Crème ☕")["slug"] == "cafe-creme"
    for name in ("☕☕☕", "Ünïcödé — Ελληνικά 日本語", "!!!", "a" * 200):
        slug = create(api, name=name)["slug"]
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", slug), (name, slug)


def test_slugs_never_collide_with_suffixed_names(server, api):
    first = create(api, name="Collide Me")["slug"]
    second = create(api, name="Collide Me")["slug"]
    third = create(api, name="Collide Me 2")["slug"]
    fourth = create(api, name="Collide Me")["slug"]
    assert first == "collide-me" and second == "collide-me-2"
    assert len({first, second, third, fourth}) == 4
    rows = server.query("SELECT slug, count(*) FROM products WHERE mode = 'test' "
                         "GROUP BY slug HAVING count(*) > 1")
    assert rows == []


def test_many_products_of_one_name_take_suffixes_in_order(api):
    slugs = [create(api, name="Popular Name")["slug"] for _ in range(60)]
    assert slugs == ["popular-name"] + [f"popular-name-{n}" for n in range(2, 61)]


def test_suffixes_already_taken_by_other_names_are_skipped(server, api):
    taken = {create(api, name=f"Gap Fill {n}")["slug"] for n in (2, 3, 6, 7, 8, 20)}
    slugs = [create(api, name="Gap Fill")["slug"] for _ in range(12)]
    assert slugs[0] == "gap-fill"
    suffixes = [int(re.fullmatch(r"gap-fill-(\d+)", slug)[1]) for slug in slugs[1:]]
    assert not {f"gap-fill-{n}" for n in suffixes} & taken
    assert len(set(suffixes)) == len(suffixes) and suffixes == sorted(suffixes)
    everything = taken | set(slugs)
    # Each new suffix follows one that was taken: no scattering across the number line.
    assert all(n == 2 or f"gap-fill-{n - 1}" in everything for n in suffixes)
    rows = server.query("SELECT slug, count(*) FROM products WHERE mode = 'test' "
                        "GROUP BY slug HAVING count(*) > 1")
    assert rows == []


# --- fetch, update ----------------------------------------------------------------------

def test_fetch_unknown_is_404(api):
    assert_problem(api.get("/v1/products/prod_01J2PVQR41AAAAAAAAAAAAAAAA"), 404, "not_found")
    assert_problem(api.get("/v1/products/nope"), 404, "not_found")


@pytest.mark.parametrize("change", [
    {"name": "Renamed"},
    {"price_cents": 4900},
    {"description": "new *markdown*"},
    {"status": "draft"},
    {"stock": 3},
    {"stock": None},
    {"delivery_text": "new credentials"},
    {"delivery_text": None},
    {"name": "Both", "price_cents": 0, "description": ""},
])
def test_patch_any_subset_returns_the_full_object(api, change):
    before = create(api, name="Patch Me", price_cents=12900, stock=10, description="old",
                    delivery_text="old credentials")
    response = api.patch(f"/v1/products/{before['id']}", json=change)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["updated_at"] >= before["updated_at"]
    # The slug is the product's address on the storefront: a rename keeps it.
    assert after == {**before, **change, "updated_at": after["updated_at"]}
    assert get_product(api, before["id"]) == after


def test_patch_subscription_interval_and_dynamic_url(api):
    subscription = create(api, type="subscription")
    patched = api.patch(f"/v1/products/{subscription['id']}", json={"interval": "year"})
    assert patched.status_code == 200 and patched.json()["interval"] == "year"
    dynamic = create(api, type="dynamic", dynamic_url="http://127.0.0.1:9/a")
    patched = api.patch(f"/v1/products/{dynamic['id']}",
                        json={"dynamic_url": "http://127.0.0.1:9/b"})
    assert patched.status_code == 200 and patched.json()["dynamic_url"] == "http://127.0.0.1:9/b"


def test_empty_patch_returns_the_product_unchanged(v1, clock, app_db):
    product = create(v1)
    clock.advance(1)  # so that a needless write would show in updated_at
    for body in ({}, {"name": product["name"], "price_cents": product["price_cents"]}):
        response = v1.patch(f"/v1/products/{product['id']}", json=body)
        assert response.status_code == 200, response.text
        assert response.json() == product
    response = v1.patch(f"/v1/products/{product['id']}", data=b"",
                        headers={"Content-Type": "application/json"})
    assert response.status_code == 200 and response.json() == product
    assert [e["type"] for e in events_of(app_db, product["id"])] == ["product.created"]


def test_patch_status_archives_and_unarchives(api):
    product = create(api)
    archived = api.patch(f"/v1/products/{product['id']}", json={"status": "archived"}).json()
    assert archived["status"] == "archived"
    assert TIMESTAMP.fullmatch(archived["archived_at"])
    assert get_product(api, product["id"]) == archived
    restored = api.patch(f"/v1/products/{product['id']}", json={"status": "active"}).json()
    assert restored["status"] == "active" and restored["archived_at"] is None
    drafted = api.patch(f"/v1/products/{product['id']}", json={"status": "draft"}).json()
    assert drafted["status"] == "draft" and drafted["archived_at"] is None


def test_patch_unknown_product_is_404(api):
    response = api.patch("/v1/products/prod_01J2PVQR41AAAAAAAAAAAAAAAA", json={"name": "x"})
    assert_problem(response, 404, "not_found")


@pytest.mark.parametrize("product_type, change, field", [
    ("license_key", {"stock": 5}, "stock"),
    ("license_key", {"stock": None}, "stock"),
    ("license_key", {"delivery_text": "x"}, "delivery_text"),
    ("account", {"dynamic_url": "http://127.0.0.1:9/x"}, "dynamic_url"),
    ("account", {"interval": "month"}, "interval"),
    ("account", {"type": "license_key"}, "type"),
    ("account", {"currency": "EUR"}, "currency"),
    ("account", {"slug": "mine"}, "slug"),
    ("account", {"requires_shipping": True}, "requires_shipping"),
    ("account", {"archived_at": None}, "archived_at"),
    ("account", {"name": ""}, "name"),
    ("account", {"name": None}, "name"),
    ("account", {"price_cents": -5}, "price_cents"),
    ("account", {"price_cents": None}, "price_cents"),
    ("account", {"stock": 10**19}, "stock"),
    ("account", {"status": "gone"}, "status"),
    ("account", {"status": None}, "status"),
    ("account", {"unknown": 1}, "unknown"),
    ("dynamic", {"dynamic_url": None}, "dynamic_url"),
    ("dynamic", {"dynamic_url": "ftp://example.com/x"}, "dynamic_url"),
    ("subscription", {"interval": "week"}, "interval"),
])
def test_patch_invalid_is_422_and_changes_nothing(server, api, product_type, change, field):
    product = create(api, type=product_type)
    assert_invalid(api.patch(f"/v1/products/{product['id']}", json=change), field, exact=True)
    assert get_product(api, product["id"]) == product
    assert len(events_of(server, product["id"])) == 1


def test_patch_stock_null_makes_it_unlimited(api):
    product = create(api, stock=5)
    patched = api.patch(f"/v1/products/{product['id']}", json={"stock": None}).json()
    assert patched["stock"] is None
    assert get_product(api, product["id"])["stock"] is None


# --- delete (archive) -------------------------------------------------------------------

def test_delete_archives_and_stays_readable(v1, clock, app_db):
    product = create(v1)
    response = v1.delete(f"/v1/products/{product['id']}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {"id": product["id"], "deleted": True, "archived_at": body["archived_at"]}
    assert TIMESTAMP.fullmatch(body["archived_at"])
    fetched = get_product(v1, product["id"])
    assert fetched == {**product, "status": "archived", "archived_at": body["archived_at"],
                       "updated_at": fetched["updated_at"]}
    clock.advance(1)  # a second archive must not move archived_at
    again = v1.delete(f"/v1/products/{product['id']}")
    assert again.status_code == 200 and again.json() == body
    assert get_product(v1, product["id"]) == fetched
    assert [e["type"] for e in events_of(app_db, product["id"])] == [
        "product.created", "product.archived"]


def test_delete_unknown_is_404(api):
    assert_problem(api.delete("/v1/products/prod_01J2PVQR41AAAAAAAAAAAAAAAA"), 404,
                   "not_found")


# --- list and modes ---------------------------------------------------------------------

def test_list_filters_and_pagination(make_server):
    server = make_server()
    client = server.client(server.mint(name="catalog"))
    made = []
    for index, (product_type, status) in enumerate([
            ("account", "active"), ("license_key", "active"), ("account", "draft"),
            ("physical", "active"), ("account", "active"), ("license_key", "draft"),
            ("account", "active"), ("file_download", "active")]):
        made.append(create(client, name=f"P{index}", type=product_type, status=status))
    client.delete(f"/v1/products/{made[0]['id']}")
    client.delete(f"/v1/products/{made[3]['id']}")
    made = [get_product(client, p["id"]) for p in made]
    newest_first = list(reversed(made))

    page = client.get("/v1/products").json()
    assert page == {"object": "list", "data": newest_first, "has_more": False,
                    "next_cursor": None}

    def expected(**filters):
        return [p["id"] for p in newest_first
                if all(p[name] == value for name, value in filters.items())]

    for filters in ({"status": "active"}, {"status": "archived"}, {"status": "draft"},
                    {"type": "account"}, {"type": "license_key"}, {"type": "subscription"},
                    {"type": "account", "status": "active"}):
        url = "/v1/products?" + "&".join(f"{k}={v}" for k, v in filters.items())
        for limit in (1, 2, 3, 100):
            assert walk(client, url, limit) == expected(**filters), (filters, limit)
    assert walk(client, "/v1/products", 3) == [p["id"] for p in newest_first]

    live = server.client(server.mint(mode="live", name="live"))
    assert live.get("/v1/products").json() == {"object": "list", "data": [],
                                               "has_more": False, "next_cursor": None}
    live_product = create(live, name="Live one")
    assert walk(live, "/v1/products", 1) == [live_product["id"]]
    assert walk(client, "/v1/products", 100) == [p["id"] for p in newest_first]
    # A cursor is bound to its mode.
    cursor = client.get("/v1/products?limit=1").json()["next_cursor"]
    assert_invalid(live.get(f"/v1/products?limit=1&cursor={cursor}"), "cursor", exact=True)


@pytest.mark.parametrize("params, field", [
    ("status=bogus", "status"), ("status=", "status"), ("type=ebook", "type"),
    ("type=ACCOUNT", "type"), ("limit=0", "limit"), ("limit=101", "limit"),
    ("limit=abc", "limit"), ("cursor=garbage", "cursor"), ("colour=red", "colour"),
])
def test_bad_list_parameters_are_422(api, params, field):
    assert_invalid(api.get(f"/v1/products?{params}"), field, exact=True)


def test_tampered_cursor_is_422(api):
    for _ in range(3):
        create(api)
    cursor = api.get("/v1/products?limit=1").json()["next_cursor"]
    # (Not the last character: its low bits may be base64 padding that decodes the same.)
    for position in (0, len(cursor) // 3, len(cursor) // 2, len(cursor) - 10):
        replacement = "A" if cursor[position] != "A" else "B"
        tampered = cursor[:position] + replacement + cursor[position + 1:]
        assert_invalid(api.get(f"/v1/products?limit=1&cursor={tampered}"), "cursor", exact=True)


def test_other_mode_products_are_invisible(server, api, live):
    test_product = create(api, name="Test only", type="license_key")
    live_product = create(live, name="Live only", type="license_key")
    file_product = create(api, name="Test file", type="file_download")

    live_ids = walk(live, "/v1/products", 100)
    assert live_product["id"] in live_ids
    assert test_product["id"] not in live_ids and file_product["id"] not in live_ids
    assert all(p["mode"] == "live" for p in live.get("/v1/products?limit=100").json()["data"])
    test_ids = walk(api, "/v1/products", 100)
    assert test_product["id"] in test_ids and live_product["id"] not in test_ids

    for client, other in ((live, test_product), (api, live_product)):
        base = f"/v1/products/{other['id']}"
        assert_problem(client.get(base), 404, "not_found")
        assert_problem(client.patch(base, json={"name": "stolen"}), 404, "not_found")
        assert_problem(client.delete(base), 404, "not_found")
        assert_problem(client.post(f"{base}/keys", json={"keys": ["K"]}), 404, "not_found")
    assert_problem(live.put(f"/v1/products/{file_product['id']}/file?filename=a.txt",
                            data=b"data"), 404, "not_found")
    assert get_product(api, test_product["id"]) == test_product
    assert get_product(live, live_product["id"]) == live_product
    assert get_product(api, file_product["id"]) == file_product
    assert pool(server, test_product["id"]) == pool(server, live_product["id"]) == []


# --- license-key pools ------------------------------------------------------------------

def test_import_counts_duplicates_in_the_call_and_in_the_pool(server, api):
    product = create(api, type="license_key")
    result = import_keys(api, product["id"], ["A", " A ", "B", "C", "B", "\tD\n"])
    assert result == {"imported": 4, "duplicates": 2, "stock_after": 4}
    assert sorted(pool(server, product["id"])) == ["A", "B", "C", "D"]
    assert get_product(api, product["id"])["stock"] == 4

    result = import_keys(api, product["id"], ["A", "  D", "E", "E ", "F"])
    assert result == {"imported": 2, "duplicates": 3, "stock_after": 6}
    assert get_product(api, product["id"])["stock"] == 6

    result = import_keys(api, product["id"], ["A", "B"])
    assert result == {"imported": 0, "duplicates": 2, "stock_after": 6}
    assert sorted(pool(server, product["id"])) == ["A", "B", "C", "D", "E", "F"]


def test_import_with_an_idempotency_key_runs_once(server, api):
    product = create(api, type="license_key")
    headers = {"Idempotency-Key": f"import-{product['id']}"}
    url = f"/v1/products/{product['id']}/keys"
    first = api.post(url, json={"keys": ["I1", "I2"]}, headers=headers)
    again = api.post(url, json={"keys": ["I1", "I2"]}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json() == {"imported": 2, "duplicates": 0, "stock_after": 2}
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert [e["type"] for e in events_of(server, product["id"])] == [
        "product.created", "product.updated"]


def test_a_key_in_another_product_is_not_a_duplicate(api):
    first = create(api, type="license_key")
    second = create(api, type="license_key")
    import_keys(api, first["id"], ["SHARED"])
    assert import_keys(api, second["id"], ["SHARED"]) == {
        "imported": 1, "duplicates": 0, "stock_after": 1}


def test_sold_keys_still_count_as_duplicates(server, api):
    product = create(api, type="license_key")
    import_keys(api, product["id"], ["SOLD-1", "FREE-1"])
    # A key sold to an order leaves the available stock but stays in the pool.
    server.execute("UPDATE license_keys SET state = 'delivered', order_id = 'ord_x' "
                    f"WHERE product_id = '{product['id']}' AND key = 'SOLD-1'")
    assert get_product(api, product["id"])["stock"] == 1
    assert import_keys(api, product["id"], ["SOLD-1", "NEW-1"]) == {
        "imported": 1, "duplicates": 1, "stock_after": 2}
    assert get_product(api, product["id"])["stock"] == 2


def test_import_of_5000_keys(server, api):
    product = create(api, type="license_key")
    keys = [f"BULK-{i:05d}-XXXX-YYYY" for i in range(5000)]
    assert import_keys(api, product["id"], keys) == {
        "imported": 5000, "duplicates": 0, "stock_after": 5000}
    assert get_product(api, product["id"])["stock"] == 5000
    assert server.query("SELECT count(*) FROM license_keys WHERE product_id = ?",
                 (product["id"],)) == [(5000,)]


@pytest.mark.parametrize("keys", [
    [],
    [f"K{i}" for i in range(5001)],
    ["GOOD-1", ""],
    ["GOOD-1", "   "],
    ["GOOD-1", "\n\t"],
    ["GOOD-1", "k" * 1025],
    ["GOOD-1", 123],
    ["GOOD-1", None],
    ["GOOD-1", ["nested"]],
    ["GOOD-1", {"key": "x"}],
    ["GOOD-1", True],
    "GOOD-1",
    None,
    {"GOOD-1": 1},
])
def test_invalid_import_is_422_and_imports_nothing(server, api, keys):
    product = create(api, type="license_key")
    import_keys(api, product["id"], ["EXISTING"])
    before = get_product(api, product["id"])
    response = api.post(f"/v1/products/{product['id']}/keys", json={"keys": keys})
    assert_invalid(response, "keys", exact=True)
    assert pool(server, product["id"]) == ["EXISTING"]
    assert get_product(api, product["id"]) == before
    # The valid part of the refused call was not kept: importing it now adds it.
    assert import_keys(api, product["id"], ["GOOD-1"])["imported"] == 1


def test_keys_at_the_length_limit_are_accepted(api):
    product = create(api, type="license_key")
    result = import_keys(api, product["id"], ["k" * 1024, "  " + "j" * 1024 + "  "])
    assert result == {"imported": 2, "duplicates": 0, "stock_after": 2}


def test_import_request_errors(api):
    product = create(api, type="license_key")
    body = assert_problem(api.post(f"/v1/products/{product['id']}/keys", json={}), 400,
                          "invalid_request")
    assert body["errors"] == {"keys": "is required"}
    assert_invalid(api.post(f"/v1/products/{product['id']}/keys",
                            json={"keys": ["A"], "force": True}), "force", exact=True)
    assert_problem(api.post("/v1/products/prod_01J2PVQR41AAAAAAAAAAAAAAAA/keys",
                            json={"keys": ["A"]}), 404, "not_found")
    assert get_product(api, product["id"]) == product


@pytest.mark.parametrize("product_type", [t for t in TYPES if t != "license_key"])
def test_import_into_other_types_is_422(server, api, product_type):
    product = create(api, type=product_type)
    response = api.post(f"/v1/products/{product['id']}/keys", json={"keys": ["A"]})
    assert_invalid(response, "keys", exact=True)
    assert pool(server, product["id"]) == []
    assert get_product(api, product["id"]) == product


def test_concurrent_overlapping_imports(server, test_key):
    product = create(server.client(test_key), type="license_key")
    sets = [[f"RACE-{i:05d}" for i in range(0, 3000)],
            [f"RACE-{i:05d}" for i in range(1500, 4500)]]
    barrier = threading.Barrier(len(sets))
    results: list = [None] * len(sets)

    def run(index):
        client = server.client(test_key)
        barrier.wait()
        response = client.post(f"/v1/products/{product['id']}/keys",
                               json={"keys": sets[index]})
        results[index] = (response.status_code, response.json())

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(sets))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(status == 201 for status, _ in results), results
    bodies = [body for _, body in results]
    for body, keys in zip(bodies, sets):
        assert body["imported"] + body["duplicates"] == len(keys)
    assert sum(body["imported"] for body in bodies) == 4500
    assert {body["duplicates"] for body in bodies} <= {0, 1500}
    assert sorted(body["stock_after"] for body in bodies)[-1] == 4500
    assert get_product(server.client(test_key), product["id"])["stock"] == 4500
    rows = server.query("SELECT count(*), count(DISTINCT key) FROM license_keys "
                         "WHERE product_id = ?", (product["id"],))
    assert rows == [(4500, 4500)]
    # Each import wrote its own stock change, the second one starting where the first ended.
    updates = [e for e in events_of(server, product["id"]) if e["type"] == "product.updated"]
    stocks = [(e["data"]["previous_attributes"]["stock"], e["data"]["object"]["stock"])
              for e in updates]
    assert len(stocks) == 2 and stocks[0][0] == 0 and stocks[0][1] == stocks[1][0]
    assert stocks[1][1] == 4500


def test_schema_keeps_keys_unique_per_product(server, api):
    product = create(api, type="license_key")
    import_keys(api, product["id"], ["UNIQUE-1"])
    conn = sqlite3.connect(server.database, timeout=30)
    conn.execute("PRAGMA foreign_keys = ON")
    try:
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO license_keys (product_id, key, created_at) "
                         "VALUES (?, 'UNIQUE-1', '2026-01-01T00:00:00Z')", (product["id"],))
        # Available keys belong to no order; a key belongs to at most one order.
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO license_keys (product_id, key, created_at, order_id) "
                         "VALUES (?, 'UNIQUE-2', '2026-01-01T00:00:00Z', 'ord_x')",
                         (product["id"],))
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute("INSERT INTO license_keys (product_id, key, created_at) "
                         "VALUES ('prod_missing', 'K', '2026-01-01T00:00:00Z')")
        conn.rollback()
    finally:
        conn.close()
    assert pool(server, product["id"]) == ["UNIQUE-1"]
    assert get_product(api, product["id"])["stock"] == 1


# --- files ------------------------------------------------------------------------------

def stored_files(server, product_id: str) -> dict[str, bytes]:
    folder = server.root / "data" / "files" / product_id
    if not folder.exists():
        return {}
    return {path.name: path.read_bytes() for path in folder.iterdir()}


def test_upload_raw_then_multipart_replaces_the_file(server, api):
    product = create(api, type="file_download")
    data = b"%PDF-1.7 first version\n" * 100
    response = api.put(f"/v1/products/{product['id']}/file?filename=report.pdf", data=data)
    assert response.status_code == 200, response.text
    uploaded = response.json()
    sha = hashlib.sha256(data).hexdigest()
    assert uploaded["file"] == {"name": "report.pdf", "size_bytes": len(data), "sha256": sha,
                                "updated_at": uploaded["file"]["updated_at"]}
    assert TIMESTAMP.fullmatch(uploaded["file"]["updated_at"])
    assert uploaded == {**product, "file": uploaded["file"],
                        "updated_at": uploaded["updated_at"]}
    assert get_product(api, product["id"]) == uploaded
    assert stored_files(server, product["id"]) == {sha: data}

    new_data = bytes(range(256)) * 40
    response = api.put(f"/v1/products/{product['id']}/file",
                       files={"file": ("x.bin", new_data)})
    assert response.status_code == 200, response.text
    new_sha = hashlib.sha256(new_data).hexdigest()
    replaced = response.json()
    assert replaced["file"] == {"name": "x.bin", "size_bytes": len(new_data),
                                "sha256": new_sha, "updated_at": replaced["file"]["updated_at"]}
    assert get_product(api, product["id"]) == replaced
    assert stored_files(server, product["id"]) == {new_sha: new_data}

    events = events_of(server, product["id"])
    assert [e["type"] for e in events] == ["product.created", "product.updated",
                                          "product.updated"]
    assert events[1]["data"]["object"] == uploaded
    assert events[1]["data"]["previous_attributes"] == {"file": None}
    assert events[2]["data"]["object"] == replaced
    assert events[2]["data"]["previous_attributes"] == {"file": uploaded["file"]}


def test_upload_larger_than_the_json_limit(server, api):
    product = create(api, type="file_download")
    data = b"z" * (3 * 1024 * 1024)
    response = api.put(f"/v1/products/{product['id']}/file?filename=big.zip", data=data)
    assert response.status_code == 200, response.text
    assert response.json()["file"]["size_bytes"] == len(data)

    def chunks():
        for _ in range(4):
            yield b"c" * 300_000

    response = api.put(f"/v1/products/{product['id']}/file?filename=chunked.bin",
                       data=chunks())
    assert response.status_code == 200, response.text
    assert response.json()["file"]["size_bytes"] == 1_200_000
    assert list(stored_files(server, product["id"]).values()) == [b"c" * 1_200_000]


def test_upload_file_name_is_sanitised(server, api):
    product = create(api, type="file_download")
    response = api.put(f"/v1/products/{product['id']}/file?filename=../../etc/passwd",
                       data=b"payload")
    assert response.status_code == 200, response.text
    assert response.json()["file"]["name"] == "passwd"
    sha = hashlib.sha256(b"payload").hexdigest()
    assert stored_files(server, product["id"]) == {sha: b"payload"}
    response = api.put(f"/v1/products/{product['id']}/file",
                       files={"file": ("..\\..\\evil.exe", b"payload2")})
    assert response.status_code == 200, response.text
    assert response.json()["file"]["name"] == "evil.exe"


@pytest.mark.parametrize("product_type", [t for t in TYPES if t != "file_download"])
def test_upload_to_other_types_is_422(server, api, product_type):
    product = create(api, type=product_type)
    response = api.put(f"/v1/products/{product['id']}/file?filename=a.txt", data=b"data")
    assert_invalid(response, "file", exact=True)
    assert get_product(api, product["id"]) == product
    assert stored_files(server, product["id"]) == {}


def test_upload_request_errors(api):
    product = create(api, type="file_download")
    url = f"/v1/products/{product['id']}/file"
    assert_problem(api.put(url), 400, "invalid_request")
    assert_problem(api.put(url + "?filename=a.txt", data=b""), 400, "invalid_request")
    assert_problem(api.put(url, files={"other": ("a.txt", b"data")}), 400, "invalid_request")
    assert_invalid(api.put(url + "?filename=", data=b"data"), "filename", exact=True)
    assert_invalid(api.put(url + "?colour=red", data=b"data"), "colour", exact=True)
    assert_problem(api.put("/v1/products/prod_01J2PVQR41AAAAAAAAAAAAAAAA/file", data=b"x"),
                   404, "not_found")
    assert get_product(api, product["id"]) == product


def test_upload_over_the_configured_limit_is_413(make_server):
    server = make_server(start=False)
    config = server.config_path.read_text()
    assert "[storage]\n" in config
    server.config_path.write_text(config.replace("[storage]\n",
                                                 "[storage]\nmax_upload_mb = 1\n", 1))
    server.start()
    client = server.client(server.mint(name="uploader"))
    product = create(client, type="file_download")
    url = f"/v1/products/{product['id']}/file"
    # A file of exactly the limit is the largest allowed, raw or in a multipart form.
    first = b"f" * (1024 * 1024)
    response = client.put(url + "?filename=first.bin", data=first)
    assert response.status_code == 200, response.text
    assert response.json()["file"]["size_bytes"] == len(first)
    second = b"s" * (1024 * 1024)
    response = client.put(url, files={"file": ("second.bin", second)})
    assert response.status_code == 200, response.text
    uploaded = response.json()
    assert uploaded["file"]["size_bytes"] == len(second)
    sha = hashlib.sha256(second).hexdigest()

    too_big = b"g" * (1024 * 1024 + 1)

    def chunks():
        yield too_big[:700_000]
        yield too_big[700_000:]

    for attempt in (lambda: client.put(url + "?filename=big.bin", data=too_big),
                    lambda: client.put(url, files={"file": ("big.bin", too_big)}),
                    lambda: client.put(url + "?filename=big.bin", data=chunks())):
        assert_problem(attempt(), 413, "payload_too_large")
        assert get_product(client, product["id"]) == uploaded
        assert stored_files(server, product["id"]) == {sha: second}
    assert [e["type"] for e in events_of(server, product["id"])] == [
        "product.created", "product.updated", "product.updated"]


# --- the dynamic signing secret -------------------------------------------------------------

def test_the_dynamic_signing_secret_is_shown_on_create_only(server, api, receiver):
    """Reads, lists, edits, events and webhook deliveries never carry it: with it anyone can
    get goods from the merchant's dynamic URL without paying."""
    subscribed = api.post("/v1/webhooks", json={"url": receiver.url("products"),
                                                "events": ["product.*"]})
    assert subscribed.status_code == 201, subscribed.text
    product, secret = create_dynamic(api)
    assert secret.startswith("whsec_")
    patched = api.patch(f"/v1/products/{product['id']}", json={"price_cents": 700})
    archived = api.delete(f"/v1/products/{product['id']}")
    reader = server.client(mint_via_api(server, "products:read", "webhooks:read"))
    answers = [patched, archived, reader.get(f"/v1/products/{product['id']}"),
               reader.get("/v1/products?type=dynamic&limit=100"),
               reader.get("/v1/events?type=product.created&limit=100"),
               reader.get("/v1/events?type=product.updated&limit=100")]
    for answer in answers:
        assert answer.status_code == 200, answer.text
        assert product["id"] in answer.text
        assert secret not in answer.text and "dynamic_signing_secret" not in answer.text
    assert set(get_product(api, product["id"])) == set(product)
    deliveries = receiver.wait_for("products", 3)
    assert {d.json()["type"] for d in deliveries} == {"product.created", "product.updated",
                                                      "product.archived"}
    for delivery in deliveries:
        assert secret.encode() not in delivery.body
        assert b"dynamic_signing_secret" not in delivery.body
    for event in events_of(server, product["id"]):
        assert "dynamic_signing_secret" not in json.dumps(event)


def test_events_written_with_the_secret_no_longer_show_it(server, api):
    """Events stored by an earlier release still hold the secret in the outbox."""
    product, secret = create_dynamic(api)
    (event,) = events_of(server, product["id"])
    server.execute("UPDATE events SET data = ? WHERE id = ?", params=(json.dumps(
        {"object": {**product, "dynamic_signing_secret": secret},
         "previous_attributes": {"dynamic_signing_secret": None}}), event["id"]))
    shown = api.get(f"/v1/events/{event['id']}")
    assert shown.status_code == 200, shown.text
    assert shown.json()["data"] == {"object": product, "previous_attributes": {}}


def test_rotating_the_dynamic_secret_replaces_it_at_once(server, api, receiver):
    receiver.plan("goods", Reply(200, b"GOODS-1"))
    product, old = create_dynamic(api, receiver.url("goods"))
    rotated = api.post(f"/v1/products/{product['id']}/rotate-dynamic-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["dynamic_signing_secret"]
    assert rotated.json() == {"dynamic_signing_secret": new}
    assert new.startswith("whsec_") and new != old
    assert "dynamic_signing_secret" not in api.get(f"/v1/products/{product['id']}").text
    pay(api, place_order(api, product["id"])["id"])
    (call,) = receiver.wait_for("goods", 1)
    assert Webhook(new).verify(call.body, call.headers)["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(call.body, call.headers)


@pytest.mark.parametrize("product_type", [t for t in TYPES if t != "dynamic"])
def test_only_dynamic_products_have_a_secret_to_rotate(api, product_type):
    product = create(api, type=product_type)
    response = api.post(f"/v1/products/{product['id']}/rotate-dynamic-secret")
    assert_invalid(response, "type")


def test_rotating_needs_products_write(server, api):
    product, _ = create_dynamic(api)
    reader = server.client(mint_via_api(server, "products:read"))
    body = assert_problem(reader.post(f"/v1/products/{product['id']}/rotate-dynamic-secret"),
                          403, "forbidden_scope")
    assert body["ability"] == "products:write"
    assert_problem(api.post("/v1/products/prod_01J0000000000000000000000Z/"
                            "rotate-dynamic-secret"), 404, "not_found")


# --- events outbox ----------------------------------------------------------------------

def assert_event(event: dict, event_type: str, mode: str, obj: dict) -> None:
    assert EVENT_ID.fullmatch(event["id"])
    assert TIMESTAMP.fullmatch(event["created_at"])
    assert (event["type"], event["mode"]) == (event_type, mode)
    assert event["data"]["object"] == obj


def test_events_follow_each_change(server, api):
    product = create(api, type="license_key", name="Evented", price_cents=12900)
    patched = api.patch(f"/v1/products/{product['id']}",
                        json={"price_cents": 4900, "name": "Evented 2"}).json()
    import_keys(api, product["id"], ["E1", "E2", "E3"])
    imported = get_product(api, product["id"])
    import_keys(api, product["id"], ["E1"])  # nothing new: no event
    api.delete(f"/v1/products/{product['id']}")
    archived = get_product(api, product["id"])

    events = events_of(server, product["id"])
    assert [e["type"] for e in events] == ["product.created", "product.updated",
                                          "product.updated", "product.archived"]
    assert_event(events[0], "product.created", "test", product)
    assert "previous_attributes" not in events[0]["data"]
    assert_event(events[1], "product.updated", "test", patched)
    assert events[1]["data"]["previous_attributes"] == {"price_cents": 12900,
                                                        "name": "Evented"}
    assert_event(events[2], "product.updated", "test", imported)
    assert events[2]["data"]["previous_attributes"] == {"stock": 0}
    assert_event(events[3], "product.archived", "test", archived)
    assert len({e["id"] for e in events}) == 4
    assert [e["id"] for e in events] == sorted(e["id"] for e in events)


def test_patch_archive_and_restore_events(server, api):
    product = create(api)
    archived = api.patch(f"/v1/products/{product['id']}", json={"status": "archived"}).json()
    restored = api.patch(f"/v1/products/{product['id']}", json={"status": "active"}).json()
    events = events_of(server, product["id"])
    assert [e["type"] for e in events] == ["product.created", "product.archived",
                                          "product.updated"]
    assert_event(events[1], "product.archived", "test", archived)
    assert_event(events[2], "product.updated", "test", restored)
    assert events[2]["data"]["previous_attributes"] == {
        "status": "archived", "archived_at": archived["archived_at"]}


def test_stock_null_patch_event(server, api):
    product = create(api, stock=5)
    patched = api.patch(f"/v1/products/{product['id']}", json={"stock": None}).json()
    event = events_of(server, product["id"])[-1]
    assert_event(event, "product.updated", "test", patched)
    assert event["data"]["previous_attributes"] == {"stock": 5}


def test_live_events_are_live(server, live):
    product = create(live, name="Live evented")
    patched = live.patch(f"/v1/products/{product['id']}", json={"price_cents": 1}).json()
    events = events_of(server, product["id"])
    assert_event(events[0], "product.created", "live", product)
    assert_event(events[1], "product.updated", "live", patched)


def test_a_failing_event_write_rolls_back_the_change(make_server):
    server = make_server()
    client = server.client(server.mint(name="outbox"))
    product = create(client, type="license_key", price_cents=100)
    files_product = create(client, type="file_download")
    response = client.put(f"/v1/products/{files_product['id']}/file?filename=a.txt",
                          data=b"old")
    assert response.status_code == 200, response.text
    with_file = response.json()
    event_count = server.query("SELECT count(*) FROM events")[0][0]

    server.execute("CREATE TRIGGER outbox_broken BEFORE INSERT ON events "
                    "BEGIN SELECT RAISE(ABORT, 'outbox-broken'); END")
    products_before = server.query("SELECT * FROM products ORDER BY id")

    attempts = [
        lambda: client.post("/v1/products", json={**REQUIRED, "name": "Never"}),
        lambda: client.patch(f"/v1/products/{product['id']}", json={"price_cents": 999}),
        lambda: client.patch(f"/v1/products/{product['id']}", json={"status": "archived"}),
        lambda: client.delete(f"/v1/products/{product['id']}"),
        lambda: client.post(f"/v1/products/{product['id']}/keys", json={"keys": ["K1", "K2"]}),
        lambda: client.put(f"/v1/products/{files_product['id']}/file?filename=b.txt",
                           data=b"new"),
    ]
    for attempt in attempts:
        response = attempt()
        body = assert_problem(response, 500, "server_error")
        assert body["trace_id"]
        assert "outbox-broken" not in response.text and "Traceback" not in response.text
        assert server.query("SELECT * FROM products ORDER BY id") == products_before
        assert server.query("SELECT count(*) FROM events")[0][0] == event_count
    assert server.query("SELECT count(*) FROM products WHERE name = 'Never'") == [(0,)]
    assert pool(server, product["id"]) == []
    assert get_product(client, product["id"]) == product
    assert get_product(client, files_product["id"]) == with_file
    assert stored_files(server, files_product["id"]) == {
        hashlib.sha256(b"old").hexdigest(): b"old"}

    server.execute("DROP TRIGGER outbox_broken")
    created = create(client, name="Now it works")
    assert [e["type"] for e in events_of(server, created["id"])] == ["product.created"]
    patched = client.patch(f"/v1/products/{product['id']}", json={"price_cents": 999}).json()
    assert patched["price_cents"] == 999
    assert import_keys(client, product["id"], ["K1", "K2"])["imported"] == 2
    assert [e["type"] for e in events_of(server, product["id"])] == [
        "product.created", "product.updated", "product.updated"]


# --- abilities --------------------------------------------------------------------------

def write_attempts(product_id: str, file_product_id: str):
    return [
        ("POST", "/v1/products", {"json": REQUIRED}),
        ("PATCH", f"/v1/products/{product_id}", {"json": {"name": "x"}}),
        ("DELETE", f"/v1/products/{product_id}", {}),
        ("POST", f"/v1/products/{product_id}/keys", {"json": {"keys": ["A"]}}),
        ("PUT", f"/v1/products/{file_product_id}/file?filename=a.txt", {"data": b"data"}),
    ]


def test_read_only_key_cannot_write(server, api):
    product = create(api, type="license_key")
    file_product = create(api, type="file_download")
    reader = server.client(mint_via_api(server, READ))
    assert reader.get("/v1/products").status_code == 200
    assert get_product(reader, product["id"]) == product
    for method, path, kwargs in write_attempts(product["id"], file_product["id"]):
        body = assert_problem(reader.request(method, path, **kwargs), 403, "forbidden_scope")
        assert body["ability"] == WRITE, (method, path)
    assert get_product(api, product["id"]) == product
    assert get_product(api, file_product["id"]) == file_product
    assert pool(server, product["id"]) == []


def test_write_only_key_cannot_read(server, api):
    product = create(api)
    writer = server.client(mint_via_api(server, WRITE))
    for path in ("/v1/products", f"/v1/products/{product['id']}",
                 "/v1/products?status=active"):
        body = assert_problem(writer.get(path), 403, "forbidden_scope")
        assert body["ability"] == READ
    created = writer.post("/v1/products", json=REQUIRED)
    assert created.status_code == 201, created.text


def test_other_abilities_grant_nothing_here(server, api):
    product = create(api)
    outsider = server.client(mint_via_api(server, "orders:read", "orders:write"))
    assert assert_problem(outsider.get(f"/v1/products/{product['id']}"), 403,
                          "forbidden_scope")["ability"] == READ
    assert assert_problem(outsider.post("/v1/products", json=REQUIRED), 403,
                          "forbidden_scope")["ability"] == WRITE


def test_unauthenticated_is_401(server):
    response = server.client().get("/v1/products")
    assert_problem(response, 401, "unauthenticated")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
