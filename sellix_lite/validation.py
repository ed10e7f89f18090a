"""Declarative input schemas: validate request bodies and query strings, describe them in
JSON Schema.

One schema serves the API, the dashboard's forms and the OpenAPI document, so a rule is
written once. Missing required fields are a 400 naming each one; any other bad value,
including an unknown field, is a 422 with a message per field (docs/api.md, Errors).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any

from .errors import InvalidRequest, Unprocessable

MISSING = object()


def _runs(codes) -> list[tuple[int, int]]:
    """Consecutive integers grouped as (first, last) pairs."""
    runs: list[list[int]] = []
    for code in codes:
        if runs and runs[-1][1] == code - 1:
            runs[-1][1] = code
        else:
            runs.append([code, code])
    return [(low, high) for low, high in runs]


# Exactly the characters `str.strip()` removes, written out so every regex dialect reading
# the OpenAPI document (Python's, ECMA-262's) agrees on them.
WHITESPACE = "".join(
    f"\\u{low:04x}" + (f"-\\u{high:04x}" if high > low else "")
    for low, high in _runs(code for code in range(0x10000) if chr(code).isspace()))

# Text shown to the merchant that strangers write (an instance's name from a buyer's
# machine): no control characters, and none that reorder the text around it.
PLAIN_TEXT = r"[^\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]*"
PLAIN_TEXT_HINT = "must not contain control characters or bidirectional overrides"

def portable(pattern: str) -> str:
    """`pattern` with Python's `\\s` and `\\S` written out, so an ECMA-262 reader (the
    OpenAPI document's dialect) matches what Python's `re` does on the server. (Write
    digits as `[0-9]`: Python's `\\d` takes every script's.)"""
    out, class_start, chars = [], None, iter(pattern)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            out.append(_spelled_out(escaped, class_start is not None) or "\\" + escaped)
            continue
        if char == "[" and class_start is None:
            class_start = len(out)
        elif char == "]" and class_start is not None \
                and "".join(out[class_start:]) not in ("[", "[^"):  # `[]…]` is a literal
            class_start = None
        out.append(char)
    return "".join(out)


def _spelled_out(escape: str, in_class: bool) -> str | None:
    if escape == "s":
        return WHITESPACE if in_class else f"[{WHITESPACE}]"
    if escape == "S" and not in_class:
        return f"[^{WHITESPACE}]"
    return None


# An RFC 3339 date, or date-time with its offset: what `format: date` / `date-time` mean.
# ASCII digits only: Python's `\d` takes any script's.
DATE_OR_DATE_TIME = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}"
                     r"(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2}))?")
# Keyword arguments of a `String` taking such a date or date-time.
DATE_OR_DATE_TIME_FIELD = dict(pattern=DATE_OR_DATE_TIME, formats=("date", "date-time"),
                               pattern_hint="must be a date (2026-05-26) or a date-time with "
                                            "an offset (2026-05-26T07:18:03Z)")
# An http(s) URL of RFC 3986 characters (what `format: uri` allows), with a host part.
HTTP_URL = (r"https?://(?:[A-Za-z0-9\-._~!$&'()*+,;=:@\[\]]|%[0-9A-Fa-f]{2})+"
            r"(?:[/?#](?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?#\[\]]|%[0-9A-Fa-f]{2})*)?")


class FieldError(ValueError):
    """One field's value is not acceptable; the message is shown to the client, the
    optional `code` is for programs (see `ApiError.codes`)."""

    def __init__(self, message: str, code: str | None = None):
        super().__init__(message)
        self.code = code


class Field(ABC):
    """A field of a schema. Subclasses check and normalise one value."""

    json_type = "string"

    def __init__(self, *, required: bool = False, nullable: bool = False,
                 default: Any = MISSING, description: str = "", example: Any = MISSING):
        self.required = required
        self.nullable = nullable
        self.default = default
        self.description = description
        self.example = example

    def clean(self, value, from_query: bool = False):
        """The normalised value, or FieldError."""
        if value is None:
            if self.nullable:
                return None
            raise FieldError(f"must not be null; {self.expects()}")
        return self.check(value, from_query)

    @abstractmethod
    def check(self, value, from_query: bool):
        """The normalised non-null value, or FieldError."""

    @abstractmethod
    def expects(self) -> str:
        """What the field wants, in words: the tail of every error message."""

    def json_schema(self) -> dict:
        schema = dict(self.schema_fragment())
        if self.nullable:
            schema["type"] = [schema["type"], "null"]
            if "enum" in schema:
                schema["enum"] = [*schema["enum"], None]
        if self.description:
            schema["description"] = self.description
        if self.default is not MISSING:
            schema["default"] = self.default
        if self.example is not MISSING:
            schema["examples"] = [self.example]
        return schema

    def schema_fragment(self) -> dict:
        return {"type": self.json_type}


class String(Field):
    """A string; `strip` trims surrounding whitespace before the checks (form input), and
    `formats` names the JSON Schema formats the pattern already enforces (annotations)."""

    def __init__(self, *, min_length: int = 0, max_length: int | None = None,
                 pattern: str | None = None, pattern_hint: str = "", strip: bool = False,
                 formats: tuple[str, ...] = (), **kwargs):
        super().__init__(**kwargs)
        self.min_length, self.max_length = min_length, max_length
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_hint = pattern_hint
        self.strip = strip
        self.formats = formats

    def check(self, value, from_query):
        if not isinstance(value, str):
            raise FieldError(self.expects())
        if self.strip:
            value = value.strip()
        too_short = len(value) < self.min_length
        too_long = self.max_length is not None and len(value) > self.max_length
        if too_short or too_long:
            raise FieldError(self.expects())
        if self.pattern and not self.pattern.fullmatch(value):
            raise FieldError(self.pattern_hint or f"must match {self.pattern.pattern}")
        return value

    def expects(self):
        if self.max_length is not None:
            return f"must be a string of {self.min_length} to {self.max_length} characters"
        if self.min_length:
            return f"must be a string of at least {self.min_length} characters"
        return "must be a string"

    def schema_fragment(self):
        schema = {"type": "string"}
        if self.strip:
            # The lengths count after trimming, so they live in the pattern: any surrounding
            # whitespace, then a core of the allowed length that starts and ends with
            # something else.
            schema["pattern"] = f"^[{WHITESPACE}]*{self._trimmed_core()}[{WHITESPACE}]*$"
            return schema
        if self.min_length:
            schema["minLength"] = self.min_length
        if self.max_length is not None:
            schema["maxLength"] = self.max_length
        if self.pattern:
            schema["pattern"] = f"^{portable(self.pattern.pattern)}$"
        if len(self.formats) == 1:
            schema["format"] = self.formats[0]
        elif self.formats:
            schema["anyOf"] = [{"type": "string", "format": name} for name in self.formats]
        return schema

    def _trimmed_core(self) -> str:
        """A regex of the trimmed value: the bounds, and `pattern` if any (the bounds then
        look ahead to the trailing whitespace, so both hold of the same core)."""
        if self.pattern:
            return (f"(?={self._bounded_core()}[{WHITESPACE}]*$)"
                    f"(?:{portable(self.pattern.pattern)})")
        return self._bounded_core()

    def _bounded_core(self) -> str:
        """A regex of any trimmed value of the allowed length."""
        edge = f"[^{WHITESPACE}]"
        longest = "" if self.max_length is None else self.max_length - 2
        middle = f"[\\s\\S]{{{max(self.min_length - 2, 0)},{longest}}}"
        choices = []
        if self.min_length == 0:
            choices.append("")
        if self.min_length <= 1 and self.max_length != 0:
            choices.append(edge)
        if self.max_length is None or self.max_length >= 2:
            choices.append(edge + middle + edge)
        return "(?:" + "|".join(choices) + ")"


# One part of an address: no @, dot, whitespace, comma, colon, semicolon, quote, bracket of
# any kind, backslash or control character. `\s` takes Unicode spaces and line separators.
_ADDRESS_ATOM = r"""[^@.\s,:;"'<>()\[\]{}\\\x00-\x1f\x7f-\x9f]+"""
_DOT_ATOMS = rf"{_ADDRESS_ATOM}(?:\.{_ADDRESS_ATOM})*"
DOMAIN_PATTERN = rf"{_ADDRESS_ATOM}(?:\.{_ADDRESS_ATOM})+"  # an address's domain: with a dot
EMAIL_PATTERN = rf"{_DOT_ATOMS}@{DOMAIN_PATTERN}"


class Email(String):
    """A plain address (addr-spec) of at most 254 characters, as every mail library parses
    it the same way: no display name, group, quoted or bracketed part, and exactly one
    recipient. The domain has a dot."""

    def __init__(self, **kwargs):
        super().__init__(min_length=3, max_length=254, strip=True, pattern=EMAIL_PATTERN,
                         pattern_hint="must be a plain email address such as "
                                      "buyer@example.com", **kwargs)


class Integer(Field):
    json_type = "integer"

    def __init__(self, *, minimum: int | None = None, maximum: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.minimum, self.maximum = minimum, maximum

    def check(self, value, from_query):
        if from_query and isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # JSON Schema's `integer` takes 1.0 too
        if not isinstance(value, int) or isinstance(value, bool):
            raise FieldError(self.expects())
        if (self.minimum is not None and value < self.minimum) or (
                self.maximum is not None and value > self.maximum):
            raise FieldError(self.expects())
        return value

    def expects(self):
        if self.minimum is not None and self.maximum is not None:
            return f"must be an integer from {self.minimum} to {self.maximum}"
        if self.minimum is not None:
            return f"must be an integer >= {self.minimum}"
        if self.maximum is not None:
            return f"must be an integer <= {self.maximum}"
        return "must be an integer"

    def schema_fragment(self):
        schema = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return schema


class Boolean(Field):
    json_type = "boolean"

    def check(self, value, from_query):
        if from_query and value in ("true", "false"):
            return value == "true"
        if not isinstance(value, bool):
            raise FieldError(self.expects())
        return value

    def expects(self):
        return "must be true or false"


class Enum(Field):
    def __init__(self, choices: Iterable[str], **kwargs):
        super().__init__(**kwargs)
        self.choices = tuple(choices)

    def check(self, value, from_query):
        if value not in self.choices or not isinstance(value, str):
            raise FieldError(self.expects())
        return value

    def expects(self):
        return f"must be one of: {', '.join(self.choices)}"

    def schema_fragment(self):
        return {"type": "string", "enum": list(self.choices)}


class Array(Field):
    json_type = "array"

    def __init__(self, items: Field, *, min_items: int = 0, max_items: int | None = None,
                 unique: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.items, self.min_items, self.max_items = items, min_items, max_items
        self.unique = unique

    def check(self, value, from_query):
        if not isinstance(value, list):
            raise FieldError(self.expects())
        if len(value) < self.min_items or (
                self.max_items is not None and len(value) > self.max_items):
            raise FieldError(self.expects())
        cleaned = []
        for index, item in enumerate(value):
            try:
                cleaned.append(self.items.clean(item))
            except FieldError as exc:
                raise FieldError(f"item {index}: {exc}") from None
        if self.unique:
            cleaned = list(dict.fromkeys(cleaned))
        return cleaned

    def expects(self):
        bounds = f"{self.min_items} to {self.max_items}" if self.max_items else \
            f"at least {self.min_items}"
        return f"must be a list of {bounds} items"

    def schema_fragment(self):
        schema = {"type": "array", "items": self.items.json_schema()}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        return schema

    def json_schema(self) -> dict:
        schema = super().json_schema()
        if self.unique:
            # Not `uniqueItems`: the server takes repeats and keeps the first of each.
            schema["description"] = (schema.get("description", "") + " Repeated items "
                                      "count once.").strip()
        return schema


class Object(Field):
    """A nested JSON object checked by its own schema; messages are per nested field."""

    json_type = "object"

    def __init__(self, schema: Schema, **kwargs):
        super().__init__(**kwargs)
        self.schema = schema

    def check(self, value, from_query):
        if not isinstance(value, dict):
            raise FieldError(self.expects())
        try:
            return self.schema.validate(value)
        except (InvalidRequest, Unprocessable) as exc:
            details = "; ".join(f"{name} {message}" for name, message in exc.errors.items())
            # The code names the first inner field the message starts with.
            raise FieldError(details, code=f"invalid_{next(iter(exc.errors))}") from None

    def expects(self):
        return "must be an object"

    def schema_fragment(self):
        return self.schema.json_schema()


class Metadata(Field):
    """Free-form key-value pairs the merchant keeps on an object: at most 20 keys of 1 to 40
    characters, each value a string of at most 500. In a change (`patch=True`) a null value
    removes its key; `merge_metadata` applies a change to what is kept."""

    json_type = "object"
    MAX_KEYS, MAX_KEY_LENGTH, MAX_VALUE_LENGTH = 20, 40, 500

    def __init__(self, *, patch: bool = False, **kwargs):
        kwargs.setdefault("description", "Your own key-value pairs: up to 20 keys of 1-40 "
                          "characters, string values up to 500 characters"
                          + ("; a null value removes its key." if patch else "."))
        kwargs.setdefault("example", {"crm_id": "C-1042"})
        super().__init__(**kwargs)
        self.patch = patch

    def check(self, value, from_query):
        if not isinstance(value, dict):
            raise FieldError(self.expects())
        if len(value) > self.MAX_KEYS:
            raise FieldError(f"has {len(value)} keys; {self.expects()}")
        for key, item in value.items():
            if not 1 <= len(key) <= self.MAX_KEY_LENGTH:
                raise FieldError(f"has a key of {len(key)} characters; {self.expects()}")
            removal = item is None and self.patch
            if not removal and not (isinstance(item, str)
                                    and len(item) <= self.MAX_VALUE_LENGTH):
                raise FieldError(f"has a bad value for {key!r}; {self.expects()}")
        return dict(value)

    def expects(self):
        return (f"must be an object of at most {self.MAX_KEYS} keys of 1 to "
                f"{self.MAX_KEY_LENGTH} characters, each value a string of at most "
                f"{self.MAX_VALUE_LENGTH} characters" + (" or null" if self.patch else ""))

    def schema_fragment(self):
        value = {"type": ["string", "null"] if self.patch else "string",
                 "maxLength": self.MAX_VALUE_LENGTH}
        return {"type": "object", "maxProperties": self.MAX_KEYS,
                "propertyNames": {"minLength": 1, "maxLength": self.MAX_KEY_LENGTH},
                "additionalProperties": value}


def merge_metadata(kept: dict, change: dict) -> dict:
    """`kept` with `change` applied (a null value removes its key); 422 on `metadata` when
    the result has more keys than allowed."""
    merged = {**kept, **change}
    merged = {key: value for key, value in merged.items() if value is not None}
    if len(merged) > Metadata.MAX_KEYS:
        raise Unprocessable(errors={"metadata": f"would have {len(merged)} keys; at most "
                                                f"{Metadata.MAX_KEYS} are kept"})
    return merged


class Schema:
    """A set of named fields: a JSON object body or a query string."""

    def __init__(self, description: str = "", /, **fields: Field):
        self.description = description
        self.fields = fields

    def validate(self, data: dict, *, from_query: bool = False) -> dict:
        """Clean values for the fields given (plus defaults); 400 or 422 otherwise."""
        missing = {name: "is required" for name, field in self.fields.items()
                   if field.required and name not in data}
        if missing:
            raise InvalidRequest(
                f"missing required parameter{'s' if len(missing) > 1 else ''}: "
                + ", ".join(missing), errors=missing)
        cleaned, errors, codes = {}, {}, {}
        for name, value in data.items():
            field = self.fields.get(name)
            if field is None:
                errors[name] = "is not a known parameter"
                continue
            try:
                cleaned[name] = field.clean(value, from_query)
            except FieldError as exc:
                errors[name] = str(exc)
                if exc.code:
                    codes[name] = exc.code
        if errors:
            raise Unprocessable(errors=errors, codes=codes)
        for name, field in self.fields.items():
            if name not in cleaned and field.default is not MISSING:
                cleaned[name] = field.default
        return cleaned

    def json_schema(self) -> dict:
        """The schema as a JSON Schema object (for the OpenAPI document)."""
        schema = {
            "type": "object",
            "properties": {name: f.json_schema() for name, f in self.fields.items()},
            "additionalProperties": False,
        }
        required = [name for name, f in self.fields.items() if f.required]
        if required:
            schema["required"] = required
        return schema
