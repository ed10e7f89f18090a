"""Every /v1 error is RFC 9457 problem JSON with its slug (docs/api.md, Errors)."""

from __future__ import annotations

import re
import sqlite3

import pytest

from conftest import assert_problem


def test_unknown_path_is_404_problem(api):
    assert_problem(api.get("/v1/nothing/here"), 404, "not_found")


def test_unknown_path_without_auth_is_404_problem(server):
    assert_problem(server.client().post("/v1/nothing"), 404, "not_found")


def test_wrong_method_is_405_with_allow(api):
    body = assert_problem(api.put("/v1/api-keys", json={}), 405, "method_not_allowed")
    allow = api.put("/v1/api-keys", json={}).headers["Allow"]
    assert {"GET", "POST"} <= {m.strip() for m in allow.split(",")}
    assert "PUT" in body["detail"]


def test_unknown_api_key_id_is_404(api):
    assert_problem(api.delete("/v1/api-keys/apik_nope"), 404, "not_found")


def test_body_over_one_mebibyte_is_413(api):
    payload = b'{"name": "' + b"x" * (1024 * 1024 + 10) + b'"}'
    response = api.post("/v1/api-keys", data=payload,
                        headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")


def test_chunked_body_over_the_limit_is_413(api):
    def chunks():
        for _ in range(40):
            yield b"x" * 65536

    response = api.post("/v1/api-keys", data=chunks(),
                        headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", None])
def test_non_json_body_is_415(api, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = api.post("/v1/api-keys", data=b"name=x", headers=headers)
    if content_type is None:
        # requests sends no Content-Type for raw bytes
        assert "Content-Type" not in response.request.headers
    assert_problem(response, 415, "unsupported_media_type")


@pytest.mark.parametrize("raw", [b"{", b"{'name': 1}", b"\xff\xfe", b"[" * 100000,
                                 b'{"a": 1e99999999999}x', b"nul"])
def test_invalid_json_is_400(api, raw):
    response = api.post("/v1/api-keys", data=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 400, "invalid_request")
    assert "JSON" in body["detail"]


@pytest.mark.parametrize("raw", [b"[]", b"1", b'"x"', b"null", b"true"])
def test_non_object_json_is_400(api, raw):
    response = api.post("/v1/api-keys", data=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 400, "invalid_request")
    assert "object" in body["detail"]


def test_missing_required_parameters_are_400_naming_each(api):
    body = assert_problem(api.post("/v1/api-keys", json={}), 400, "invalid_request")
    assert body["errors"] == {"name": "is required", "abilities": "is required"}


def test_invalid_values_are_422_with_errors_per_field(api):
    response = api.post("/v1/api-keys", json={"name": "", "abilities": ["nope"],
                                              "mode": "prod", "colour": "red"})
    body = assert_problem(response, 422, "unprocessable")
    assert set(body["errors"]) == {"name", "abilities", "mode", "colour"}
    assert all(isinstance(message, str) and message for message in body["errors"].values())
    assert body["detail"] == "4 fields are invalid"


@pytest.mark.parametrize("abilities", ["orders:read", [], [1], None, {"a": 1}])
def test_wrong_types_are_422(api, abilities):
    body = assert_problem(api.post("/v1/api-keys", json={"name": "x", "abilities": abilities}),
                          422, "unprocessable")
    assert "abilities" in body["errors"]


@pytest.mark.parametrize("query", ["limit=0", "limit=101", "limit=abc", "limit=", "limit=1.5",
                                   "limit=99999999999999999999999", "cursor=", "cursor=abc",
                                   "unknown=1", "limit=%D9%A3", "limit=%C2%B2",
                                   "limit=%EF%BC%91"])
def test_bad_query_parameters_are_422(api, query):
    body = assert_problem(api.get(f"/v1/api-keys?{query}"), 422, "unprocessable")
    assert query.split("=")[0] in body["errors"]


def test_forced_server_error_is_500_problem_without_internals(make_server):
    server = make_server()
    api = server.client(server.mint())
    # Break the storage under the running server: the idempotency table disappears.
    with sqlite3.connect(server.database) as conn:
        conn.execute("DROP TABLE idempotency_keys")
    response = api.post("/v1/api-keys", json={"name": "x", "abilities": ["orders:read"]},
                        headers={"Idempotency-Key": "boom"})
    body = assert_problem(response, 500, "server_error")
    assert body["trace_id"]
    text = response.text.lower()
    for leak in ("traceback", "sqlite", "idempotency_keys", "operationalerror", ".py"):
        assert leak not in text
    assert body["trace_id"] in server.output()
    assert "Traceback" in server.output()


def test_success_responses_carry_request_id(api):
    response = api.get("/v1/api-keys")
    assert re.fullmatch(r"req_[0-9A-Z]{26}", response.headers["X-Request-Id"])


def test_healthz_needs_no_auth(server):
    response = server.client().get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_request_log_names_key_id_never_secret(server, api, test_key):
    api.get("/v1/api-keys")
    log = server.logged("GET /v1/api-keys 200")
    assert "key=apik_" in log
    assert test_key not in log


def test_unknown_body_fields_are_422_on_operations_without_a_body(api):
    minted = api.post("/v1/api-keys", json={"name": "x", "abilities": ["orders:read"]}).json()
    response = api.delete(f"/v1/api-keys/{minted['id']}", json={"force": True})
    body = assert_problem(response, 422, "unprocessable")
    assert body["errors"] == {"force": "is not a known parameter"}


def test_options_is_405_problem(api):
    response = api.options("/v1/api-keys")
    assert_problem(response, 405, "method_not_allowed")
    assert "OPTIONS" not in response.headers["Allow"]


@pytest.mark.parametrize("raw", [
    b'{"name": "\\ud800", "type": "account", "price_cents": 1, "currency": "USD"}',
    b'{"name": "a\\uDFFFb", "type": "account", "price_cents": 1, "currency": "USD"}',
    b'{"name": "\xed\xa0\x80", "type": "account", "price_cents": 1, "currency": "USD"}',
    b'{"name": "ok", "type": "account", "price_cents": 1, "currency": "USD", '
    b'"description": "\\ud83d"}',
    b'{"\\ud800": 1}',
])
def test_a_lone_surrogate_is_400(api, raw):
    response = api.post("/v1/products", data=raw, headers={"Content-Type": "application/json"})
    body = assert_problem(response, 400, "invalid_request")
    assert "surrogate" in body["detail"]


def test_a_surrogate_pair_is_one_character(api):
    raw = b'{"name": "smile \\ud83d\\ude00", "type": "account", "price_cents": 1, ' \
          b'"currency": "USD", "delivery_text": "x"}'
    response = api.post("/v1/products", data=raw, headers={"Content-Type": "application/json"})
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "smile \U0001F600"
