"""License instances and the public license checks: activate, validate and deactivate with
no API key, the public view, the limit, disabled and expired licenses, live before test,
the merchant's view and removal of instances, `license.activated` / `license.deactivated`,
the per-address limit; and, against the real server, concurrent activations that never pass
the limit and a webhook receiver getting `license.activated`."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from standardwebhooks.webhooks import Webhook

from sellix_lite.clock import iso, utcnow

from conftest import GENEROUS_LIMITS, assert_problem
from support import assert_invalid, json_body, key_product, make_product, pay, place_order

PUBLIC_FIELDS = {"id", "status", "product_id", "mode", "activation_limit", "activations",
                 "expires_at"}


def sold_key(v1, **product_fields) -> tuple[str, dict]:
    """The key of a paid license_key order, and its license (the merchant's view)."""
    product, _ = key_product(v1, 2, **product_fields)
    order = pay(v1, place_order(v1, product["id"])["id"])
    found = json_body(v1.get("/v1/licenses", params={"order_id": order["id"]}))["data"]
    return order["delivery"]["keys"][0], found[0]


def activate(client, key: str, name: str = "laptop", **extra):
    return client.post("/v1/licenses/activate",
                       json={"license_key": key, "instance_name": name, **extra})


def validate(client, key: str, **extra) -> dict:
    return json_body(client.post("/v1/licenses/validate", json={"license_key": key, **extra}))


def license_of(v1, lic: dict) -> dict:
    return json_body(v1.get(f"/v1/licenses/{lic['id']}"))


def events_about(v1, event_type: str, lic: dict) -> list[dict]:
    events = json_body(v1.get("/v1/events", params={"type": event_type, "limit": 100}))["data"]
    return [e for e in events if e["data"]["object"]["id"] == lic["id"]]


# --- activate ----------------------------------------------------------------------------

def test_activation_adds_an_instance_and_answers_with_the_public_view_and_a_lease(client, v1):
    key, lic = sold_key(v1, activation_limit=3)
    response = activate(client, key, "Ada's laptop", fingerprint="machine-1")
    answer = json_body(response, 201)
    assert answer["activated"] is True
    assert answer["license"] == {"id": lic["id"], "status": "active",
                                 "product_id": lic["product_id"], "mode": "test",
                                 "activation_limit": 3, "activations": 1, "expires_at": None}
    instance = answer["instance"]
    assert instance["id"].startswith("lin_")
    assert instance == {**instance, "name": "Ada's laptop", "fingerprint": "machine-1"}
    assert answer["lease"].count(".") == 2  # a compact JWS
    assert response.headers["RateLimit-Policy"] == '"license_checks";q=60;w=60'  # the default
    assert response.headers["RateLimit"].startswith('"license_checks";r=')
    detail = license_of(v1, lic)
    assert detail["activations"] == 1 and detail["instances"] == [instance]


def test_the_same_fingerprint_again_is_the_same_instance(client, v1, app_db):
    key, lic = sold_key(v1, activation_limit=1)
    first = json_body(activate(client, key, fingerprint="machine-1"), 201)
    again = json_body(activate(client, key, "renamed", fingerprint="machine-1"), 200)
    assert again["instance"] == first["instance"]
    assert again["license"]["activations"] == 1 and again["lease"]
    assert app_db.query("SELECT count(*) FROM license_instances WHERE license_id = ?",
                        (lic["id"],)) == [(1,)]
    assert len(events_about(v1, "license.activated", lic)) == 1


def test_activations_without_a_fingerprint_are_new_instances_each_time(client, v1):
    key, lic = sold_key(v1)
    ids = {json_body(activate(client, key), 201)["instance"]["id"] for _ in range(3)}
    assert len(ids) == 3
    assert license_of(v1, lic)["activations"] == 3  # no limit: null


def test_the_limit_refuses_a_new_instance(client, v1):
    key, lic = sold_key(v1, activation_limit=2)
    for machine in ("a", "b"):
        json_body(activate(client, key, fingerprint=machine), 201)
    body = assert_invalid(activate(client, key, fingerprint="c"), "license_key", exact=True)
    assert body["errors"]["license_key"] == "activation limit reached"
    json_body(activate(client, key, fingerprint="a"), 200)  # an existing one still answers
    assert license_of(v1, lic)["activations"] == 2


def test_a_disabled_license_is_refused_naming_its_status(client, v1):
    key, lic = sold_key(v1)
    json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"status": "disabled"}))
    body = assert_invalid(activate(client, key, fingerprint="a"), "license_key")
    assert "disabled" in body["errors"]["license_key"]
    assert license_of(v1, lic)["activations"] == 0


