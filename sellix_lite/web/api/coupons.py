"""/v1/coupons: discount codes (docs/api.md, Coupons)."""

from __future__ import annotations

from ...services import coupons
from . import bp
from .pipeline import operation, scope

TAG = "Coupons"


@operation(bp, "GET", "/coupons", summary="List coupons", tag=TAG, ability="coupons:read",
           query=coupons.LIST, response="list:Coupon")
def list_coupons(query):
    """Returns coupons newest first, filtered by status or code."""
    return coupons.list_page(scope(), query)


@operation(bp, "POST", "/coupons", summary="Create a coupon", tag=TAG,
           ability="coupons:write", body=coupons.CREATE, status=201, response="Coupon")
def create_coupon(query, body):
    """Creates a percent or fixed-amount coupon; its code is unique in this mode, whatever
    the letter case."""
    return coupons.create(scope(), body)


@operation(bp, "GET", "/coupons/<coupon_id>", summary="Fetch a coupon", tag=TAG,
           ability="coupons:read", response="Coupon")
def get_coupon(coupon_id, query):
    """Returns one coupon with its redemption count."""
    return coupons.get(scope(), coupon_id)


@operation(bp, "PATCH", "/coupons/<coupon_id>", summary="Update a coupon", tag=TAG,
           ability="coupons:write", body=coupons.UPDATE, response="Coupon")
def update_coupon(coupon_id, query, body):
    """Changes `status`, `max_redemptions` or `expires_at`, and merges `metadata`."""
    return coupons.update(scope(), coupon_id, body)


@operation(bp, "DELETE", "/coupons/<coupon_id>", summary="Disable a coupon", tag=TAG,
           ability="coupons:write", response="Coupon")
def disable_coupon(coupon_id, query, body):
    """Disables the coupon: checkouts refuse its code; orders that used it keep their
    discount."""
    return coupons.disable(scope(), coupon_id)
