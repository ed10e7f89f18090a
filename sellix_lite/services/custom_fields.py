"""Custom checkout fields (docs/api.md, Custom fields): what a product asks the buyer at
checkout, the values an order keeps, and `{{ custom.NAME }}` in `delivery_text`.

A product defines up to 10 fields; an order's values are checked against the product's
definitions when its stock is reserved, and kept on the order as `{name: value}`.
"""

from __future__ import annotations

import json
import math
import re

from ..db import query_one
from ..errors import Unprocessable
from ..validation import (
    PLAIN_TEXT,
    PLAIN_TEXT_HINT,
    Array,
    Boolean,
    Email,
    Enum,
    Field,
    FieldError,
    Integer,
    Object,
    Schema,
    String,
)
from .scope import Scope

TYPES = ("text", "number", "email", "checkbox", "select")
MAX_FIELDS, MAX_OPTIONS, MAX_TEXT_LENGTH = 10, 50, 500
NAME_PATTERN = r"[a-z0-9_]{1,40}"
# Which types each optional key of a definition applies to.
ONLY_FOR = {"options": "select", "max_length": "text"}

_PLAIN = dict(pattern=PLAIN_TEXT, pattern_hint=PLAIN_TEXT_HINT, strip=True)
DEFINITION = Schema(
    name=String(required=True, pattern=NAME_PATTERN,
                pattern_hint="must be 1 to 40 lowercase letters, digits or underscores",
                description="The key of the value on the order; unique per product.",
                example="discord"),
    label=String(required=True, min_length=1, max_length=100, description="What the "
                 "buyer is asked.", example="Discord username", **_PLAIN),
    type=Enum(TYPES, required=True, description="The kind of value asked for."),
    required=Boolean(description="The order needs a value (a checkbox: ticked). Default "
                                 "false."),
    options=Array(String(min_length=1, max_length=100, **_PLAIN), min_items=1,
                  max_items=MAX_OPTIONS, unique=True,
                  description="The choices of a `select` field (required for it)."),
    max_length=Integer(minimum=1, maximum=MAX_TEXT_LENGTH,
                       description="The longest value of a `text` field. Default 500."),
)


class Definitions(Array):
    """A product's `custom_fields`: up to 10 definitions with unique names, `options` on
    select fields only (and always), `max_length` on text fields only (default 500)."""

    def __init__(self, **kwargs):
        kwargs.setdefault("description", "Fields the buyer fills in at checkout, up to 10 "
                                         "with unique names; the list replaces the "
                                         "product's fields.")
        kwargs.setdefault("example", [
            {"name": "discord", "label": "Discord username", "type": "text",
             "required": True, "max_length": 32},
            {"name": "size", "label": "T-shirt size", "type": "select",
             "options": ["S", "M", "L"]}])
        super().__init__(Object(DEFINITION), max_items=MAX_FIELDS, **kwargs)

    def check(self, value, from_query):
        definitions = [_complete(item) for item in super().check(value, from_query)]
        seen = set()
        for index, definition in enumerate(definitions):
            problem = _problem(definition)
            if definition["name"] in seen:
                problem = "its name is used by an earlier field"
            if problem:
                raise FieldError(f"item {index} ({definition['name']}): {problem}")
            seen.add(definition["name"])
        return definitions

    def schema_fragment(self):
        """One variant per type, each allowing exactly the keys that type takes."""
        base = DEFINITION.json_schema()
        variants = []
        for kinds in (["text"], ["select"], ["number", "email", "checkbox"]):
            properties = {name: schema for name, schema in base["properties"].items()
                          if ONLY_FOR.get(name, kinds[0]) == kinds[0]}
            properties["type"] = {**properties["type"], "enum": kinds}
            required = base["required"] + (["options"] if kinds == ["select"] else [])
            variants.append({**base, "properties": properties, "required": required})
        return {"type": "array", "maxItems": MAX_FIELDS, "items": {"oneOf": variants}}


def _complete(definition: dict) -> dict:
    """A definition with its defaults, keys in a fixed order."""
    complete = {"name": definition["name"], "label": definition["label"],
                "type": definition["type"], "required": definition.get("required", False)}
    for key in ("options", "max_length"):
        if key in definition:
            complete[key] = definition[key]
    if complete["type"] == "text":
        complete.setdefault("max_length", MAX_TEXT_LENGTH)
    return complete


def _problem(definition: dict) -> str | None:
    for key, kind in ONLY_FOR.items():
        if key in definition and definition["type"] != kind:
            return f"{key} is only for {kind} fields"
    if definition["type"] == "select" and "options" not in definition:
        return "a select field needs options"
    return None


def stored(definitions: list) -> str:
    """The definitions as the products table keeps them."""
    return json.dumps(definitions)


