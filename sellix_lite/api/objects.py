"""JSON Schemas of the objects the API returns, for the OpenAPI document.

They sit next to the routes that name them (`operation(..., response="Product")`), and the
conformance tests check every real response against them, so a field added to a `render`
function without its schema fails the build.
"""

from __future__ import annotations

from ..services import api_keys, orders, payouts, products, refunds, webhooks

STRING = {"type": "string"}
INTEGER = {"type": "integer"}
TIME = {"type": "string", "format": "date-time", "examples": ["2026-05-26T07:18:03Z"]}


def nullable(schema: dict) -> dict:
    return {"anyOf": [schema, {"type": "null"}]}


def enum(values) -> dict:
    return {"type": "string", "enum": list(values)}


def obj(required: dict, optional: dict | None = None, *, extra: bool = False) -> dict:
    """An object schema: `required` fields always present, `optional` ones sometimes."""
    properties = {**required, **(optional or {})}
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": extra}


MODE = enum(("live", "test"))

_API_KEY = {"id": STRING, "name": STRING, "abilities": {"type": "array", "items":
            enum(api_keys.ABILITIES)}, "mode": MODE, "created_at": TIME,
            "last_used_at": nullable(TIME), "revoked_at": nullable(TIME)}
_PRODUCT = {
    "id": STRING, "name": STRING, "slug": STRING, "type": enum(products.TYPES),
    "price_cents": INTEGER, "currency": STRING, "description": STRING,
    "stock": nullable(INTEGER), "status": enum(products.STATUSES), "mode": MODE,
    "created_at": TIME, "updated_at": TIME, "archived_at": nullable(TIME),
    "delivery_text": nullable(STRING), "dynamic_url": nullable(STRING),
    "interval": nullable(enum(products.INTERVALS)), "requires_shipping": {"type": "boolean"},
    "file": nullable(obj({"name": STRING, "size_bytes": INTEGER, "sha256": STRING,
                          "updated_at": TIME})),
}
_SUBSCRIPTION_ON_ORDER = nullable(obj({"id": STRING, "interval": enum(products.INTERVALS),
                                       "current_period_end": TIME,
                                       "status": enum(("active", "expired"))}))
_ORDER = {
    "id": STRING, "mode": MODE, "status": enum(orders.STATUSES), "total_cents": INTEGER,
    "refunded_cents": INTEGER, "currency": STRING, "customer_email": STRING,
    "customer_id": STRING, "created_at": TIME, "paid_at": nullable(TIME),
    "payment": obj({
        "provider": STRING, "chain": STRING, "asset": STRING, "address": nullable(STRING),
        "asset_amount": nullable(STRING), "expires_at": nullable(TIME), "paid_cents": INTEGER,
        "asset_paid": nullable(STRING), "tx_hash": nullable(STRING), "overpaid_cents": INTEGER,
        "checkout_url": STRING}),
    "items": {"type": "array", "items": obj({
        "product_id": STRING, "product": STRING, "qty": INTEGER, "unit_price_cents": INTEGER,
        "subtotal_cents": INTEGER})},
    # The goods depend on the product type: keys, text, file_name and download_url,
    # shipping_address and tracking.
    "delivery": obj({"kind": enum(products.TYPES), "state": STRING,
                     "delivered_at": nullable(TIME)}, extra=True),
    "failure_reason": nullable(STRING),
}
_WEBHOOK = {"id": STRING, "url": STRING, "events": {"type": "array", "items": STRING},
            "description": STRING, "status": enum(("active", "disabled")), "mode": MODE,
            "created_at": TIME, "updated_at": TIME, "disabled_at": nullable(TIME),
            "failing_since": nullable(TIME)}
_ATTEMPT = obj({"attempted_at": TIME, "response_code": nullable(INTEGER),
                "duration_ms": INTEGER, "error": nullable(STRING),
                "response_body": nullable(STRING)})

