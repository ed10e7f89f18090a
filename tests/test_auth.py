"""Authentication, abilities and modes through the real server (docs/api.md, Authentication)."""

from __future__ import annotations

import pytest

from conftest import mint_via_api


def test_missing_header_is_401_with_www_authenticate(server):
    response = server.client().get("/v1/api-keys")
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["type"] == "unauthenticated"


@pytest.mark.parametrize("header", [
    "Bearer",
    "Bearer ",
    "Basic dXNlcjpwYXNz",
    "Bearer sx_test_short",
    "Bearer sx_prod_" + "a" * 40,
    "Bearer sx_test_" + "a" * 40 + "!",
    "Bearer " + "é" * 10,
    "Bearer sx_test_" + "a" * 5000,
    "garbage",
])
def test_malformed_credentials_are_401(server, header):
    response = server.client().get("/v1/api-keys",
                                   headers={"Authorization": header.encode("utf-8")})
    assert response.status_code == 401
    assert response.json()["type"] == "unauthenticated"
    assert "WWW-Authenticate" in response.headers


def test_unknown_well_formed_key_is_401(server):
    response = server.client("sx_test_" + "A" * 40).get("/v1/api-keys")
    assert response.status_code == 401


def test_secret_of_other_prefix_is_refused(server, test_key):
    """A stored key only works with its own mode's prefix."""
    swapped = test_key.replace("sx_test_", "sx_live_")
    assert server.client(swapped).get("/v1/api-keys").status_code == 401


def test_secrets_are_stored_hashed(server, test_key):
    import sqlite3

    with sqlite3.connect(server.database) as conn:
        dump = "\n".join(conn.iterdump())
    assert test_key not in dump
    assert test_key[8:] not in dump


def test_revocation_is_effective_on_the_next_request(server, api):
    minted = api.post("/v1/api-keys", json={"name": "victim", "abilities": ["api_keys:read"]})
    assert minted.status_code == 201
    victim = server.client(minted.json()["secret"])
    assert victim.get("/v1/api-keys").status_code == 200
    revoked = api.delete(f"/v1/api-keys/{minted.json()['id']}")
    assert revoked.json() == {"id": minted.json()["id"], "revoked": True}
    response = victim.get("/v1/api-keys")
    assert response.status_code == 401
    assert response.json()["type"] == "unauthenticated"


def test_cli_revocation_is_effective_on_a_running_server(server):
    secret = mint_via_api(server, "api_keys:read")
    client = server.client(secret)
    assert client.get("/v1/api-keys").status_code == 200
    key_id = client.get("/v1/api-keys").json()["data"][0]["id"]
    assert server.cli("keys", "revoke", key_id).returncode == 0
    assert client.get("/v1/api-keys").status_code == 401


def test_missing_ability_is_403_naming_it(server):
    reader = server.client(mint_via_api(server, "api_keys:read"))
    response = reader.post("/v1/api-keys", json={"name": "x", "abilities": ["api_keys:read"]})
    assert response.status_code == 403
    body = response.json()
    assert body["type"] == "forbidden_scope"
    assert body["ability"] == "api_keys:write"
    assert "api_keys:write" in body["detail"]


def test_key_without_read_ability_cannot_list(server):
    writer = server.client(mint_via_api(server, "api_keys:write"))
    response = writer.get("/v1/api-keys")
    assert response.status_code == 403
    assert response.json()["ability"] == "api_keys:read"


def test_minted_abilities_must_be_a_subset(server):
    limited = server.client(mint_via_api(server, "api_keys:read", "api_keys:write", "orders:read"))
    ok = limited.post("/v1/api-keys", json={"name": "sub", "abilities": ["orders:read"]})
    assert ok.status_code == 201
    assert ok.json()["abilities"] == ["orders:read"]
    refused = limited.post("/v1/api-keys",
                           json={"name": "super", "abilities": ["orders:read", "orders:write"]})
    assert refused.status_code == 403
    assert refused.json()["type"] == "forbidden_scope"
    assert "orders:write" in refused.json()["detail"]


def minted(server, *abilities: str) -> tuple:
    """A test key minted by the root key: (its client, its id)."""
    key = server.admin.post("/v1/api-keys", json={"name": "minted", "abilities": abilities})
    assert key.status_code == 201, key.text
    return server.client(key.json()["secret"]), key.json()["id"]


