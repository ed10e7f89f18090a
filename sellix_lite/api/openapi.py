"""`GET /v1/openapi.json`: the OpenAPI 3.1 document, built from the routes themselves.

Every `/v1` operation is declared with `pipeline.operation(...)`, which records its
method, path, ability, query and body schemas and response object; this module turns that
record into the document, so the reference can't drift from the code.
"""

from __future__ import annotations

import re

from flask import current_app

from .. import __version__
from ..http import json_response
from ..validation import Schema
from . import bp
from .objects import OBJECTS, list_of
from .pipeline import OPERATIONS, Operation, PUBLIC_ENDPOINTS

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
ERRORS = {
    "400": "The body is not a JSON object, or a required parameter or header is absent.",
    "401": "No valid API key.",
    "403": "The key lacks the ability this operation needs.",
    "404": "No such object in this mode.",
    "409": "The Idempotency-Key was used with another request, or is still in flight.",
    "413": "The body is too large.",
    "415": "The body is not JSON.",
    "422": "A parameter failed validation; `errors` says which.",
    "429": "Rate limited; see Retry-After.",
    "500": "Something broke on our side; quote trace_id.",
}
INTRO = ("The merchant API of a sellix-lite shop. Authenticate with `Authorization: Bearer "
         "sx_test_…` (sandbox) or `sx_live_…`; errors are RFC 9457 problem JSON; writes "
         "take an `Idempotency-Key`.")


def document() -> dict:
    """The whole OpenAPI document."""
    paths: dict = {}
    for op in OPERATIONS:
        paths.setdefault(_path(op.rule), {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sellix-lite API", "version": __version__, "description": INTRO},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API key secret."}},
            "schemas": OBJECTS,
            "responses": {code: {"description": text, "content": PROBLEM}
                          for code, text in ERRORS.items()},
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in OPERATIONS)],
    }


def _path(rule: str) -> str:
    return "/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def _operation(op: Operation) -> dict:
    spec = {
        "operationId": op.endpoint, "summary": op.summary, "description": op.description
        + (f"\n\nNeeds the ability `{op.ability}`." if op.ability else ""),
        "tags": [op.tag], "x-ability": op.ability,
        "parameters": _path_parameters(op) + _query_parameters(op.query) + _headers(op),
        "responses": _responses(op),
    }
    body = _request_body(op)
    if body:
        spec["requestBody"] = body
    return spec


def _path_parameters(op: Operation) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"<(?:\w+:)?(\w+)>", op.rule)]


def _query_parameters(schema: Schema) -> list[dict]:
    required = schema.json_schema().get("required", [])
    return [{"name": name, "in": "query", "required": name in required,
             "schema": field.json_schema()} for name, field in schema.fields.items()]


def _headers(op: Operation) -> list[dict]:
    if op.method not in ("POST", "PATCH", "DELETE"):
        return []
    return [{"name": "Idempotency-Key", "in": "header", "required": op.idempotency_required,
             "description": "Makes a retry safe: the same key and request return the first "
                            "response again.",
             "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[\\x20-\\x7e]+$"}}]


def _request_body(op: Operation) -> dict | None:
    if op.upload:
        binary = {"type": "string", "format": "binary"}
        return {"required": True, "content": {
            "application/octet-stream": {"schema": binary},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": binary}}}}}
    if op.method not in ("POST", "PATCH"):
        return None
    schema = (op.body or Schema()).json_schema()
    return {"required": bool(schema.get("required")),
            "content": {"application/json": {"schema": schema}}}


def _responses(op: Operation) -> dict:
    name = op.response
    schema = list_of(name[5:]) if name.startswith("list:") \
        else {"$ref": f"#/components/schemas/{name}"}
    responses = {str(op.status): {"description": "Success.", "headers": _rate_headers(),
                                  "content": {"application/json": {"schema": schema}}}}
    for code in ERRORS:
        if code in ("409", "413", "415") and op.method == "GET":
            continue
        responses[code] = {"$ref": f"#/components/responses/{code}"}
    return responses


def _rate_headers() -> dict:
    return {"RateLimit": {"schema": {"type": "string"}, "description": "Requests left."},
            "RateLimit-Policy": {"schema": {"type": "string"}, "description": "The limit."}}


def openapi_json():
    """The OpenAPI 3.1 document of this API (no key needed)."""
    doc = current_app.extensions.get("sellix_openapi")
    if doc is None:
        doc = current_app.extensions["sellix_openapi"] = document()
    return json_response(doc)


bp.add_url_rule("/openapi.json", "openapi_json", openapi_json, methods=["GET"])
PUBLIC_ENDPOINTS.add("v1.openapi_json")