def test_an_unknown_key_is_404(client):
    assert_problem(activate(client, "NO-SUCH-KEY"), 404, "not_found")
    assert_problem(client.post("/v1/licenses/validate", json={"license_key": "NO-SUCH-KEY"}),
                   404, "not_found")
    assert_problem(client.post("/v1/licenses/deactivate", json={
        "license_key": "NO-SUCH-KEY", "instance_id": "lin_x"}), 404, "not_found")


def test_a_fingerprint_is_trimmed_so_padding_makes_no_new_instance(client, v1):
    key, _ = sold_key(v1)
    first = json_body(activate(client, key, fingerprint=" machine-1\n"), 201)["instance"]
    assert first["fingerprint"] == "machine-1"
    again = json_body(activate(client, key, fingerprint="machine-1"), 200)["instance"]
    assert again == first


def test_the_public_view_never_shows_the_buyer_or_the_order(client, v1):
    key, lic = sold_key(v1)
    activated = json_body(activate(client, key, fingerprint="a"), 201)
    checked = validate(client, key, instance_id=activated["instance"]["id"])
    for answer in (activated, checked):
        assert set(answer["license"]) == PUBLIC_FIELDS
        text = str(answer)
        assert lic["customer_email"] not in text and lic["order_id"] not in text


def test_live_is_found_before_test_when_a_key_is_in_both(client, v1, app_db):
    """The same key text in a test product's pool and a live one's: live wins. The live
    license is written straight into the database: live orders need BlockPN."""
    key, test_license = sold_key(v1)
    live_product = make_product(client.keyed(mode="live"), type="license_key")
    app_db.execute(
        "INSERT INTO licenses (id, mode, key, status, product_id, order_id, customer_email, "
        "activation_limit, activations, expires_at, created_at, updated_at) VALUES "
        "('lic_LIVE', 'live', ?, 'active', ?, ?, 'buyer@example.com', NULL, 0, NULL, "
        "'2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')",
        params=(key, live_product["id"], test_license["order_id"]))
    answer = json_body(activate(client, key, fingerprint="a"), 201)
    assert answer["license"]["id"] == "lic_LIVE" and answer["license"]["mode"] == "live"
    assert validate(client, key)["license"]["mode"] == "live"
    assert license_of(v1, test_license)["activations"] == 0
    live_events = json_body(client.keyed("webhooks:read", "licenses:read", mode="live").get(
        "/v1/events", params={"type": "license.activated"}))["data"]
    assert [e["data"]["object"]["id"] for e in live_events] == ["lic_LIVE"]
    assert events_about(v1, "license.activated", test_license) == []


# --- expiry -------------------------------------------------------------------------------

def test_a_license_past_its_expiry_is_expired_everywhere(client, v1, app_db, clock):
    key, lic = sold_key(v1)
    expires = iso(utcnow() + timedelta(hours=1))
    app_db.execute("UPDATE licenses SET expires_at = ? WHERE id = ?",
                   params=(expires, lic["id"]))
    instance = json_body(activate(client, key, fingerprint="a"), 201)["instance"]
    assert validate(client, key, instance_id=instance["id"])["valid"] is True
    clock.advance(3600)
    checked = validate(client, key, instance_id=instance["id"])
    assert (checked["valid"], checked["reason"]) == (False, "expired")
    assert checked["license"]["status"] == "expired" and "lease" not in checked
    body = assert_invalid(activate(client, key, fingerprint="b"), "license_key")
    assert "expired" in body["errors"]["license_key"]
    assert license_of(v1, lic)["status"] == "expired"
    listed = json_body(v1.get("/v1/licenses", params={"status": "expired"}))["data"]
    assert [found["id"] for found in listed] == [lic["id"]]
    assert lic["id"] not in {found["id"] for found in json_body(
        v1.get("/v1/licenses", params={"status": "active", "limit": 100}))["data"]}


