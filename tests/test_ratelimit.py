"""Sliding-window rate limits per API key with the IETF RateLimit fields (docs/api.md)."""

from __future__ import annotations

import re

import pytest

from sellix_lite.ratelimit import SlidingWindowLimiter, client_of

SMALL = "[limits]\nreads_per_minute = 5\nwrites_per_minute = 3\n"


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    from conftest import Server

    server = Server(tmp_path_factory.mktemp("limited"), SMALL).start()
    yield server
    server.stop()


def test_reads_carry_policy_and_remaining(limited):
    client = limited.client(limited.mint())
    response = client.get("/v1/api-keys")
    assert response.headers["RateLimit-Policy"] == '"reads";q=5;w=60'
    assert re.fullmatch(r'"reads";r=4;t=\d+', response.headers["RateLimit"])
    second = client.get("/v1/api-keys")
    assert second.headers["RateLimit"].startswith('"reads";r=3;')


def test_reads_over_the_limit_get_429_with_retry_after(limited):
    client = limited.client(limited.mint())
    statuses = [client.get("/v1/api-keys").status_code for _ in range(5)]
    assert statuses == [200] * 5
    response = client.get("/v1/api-keys")
    assert response.status_code == 429
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json()["type"] == "rate_limited"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    assert response.headers["RateLimit"].startswith('"reads";r=0;')


def test_writes_have_their_own_bucket(limited):
    client = limited.client(limited.mint())
    body = {"name": "x", "abilities": ["orders:read"]}
    statuses = [client.post("/v1/api-keys", json=body).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    limited_write = client.post("/v1/api-keys", json=body)
    assert limited_write.headers["RateLimit-Policy"] == '"writes";q=3;w=60'
    # Reads still pass: the buckets are separate.
    assert client.get("/v1/api-keys").status_code == 200


def test_limits_are_per_key(limited):
    first = limited.client(limited.mint())
    for _ in range(5):
        first.get("/v1/api-keys")
    assert first.get("/v1/api-keys").status_code == 429
    assert limited.client(limited.mint()).get("/v1/api-keys").status_code == 200


def test_a_429_is_never_stored_under_an_idempotency_key(limited):
    client = limited.client(limited.mint())
    body = {"name": "x", "abilities": ["orders:read"]}
    for index in range(3):
        client.post("/v1/api-keys", json=body, headers={"Idempotency-Key": f"fill-{index}"})
    refused = client.post("/v1/api-keys", json=body, headers={"Idempotency-Key": "later"})
    assert refused.status_code == 429
    import sqlite3

    with sqlite3.connect(limited.database) as conn:
        stored = conn.execute("SELECT count(*) FROM idempotency_keys WHERE key = 'later'")
        assert stored.fetchone()[0] == 0


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_window_slides_instead_of_refilling():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, clock=clock)
    assert limiter.hit("k", 2).allowed
    clock.now += 30
    assert limiter.hit("k", 2).allowed
    clock.now += 29
    refused = limiter.hit("k", 2)
    assert not refused.allowed and refused.remaining == 0
    assert refused.reset_seconds == 1  # the first hit leaves the window in one second
    clock.now += 1.5
    assert limiter.hit("k", 2).allowed  # one slot freed, not the whole bucket
    assert not limiter.hit("k", 2).allowed


def test_refused_requests_do_not_extend_the_wait():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, clock=clock)
    limiter.hit("k", 1)
    for _ in range(100):
        clock.now += 0.5
        limiter.hit("k", 1)
    clock.now = 1000.0 + 60.5
    assert limiter.hit("k", 1).allowed


def test_idle_keys_are_swept():
    clock = FakeClock()
    limiter = SlidingWindowLimiter(60, clock=clock)
    for index in range(100):
        limiter.hit(f"k{index}", 10)
    clock.now += 200
    limiter.hit("fresh", 10)
    assert set(limiter._hits) == {"fresh"}


@pytest.mark.parametrize("address,client", [
    ("203.0.113.7", "203.0.113.7"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2::", "2001:db8:1:2::/64"),
    ("::ffff:203.0.113.7", "203.0.113.7"),  # an IPv4 client on a dual-stack socket
    ("::1", "::/64"),
    (None, "None"),
    ("unix-socket", "unix-socket"),
])
def test_clients_are_counted_by_address_and_ipv6_by_its_64(address, client):
    assert client_of(address) == client