def test_revoking_follows_the_subset_rule(server):
    """An api_keys:write key can't revoke a key with abilities it lacks (the owner's key)."""
    revoker, revoker_id = minted(server, "api_keys:write", "orders:read")
    stronger, stronger_id = minted(server, "orders:read", "orders:write", "api_keys:read")
    refused = revoker.delete(f"/v1/api-keys/{stronger_id}")
    assert refused.status_code == 403, refused.text
    assert refused.json()["type"] == "forbidden_scope"
    assert refused.json()["ability"] == "orders:write"
    assert "orders:write" in refused.json()["detail"]
    assert "api_keys:read" in refused.json()["detail"]
    assert stronger.get("/v1/api-keys").status_code == 200  # still valid
    _, weaker_id = minted(server, "orders:read")
    assert revoker.delete(f"/v1/api-keys/{weaker_id}").json() == {"id": weaker_id,
                                                                  "revoked": True}
    assert revoker.delete(f"/v1/api-keys/{revoker_id}").json()["revoked"] is True
    assert revoker.get("/v1/orders").status_code == 401


def test_test_key_mints_only_test_keys(api):
    refused = api.post("/v1/api-keys",
                       json={"name": "live", "abilities": ["orders:read"], "mode": "live"})
    assert refused.status_code == 403
    default = api.post("/v1/api-keys", json={"name": "t", "abilities": ["orders:read"]})
    assert default.status_code == 201
    assert default.json()["mode"] == "test"
    assert default.json()["secret"].startswith("sx_test_")


def test_live_key_may_mint_a_test_key(server):
    live = server.client(server.mint(mode="live"))
    response = live.post("/v1/api-keys",
                         json={"name": "sandbox", "abilities": ["orders:read"], "mode": "test"})
    assert response.status_code == 201
    assert response.json()["secret"].startswith("sx_test_")


def test_modes_are_separate(server):
    test_client = server.client(server.mint(mode="test", name="t"))
    live_client = server.client(server.mint(mode="live", name="l"))
    test_ids = {k["id"] for k in test_client.get("/v1/api-keys").json()["data"]}
    live_ids = {k["id"] for k in live_client.get("/v1/api-keys").json()["data"]}
    assert test_ids and live_ids and not test_ids & live_ids
    assert all(k["mode"] == "test" for k in test_client.get("/v1/api-keys").json()["data"])
    # An object of the other mode is not found, not forbidden.
    other = live_client.delete(f"/v1/api-keys/{next(iter(test_ids))}")
    assert other.status_code == 404
    assert other.json()["type"] == "not_found"
    assert test_client.get("/v1/api-keys").status_code == 200


def test_list_never_shows_secrets(server, api):
    api.post("/v1/api-keys", json={"name": "x", "abilities": ["orders:read"]})
    for key in api.get("/v1/api-keys").json()["data"]:
        assert set(key) == {"id", "name", "abilities", "mode", "created_at", "last_used_at",
                            "revoked_at"}


def test_last_used_at_is_recorded(server, api):
    keys = api.get("/v1/api-keys").json()["data"]
    assert keys[0]["last_used_at"] is not None


def test_failed_authentication_is_limited_per_ip(make_server):
    server = make_server("[limits]\nfailed_auths_per_minute_per_ip = 5\n")
    good = server.mint()
    bad = server.client("sx_test_" + "B" * 40)
    statuses = [bad.get("/v1/api-keys").status_code for _ in range(4)]
    # A request with no credentials at all fails authentication too.
    statuses.append(server.client().get("/v1/api-keys").status_code)
    statuses += [bad.get("/v1/api-keys").status_code for _ in range(2)]
    assert statuses[:5] == [401] * 5
    assert statuses[5:] == [429, 429]
    blocked = bad.get("/v1/api-keys")
    assert blocked.json()["type"] == "rate_limited"
    assert int(blocked.headers["Retry-After"]) >= 1
    # A valid key from the blocked address still gets in; bad keys stay refused.
    assert server.client(good).get("/v1/api-keys").status_code == 200
    assert bad.get("/v1/api-keys").status_code == 429
    assert server.client().get("/v1/api-keys").status_code == 429