class Values(Field):
    """An order's `custom_fields`: the values by field name, checked against the product's
    definitions by `values_for`."""

    json_type = "object"

    def __init__(self, **kwargs):
        kwargs.setdefault("description", "The values of the product's custom fields by "
                                         "name: a string (text, email, select), a number, "
                                         "or true/false (checkbox).")
        kwargs.setdefault("example", {"discord": "ada#1815"})
        super().__init__(**kwargs)

    def check(self, value, from_query):
        if not isinstance(value, dict):
            raise FieldError(self.expects())
        return dict(value)

    def expects(self):
        return "must be an object of values by field name"

    def schema_fragment(self):
        return {"type": "object", "maxProperties": MAX_FIELDS,
                "propertyNames": {"pattern": f"^{NAME_PATTERN}$"},
                "additionalProperties": {"type": ["string", "number", "boolean"]}}


class Number(Field):
    """A JSON number (an integer or a finite decimal, never true/false) within ±2^53, the
    integers every JSON reader, JavaScript's included, holds exactly."""

    json_type = "number"
    LARGEST = 2 ** 53

    def check(self, value, from_query):
        if isinstance(value, bool) or not isinstance(value, int | float) \
                or (isinstance(value, float) and not math.isfinite(value)) \
                or abs(value) > self.LARGEST:
            raise FieldError(self.expects())
        return value

    def expects(self):
        return f"must be a number from -{self.LARGEST} to {self.LARGEST}"

    def schema_fragment(self):
        return {"type": "number", "minimum": -self.LARGEST, "maximum": self.LARGEST}


def _value_field(definition: dict) -> Field:
    """The validator of one definition's value."""
    kind = definition["type"]
    if kind == "text":
        return String(min_length=1, max_length=definition["max_length"], strip=True,
                      pattern=PLAIN_TEXT, pattern_hint=PLAIN_TEXT_HINT)
    if kind == "select":
        return Enum(definition["options"])
    return {"number": Number, "email": Email, "checkbox": Boolean}[kind]()


def definitions_of(product: dict) -> list[dict]:
    """A product row's field definitions."""
    return json.loads(product["custom_fields"])


def values_for(product: dict, submitted: dict) -> dict:
    """The order's values for `product`'s fields, in their order; 422 with
    `errors.custom_fields` for names it doesn't define and `errors["custom_fields.NAME"]`
    (code `required` or `invalid`) for a missing or wrong value."""
    definitions = definitions_of(product)
    errors, codes, values = {}, {}, {}
    unknown = [name for name in submitted if name not in {d["name"] for d in definitions}]
    if unknown:
        takes = ", ".join(d["name"] for d in definitions) or "none"
        errors["custom_fields"] = (f"has fields this product does not take: "
                                   f"{', '.join(repr(name[:40]) for name in unknown[:5])} "
                                   f"(it takes: {takes})")
    for definition in definitions:
        name, key = definition["name"], f"custom_fields.{definition['name']}"
        if name not in submitted:
            if definition["required"]:
                errors[key], codes[key] = "is required", "required"
            continue
        try:
            values[name] = _value_field(definition).clean(submitted[name])
        except FieldError as exc:
            errors[key], codes[key] = str(exc), "invalid"
            continue
        if definition["type"] == "checkbox" and definition["required"] and not values[name]:
            errors[key], codes[key] = "must be true: the box must be ticked", "required"
    if errors:
        raise Unprocessable(errors=errors, codes=codes)
    return values


def labels(scope: Scope, order: dict) -> dict:
    """The labels of the fields of an order's product, by name."""
    product = scope.get("products", order["items"][0]["product_id"])
    return {definition["name"]: definition["label"]
            for definition in definitions_of(product)} if product else {}


def carried_to_renewal(db, subscription_id: str, product: dict) -> dict:
    """The values of a subscription's latest paid order that its product still defines.

    A renewal is not a new checkout: it keeps what the buyer gave, which was valid when
    bought, and is not checked against fields the merchant added or tightened since (that
    would stop the subscription from ever renewing)."""
    order = query_one(db, "SELECT custom_fields FROM orders WHERE subscription_id = ? AND "
                          "paid_at IS NOT NULL ORDER BY id DESC LIMIT 1", (subscription_id,))
    if order is None:
        return {}
    names = {definition["name"] for definition in definitions_of(product)}
    return {name: value for name, value in json.loads(order["custom_fields"]).items()
            if name in names}


PLACEHOLDER = re.compile(r"\{\{\s*custom\.([a-z0-9_]{1,40})\s*\}\}")


def fill(text: str, values: dict) -> str:
    """`text` with each `{{ custom.NAME }}` replaced by the order's value as plain text (no
    value: nothing). One pass over `text`: a value is never read as a placeholder itself."""
    return PLACEHOLDER.sub(lambda match: _as_text(values.get(match.group(1), "")), text)


def _as_text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def delivery_text(product: dict, order: dict) -> str:
    """The product's `delivery_text` for this order, its placeholders filled."""
    return fill(product["delivery_text"] or "", json.loads(order["custom_fields"]))
