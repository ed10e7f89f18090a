"""JSON Schemas of the objects the API returns, for the OpenAPI document.

They sit next to the routes that name them (`operation(..., response="Product")`), and the
conformance tests check every real response against them, so a field added to a `render`
function without its schema fails the build.
"""

from __future__ import annotations

from ... import chains, currencies, validation
from ...services import (
    api_keys,
    blacklist,
    checkout,
    coupons,
    custom_fields,
    license_checks,
    license_keys,
    licenses,
    orders,
    payouts,
    products,
    refunds,
    reports,
    webhooks,
)

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
CURRENCY = {"$ref": "#/components/schemas/Currency"}
# Payouts and the balance are in `[shop] currency`, which the configuration takes as written.
SHOP_CURRENCY = {**STRING, "description": "The shop's currency."}
METADATA = {"$ref": "#/components/schemas/Metadata"}
CHAIN = enum(chains.CHAINS)
ASSET = enum(sorted({asset for assets in chains.CHAINS.values() for asset in assets}))

_API_KEY = {"id": STRING, "name": STRING, "abilities": {"type": "array", "items":
            enum(api_keys.ABILITIES)}, "mode": MODE, "created_at": TIME,
            "last_used_at": nullable(TIME), "revoked_at": nullable(TIME)}
_LICENSE = {"id": STRING, "key": STRING, "status": enum(licenses.STATUSES),
            "product_id": STRING, "order_id": STRING, "customer_email": STRING, "mode": MODE,
            "activation_limit": nullable(INTEGER), "activations": INTEGER,
            "expires_at": nullable(TIME), "created_at": TIME, "updated_at": TIME}
_PUBLIC_LICENSE = {name: _LICENSE[name] for name in (
    "id", "status", "product_id", "mode", "activation_limit", "activations", "expires_at")}
_INSTANCE = {"$ref": "#/components/schemas/Instance"}
_LEASE = {**STRING, "description": "A JWT signed with the shop's Ed25519 key (`alg: EdDSA`), "
                                   "verifiable offline with the keys of "
                                   "`/.well-known/jwks.json`."}
_PRODUCT = {
    "id": STRING, "name": STRING, "slug": STRING, "type": enum(products.TYPES),
    "price_cents": INTEGER, "currency": CURRENCY, "description": STRING,
    "stock": nullable(INTEGER), "low_stock_threshold": nullable(INTEGER),
    "activation_limit": nullable(INTEGER),
    "status": {"$ref": "#/components/schemas/ProductStatus"},
    "mode": MODE,
    "created_at": TIME, "updated_at": TIME, "archived_at": nullable(TIME),
    "delivery_text": nullable(STRING), "dynamic_url": nullable(STRING),
    "interval": nullable(enum(products.INTERVALS)), "requires_shipping": {"type": "boolean"},
    "file": nullable(obj({"name": STRING, "size_bytes": INTEGER, "sha256": STRING,
                          "updated_at": TIME})),
    "image_url": {**nullable(STRING), "description": "Path of the product's image on this "
                  "server (`/media/<sha256>.<png|jpeg|webp>`), cacheable for ever."},
    "metadata": METADATA,
    "custom_fields": {"type": "array", "items": {"$ref": "#/components/schemas/CustomField"},
                      "description": "What the buyer is asked at checkout."},
}
_SUBSCRIPTION_ON_ORDER = nullable(obj({"id": STRING, "interval": enum(products.INTERVALS),
                                       "current_period_end": TIME,
                                       "status": enum(("active", "canceled", "expired"))}))
# What `delivery.state` can be (the orders table allows exactly these).
DELIVERY_STATES = ("pending", "delivered", "failed", "awaiting_shipment", "shipped")
_ADDRESS = obj({name: STRING for name, field in checkout.SHIPPING_ADDRESS.fields.items()
                if field.required},
               {name: STRING for name, field in checkout.SHIPPING_ADDRESS.fields.items()
                if not field.required})
