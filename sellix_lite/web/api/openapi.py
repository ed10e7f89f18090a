"""`GET /v1/openapi.json`: the OpenAPI 3.1 document, built from the routes themselves.

Every `/v1` operation is declared with `pipeline.operation(...)`, which records its
method, path, ability, query and body schemas and response object; this module turns that
record into the document, so the reference can't drift from the code. What the pipeline
itself does is derived here the same way for every operation: its error statuses, the
headers of each answer, and the links from a create to the operations taking its id.
"""

from __future__ import annotations

import re

from flask import current_app

from ... import __version__
from ...config import Config
from ...services import checkout, products
from ...validation import Schema
from ..context import runtime
from ..responses import json_response
from . import bp
from .objects import OBJECTS, list_of, product_create_schemas
from .pipeline import IDEMPOTENCY_METHODS, OPERATIONS, PUBLIC_ENDPOINTS, WRITE_METHODS, Operation

PROBLEM = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
ERRORS = {
    "400": "The body is not a JSON object, or a required parameter or header is absent.",
    "401": "No valid API key.",
    "403": "The key lacks the ability this operation needs.",
    "404": "No such object in this mode (for the license checks: no license has the key).",
    "409": "The Idempotency-Key was used with another request, or is still in flight.",
    "413": "The body is too large.",
    "415": "The body is not JSON.",
    "422": "A parameter failed validation; `errors` says which.",
    "429": "Rate limited; wait the seconds of `Retry-After`.",
    "500": "Something broke on our side; quote trace_id.",
    "502": "BlockPN could not be reached, refused the shop's API key, or refused the request; "
           "`detail` says which. Nothing was created.",
}
HEADERS = {
    "X-Request-Id": {"required": True, "description": "This request's id, also in the log "
                                                      "and in problem bodies.",
                     "schema": {"type": "string", "minLength": 1}},
    "RateLimit": {"description": "What is left of the bucket the request counted in (the "
                                 "key's, or the client address's for the public license "
                                 "checks): `\"reads\";r=<left>;t=<seconds to reset>`.",
                  "schema": {"type": "string", "pattern": '^"[a-z_]+";r=[0-9]+;t=[0-9]+$'}},
    "RateLimit-Policy": {"description": "That bucket: `\"reads\";q=<requests>;"
                                        "w=<window seconds>`.",
                         "schema": {"type": "string",
                                    "pattern": '^"[a-z_]+";q=[0-9]+;w=[0-9]+$'}},
    "Retry-After": {"required": True, "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer", "minimum": 0}},
    "Idempotent-Replayed": {"description": "`true` when this is the stored answer to an "
                                           "earlier request with the same Idempotency-Key.",
                            "schema": {"type": "string", "enum": ["true"]}},
}
# Rules of a product type that the body's shape can't tell without the type (PATCH).
TYPE_RULES = ("Fields of one product type: " + "; ".join(
    f"`{name}` ({', '.join(types)})" for name, types in products.FIELD_TYPES.items())
    + ". A license_key product's `stock` is its number of unsold keys and can't be set.")
INTRO = ("The merchant API of a sellix-lite shop. Authenticate with `Authorization: Bearer "
         "sx_test_…` (sandbox) or `sx_live_…`; errors are RFC 9457 problem JSON; writes "
         "take an `Idempotency-Key`. The license checks (`/v1/licenses/activate`, "
         "`validate`, `deactivate`) are for the merchant's software and take no key.")
PUBLIC = ("\n\nNeeds no API key: the license key is the credential. Limited per client "
          "address (`limits.license_checks_per_minute_per_ip`).")


def document(config: Config | None = None) -> dict:
    """The whole OpenAPI document of a shop with `config` (default: the defaults), whose
    payment pairs and order limit the order body states."""
    config = config or Config()
    paths: dict = {}
    for op in OPERATIONS:
        paths.setdefault(_path(op.rule), {})[op.method.lower()] = _operation(op, config)
    return {
        "openapi": "3.1.0",
        "info": {"title": "sellix-lite API", "version": __version__, "description": INTRO},
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "An API key secret."}},
            "schemas": {**OBJECTS, **product_create_schemas()},
            "headers": HEADERS,
        },
        "tags": [{"name": tag} for tag in dict.fromkeys(op.tag for op in OPERATIONS)],
    }


def _path(rule: str) -> str:
    return "/v1" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule)


def _operation(op: Operation, config: Config) -> dict:
    description = op.description
    if op.body is products.UPDATE:
        description += "\n\n" + TYPE_RULES
    if op.ability:
        description += f"\n\nNeeds the ability `{op.ability}`."
    if op.public:
        description += PUBLIC
    spec = {
        "operationId": op.endpoint, "summary": op.summary, "description": description,
        "tags": [op.tag], "x-ability": op.ability,
        "parameters": _path_parameters(op) + _query_parameters(op.query) + _headers(op),
        "responses": _responses(op),
    }
    if op.public:
        spec["security"] = []
    body = _request_body(op, config)
    if body:
        spec["requestBody"] = body
    return spec


def _path_parameters(op: Operation) -> list[dict]:
    return [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in _path_names(op)]


def _path_names(op: Operation) -> list[str]:
    return re.findall(r"<(?:\w+:)?(\w+)>", op.rule)


def _query_parameters(schema: Schema) -> list[dict]:
    required = schema.json_schema().get("required", [])
    return [{"name": name, "in": "query", "required": name in required,
             "schema": field.json_schema()} for name, field in schema.fields.items()]


