"""The storefront (docs/storefront.md): shop, product, checkout and order pages, server-rendered.

Live products are at `/`, test products under `/test/`. Checkout goes through
`checkout.create_order`, the code path of `POST /v1/orders`. Every page works without
JavaScript; with it, the order page's status updates in place.
"""

from __future__ import annotations

import re

from flask import Blueprint, abort, jsonify, redirect, render_template, request, send_file, url_for

from ..errors import ApiError, Unprocessable
from ..ratelimit import client_of
from ..services import blacklist, checkout, custom_fields, images, orders, products, sandbox_helpers
from ..services.scope import Scope
from .context import get_db, runtime
from .html import check_csrf, form_integer, render_markdown

bp = Blueprint("storefront", __name__)
PREFIXES = {"live": "", "test": "/test"}
SHIPPING_FIELDS = ("name", "line1", "line2", "city", "state", "postal_code", "country")
# Friendlier words for what the order API says, keyed by field.
FIELD_LABELS = {"customer_email": "Email", "qty": "Quantity", "asset": "Coin",
                "shipping_address": "Shipping address", "product_id": "Product",
                "payment": "Payment"}
# What the buyer reads when the coupon is refused, by the refusal's code.
COUPON_MESSAGES = {
    "unknown": "There is no coupon with this code.",
    "disabled": "This coupon is no longer valid.",
    "not_started": "This coupon isn't valid yet.",
    "expired": "This coupon has expired.",
    "used_up": "This coupon has been used up.",
    "wrong_product": "This coupon doesn't apply to this product.",
    "wrong_currency": "This coupon doesn't apply to prices in this currency.",
    "already_used": "You've already used this coupon.",
}
# The longest search of the shop's names that is used; the rest is ignored.
MAX_SEARCH = 100
# The longest description a product page's meta tags carry, in characters.
SUMMARY_LENGTH = 160
# A number typed into a form: ASCII digits with an optional sign and decimal point.
FORM_NUMBER = re.compile(r"-?[0-9]{1,15}(\.[0-9]{1,15})?")
# What a buyer is told next to a custom field whose value was refused, by its type.
CUSTOM_FIELD_HINTS = {"text": "Please use plain text of at most {max_length} characters.",
                      "number": "Please enter a number.",
                      "email": "Please enter a valid email address.",
                      "select": "Please choose one of the options.",
                      "checkbox": "Please tick this box."}


def _route(rule: str, view, methods=("GET",)) -> None:
    for mode, prefix in PREFIXES.items():
        bp.add_url_rule(prefix + rule, view.__name__, view, defaults={"mode": mode},
                        methods=list(methods))


def _scope(mode: str) -> Scope:
    return runtime().scope(get_db(), mode)


def home(mode: str):
    """The shop: active products a page at a time, with their price and stock; `q` searches
    their names, `cursor` is the next page's."""
    search = request.args.get("q", "").strip()[:MAX_SEARCH]
    try:
        page = products.shop_page(_scope(mode), search, request.args.get("cursor") or None)
    except Unprocessable:
        abort(404, "This page of the shop doesn't exist. Start again from the shop's home.")
    return render_template("shop/home.html", mode=mode, page=page, search=search)


def product_page(mode: str, slug: str):
    """One product, its description and the checkout form."""
    product = products.for_sale_by_slug(_scope(mode), slug)
    return _product_form(mode, product, form={}, errors={})


def checkout_form(mode: str, slug: str):
    """Create the order from the form, then send the buyer to its page."""
    check_csrf()
    product = products.for_sale_by_slug(_scope(mode), slug)
    limit = runtime().config.limits.checkouts_per_minute_per_ip
    decision = runtime().limiter.hit(f"checkout:{client_of(request.remote_addr)}", limit)
    if not decision.allowed:
        message = (f"You've started several checkouts in a short time. Please wait "
                   f"{decision.reset_seconds} seconds and try again.")
        page, status = _product_form(mode, product, request.form, {"form": message}, 429)
        return page, status, {"Retry-After": str(decision.reset_seconds)}
    try:
        order = checkout.create_order(_scope(mode), _order_body(product), buyer=blacklist.Buyer(
            surface="storefront", proxy_country=_proxy_country()))
    except ApiError as error:
        return _product_form(mode, product, request.form, _messages(error, product),
                             status=error.status)
    return redirect(_order_path(order), code=303)