# The goods of each product type, present once the order is paid (see product_types/).
_GOODS = {
    "license_key": {"keys": {"type": "array", "items": STRING,
                             "description": "The delivered license keys, one per unit."}},
    "account": {"text": STRING}, "subscription": {"text": STRING},
    "dynamic": {"text": {**STRING, "description": "What the product's dynamic_url answered "
                                                  "(or its delivery_text fallback)."}},
    "file_download": {"file_name": STRING, "download_url": nullable(
        {**STRING, "format": "uri", "description": "A signed, expiring link; null once the "
                                                   "order is refunded."})},
    "physical": {"shipping_address": _ADDRESS, "tracking": nullable(STRING)},
}


def _delivery_name(kind: str) -> str:
    return "".join(part.title() for part in kind.split("_")) + "Delivery"


DELIVERIES = {
    _delivery_name(kind): obj({"kind": {"const": kind}, "state": enum(DELIVERY_STATES),
                               "delivered_at": nullable(TIME)}, _GOODS[kind])
    for kind in products.TYPES
}
_DELIVERY = {
    "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in DELIVERIES],
    "discriminator": {"propertyName": "kind", "mapping": {
        kind: f"#/components/schemas/{_delivery_name(kind)}" for kind in products.TYPES}},
    "description": "The goods, typed by `kind` (the product type).",
}
# An order's price and the quote's, as `coupons.Price` makes them.
_PRICE = {
    "subtotal_cents": {**INTEGER, "description": "The units' price before any discount.",
                       "examples": [9800]},
    "discount_cents": {**INTEGER, "description": "What the coupon took off (at most the "
                                                 "subtotal).", "examples": [2450]},
    "total_cents": {**INTEGER, "description": "What the buyer pays: subtotal less "
                                              "discount (0: a free order).",
                    "examples": [7350]},
    "coupon": {**nullable(STRING), "description": "The coupon's code, or null.",
               "examples": ["SPRING25"]},
}
_ORDER = {
    "id": STRING, "mode": MODE, "status": enum(orders.STATUSES), **_PRICE,
    "refunded_cents": INTEGER, "refundable_cents": {
        **INTEGER, "description": "What was received (`payment.paid_cents`) and not yet "
                                  "refunded: at most this can still be refunded."},
    "currency": CURRENCY, "customer_email": STRING, "customer_id": STRING,
    "created_at": TIME, "paid_at": nullable(TIME),
    "payment": {**nullable(obj({
        "provider": enum(("blockpn",)),
        "invoice_id": {**nullable(STRING), "description": "The provider's invoice id."},
        "chain": CHAIN, "asset": ASSET,
        "address": nullable(STRING), "asset_amount": nullable(STRING),
        "expires_at": nullable(TIME), "paid_cents": INTEGER, "asset_paid": nullable(STRING),
        "tx_hash": nullable(STRING), "overpaid_cents": INTEGER,
        "late": {"type": "boolean",
                 "description": "A payment reached the invoice after it expired."},
        "checkout_url": {**STRING, "format": "uri"}})),
        "description": "How the order is paid; `null` for a free order (total 0), which opens "
                       "no invoice."},
    "items": {"type": "array", "items": obj({
        "product_id": STRING, "product": STRING, "qty": INTEGER, "unit_price_cents": INTEGER,
        "subtotal_cents": INTEGER})},
    "delivery": _DELIVERY,
    "failure_reason": nullable(STRING),
    "metadata": METADATA,
    "custom_fields": {**custom_fields.Values().schema_fragment(),
                      "description": "What the buyer gave for the product's custom fields, "
                                     "by name."},
}
_WEBHOOK = {"id": STRING, "url": STRING, "events": {"type": "array", "items": STRING},
            "description": STRING, "status": enum(("active", "disabled")), "mode": MODE,
            "created_at": TIME, "updated_at": TIME, "disabled_at": nullable(TIME),
            "failing_since": nullable(TIME)}
_ATTEMPT = obj({"attempted_at": TIME, "response_code": nullable(INTEGER),
                "duration_ms": INTEGER, "error": nullable(STRING),
                "response_body": nullable(STRING)})