def _headers(op: Operation) -> list[dict]:
    if op.method not in IDEMPOTENCY_METHODS or op.public:
        return []
    return [{"name": "Idempotency-Key", "in": "header", "required": op.idempotency_required,
             "description": "Makes a retry safe: the same key and request return the first "
                            "response again.",
             "schema": {"type": "string", "minLength": 1, "maxLength": 255,
                        "pattern": "^[\\x20-\\x7e]+$"}}]


def _request_body(op: Operation, config: Config) -> dict | None:
    if op.upload:
        binary = {"type": "string", "format": "binary"}
        return {"required": True, "content": {
            "application/octet-stream": {"schema": binary},
            "multipart/form-data": {"schema": {"type": "object", "required": ["file"],
                                               "properties": {"file": binary}}}}}
    if op.method not in ("POST", "PATCH"):
        return None
    schema = (op.body or Schema()).json_schema()
    required = bool(schema.get("required"))
    if op.body is products.CREATE:
        schema = {"$ref": "#/components/schemas/ProductCreate"}
    if op.body is checkout.CREATE:
        _order_limits(schema, config)
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def _order_limits(schema: dict, config: Config) -> None:
    """What an order body may hold in this shop: at most `max_qty_per_order` units, and
    `chain` and `asset` both or neither, each from the shop's pairs."""
    schema["properties"]["qty"]["maximum"] = config.limits.max_qty_per_order
    accepted = config.blockpn.accepted
    pairs = [pair.split(":") for pair in accepted]
    for index, name in enumerate(("chain", "asset")):
        values = list(dict.fromkeys(pair[index] for pair in pairs))
        schema["properties"][name] = {**schema["properties"][name], "enum": values,
                                      "examples": values[:1]}
        schema["properties"][name].pop("minLength", None)
        schema["properties"][name].pop("maxLength", None)
    schema["properties"]["asset"]["description"] += (
        " The pair must be one the shop accepts: " + ", ".join(f"`{p}`" for p in accepted)
        + ".")
    # Which pairs go together is said in words: an `anyOf` of the pairs would be exact, but
    # client generators then give up on the body's model.
    schema["dependentRequired"] = {"chain": ["asset"], "asset": ["chain"]}


def _responses(op: Operation) -> dict:
    name = op.response
    if op.media_type != "application/json":
        schema = {"type": "string"}  # a streamed file
    elif name.startswith("list:"):
        schema = list_of(name[5:])
    else:
        schema = {"$ref": f"#/components/schemas/{name}"}
    success = {"description": "Success.", "headers": _response_headers(op, "200"),
               "content": {op.media_type: {"schema": schema}}}
    links = _links(op)
    if links:
        success["links"] = links
    responses = {str(op.status): success}
    if op.alternate_status is not None:
        responses[str(op.alternate_status)] = {key: value for key, value in success.items()
                                               if key != "links"}
    for code in _error_statuses(op):
        responses[code] = {"description": ERRORS[code], "headers": _response_headers(op, code),
                           "content": PROBLEM}
    return responses


def _error_statuses(op: Operation) -> list[str]:
    """The error statuses `op` can answer: the pipeline's, and those its view adds."""
    codes = ["400", "413", "422", "429", "500"]
    if not op.public:  # a key, its abilities and its idempotency records
        codes += ["401", "403"] + (["409"] if op.method in IDEMPOTENCY_METHODS else [])
    if _path_names(op):
        codes.append("404")
    if op.method in WRITE_METHODS and not op.upload:
        codes.append("415")
    codes += [str(code) for code in op.errors]
    return sorted(set(codes))


def _response_headers(op: Operation, code: str) -> dict:
    """X-Request-Id on every answer; the RateLimit fields once the key is known (all but
    401); Retry-After on 429; Idempotent-Replayed where a stored answer can come back."""
    names = ["X-Request-Id"]
    if code != "401":
        names += ["RateLimit", "RateLimit-Policy"]
    if code == "429":
        names.append("Retry-After")
    if (op.method in IDEMPOTENCY_METHODS and not op.public and code not in ("401", "429")
            and int(code) < 500):
        names.append("Idempotent-Replayed")
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


def _links(op: Operation) -> dict:
    """From a create operation to every operation that takes the new object's id: those
    whose path continues the create's path with `/{id}` (test helpers included)."""
    if op.method != "POST" or op.status != 201 or _path_names(op):
        return {}
    links = {}
    for target in OPERATIONS:
        names = _path_names(target)
        if names and re.search(re.escape(op.rule) + r"/<(?:\w+:)?" + names[0] + ">",
                               target.rule):
            links[target.endpoint] = {"operationId": target.endpoint,
                                      "parameters": {names[0]: "$response.body#/id"}}
    for target in OPERATIONS:
        if target.method == "POST" and target.body and _id_field(op) in target.body.fields:
            links[target.endpoint] = {"operationId": target.endpoint,
                                      "requestBody": {_id_field(op): "$response.body#/id"}}
    return links


def _id_field(op: Operation) -> str:
    """How other bodies name the created object's id: `/products` → `product_id`."""
    return op.rule.strip("/").split("/")[-1].removesuffix("s").replace("-", "_") + "_id"


def openapi_json():
    """The OpenAPI 3.1 document of this API (no key needed)."""
    doc = current_app.extensions.get("sellix_openapi")
    if doc is None:
        doc = current_app.extensions["sellix_openapi"] = document(runtime().config)
    return json_response(doc)


bp.add_url_rule("/openapi.json", "openapi_json", openapi_json, methods=["GET"])
PUBLIC_ENDPOINTS.add("v1.openapi_json")