OBJECTS = {
    "ApiKey": obj(_API_KEY),
    "NewApiKey": obj({**_API_KEY, "secret": nullable(STRING)}),
    "RevokedApiKey": obj({"id": STRING, "revoked": {"const": True}}),
    "Product": obj(_PRODUCT),
    # Only a dynamic product's create response has the secret (null in a replay).
    "NewProduct": obj(_PRODUCT, {"dynamic_signing_secret": nullable(STRING)}),
    "DynamicSigningSecret": obj({"dynamic_signing_secret": nullable(STRING)}),
    "ArchivedProduct": obj({"id": STRING, "deleted": {"const": True},
                            "archived_at": TIME}),
    "KeyImport": obj({"imported": INTEGER, "duplicates": INTEGER, "stock_after": INTEGER}),
    "Order": obj(_ORDER, {"subscription": _SUBSCRIPTION_ON_ORDER}),
    "Refund": obj({"id": STRING, "order_id": STRING, "status": STRING,
                   "amount_cents": INTEGER, "reason": nullable(enum(refunds.REASONS)),
                   "note": nullable(STRING), "destination_tx": nullable(STRING),
                   "failure_reason": nullable(STRING), "created_at": TIME,
                   "updated_at": TIME}),
    "Resent": obj({"sent_at": TIME, "recipient": STRING, "delivery_kind": STRING}),
    "Customer": obj({"id": STRING, "email": STRING, "mode": MODE, "orders_count": INTEGER,
                     "lifetime_cents": INTEGER, "first_seen_at": TIME, "last_seen_at": TIME},
                    {"orders": {"type": "array", "items": obj({
                        "id": STRING, "status": enum(orders.STATUSES), "total_cents": INTEGER,
                        "currency": STRING, "paid_at": nullable(TIME),
                        "created_at": TIME})}}),
    "Subscription": obj({"id": STRING, "mode": MODE, "status": enum(("active", "expired")),
                         "interval": enum(products.INTERVALS), "current_period_end": TIME,
                         "product_id": STRING, "customer_id": STRING, "customer_email": STRING,
                         "renewal_order_id": nullable(STRING), "created_at": TIME,
                         "updated_at": TIME}),
    "Payout": obj({"id": STRING, "mode": MODE, "status": enum(payouts.STATUSES),
                   "chain": STRING, "asset": STRING, "amount_cents": INTEGER,
                   "currency": STRING, "destination_address": STRING, "memo": nullable(STRING),
                   "tx_hash": nullable(STRING), "failure_reason": nullable(STRING),
                   "created_at": TIME, "broadcast_at": nullable(TIME),
                   "confirmed_at": nullable(TIME)}),
    "Balance": obj({"available_cents": INTEGER, "pending_cents": INTEGER,
                    "currency": STRING}),
    "WebhookEndpoint": obj(_WEBHOOK),
    "NewWebhookEndpoint": obj({**_WEBHOOK, "signing_secret": nullable(STRING)},
                              {"previous_secret_expires_at": TIME}),
    "DeletedWebhookEndpoint": obj({"id": STRING, "deleted": {"const": True}}),
    "TestDelivery": obj({"delivered": {"type": "boolean"}, "response_code": nullable(INTEGER),
                         "delivery_ms": INTEGER}),
    "WebhookDelivery": obj({"id": STRING, "endpoint_id": STRING, "event_id": STRING,
                            "event_type": nullable(STRING), "status": STRING,
                            "attempt_count": INTEGER, "next_attempt_at": nullable(TIME),
                            "created_at": TIME, "completed_at": nullable(TIME),
                            "attempts": {"type": "array", "items": _ATTEMPT}}),
    "Event": obj({"id": STRING, "type": enum(webhooks.EVENT_TYPES), "created_at": TIME,
                  "mode": MODE, "data": obj({"object": {"type": "object"}},
                                            {"previous_attributes": {"type": "object"}})}),
    "Problem": obj({"type": STRING, "title": STRING, "status": INTEGER, "detail": STRING,
                    "instance": STRING, "request_id": STRING},
                   {"errors": {"type": "object", "additionalProperties": STRING},
                    "trace_id": STRING, "ability": STRING}),
}


def list_of(name: str) -> dict:
    """The §17 list envelope around objects of one kind."""
    return obj({"object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                "has_more": {"type": "boolean"}, "next_cursor": nullable(STRING)})