# A report's row: paid orders' sums in one currency (docs/api.md, Reports).
_SALES = {"currency": CURRENCY, "orders": INTEGER, "units": INTEGER, "gross_cents": INTEGER,
          "discount_cents": INTEGER, "refunded_cents": INTEGER, "net_cents": INTEGER}

OBJECTS = {
    "ApiKey": obj(_API_KEY),
    "NewApiKey": obj({**_API_KEY, "secret": nullable(STRING)}),
    "RevokedApiKey": obj({"id": STRING, "revoked": {"const": True}}),
    "Product": obj(_PRODUCT),
    "CustomField": obj({"name": STRING, "label": STRING, "type": enum(custom_fields.TYPES),
                        "required": {"type": "boolean"}},
                       {"options": {"type": "array", "items": STRING,
                                    "description": "`select` only."},
                        "max_length": {**INTEGER, "description": "`text` only."}}),
    # Only a dynamic product's create response has the secret (null in a replay).
    "NewProduct": obj(_PRODUCT, {"dynamic_signing_secret": nullable(STRING)}),
    "DynamicSigningSecret": obj({"dynamic_signing_secret": nullable(STRING)}),
    "ArchivedProduct": obj({"id": STRING, "deleted": {"const": True},
                            "archived_at": TIME}),
    "KeyImport": obj({"imported": INTEGER, "duplicates": INTEGER, "stock_after": INTEGER}),
    "LicenseKey": obj({"id": STRING, "key": STRING,
                       "status": enum(license_keys.STATUSES),
                       "order_id": nullable(STRING), "created_at": TIME}),
    "DeletedLicenseKey": obj({"id": STRING, "deleted": {"const": True}}),
    "Order": obj(_ORDER, {"subscription": _SUBSCRIPTION_ON_ORDER}),
    "Quote": obj({**_PRICE, "currency": CURRENCY}),
    "Report": obj({"object": {"const": "report"}, "from": TIME, "to": TIME,
                   "group_by": enum(reports.GROUP_KEYS),
                   "rows": {"type": "array", "items": obj({"key": STRING, **_SALES})},
                   "totals": {"type": "array", "items": obj(_SALES)}}),
    "Coupon": obj({
        "id": STRING, "code": {**STRING, "examples": ["SPRING25"]},
        "percent_off": {**nullable(INTEGER), "examples": [25]},
        "amount_off_cents": nullable(INTEGER),
        "currency": {**nullable(CURRENCY), "description": "With `amount_off_cents`: the "
                                                          "currency of orders it applies to."},
        "product_ids": {**nullable({"type": "array", "items": STRING}),
                        "description": "The products it applies to; null: every product."},
        "max_redemptions": nullable(INTEGER), "redemptions": INTEGER,
        "once_per_customer": {"type": "boolean"}, "starts_at": nullable(TIME),
        "expires_at": nullable(TIME), "status": enum(coupons.STATUSES), "mode": MODE,
        "created_at": TIME,
        "metadata": {"type": "object", "additionalProperties": STRING}}),
    "Refund": obj({"id": STRING, "order_id": STRING, "status": enum(refunds.STATUSES),
                   "amount_cents": INTEGER, "reason": nullable(enum(refunds.REASONS)),
                   "note": nullable(STRING), "destination_tx": nullable(STRING),
                   "failure_reason": nullable(STRING), "created_at": TIME,
                   "updated_at": TIME}),
    "Resent": obj({"sent_at": TIME, "recipient": STRING,
                   "delivery_kind": enum(products.TYPES)}),
    "Customer": obj({"id": STRING, "email": STRING, "mode": MODE, "orders_count": INTEGER,
                     "lifetime_cents": INTEGER, "first_seen_at": TIME, "last_seen_at": TIME,
                     "metadata": METADATA},
                    {"orders": {"type": "array", "items": obj({
                        "id": STRING, "status": enum(orders.STATUSES), "total_cents": INTEGER,
                        "currency": CURRENCY, "paid_at": nullable(TIME),
                        "created_at": TIME})}}),
    "Subscription": obj({"id": STRING, "mode": MODE,
                         "status": enum(("active", "canceled", "expired")),
                         "interval": enum(products.INTERVALS), "current_period_end": TIME,
                         "product_id": STRING, "customer_id": STRING, "customer_email": STRING,
                         "renewal_order_id": nullable(STRING),
                         "cancel_at_period_end": {"type": "boolean"},
                         "canceled_at": nullable(TIME), "created_at": TIME,
                         "updated_at": TIME}),
    "Payout": obj({"id": STRING, "mode": MODE, "status": enum(payouts.STATUSES),
                   "chain": CHAIN, "asset": ASSET, "amount_cents": INTEGER,
                   "currency": SHOP_CURRENCY, "destination_address": STRING,
                   "memo": nullable(STRING),
                   "tx_hash": nullable(STRING), "failure_reason": nullable(STRING),
                   "created_at": TIME, "broadcast_at": nullable(TIME),
                   "confirmed_at": nullable(TIME)}),
    "License": obj(_LICENSE),
    "LicenseDetail": obj({**_LICENSE, "instances": {"type": "array", "items": _INSTANCE}}),
    "Instance": obj({"id": STRING, "name": STRING, "fingerprint": nullable(STRING),
                     "created_at": TIME}),
    "DeletedInstance": obj({"id": STRING, "deleted": {"const": True}}),
    "PublicLicense": obj(_PUBLIC_LICENSE),
    "Activation": obj({"activated": {"const": True},
                       "license": {"$ref": "#/components/schemas/PublicLicense"},
                       "instance": _INSTANCE, "lease": _LEASE}),
    "Validation": obj({"valid": {"type": "boolean"},
                       "reason": nullable(enum(license_checks.REASONS)),
                       "license": {"$ref": "#/components/schemas/PublicLicense"}},
                      {"instance": {**_INSTANCE, "description": "The instance named, when "
                                                                "it holds the license."},
                       "lease": {**_LEASE, "description": "Only when `valid`. " +
                                 _LEASE["description"]}}),
    "Deactivation": obj({"deactivated": {"const": True}}),
    "Balance": obj({"available_cents": INTEGER, "pending_cents": INTEGER,
                    "currency": SHOP_CURRENCY}),
    "WebhookEndpoint": obj(_WEBHOOK),
    "NewWebhookEndpoint": obj({**_WEBHOOK, "signing_secret": nullable(STRING)},
                              {"previous_secret_expires_at": TIME}),
    "DeletedWebhookEndpoint": obj({"id": STRING, "deleted": {"const": True}}),
    "BlacklistRule": obj({"id": STRING,
                          "type": {**enum(blacklist.TYPES), "examples": ["email_domain"]},
                          "value": {**STRING, "examples": ["fraud.example"]},
                          "note": nullable(STRING), "mode": MODE, "created_at": TIME}),
    "DeletedBlacklistRule": obj({"id": STRING, "deleted": {"const": True}}),
    "TestDelivery": obj({"delivered": {"type": "boolean"}, "response_code": nullable(INTEGER),
                         "delivery_ms": INTEGER}),
    "WebhookDelivery": obj({"id": STRING, "endpoint_id": STRING, "event_id": STRING,
                            "event_type": nullable(enum(webhooks.EVENT_TYPES)),
                            "status": enum(webhooks.DELIVERY_STATUSES),
                            "attempt_count": INTEGER, "next_attempt_at": nullable(TIME),
                            "created_at": TIME, "completed_at": nullable(TIME),
                            "attempts": {"type": "array", "items": _ATTEMPT}}),
    "Problem": obj({"type": STRING, "title": STRING, "status": INTEGER, "detail": STRING,
                    "instance": STRING, "request_id": STRING},
                   {"errors": {"type": "object", "additionalProperties": STRING},
                    "trace_id": STRING, "ability": STRING}),
}