# --- validate -----------------------------------------------------------------------------

def test_validate_says_valid_with_a_lease_or_why_not(client, v1):
    key, lic = sold_key(v1)
    instance = json_body(activate(client, key, fingerprint="a"), 201)["instance"]
    valid = validate(client, key, instance_id=instance["id"])
    assert (valid["valid"], valid["reason"]) == (True, None)
    assert valid["instance"] == instance and valid["lease"].count(".") == 2
    assert validate(client, key)["valid"] is True  # no instance named: the license alone
    unknown = validate(client, key, instance_id="lin_01NOSUCHINSTANCE")
    assert (unknown["valid"], unknown["reason"]) == (False, "unknown_instance")
    assert "lease" not in unknown and "instance" not in unknown
    json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"status": "disabled"}))
    disabled = validate(client, key, instance_id=instance["id"])
    assert (disabled["valid"], disabled["reason"]) == (False, "disabled")
    assert "lease" not in disabled and disabled["license"]["status"] == "disabled"


def test_an_instance_of_another_license_is_unknown(client, v1):
    key, _ = sold_key(v1)
    other_key, _ = sold_key(v1)
    other = json_body(activate(client, other_key, fingerprint="a"), 201)["instance"]
    assert validate(client, key, instance_id=other["id"])["reason"] == "unknown_instance"
    assert_problem(client.post("/v1/licenses/deactivate", json={
        "license_key": key, "instance_id": other["id"]}), 404, "not_found")


# --- deactivate and the merchant's removal -------------------------------------------------

def test_deactivation_frees_the_activation(client, v1):
    key, lic = sold_key(v1, activation_limit=1)
    instance = json_body(activate(client, key, fingerprint="a"), 201)["instance"]
    answer = json_body(client.post("/v1/licenses/deactivate", json={
        "license_key": key, "instance_id": instance["id"]}))
    assert answer == {"deactivated": True}
    detail = license_of(v1, lic)
    assert detail["activations"] == 0 and detail["instances"] == []
    assert validate(client, key, instance_id=instance["id"])["reason"] == "unknown_instance"
    json_body(activate(client, key, fingerprint="b"), 201)  # the slot is free again
    assert_problem(client.post("/v1/licenses/deactivate", json={
        "license_key": key, "instance_id": instance["id"]}), 404, "not_found")


def test_the_merchant_removes_an_instance(client, v1):
    key, lic = sold_key(v1)
    kept, removed = (json_body(activate(client, key, fingerprint=f), 201)["instance"]
                     for f in ("a", "b"))
    path = f"/v1/licenses/{lic['id']}/instances/{removed['id']}"
    assert json_body(v1.delete(path)) == {"id": removed["id"], "deleted": True}
    detail = license_of(v1, lic)
    assert detail["activations"] == 1 and detail["instances"] == [kept]
    assert_problem(v1.delete(path), 404, "not_found")
    assert_problem(v1.delete(f"/v1/licenses/lic_none/instances/{kept['id']}"), 404, "not_found")
    reader = client.keyed("licenses:read")
    assert_problem(reader.delete(f"/v1/licenses/{lic['id']}/instances/{kept['id']}"), 403,
                   "forbidden_scope")
    live = client.keyed(mode="live")
    assert_problem(live.delete(f"/v1/licenses/{lic['id']}/instances/{kept['id']}"), 404,
                   "not_found")


