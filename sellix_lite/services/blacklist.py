"""The blacklist (docs/api.md, Blacklist): buyers who can't check out, and the checkouts refused.

A rule names an email, an email domain (and its subdomains), an IP address or CIDR block, or
a country. `refuse_if_listed` runs at the start of a checkout, before anything is reserved:
a match records the refusal in a transaction of its own (the checkout itself leaves nothing)
and answers with one message whatever rule matched, so a refused buyer learns nothing about
which rule it was.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ..clock import now_iso
from ..countries import CODES as COUNTRY_CODES
from ..db import insert, query_one, write_txn
from ..errors import Unprocessable
from ..ids import new_id
from ..validation import DOMAIN_PATTERN, Email, Enum, Schema, String
from .scope import Scope, list_query

TYPES = ("email", "email_domain", "ip", "country")
REFUSED = "this buyer can't check out in this shop"
_HEX = "[0-9A-Fa-f]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"


def _hextets(count: int) -> str:
    return rf"{_HEX}(?::{_HEX}){{{count - 1}}}" if count else ""


def _ipv6_forms() -> list[str]:
    """IPv6 as Python's `ipaddress` reads it (no zone): eight groups, or `::` standing for
    one or more zero groups between k and at most 7 - k others; the same with the last
    two groups written as an IPv4 address."""
    forms = [_hextets(8), rf"(?:{_HEX}:){{6}}{_IPV4}"]
    for k in range(8):
        right = "" if k == 7 else rf"(?:{_HEX}(?::{_HEX}){{0,{6 - k}}})?"
        forms.append(f"{_hextets(k)}::{right}")
    for k in range(6):
        forms.append(rf"{_hextets(k)}::(?:{_HEX}:){{0,{5 - k}}}{_IPV4}")
    return forms


IP_PATTERN = f"(?:{'|'.join([_IPV4, *_ipv6_forms()])})"


class IpAddress(String):
    """An IPv4 or IPv6 address, kept in its canonical text (an IPv4-mapped IPv6 address as
    the IPv4 address it carries). The pattern is exactly what `ipaddress` accepts, so the
    OpenAPI document describes the same set of values."""

    def __init__(self, **kwargs):
        super().__init__(min_length=2, max_length=45, pattern=IP_PATTERN,
                         pattern_hint="must be an IPv4 or IPv6 address",
                         formats=("ipv4", "ipv6"), **kwargs)

    def check(self, value, from_query):
        return str(_unmapped(ipaddress.ip_address(super().check(value, from_query))))


CUSTOMER_IP = IpAddress(description="The buyer's IP address, for a custom storefront: "
                                    "checked against the blacklist's `ip` rules and kept on "
                                    "the order.", example="203.0.113.7")
CREATE = Schema(
    type=Enum(TYPES, required=True, description="What `value` names.", example="email_domain"),
    value=String(required=True, min_length=1, max_length=254, strip=True,
                 description="`email`: an address; `email_domain`: a domain (its subdomains "
                             "match too); `ip`: an address or CIDR block; `country`: an ISO "
                             "3166-1 alpha-2 code.", example="fraud.example"),
    note=String(max_length=500, nullable=True, description="Why, for people; shown in the "
                                                           "dashboard.",
                example="chargeback ring, May 2026"),
)
LIST = list_query(type=Enum(TYPES, description="Only rules of this type."))


@dataclass(frozen=True)
class Buyer:
    """What a checkout knows of its buyer beyond the order body: where the checkout came
    from, and the country the trusted proxy reported (storefront only)."""

    surface: str = "api"
    proxy_country: str | None = None
    # Whether a refusal is kept for the dashboard: checkouts are, quotes (which a bot may
    # ask for in a loop, and which reserve nothing) are not.
    recorded: bool = True


API_CHECKOUT = Buyer()
API_QUOTE = Buyer("quote", recorded=False)  # refused as its checkout would be


def render(row: dict) -> dict:
    """The public rule object."""
    return {"id": row["id"], "type": row["type"], "value": row["value"], "note": row["note"],
            "mode": row["mode"], "created_at": row["created_at"]}


def list_page(scope: Scope, query: dict) -> dict:
    """A page of rules, newest first."""
    where, params = ("type = ?", (query["type"],)) if "type" in query else ("", ())
    return scope.page("blacklist", query, render, where=where, params=params)


def create(scope: Scope, body: dict) -> dict:
    """Add a rule; the same type and value twice is a 422 naming the rule there is."""
    params = CREATE.validate(body)
    value = _canonical(params["type"], params["value"])
    with write_txn(scope.db):
        same = query_one(scope.db, "SELECT id FROM blacklist WHERE mode = ? AND type = ? "
                                   "AND value = ?", (scope.mode, params["type"], value))
        if same:
            raise Unprocessable(errors={"value": f"is already on the blacklist ({same['id']})"})
        row = {"id": new_id("bl"), "mode": scope.mode, "type": params["type"],
               "value": value, "note": params.get("note"), "created_at": now_iso()}
        insert(scope.db, "blacklist", row)
    return render(row)


def delete(scope: Scope, rule_id: str) -> dict:
    """Remove a rule (its refusals go with it)."""
    with write_txn(scope.db):
        scope.require("blacklist", rule_id, "blacklist rule")
        scope.db.execute("DELETE FROM blacklist WHERE id = ?", (rule_id,))
    return {"id": rule_id, "deleted": True}


def _canonical(kind: str, value: str) -> str:
    """The value as rules keep and match it, or 422 `errors.value`."""
    try:
        return _CANONICAL[kind](value)
    except ValueError as exc:  # a FieldError too
        raise Unprocessable(errors={"value": str(exc)}) from None


def _email(value: str) -> str:
    return Email().check(value, False).lower()


def _domain(value: str) -> str:
    return String(max_length=253, pattern=DOMAIN_PATTERN,
                  pattern_hint="must be a domain such as example.com, without @") \
        .check(value, False).lower()


def _network(value: str) -> str:
    """An address in its canonical text, or a CIDR block as its network; host bits set
    (`203.0.113.7/24`) are refused rather than guessed at."""
    try:
        network = _unmapped(ipaddress.ip_network(value, strict=True))
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValueError("must be an IP address or a CIDR block such as "
                             "203.0.113.0/24") from None
        raise ValueError(f"has host bits set; the block is {loose}") from None
    whole = network.prefixlen == network.max_prefixlen
    return str(network.network_address) if whole else str(network)


def _country(value: str) -> str:
    if value.upper() not in COUNTRY_CODES:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code such as DE")
    return value.upper()


_CANONICAL = {"email": _email, "email_domain": _domain, "ip": _network, "country": _country}


def _unmapped(address):
    """An IPv4-mapped IPv6 address or block (`::ffff:203.0.113.7`) as the IPv4 one."""
    mapped = ipaddress.ip_network("::ffff:0:0/96")
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    if isinstance(address, ipaddress.IPv6Network) and address.subnet_of(mapped):
        return ipaddress.ip_network(f"{address.network_address.ipv4_mapped}/"
                                    f"{address.prefixlen - 96}")
    return address


def refuse_if_listed(scope: Scope, params: dict, buyer: Buyer) -> None:
    """Refuse a checkout (validated `params` of an order) whose buyer a rule of this mode
    names: record the refusal, then 422 with the one message."""
    facts = _facts(params, buyer)
    rule = _first_match(scope, facts)
    if rule is None:
        return
    if buyer.recorded:
        _record(scope, params, buyer, facts, rule)
    raise Unprocessable(errors={"customer_email": REFUSED}, codes={"customer_email": "blacklisted"})


def _record(scope: Scope, params: dict, buyer: Buyer, facts: dict, rule: dict) -> None:
    """Keep the refusal against its rule, in a transaction of its own (the checkout's is
    never opened)."""
    country = facts["countries"][0] if facts["countries"] else None
    if rule["type"] == "country":
        country = rule["value"]
    with write_txn(scope.db):
        insert(scope.db, "blacklist_refusals", {
            "id": new_id("blr"), "mode": scope.mode, "rule_id": rule["id"],
            "customer_email": facts["email"], "customer_ip": facts["ip"], "country": country,
            "product_id": params.get("product_id"), "surface": buyer.surface,
            "created_at": now_iso()})


def _facts(params: dict, buyer: Buyer) -> dict:
    """The buyer as rules see them: email, its domain and parent domains, IP, countries."""
    email = params["customer_email"].lower()
    labels = email.rpartition("@")[2].split(".")
    countries = [(params.get("shipping_address") or {}).get("country"), buyer.proxy_country]
    return {"email": email, "ip": params.get("customer_ip"),
            "domains": [".".join(labels[i:]) for i in range(len(labels))],
            "countries": [c for c in countries if c in COUNTRY_CODES]}


def _first_match(scope: Scope, facts: dict) -> dict | None:
    """The oldest rule of this mode that names the buyer, or None."""
    domains, countries = facts["domains"], facts["countries"] or [""]
    rows = scope.db.query(
        f"""SELECT id, type, value FROM blacklist WHERE mode = ? AND (
              (type = 'email' AND value = ?)
              OR (type = 'email_domain' AND value IN ({', '.join('?' * len(domains))}))
              OR (type = 'country' AND value IN ({', '.join('?' * len(countries))}))
              OR (type = 'ip' AND ? IS NOT NULL)) ORDER BY id""",
        (scope.mode, facts["email"], *domains, *countries, facts["ip"]))
    return next((row for row in rows if row["type"] != "ip"
                 or _ip_in(facts["ip"], row["value"])), None)


def _ip_in(address: str, network: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network(network)


def refusal_counts(scope: Scope) -> dict[str, int]:
    """How many checkouts each rule of this mode refused, by rule id."""
    rows = scope.db.query("SELECT rule_id, count(*) AS n FROM blacklist_refusals "
                          "WHERE mode = ? GROUP BY rule_id", (scope.mode,))
    return {row["rule_id"]: row["n"] for row in rows}


def refusals(scope: Scope, rule_id: str, limit: int = 100) -> list[dict]:
    """The latest checkouts a rule of this mode refused, newest first."""
    scope.require("blacklist", rule_id, "blacklist rule")
    return list(scope.db.query(
        "SELECT * FROM blacklist_refusals WHERE rule_id = ? AND mode = ? "
        "ORDER BY id DESC LIMIT ?", (rule_id, scope.mode, limit)))


def get(scope: Scope, rule_id: str) -> dict:
    """One rule of this mode, or 404."""
    return render(scope.require("blacklist", rule_id, "blacklist rule"))