# The object an event carries, by the family its type begins with.
EVENT_OBJECTS = {"order": "Order", "product": "Product", "payout": "Payout",
                 "customer": "Customer", "subscription": "Subscription",
                 "license": "License"}
# Members of `data` beside the object, by family.
EVENT_EXTRAS = {
    "order": {"replacement": {
        **obj({"old_key": STRING, "new_key": STRING, "reason": nullable(STRING)}),
        "description": "Only in `order.key_replaced`: the burned key, the key delivered in "
                       "its place, and the reason given."}},
    "license": {"instance": {
        **_INSTANCE, "description": "`license.activated`, `license.deactivated`: the "
                                    "instance activated or removed."}},
}


def _event_schemas() -> dict:
    """One event schema per family, its `data.object` typed; `Event` picks by `type`."""
    families: dict[str, list[str]] = {}
    for event_type in webhooks.EVENT_TYPES:
        families.setdefault(event_type.split(".")[0], []).append(event_type)
    schemas, mapping = {}, {}
    for family, types in families.items():
        name = EVENT_OBJECTS.get(family)
        inner = {"$ref": f"#/components/schemas/{name}"} if name else {"type": "object"}
        schema_name = f"{name or family.title()}Event"
        schemas[schema_name] = obj(
            {"id": STRING, "type": enum(types), "created_at": TIME, "mode": MODE,
             "data": obj({"object": inner}, {"previous_attributes": {
                 "type": "object", "description": "The fields that changed, as they were."},
                 **EVENT_EXTRAS.get(family, {})})})
        mapping.update({t: f"#/components/schemas/{schema_name}" for t in types})
    schemas["Event"] = {"oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in schemas],
                        "discriminator": {"propertyName": "type", "mapping": mapping}}
    return schemas