def test_activations_and_removals_are_events_with_the_license_and_the_instance(client, v1):
    key, lic = sold_key(v1)
    instance = json_body(activate(client, key, fingerprint="a"), 201)["instance"]
    other = json_body(activate(client, key, fingerprint="b"), 201)["instance"]
    client.post("/v1/licenses/deactivate", json={"license_key": key,
                                                 "instance_id": instance["id"]})
    v1.delete(f"/v1/licenses/{lic['id']}/instances/{other['id']}")
    activated = events_about(v1, "license.activated", lic)
    deactivated = events_about(v1, "license.deactivated", lic)
    assert [e["data"]["instance"]["id"] for e in reversed(activated)] == [instance["id"],
                                                                         other["id"]]
    assert [e["data"]["instance"]["id"] for e in reversed(deactivated)] == [instance["id"],
                                                                           other["id"]]
    newest = deactivated[0]["data"]
    assert set(newest) == {"object", "instance"}
    assert newest["object"] == {name: value for name, value in license_of(v1, lic).items()
                                if name != "instances"}
    assert newest["object"]["customer_email"] == lic["customer_email"]  # the merchant's view
    assert [e["data"]["object"]["activations"] for e in reversed(activated)] == [1, 2]
    assert [e["data"]["object"]["activations"] for e in reversed(deactivated)] == [1, 0]


def test_lowering_the_limit_keeps_instances_and_refuses_new_ones(client, v1):
    key, lic = sold_key(v1, activation_limit=3)
    for machine in ("a", "b", "c"):
        json_body(activate(client, key, fingerprint=machine), 201)
    lowered = json_body(v1.patch(f"/v1/licenses/{lic['id']}", json={"activation_limit": 1}))
    assert lowered["activations"] == 3 and len(lowered["instances"]) == 3
    assert_invalid(activate(client, key, fingerprint="d"), "license_key")
    json_body(activate(client, key, fingerprint="b"), 200)
    assert validate(client, key)["valid"] is True


# --- the request: validation, no key, the per-address limit ---------------------------------

def test_bad_bodies_are_problems_naming_the_field(client, v1):
    key, _ = sold_key(v1)
    assert_invalid(activate(client, key, "x" * 101), "instance_name", exact=True)
    assert_invalid(activate(client, key, "   "), "instance_name", exact=True)
    assert_invalid(activate(client, key, fingerprint="f" * 201), "fingerprint", exact=True)
    assert_invalid(activate(client, key, fingerprint=""), "fingerprint", exact=True)
    for hostile in ("laptop\x00", "line\nbreak", "\u202eenil", "esc\x1b[31m"):
        assert_invalid(activate(client, key, hostile), "instance_name", exact=True)
        assert_invalid(activate(client, key, fingerprint=hostile), "fingerprint", exact=True)
    missing = assert_problem(client.post("/v1/licenses/activate",
                                         json={"instance_name": "x"}), 400, "invalid_request")
    assert set(missing["errors"]) == {"license_key"}
    missing = assert_problem(client.post("/v1/licenses/deactivate", json={"license_key": key}),
                             400, "invalid_request")
    assert set(missing["errors"]) == {"instance_id"}
    assert_invalid(client.post("/v1/licenses/validate", json={"license_key": key, "x": 1}),
                   "x", exact=True)
    assert_problem(client.post("/v1/licenses/validate", data="{", content_type="application/json"),
                   400, "invalid_request")


def test_the_checks_ignore_api_keys_and_take_no_idempotency_records(client, v1, app_db):
    key, _ = sold_key(v1)
    bad = {"Authorization": "Bearer sx_test_nonsense"}
    response = client.post("/v1/licenses/validate", json={"license_key": key}, headers=bad)
    assert response.status_code == 200
    before = app_db.query("SELECT count(*) FROM idempotency_keys")
    json_body(v1.post("/v1/licenses/activate", json={"license_key": key, "instance_name": "a"},
                      headers={"Idempotency-Key": "once"}), 201)
    json_body(v1.post("/v1/licenses/activate", json={"license_key": key, "instance_name": "a"},
                      headers={"Idempotency-Key": "once"}), 201)  # no replay: a second one
    assert app_db.query("SELECT count(*) FROM idempotency_keys") == before


