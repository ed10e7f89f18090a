"""Coupons (docs/api.md, Coupons): discount codes, the price of an order with one, and the
redemptions counted with the order's reservation.

A percent coupon takes `floor(subtotal × percent_off / 100)` off, in whole cents of the
order's currency, so a rounding never favours the buyer by a cent; an amount coupon takes
`amount_off_cents` off an order in its own currency, at most the subtotal. Either applies
once per order, whatever the quantity.

A redemption is a row per order, written in the transaction that reserves the order's
stock: the counter is raised by a guarded UPDATE that can't pass `max_redemptions`, so the
limit holds however many checkouts race. An order that fails unpaid gives its redemption
back (`release`), which also frees the code for a once-per-customer buyer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlite_utils

from .. import db as storage
from ..clock import now_iso
from ..currencies import CODES, MAX_AMOUNT_CENTS
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..ids import new_id
from ..validation import (
    DATE_OR_DATE_TIME_FIELD,
    Array,
    Boolean,
    Enum,
    Integer,
    Metadata,
    Schema,
    String,
    merge_metadata,
)
from . import orders
from .scope import Scope, list_query

STATUSES = ("active", "disabled")
CODE = dict(min_length=3, max_length=40, pattern=r"[A-Za-z0-9_-]+",
            pattern_hint="must be 3 to 40 letters, digits, '_' or '-'")
MAX_REDEMPTIONS = 10**9


def _limits() -> dict:
    """The fields a coupon takes on create and PATCH alike."""
    return {
        "status": Enum(STATUSES, description="`disabled` refuses the code at checkout."),
        "max_redemptions": Integer(minimum=1, maximum=MAX_REDEMPTIONS, nullable=True,
                                   description="How many orders may use it; `null`: "
                                               "unlimited.", example=100),
        "expires_at": String(nullable=True, **DATE_OR_DATE_TIME_FIELD,
                             description="Refused after this time (a date: after that day, "
                                         "UTC); `null`: never.",
                             example="2026-06-30T23:59:59Z"),
    }


CREATE = Schema(
    code=String(required=True, **CODE, description="What the buyer types; matched "
                "regardless of letter case, unique in the mode.", example="SPRING25"),
    percent_off=Integer(minimum=1, maximum=100, description="Percent off the subtotal "
                        "(rounded down to a cent); or give `amount_off_cents`.", example=25),
    amount_off_cents=Integer(minimum=1, maximum=MAX_AMOUNT_CENTS,
                             description="A fixed amount off, in the smallest unit of "
                                         "`currency` (needed with it)."),
    currency=Enum(CODES, description="The currency of `amount_off_cents`: the coupon only "
                                     "applies to orders in it."),
    product_ids=Array(String(min_length=1, max_length=64), min_items=1, max_items=100,
                      unique=True, nullable=True,
                      description="The products it applies to; `null`: every product."),
    once_per_customer=Boolean(default=False, description="One order per buyer email."),
    starts_at=String(nullable=True, **DATE_OR_DATE_TIME_FIELD,
                     description="Refused before this time (a date: from that day, UTC).",
                     example="2026-06-01T00:00:00Z"),
    metadata=Metadata(),
    **_limits(),
)
UPDATE = Schema(**_limits(), metadata=Metadata(patch=True))
LIST = list_query(status=Enum(STATUSES, description="Only coupons in this status."),
                  code=String(**CODE, description="The coupon with this code (any case).",
                              example="spring25"))


def render(row: dict) -> dict:
    """The public coupon object."""
    return {
        "id": row["id"], "code": row["code"], "percent_off": row["percent_off"],
        "amount_off_cents": row["amount_off_cents"], "currency": row["currency"],
        "product_ids": json.loads(row["product_ids"]) if row["product_ids"] else None,
        "max_redemptions": row["max_redemptions"], "redemptions": row["redemptions"],
        "once_per_customer": bool(row["once_per_customer"]),
        "starts_at": row["starts_at"], "expires_at": row["expires_at"],
        "status": row["status"], "mode": row["mode"], "created_at": row["created_at"],
        "metadata": json.loads(row["metadata"]),
    }


def get(scope: Scope, coupon_id: str) -> dict:
    return render(scope.require("coupons", coupon_id, "coupon"))


def list_page(scope: Scope, query: dict) -> dict:
    """A page of coupons, newest first, by status or code."""
    conditions, params = [], []
    if "status" in query:
        conditions.append("status = ?")
        params.append(query["status"])
    if "code" in query:
        conditions.append("code_key = ?")
        params.append(query["code"].lower())
    return scope.page("coupons", query, render, where=" AND ".join(conditions),
                      params=tuple(params))


def create(scope: Scope, body: dict) -> dict:
    """A new coupon; 422 `errors.code` when the mode has the code already (any case)."""
    params = CREATE.validate(body)
    _check_discount(params)
    now = now_iso()
    row = {
        "id": new_id("cpn"), "mode": scope.mode, "code": params["code"],
        "code_key": params["code"].lower(), "percent_off": params.get("percent_off"),
        "amount_off_cents": params.get("amount_off_cents"),
        "currency": params.get("currency"), "product_ids": None,
        "max_redemptions": params.get("max_redemptions"), "redemptions": 0,
        "once_per_customer": int(params["once_per_customer"]),
        "starts_at": _moment(params, "starts_at", end_of_day=False),
        "expires_at": _moment(params, "expires_at", end_of_day=True),
        "status": params.get("status", "active"),
        "metadata": json.dumps(params.get("metadata", {})),
        "created_at": now, "updated_at": now,
    }
    _check_window(row["starts_at"], row["expires_at"])
    with write_txn(scope.db):
        if params.get("product_ids"):
            _check_products(scope, params["product_ids"])
            row["product_ids"] = json.dumps(params["product_ids"])
        if not storage.insert(scope.db, "coupons", row, unless_taken=("mode", "code_key")):
            raise Unprocessable(errors={"code": "is taken by another coupon of this mode "
                                                "(codes ignore letter case)"})
    return render(row)


def update(scope: Scope, coupon_id: str, body: dict) -> dict:
    """Change `status`, `max_redemptions`, `expires_at` or `metadata` (merged)."""
    params = UPDATE.validate(body)
    with write_txn(scope.db):
        row = scope.require("coupons", coupon_id, "coupon")
        changes = {name: params[name] for name in ("status", "max_redemptions")
                   if name in params}
        if "expires_at" in params:
            changes["expires_at"] = _moment(params, "expires_at", end_of_day=True)
            _check_window(row["starts_at"], changes["expires_at"])
        if "metadata" in params:
            kept = json.loads(row["metadata"])
            changes["metadata"] = json.dumps(merge_metadata(kept, params["metadata"]))
        limit = changes.get("max_redemptions")
        if limit is not None and limit < row["redemptions"]:
            raise Unprocessable(errors={"max_redemptions": f"can't be below the "
                                        f"{row['redemptions']} redemptions already made"})
        return _save(scope, row, changes)


def disable(scope: Scope, coupon_id: str) -> dict:
    """Disable a coupon (what DELETE does): orders that used it keep their discount."""
    with write_txn(scope.db):
        row = scope.require("coupons", coupon_id, "coupon")
        return _save(scope, row, {"status": "disabled"})


def _save(scope: Scope, row: dict, changes: dict) -> dict:
    if changes:
        changes["updated_at"] = now_iso()
        storage.update(scope.db, "coupons", row["id"], changes)
    return render({**row, **changes})


def redemptions(scope: Scope, coupon_id: str, limit: int = 100) -> list[dict]:
    """The orders holding a redemption of the coupon, newest first (the dashboard's list)."""
    return list(scope.db.query(
        "SELECT o.id, o.status, o.customer_email, o.total_cents, o.discount_cents, "
        "o.currency, r.created_at FROM coupon_redemptions r JOIN orders o ON o.id = r.order_id"
        " WHERE r.coupon_id = ? AND o.mode = ? ORDER BY r.order_id DESC LIMIT ?",
        (coupon_id, scope.mode, limit)))


def _moment(params: dict, name: str, *, end_of_day: bool) -> str | None:
    """The date or date-time as the API writes it, in UTC. Years from 2000 to 9998 only:
    the text keeps four digits of year and so sorts as time does, whatever the offset."""
    value = params.get(name)
    if value is None:
        return None
    if not "2000" <= value[:4] <= "9998":
        raise Unprocessable(errors={name: "must be in the years 2000 to 9998"})
    return orders.parse_bound(name, value, end_of_day=end_of_day)


def _check_discount(params: dict) -> None:
    """Exactly one kind of discount; a currency with an amount, and only then."""
    percent, amount = "percent_off" in params, "amount_off_cents" in params
    if percent == amount:
        raise Unprocessable(errors={"percent_off": "give either percent_off or "
                                                   "amount_off_cents"})
    if amount and "currency" not in params:
        raise Unprocessable(errors={"currency": "is required with amount_off_cents"})
    if percent and "currency" in params:
        raise Unprocessable(errors={"currency": "only goes with amount_off_cents"})


def _check_window(starts_at: str | None, expires_at: str | None) -> None:
    if starts_at and expires_at and expires_at <= starts_at:
        raise Unprocessable(errors={"expires_at": "must be after starts_at"})


def _check_products(scope: Scope, product_ids: list[str]) -> None:
    unknown = [pid for pid in product_ids if scope.get("products", pid) is None]
    if unknown:
        raise Unprocessable(errors={"product_ids": f"names no product of this mode: "
                                                   f"{', '.join(unknown)}"})


# --- pricing an order, and its redemption -----------------------------------------------------

@dataclass(frozen=True)
class Price:
    """What an order costs, and the coupon row that took `discount_cents` off (or None)."""

    subtotal_cents: int
    discount_cents: int
    currency: str
    coupon: dict | None

    @property
    def total_cents(self) -> int:
        return self.subtotal_cents - self.discount_cents

    def order_fields(self) -> dict:
        """The order row's columns of its price."""
        return {"subtotal_cents": self.subtotal_cents, "discount_cents": self.discount_cents,
                "total_cents": self.total_cents,
                "coupon": self.coupon and self.coupon["code"]}

    def quote(self) -> dict:
        """The quote object."""
        return {"subtotal_cents": self.subtotal_cents, "discount_cents": self.discount_cents,
                "total_cents": self.total_cents, "currency": self.currency,
                "coupon": self.coupon and self.coupon["code"]}


class CouponRefused(Unprocessable):
    """422 `errors.coupon`, saying why; the code word (`codes`) is for the storefront."""

    def __init__(self, reason: str, message: str):
        super().__init__(errors={"coupon": message}, codes={"coupon": reason})


def price(scope: Scope, product: dict, qty: int, code: str | None,
          customer_email: str) -> Price:
    """The price of `qty` of `product` with the coupon `code` (if any), or CouponRefused."""
    subtotal = product["price_cents"] * qty
    if code is None:
        return Price(subtotal, 0, product["currency"], None)
    coupon = query_one(scope.db, "SELECT * FROM coupons WHERE mode = ? AND code_key = ?",
                       (scope.mode, code.lower()))
    _check_usable(scope.db, coupon, product, customer_email)
    if coupon["percent_off"] is not None:
        discount = subtotal * coupon["percent_off"] // 100
    else:
        discount = min(coupon["amount_off_cents"], subtotal)
    # A coupon that takes nothing off (a free product, 1 % of a few cents) is not applied,
    # so it spends no redemption and no once-per-customer use.
    return Price(subtotal, discount, product["currency"], coupon if discount else None)


def _check_usable(db, coupon: dict | None, product: dict, customer_email: str) -> None:
    if coupon is None:
        raise CouponRefused("unknown", "no coupon has this code")
    now = now_iso()
    if coupon["status"] != "active":
        raise CouponRefused("disabled", "this coupon is disabled")
    if coupon["starts_at"] and now < coupon["starts_at"]:
        raise CouponRefused("not_started", f"this coupon is valid from {coupon['starts_at']}")
    if coupon["expires_at"] and now > coupon["expires_at"]:
        raise CouponRefused("expired", f"this coupon expired at {coupon['expires_at']}")
    if coupon["product_ids"] and product["id"] not in json.loads(coupon["product_ids"]):
        raise CouponRefused("wrong_product", "this coupon does not apply to this product")
    if coupon["currency"] and coupon["currency"] != product["currency"]:
        raise CouponRefused("wrong_currency", f"this coupon is for orders in "
                                              f"{coupon['currency']}")
    _check_available(db, coupon, customer_email)


def _check_available(db, coupon: dict, customer_email: str) -> None:
    """Used up, or already used by this buyer when once per customer."""
    if coupon["max_redemptions"] is not None \
            and coupon["redemptions"] >= coupon["max_redemptions"]:
        raise CouponRefused("used_up", "this coupon has been used up")
    if coupon["once_per_customer"] and query_one(
            db, "SELECT 1 FROM coupon_redemptions WHERE coupon_id = ? AND customer_email = ?",
            (coupon["id"], customer_email)):
        raise CouponRefused("already_used", "this coupon was already used with this email")


def redeem(db: sqlite_utils.Database, coupon: dict | None, order: dict) -> None:
    """Count the order's redemption of `coupon` (inside the transaction that reserves its
    stock), or CouponRefused when it is used up or the buyer has used it already."""
    if coupon is None:
        return
    _check_available(db, coupon, order["customer_email"])
    counted = db.execute(
        "UPDATE coupons SET redemptions = redemptions + 1 WHERE id = ? AND "
        "(max_redemptions IS NULL OR redemptions < max_redemptions)", (coupon["id"],)).rowcount
    if not counted:
        raise CouponRefused("used_up", "this coupon has been used up")
    storage.insert(db, "coupon_redemptions", {
        "order_id": order["id"], "coupon_id": coupon["id"],
        "customer_email": order["customer_email"], "created_at": now_iso()})


def redeem_again(db: sqlite_utils.Database, order: dict) -> None:
    """A failed order paid late takes its coupon's redemption back (inside the caller's
    transaction), or CouponRefused when the coupon was used up meanwhile."""
    if order["coupon"] is None:
        return
    coupon = query_one(db, "SELECT * FROM coupons WHERE mode = ? AND code_key = ?",
                       (order["mode"], order["coupon"].lower()))
    redeem(db, coupon, order)


def release(db: sqlite_utils.Database, order_id: str) -> None:
    """Give back the redemption of an order that failed unpaid (inside the caller's
    transaction); nothing when it had none."""
    released = db.execute("DELETE FROM coupon_redemptions WHERE order_id = ? "
                          "RETURNING coupon_id", (order_id,)).fetchall()
    for (coupon_id,) in released:
        db.execute("UPDATE coupons SET redemptions = redemptions - 1 WHERE id = ?",
                   (coupon_id,))