def order_page(mode: str, order_id: str):
    """The buyer's order: how to pay, then the goods. Needs the signed `t` of its link."""
    order = _buyer_order(mode, order_id)
    return render_template("shop/order.html", mode=mode, order=order,
                           token=request.args["t"], paid_cents=_paid_cents(order),
                           field_labels=custom_fields.labels(_scope(mode), order))


def order_live(mode: str, order_id: str):
    """The order's live part as JSON, for the page's script to refresh in place."""
    order = _buyer_order(mode, order_id)
    html = render_template("shop/_order_live.html", mode=mode, order=order,
                           token=request.args["t"])
    return jsonify(status=order["status"], paid_cents=_paid_cents(order), html=html)


def _paid_cents(order: dict) -> int:
    """What the buyer has paid so far (a free order has no payment)."""
    return order["payment"]["paid_cents"] if order["payment"] else 0


def simulate_payment(order_id: str):
    """Test mode: pay the order in full through the sandbox, as the test helper does."""
    check_csrf()
    order = _buyer_order("test", order_id)
    try:
        sandbox_helpers.pay_order(_scope("test"), order["id"], {})
    except ApiError:
        pass  # already paid or expired: the order page says so
    return redirect(_order_path(order), code=303)


def _buyer_order(mode: str, order_id: str) -> dict:
    token = request.args.get("t", "")
    if not runtime().links.order_token_valid(order_id, token):
        abort(403, "This order link is not valid. Use the link from your order email.")
    return orders.get(_scope(mode), order_id)


def _order_path(order: dict) -> str:
    return url_for("storefront.order_page", mode=order["mode"], order_id=order["id"],
                   t=runtime().links.order_token(order["id"]))


def _proxy_country() -> str | None:
    """The buyer's country as the trusted proxy tells it in `[server] country_header`.

    Only a request that came through the proxy carries it: with `trusted_proxy` set, waitress
    keeps `X-Forwarded-For` from the proxy alone and strips it from anyone else, so a client
    that reaches the shop directly can't name its own country.
    """
    server = runtime().config.server
    if not (server.trusted_proxy and server.country_header
            and "X-Forwarded-For" in request.headers):
        return None
    return request.headers.get(server.country_header, "").strip().upper() or None


def _order_body(product: dict) -> dict:
    form = request.form
    body = {"product_id": product["id"], "customer_email": form.get("email", ""),
            "customer_ip": request.remote_addr}
    body["qty"] = form_integer(form.get("qty", "").strip() or "1")
    if form.get("coin"):
        body["chain"], _, body["asset"] = form["coin"].partition(":")
    if form.get("coupon", "").strip():
        body["coupon"] = form["coupon"].strip()
    if product["type"] == "physical":
        body["shipping_address"] = {field: form[field].strip() for field in SHIPPING_FIELDS
                                    if form.get(field, "").strip()}
    if product["custom_fields"]:
        body["custom_fields"] = _custom_values(product["custom_fields"], form)
    return body


def _custom_values(definitions: list, form) -> dict:
    """The custom fields' inputs as JSON values (`custom.NAME`): a checkbox is true or
    false, a number an int or a float, an empty input no value at all."""
    values = {}
    for definition in definitions:
        key = f"custom.{definition['name']}"
        if definition["type"] == "checkbox":
            values[definition["name"]] = key in form
            continue
        text = form.get(key, "").strip()
        if text and definition["type"] == "number":
            values[definition["name"]] = _form_number(text)
        elif text:
            values[definition["name"]] = text
    return values