class TestPerAddressLimit:
    @pytest.fixture
    def app_config(self) -> str:
        return GENEROUS_LIMITS + "license_checks_per_minute_per_ip = 3\n"

    def test_past_the_limit_429_with_retry_after_and_keyed_calls_unaffected(self, client, v1):
        key, _ = sold_key(v1)
        for left in (2, 1, 0):
            response = client.post("/v1/licenses/validate", json={"license_key": key})
            assert response.status_code == 200
            assert response.headers["RateLimit"].startswith(f'"license_checks";r={left};')
        limited = assert_problem(activate(client, key), 429, "rate_limited")
        assert limited["detail"].startswith("more than 3 license checks")
        response = client.post("/v1/licenses/deactivate", json={"license_key": key,
                                                                "instance_id": "lin_x"})
        assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1
        assert response.headers["RateLimit-Policy"] == '"license_checks";q=3;w=60'
        listed = v1.get("/v1/licenses")
        assert listed.status_code == 200
        assert listed.headers["RateLimit-Policy"].startswith('"reads"')

    def test_an_ipv6_client_is_counted_by_its_64_prefix(self, client, v1):
        key, _ = sold_key(v1)

        def validate_from(address: str):
            return client.post("/v1/licenses/validate", json={"license_key": key},
                               environ_base={"REMOTE_ADDR": address})

        for host in range(3):  # a new address of the same /64 for each call
            assert validate_from(f"2001:db8:1:2::{host + 1}").status_code == 200
        assert validate_from("2001:db8:1:2:ffff::9").status_code == 429
        assert validate_from("2001:db8:1:3::1").status_code == 200  # another /64


# --- against the real server -----------------------------------------------------------------

CHECKS_UNLIMITED = GENEROUS_LIMITS + "license_checks_per_minute_per_ip = 100000\n"


def served_key(server, **product_fields) -> tuple[object, str, dict]:
    """A client with every ability, and a key sold on the server with its license."""
    admin = server.client(server.mint())
    key, lic = sold_key(admin, **product_fields)
    return admin, key, lic


def test_concurrent_activations_never_pass_the_limit(make_server):
    server = make_server(CHECKS_UNLIMITED)
    admin, key, lic = served_key(server, activation_limit=5)
    statuses, start = [], threading.Barrier(50)
    lock = threading.Lock()

    def attempt(index: int) -> None:
        public = server.client()
        start.wait()
        response = activate(public, key, f"machine {index}", fingerprint=f"fp-{index}")
        with lock:
            statuses.append((response.status_code, response.json()))

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    created = [body for status, body in statuses if status == 201]
    refused = [body for status, body in statuses if status == 422]
    assert (len(created), len(refused)) == (5, 45), [status for status, _ in statuses]
    assert {body["errors"]["license_key"] for body in refused} == {"activation limit reached"}
    detail = json_body(admin.get(f"/v1/licenses/{lic['id']}"))
    assert detail["activations"] == 5 and len(detail["instances"]) == 5
    assert server.query("SELECT count(*) FROM license_instances WHERE license_id = ?",
                        (lic["id"],)) == [(5,)]
    assert server.query("SELECT activations FROM licenses WHERE id = ?", (lic["id"],)) == [(5,)]


def test_a_receiver_gets_license_activated(make_server, receiver):
    server = make_server(CHECKS_UNLIMITED)
    admin, key, lic = served_key(server)
    secret = json_body(admin.post("/v1/webhooks", json={
        "url": receiver.url("licenses"), "events": ["license.activated"]}), 201)[
            "signing_secret"]
    instance = json_body(activate(server.client(), key, fingerprint="a"), 201)["instance"]
    delivered = receiver.wait_for("licenses", 1)
    event = Webhook(secret).verify(delivered[0].body, delivered[0].headers)
    assert event["type"] == "license.activated"
    assert event["data"]["object"]["id"] == lic["id"]
    assert event["data"]["object"]["activations"] == 1
    assert event["data"]["instance"] == instance
