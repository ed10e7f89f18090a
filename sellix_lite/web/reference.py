"""`GET /docs`: the API reference page, rendered from the OpenAPI document (docs/api.md).

Endpoints are grouped by resource in the order of the original reference, each with its
parameters, an example response and an editable request body; "Try it" (static/docs.js)
sends the request from the browser with a pasted test key. Because the page is built from
`/v1/openapi.json`'s own data, the two can't disagree.
"""

from __future__ import annotations

import json

from flask import Blueprint, render_template

from ..services.webhooks import EVENT_TYPES
from .api.openapi import document
from .context import runtime

bp = Blueprint("reference", __name__)
TAG_ORDER = ("Products", "Orders", "Coupons", "Customers", "Licenses", "Payouts", "Webhooks",
             "API keys", "Events", "Subscriptions", "Reports", "Blacklist", "Test helpers")
ID_PREFIXES = {"Product": "prod", "Order": "ord", "Customer": "cus", "Refund": "rf",
               "Payout": "po", "WebhookEndpoint": "wh", "NewWebhookEndpoint": "wh",
               "Event": "evt", "ApiKey": "apik", "NewApiKey": "apik", "Subscription": "sub",
               "WebhookDelivery": "whd", "License": "lic", "LicenseDetail": "lic",
               "PublicLicense": "lic", "Instance": "lin", "Coupon": "cpn",
               "BlacklistRule": "bl", "DeletedBlacklistRule": "bl"}
# Stand-ins for common fields, so example responses read like real ones.
FIELD_EXAMPLES = {
    "name": "Adobe Creative Cloud Key", "product": "Adobe Creative Cloud Key",
    "slug": "adobe-creative-cloud-key", "currency": "USD", "description": "",
    "email": "buyer@example.com", "customer_email": "buyer@example.com", "chain": "tron",
    "asset": "USDT", "price_cents": 12900, "total_cents": 4900, "amount_cents": 4900,
    "qty": 1, "url": "https://your.app/sellix/webhook",
    "address": "TJRyWwFs9wTFGZg3JbrVriFbNfCug5tDeC",
    "destination_address": "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t", "asset_amount": "49.000000",
    "mode": "test", "status": None,
}


@bp.get("/docs")
def reference_page():
    """The reference page."""
    spec = document(runtime().config)
    groups = {tag: [] for tag in TAG_ORDER}
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            groups.setdefault(operation["tags"][0], []).append(
                _endpoint(spec, path, method, operation))
    return render_template("docs/reference.html", groups=groups, events=EVENT_TYPES,
                           mode="test")


def _endpoint(spec: dict, path: str, method: str, operation: dict) -> dict:
    status, response = next(iter(operation["responses"].items()))
    body = operation.get("requestBody", {}).get("content", {}).get("application/json")
    return {
        "method": method.upper(), "path": path, "id": operation["operationId"],
        "summary": operation["summary"], "description": operation["description"],
        "ability": operation["x-ability"], "parameters": operation["parameters"],
        "status": status,
        "example": _response_example(spec, response["content"]),
        "body": _pretty(example(spec, body["schema"], required_only=True)) if body else None,
        "upload": "application/octet-stream" in operation.get("requestBody", {}).get(
            "content", {}),
    }


def _response_example(spec: dict, content: dict) -> str:
    """What the operation answers: a JSON example, or for another media type (the CSV
    export) its example if the document gives one, else the type's name."""
    if "application/json" in content:
        return _pretty(example(spec, content["application/json"]["schema"]))
    media_type, described = next(iter(content.items()))
    return described.get("example") or described["schema"].get("example") or media_type


def _pretty(value) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)


def example(spec: dict, schema: dict, *, required_only: bool = False, name: str = ""):
    """A plausible value for `schema` (its examples, first enum value, or a typed stand-in)."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return example(spec, spec["components"]["schemas"][name],
                       required_only=required_only, name=name)
    if "anyOf" in schema:
        return example(spec, schema["anyOf"][0], name=name)
    if "oneOf" in schema:  # one variant per type: the first stands for them all
        return example(spec, schema["oneOf"][0], required_only=required_only, name=name)
    if "const" in schema:
        return schema["const"]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind == "object":
        keys = schema.get("required", []) if required_only else schema.get("properties", {})
        return {key: _field(spec, key, schema["properties"][key], name) for key in keys}
    if kind == "array":
        return [example(spec, schema.get("items", {}))]
    return {"integer": 0, "boolean": False, "number": 0}.get(kind, "string")


def _field(spec: dict, key: str, schema: dict, owner: str):
    if key == "id" and owner in ID_PREFIXES:
        return f"{ID_PREFIXES[owner]}_01J2PVQR41XSK3VY7P6M5B8D2C"
    if FIELD_EXAMPLES.get(key) is not None:
        return FIELD_EXAMPLES[key]
    if "anyOf" in schema and {"type": "null"} in schema["anyOf"]:
        return None  # optional facts (archived_at, tx_hash, ...) are mostly empty
    return example(spec, schema, name=owner)
