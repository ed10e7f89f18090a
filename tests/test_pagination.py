"""The list envelope and signed keyset cursors (docs/api.md, Pagination), via /v1/api-keys."""

from __future__ import annotations

import pytest

from conftest import mint_via_api


@pytest.fixture
def client_with_keys(make_server):
    server = make_server()
    client = server.client(server.mint(name="lister"))
    for index in range(6):
        client.post("/v1/api-keys", json={"name": f"k{index}", "abilities": ["orders:read"]})
    return server, client


def walk(client, limit: int) -> list[str]:
    ids, url = [], f"/v1/api-keys?limit={limit}"
    while True:
        page = client.get(url).json()
        assert page["object"] == "list"
        assert len(page["data"]) <= limit
        ids += [item["id"] for item in page["data"]]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            return ids
        url = f"/v1/api-keys?limit={limit}&cursor={page['next_cursor']}"


def test_envelope_and_default_limit(client_with_keys):
    _, client = client_with_keys
    page = client.get("/v1/api-keys").json()
    assert set(page) == {"object", "data", "has_more", "next_cursor"}
    assert len(page["data"]) == 7 and page["has_more"] is False


@pytest.mark.parametrize("limit", [1, 2, 3, 7, 100])
def test_pages_cover_everything_newest_first(client_with_keys, limit):
    _, client = client_with_keys
    ids = walk(client, limit)
    assert len(ids) == 7 == len(set(ids))
    assert ids == sorted(ids, reverse=True)
    names = [k["name"] for k in client.get("/v1/api-keys").json()["data"]]
    assert names[0] == "k5" and names[-1] == "lister"


def test_cursor_is_stable_under_inserts(client_with_keys):
    _, client = client_with_keys
    first = client.get("/v1/api-keys?limit=3").json()
    for index in range(5):
        client.post("/v1/api-keys", json={"name": f"new{index}", "abilities": ["orders:read"]})
    second = client.get(f"/v1/api-keys?limit=3&cursor={first['next_cursor']}").json()
    seen = [k["id"] for k in first["data"]] + [k["id"] for k in second["data"]]
    assert len(set(seen)) == 6
    assert [k["name"] for k in second["data"]] == ["k2", "k1", "k0"]


def test_every_tampered_character_is_refused(client_with_keys):
    _, client = client_with_keys
    cursor = client.get("/v1/api-keys?limit=2").json()["next_cursor"]
    # The last base64 character carries unused bits, so stop one short of it.
    for position in range(0, len(cursor) - 1, max(1, len(cursor) // 25)):
        replacement = "A" if cursor[position] != "A" else "B"
        tampered = cursor[:position] + replacement + cursor[position + 1:]
        response = client.get(f"/v1/api-keys?limit=2&cursor={tampered}")
        assert response.status_code == 422, (position, response.text)
        assert response.json()["errors"] == {"cursor": "is not a valid cursor"}


def test_cursor_of_the_other_mode_is_refused(client_with_keys):
    server, client = client_with_keys
    live = server.client(server.mint(mode="live"))
    for index in range(3):
        live.post("/v1/api-keys", json={"name": f"l{index}", "abilities": ["orders:read"]})
    live_cursor = live.get("/v1/api-keys?limit=1").json()["next_cursor"]
    response = client.get(f"/v1/api-keys?cursor={live_cursor}")
    assert response.status_code == 422
    assert "cursor" in response.json()["errors"]


def test_cursor_survives_a_restart(client_with_keys):
    server, client = client_with_keys
    cursor = client.get("/v1/api-keys?limit=2").json()["next_cursor"]
    server.stop()
    server.start()
    page = client.get(f"/v1/api-keys?limit=2&cursor={cursor}")
    assert page.status_code == 200
    assert [k["name"] for k in page.json()["data"]] == ["k3", "k2"]


def test_shared_server_lists_work(server):
    client = server.client(mint_via_api(server, "api_keys:read"))
    assert client.get("/v1/api-keys?limit=1").json()["has_more"] is True
