"""Idempotency keys (docs/api.md): one execution, byte-identical replays, across restarts."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pytest
from flask import Blueprint

from sellix_lite import db as storage
from sellix_lite.config import config_from_dict
from sellix_lite.errors import Conflict
from sellix_lite.jobs import JobContext, purge_idempotency_keys
from sellix_lite.migrations import migrate
from sellix_lite.services import api_keys, idempotency
from sellix_lite.web.api import pipeline
from sellix_lite.web.app import create_app

MINT = {"name": "worker", "abilities": ["orders:read"]}


def count_keys(client) -> int:
    return len(client.get("/v1/api-keys?limit=100").json()["data"])


def test_replay_returns_the_first_response(api):
    first = api.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "mint-1"})
    assert first.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    before = count_keys(api)
    again = api.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "mint-1"})
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Content-Type"] == first.headers["Content-Type"]
    # The secret is shown once: the stored copy withholds it, everything else is identical.
    assert again.json() == {**first.json(), "secret": None}
    assert count_keys(api) == before


def test_replay_is_byte_identical(api):
    minted = api.post("/v1/api-keys", json=MINT).json()
    first = api.delete(f"/v1/api-keys/{minted['id']}", headers={"Idempotency-Key": "rv-1"})
    again = api.delete(f"/v1/api-keys/{minted['id']}", headers={"Idempotency-Key": "rv-1"})
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


def test_validation_errors_are_replayed_too(api):
    first = api.post("/v1/api-keys", json={"name": ""}, headers={"Idempotency-Key": "bad-1"})
    again = api.post("/v1/api-keys", json={"name": ""}, headers={"Idempotency-Key": "bad-1"})
    assert first.status_code == again.status_code == 400
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/api-keys", {"name": "other", "abilities": ["orders:read"]}),
    ("DELETE", "/v1/api-keys/apik_x", None),
])
def test_same_key_different_request_is_409(api, method, path, body):
    api.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "k-409"})
    response = api.request(method, path, json=body, headers={"Idempotency-Key": "k-409"})
    assert response.status_code == 409
    assert response.json()["type"] == "conflict"
    assert response.headers["Content-Type"] == "application/problem+json"


def test_keys_are_scoped_to_the_api_key(server, api):
    from conftest import mint_via_api

    other = server.client(mint_via_api(server))
    first = api.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "shared"})
    second = other.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "shared"})
    assert first.status_code == second.status_code == 201
    assert "Idempotent-Replayed" not in second.headers
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "ключ", "tab\there", "café"])
def test_bad_idempotency_keys_are_400(api, key):
    response = api.post("/v1/api-keys", json=MINT,
                        headers={"Idempotency-Key": key.encode("utf-8")})
    assert response.status_code == 400
    assert response.json()["type"] == "invalid_request"
    assert "Idempotency-Key" in response.json()["errors"]


def test_longest_and_printable_keys_are_accepted(api):
    for key in ("x" * 255, "a b~!@#$%^&*()"):
        assert api.post("/v1/api-keys", json=MINT,
                        headers={"Idempotency-Key": key}).status_code == 201


def test_twenty_concurrent_identical_requests_execute_once(api):
    before = count_keys(api)

    def send(_):
        return api.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "burst"})

    with ThreadPoolExecutor(20) as pool:
        responses = list(pool.map(send, range(20)))
    statuses = sorted(r.status_code for r in responses)
    assert set(statuses) <= {201, 409}, statuses
    executed = [r for r in responses
                if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(executed) == 1
    replayed_ids = {r.json()["id"] for r in responses if r.status_code == 201}
    assert replayed_ids == {executed[0].json()["id"]}
    for conflict in (r for r in responses if r.status_code == 409):
        assert conflict.json()["type"] == "conflict"
    assert count_keys(api) == before + 1


def test_replay_after_a_restart(make_server):
    server = make_server()
    client = server.client(server.mint())
    minted = client.post("/v1/api-keys", json=MINT).json()
    first = client.delete(f"/v1/api-keys/{minted['id']}", headers={"Idempotency-Key": "r"})
    assert server.stop() == 0
    server.start()
    again = client.delete(f"/v1/api-keys/{minted['id']}", headers={"Idempotency-Key": "r"})
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.content == first.content


# --- the mechanism itself, on a database file ---------------------------------------------

@pytest.fixture
def database(tmp_path):
    db = storage.connect(tmp_path / "sellix.db")
    migrate(db)
    key = api_keys.mint(db, name="k", abilities=["orders:read"], mode="test")
    yield db, key["id"]
    db.close()


def test_a_claim_in_flight_refuses_a_second(database):
    db, key_id = database
    assert isinstance(idempotency.claim(db, key_id, "k", "fp", "boot-a"), idempotency.Claim)
    with pytest.raises(Conflict, match="in flight"):
        idempotency.claim(db, key_id, "k", "fp", "boot-a")


def test_a_claim_abandoned_by_a_dead_process_is_taken_over(database):
    db, key_id = database
    idempotency.claim(db, key_id, "k", "fp", "boot-dead")
    assert isinstance(idempotency.claim(db, key_id, "k", "fp", "boot-new"), idempotency.Claim)


def test_a_claim_that_took_effect_is_never_run_twice(database):
    db, key_id = database
    held = idempotency.claim(db, key_id, "k", "fp", "boot-dead")
    db.before_commit.append(lambda conn: idempotency.mark_effects(conn, held))
    with storage.write_txn(db):
        db.execute("UPDATE api_keys SET name = 'changed'")
    db.before_commit.clear()
    with pytest.raises(Conflict, match="interrupted after it took effect"):
        idempotency.claim(db, key_id, "k", "fp", "boot-new")
    # A failed request that took effect keeps its claim too.
    idempotency.release(db, held)
    with pytest.raises(Conflict, match="interrupted"):
        idempotency.claim(db, key_id, "k", "fp", "boot-new")


def test_release_lets_a_retry_run(database):
    db, key_id = database
    held = idempotency.claim(db, key_id, "k", "fp", "boot")
    idempotency.release(db, held)
    assert isinstance(idempotency.claim(db, key_id, "k", "fp", "boot"), idempotency.Claim)


def test_purge_job_forgets_records_older_than_a_day(tmp_path, database, clock):
    db, key_id = database
    idempotency.claim(db, key_id, "old", "fp", "boot")
    clock.advance(3600)
    idempotency.claim(db, key_id, "new", "fp", "boot")
    clock.advance(23 * 3600)
    ctx = JobContext(config_from_dict({"storage": {"path": "sellix.db"}}, base_dir=tmp_path),
                     "secret")
    assert purge_idempotency_keys(ctx) == 0  # a day old to the second: kept
    clock.advance(1)
    assert purge_idempotency_keys(ctx) == 1
    keys = [row[0] for row in db.execute("SELECT key FROM idempotency_keys")]
    assert keys == ["new"]


def test_required_keys_are_enforced_by_the_pipeline(tmp_path):
    """Routes that move money declare the key required; without it they answer 400."""
    config = config_from_dict({"storage": {"path": "sellix.db"}}, base_dir=tmp_path)
    db = storage.connect(config.database_path)
    migrate(db)
    secret = api_keys.mint(db, name="k", abilities=["orders:write"], mode="test")["secret"]
    db.close()
    bp = Blueprint("money", __name__, url_prefix="/v1")
    bp.before_request(pipeline.authenticate_request)
    calls = []

    @pipeline.operation(bp, "POST", "/money", summary="Move money", tag="t",
                        ability="orders:write", idempotency_required=True, status=201)
    def move_money(query, body):
        calls.append(body)
        return {"moved": True}

    pipeline.OPERATIONS.pop()  # not a real operation of the API
    app = create_app(config, "secret")
    app.register_blueprint(bp)
    client = app.test_client()
    auth = {"Authorization": f"Bearer {secret}"}
    missing = client.post("/v1/money", json={}, headers=auth)
    assert missing.status_code == 400
    assert missing.json["errors"] == {"Idempotency-Key": "is required"}
    ok = client.post("/v1/money", json={}, headers={**auth, "Idempotency-Key": "m1"})
    again = client.post("/v1/money", json={}, headers={**auth, "Idempotency-Key": "m1"})
    assert ok.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(calls) == 1


def test_server_errors_are_not_stored(make_server):
    server = make_server()
    client = server.client(server.mint())
    with sqlite3.connect(server.database) as conn:
        # Make minting fail inside its transaction: the key is released, not stored.
        conn.execute("CREATE TRIGGER no_keys BEFORE INSERT ON api_keys "
                     "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    failed = client.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "retry-me"})
    assert failed.status_code == 500
    with sqlite3.connect(server.database) as conn:
        conn.execute("DROP TRIGGER no_keys")
    retried = client.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "retry-me"})
    assert retried.status_code == 201
    assert "Idempotent-Replayed" not in retried.headers


def test_the_query_string_is_part_of_the_request(api):
    first = api.post("/v1/api-keys?x=1", json=MINT, headers={"Idempotency-Key": "qs"})
    assert first.status_code == 422
    second = api.post("/v1/api-keys", json=MINT, headers={"Idempotency-Key": "qs"})
    assert second.status_code == 409