def _form_number(text: str):
    """`"3"` → 3, `"2.5"` → 2.5; anything else as typed, for the API's own message."""
    if not FORM_NUMBER.fullmatch(text):
        return text
    return float(text) if "." in text else int(text)


def _messages(error: ApiError, product: dict | None = None) -> dict:
    """Per-field messages for the form, worded for a buyer.

    A provider failure's detail is advice for the merchant (which setting to fix), so the
    buyer gets a plain apology instead.
    """
    if isinstance(error, checkout.ProviderUnavailable):
        return {"form": "We couldn't start the payment just now. Please try again in a few "
                        "minutes."}
    if not error.errors:
        return {"form": error.detail}
    messages = {}
    for field, message in error.errors.items():
        code = error.codes.get(field)
        if code == "blacklisted":
            messages["form"] = "This buyer can't check out in this shop."
        elif field == "customer_email":
            messages["email"] = "Please enter a valid email address."
        elif field == "shipping_address" and code == "invalid_country":
            messages[field] = "Country: use a two-letter code such as DE or US."
        elif field == "qty" and code == "sold_out":
            messages["qty"] = "Sorry, this product is sold out."
        elif field == "coupon":
            messages["coupon"] = COUPON_MESSAGES.get(code, "Please check the coupon code.")
        elif field == "payment":
            messages["form"] = "This shop isn't taking payments right now."
        elif field.startswith("custom_fields."):
            messages[field] = _custom_field_message(product, field, code)
        else:
            messages[field if field in ("qty", "shipping_address") else "form"] = \
                f"{FIELD_LABELS.get(field, field)}: {message}."
    return messages


def _custom_field_message(product: dict, field: str, code: str | None) -> str:
    definition = next(d for d in product["custom_fields"]
                      if f"custom_fields.{d['name']}" == field)
    if code == "required" and definition["type"] != "checkbox":
        return "Please fill in this field."
    return CUSTOM_FIELD_HINTS[definition["type"]].format_map(definition)


def media(sha256: str, kind: str):
    """A product image, by its content's hash: cacheable for ever, never run as a page."""
    if not images.SHA256.fullmatch(sha256) or kind not in images.CONTENT_TYPES \
            or not products.shows_image(get_db(), sha256, kind):
        abort(404)
    response = send_file(images.path_of(runtime().config.files_dir, sha256),
                         mimetype=images.CONTENT_TYPES[kind], conditional=True, etag=sha256)
    # The pages' security headers (nosniff, a script-free policy) are added as to any page.
    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
    return response


def _product_form(mode: str, product: dict, form, errors: dict, status: int = 200):
    accepted = runtime().config.blockpn.accepted
    return render_template("shop/product.html", mode=mode, product=product, form=form,
                           errors=errors, coins=accepted,
                           max_qty=runtime().config.limits.max_qty_per_order,
                           summary=summary(product["description"]) or product["name"],
                           image_url=product["image_url"] and _absolute(product["image_url"]),
                           page_url=_absolute(url_for("storefront.product_page", mode=mode,
                                                      slug=product["slug"]))), status


def summary(description: str) -> str:
    """The description's plain text in at most `SUMMARY_LENGTH` characters, cut at a word:
    what a search result or a shared link's preview shows."""
    text = render_markdown(description).striptags()
    if len(text) <= SUMMARY_LENGTH:
        return text
    return text[:SUMMARY_LENGTH - 1].rsplit(" ", 1)[0].rstrip(" ,.;:") + "…"


def _absolute(path: str) -> str:
    """The path as a URL that works outside this server (a shared link, a preview)."""
    return runtime().config.public_url + path


_route("/", home)
_route("/product/<slug>", product_page)
_route("/product/<slug>/checkout", checkout_form, methods=("POST",))
_route("/order/<order_id>", order_page)
_route("/order/<order_id>/live", order_live)
bp.add_url_rule("/media/<sha256>.<kind>", "media", media)
bp.add_url_rule("/test/order/<order_id>/simulate-payment", "simulate_payment",
                simulate_payment, methods=["POST"])