OBJECTS["Currency"] = enum(currencies.CODES)
OBJECTS["Metadata"] = {**validation.Metadata().schema_fragment(),
                       "description": "Your own key-value pairs (empty when none are set)."}
OBJECTS["ProductStatus"] = enum(products.STATUSES)
OBJECTS.update(DELIVERIES)
OBJECTS.update(_event_schemas())


def product_create_schemas() -> dict:
    """`ProductCreate`: the create body as one variant per product type, picked by `type`,
    each allowing exactly the fields that type takes (the rules of `products.create`)."""
    base = products.CREATE.json_schema()
    for field, name in (("currency", "Currency"), ("status", "ProductStatus")):
        # The named enum, not one copy per variant, for the models a generator makes.
        schema = {key: value for key, value in base["properties"][field].items()
                  if key not in ("type", "enum")}
        base["properties"][field] = {"$ref": f"#/components/schemas/{name}", **schema}
    variants = {}
    for kind in products.TYPES:
        schema = {**base, "properties": dict(base["properties"]),
                  "required": list(base["required"])}
        schema["properties"]["type"] = {**base["properties"]["type"], "enum": [kind]}
        for name, kinds in products.FIELD_TYPES.items():
            if kind not in kinds:
                _forbid(schema, name)
        if kind == "license_key":
            schema["properties"].pop("stock")  # the pool decides it
        if kind == "physical":
            schema["properties"]["requires_shipping"] = {
                "type": "boolean", "enum": [True], "description": "Physical products ship."}
        if kind == "dynamic":
            url = schema["properties"]["dynamic_url"]
            schema["properties"]["dynamic_url"] = {**url, "type": "string"}
            schema["required"].append("dynamic_url")
        variants[_variant_name(kind)] = schema
    return {**variants, "ProductCreate": {
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in variants],
        "discriminator": {"propertyName": "type", "mapping": {
            kind: f"#/components/schemas/{_variant_name(kind)}" for kind in products.TYPES}}}}


def _variant_name(kind: str) -> str:
    return "".join(part.title() for part in kind.split("_")) + "ProductCreate"


def _forbid(schema: dict, name: str) -> None:
    """A field of other types: only `null` where the field is nullable, else absent."""
    field = schema["properties"].pop(name)
    if "null" in (field["type"] if isinstance(field["type"], list) else [field["type"]]):
        schema["properties"][name] = {"type": "null",
                                      "description": "Only null: not a field of this type."}


def list_of(name: str) -> dict:
    """The list envelope around objects of one kind (docs/api.md, Pagination)."""
    return obj({"object": {"const": "list"},
                "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}},
                "has_more": {"type": "boolean"}, "next_cursor": nullable(STRING)})
