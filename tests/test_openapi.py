"""The OpenAPI document (CONTRACT §15): complete, valid, and true to every real response."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import (content_type_conformance, missing_required_header,
                                 negative_data_rejection, not_a_server_error,
                                 response_headers_conformance, response_schema_conformance,
                                 status_code_conformance)
from schemathesis.config import SchemathesisConfig

from conftest import GENEROUS_LIMITS, Server
from sellix_lite.api.objects import OBJECTS
from sellix_lite.api.openapi import document
from sellix_lite.api.pipeline import OPERATIONS
from sellix_lite.app import create_app
from sellix_lite.config import Config

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
        assert op.ability, f"{op.endpoint} names no ability"
        name = op.response.removeprefix("list:")
        assert name in OBJECTS, f"{op.endpoint} returns an undescribed object"


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
