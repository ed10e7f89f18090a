"""Coupons: list and create them, one coupon with the orders that redeemed it, disable and
enable."""

from __future__ import annotations

from flask import request, url_for

from ...services import coupons, products
from ..html import form_integer
from . import bp, page, query_of, scope, submit
from .catalog import to_cents

REDEMPTIONS_SHOWN = 100  # newest first


@bp.get("/coupons")
def coupons_page():
    """Every coupon of the mode, newest first, and the form to create one."""
    return page("coupons.html", listing=coupons.list_page(scope(), query_of(coupons.LIST, 100)),
                products=products.for_sale(scope()))


@bp.post("/coupons")
def create_coupon():
    def action():
        return url_for("dashboard.coupon_page",
                       coupon_id=coupons.create(scope(), _coupon_body(request.form))["id"])
    return submit(action, url_for("dashboard.coupons_page"))


@bp.get("/coupons/<coupon_id>")
def coupon_page(coupon_id):
    """One coupon, its rules and the orders holding a redemption of it."""
    coupon = coupons.get(scope(), coupon_id)
    names = {pid: (scope().get("products", pid) or {"name": pid})["name"]
             for pid in coupon["product_ids"] or []}
    return page("coupon.html", coupon=coupon, product_names=names,
                redemptions=coupons.redemptions(scope(), coupon_id, REDEMPTIONS_SHOWN))


@bp.post("/coupons/<coupon_id>/status")
def coupon_status(coupon_id):
    """Disable the coupon, or enable it again."""
    status = "active" if request.form.get("status") == "active" else "disabled"
    return submit(lambda: coupons.update(scope(), coupon_id, {"status": status}) and None,
                  url_for("dashboard.coupon_page", coupon_id=coupon_id))


def _coupon_body(form) -> dict:
    """The API body the form stands for; empty fields are left out."""
    body = {"code": form.get("code", "").strip(),
            "once_per_customer": bool(form.get("once_per_customer"))}
    value = form.get("value", "").strip()
    if form.get("kind") == "amount":
        body["currency"] = form.get("currency", "").strip().upper()
        body["amount_off_cents"] = to_cents(value, body["currency"])
    else:
        body["percent_off"] = form_integer(value)
    if form.getlist("product_ids"):
        body["product_ids"] = form.getlist("product_ids")
    if form.get("max_redemptions", "").strip():
        body["max_redemptions"] = form_integer(form["max_redemptions"])
    for name in ("starts_at", "expires_at"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    return body
