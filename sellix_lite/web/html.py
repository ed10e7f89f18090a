"""What every HTML page shares: security headers, CSRF protection, safe Markdown, money.

The storefront and the dashboard both render through these, so a rule (no inline script,
no merchant HTML, a CSRF token on every form) is written once.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from functools import cache

from flask import Flask, Response, abort, g, request
from flask.templating import Environment
from markupsafe import Markup

from ..currencies import MINOR_UNITS, format_amount
from .context import runtime
from .surfaces import is_machine_facing

CSRF_COOKIE = "sellix_csrf"
CSRF_FIELD = "csrf_token"
CSRF_NAMESPACE = "csrf"
CSRF_MAX_AGE = 6 * 3600

# Scripts and styles only from our own files: a description can't run code or restyle.
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
    "connect-src 'self'", "form-action 'self'", "frame-ancestors 'none'", "base-uri 'none'",
    "object-src 'none'",
])
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    # Order links carry their access token in the URL: never send it to another site.
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class TemplateEnvironment(Environment):
    """Jinja's environment where `mapping["name"]` is the mapping's item or undefined.

    Plain Jinja falls back to an attribute of that name: `delivery["keys"]` on an order
    without keys gave the dict's `keys` method, which is truthy and can't be iterated.
    """

    def getitem(self, obj, argument):
        if isinstance(obj, Mapping):
            try:
                return obj[argument]
            except (KeyError, TypeError):
                return self.undefined(obj=obj, name=argument)
        return super().getitem(obj, argument)


_ALLOWED_TAGS = {"p", "br", "strong", "em", "code", "pre", "blockquote", "ul", "ol", "li",
                 "h1", "h2", "h3", "h4", "h5", "h6", "hr", "a", "table", "thead", "tbody",
                 "tr", "th", "td", "del"}


# The Markdown, sanitizer and QR libraries are imported on first use: the API process never
# needs them, and importing them at start costs memory and start-up time.
@cache
def _markdown():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")


def render_markdown(text: str) -> Markup:
    """Merchant Markdown as HTML with no script, event handler, raw HTML or unsafe URL."""
    import nh3

    html = _markdown().render(text or "")
    clean = nh3.clean(html, tags=_ALLOWED_TAGS, attributes={"a": {"href", "title"}},
                      url_schemes={"http", "https", "mailto"},
                      link_rel="noopener noreferrer nofollow")
    return Markup(clean)


def qr_svg(data: str) -> Markup:
    """A QR code of `data` as an inline SVG element."""
    import segno

    return Markup(segno.make(data, error="m").svg_inline(scale=5, border=2, dark="#111"))


# A whole number in a form: ASCII digits only (`int` takes "²" and "٣", and refuses
# more than 4,300 digits with an error), at most 15 of them — more than any limit here.
FORM_INTEGER = re.compile(r"[0-9]{1,15}")
# An amount in a form, "12.90" or "12,90": ASCII digits, at most 3 decimals.
FORM_AMOUNT = re.compile(r"([0-9]{1,15})(?:[.,]([0-9]{1,3}))?")


def form_integer(text: str):
    """The form field's whole number, or the text as typed for the API's own message."""
    text = text.strip()
    return int(text) if FORM_INTEGER.fullmatch(text) else text


def form_cents(text: str, minor_units: int):
    """`"12.90"` with 2 minor units → 1290; anything else (more decimals than the currency
    has, a sign, an exponent) is the text as typed, for the API's own message."""
    match = FORM_AMOUNT.fullmatch(text.strip())
    if not match or len(match.group(2) or "") > minor_units:
        return text
    fraction = (match.group(2) or "").ljust(minor_units, "0")
    return int(match.group(1) + fraction)


def money(amount_cents: int, currency: str) -> str:
    return format_amount(amount_cents, currency)


def form_amount(amount_cents: int, currency: str) -> str:
    """`1290, "USD"` → `"12.90"`: an amount as a form field takes it back (`form_cents`)."""
    decimals = MINOR_UNITS.get(currency, 2)
    whole, fraction = divmod(amount_cents, 10 ** decimals)
    return f"{whole}.{fraction:0{decimals}d}" if decimals else str(whole)


def csrf_token() -> str:
    """The token to put in a form; pairs with a cookie set on this response."""
    if "csrf_nonce" not in g:
        g.csrf_nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)

    return runtime().signer.sign_timed(g.csrf_nonce, CSRF_NAMESPACE)


def check_csrf() -> None:
    """Refuse a form post whose token is missing, forged, stale or not this browser's."""
    from ..security import BadToken

    cookie = request.cookies.get(CSRF_COOKIE)
    token = request.form.get(CSRF_FIELD, "")
    try:
        nonce = runtime().signer.unsign_timed(token, CSRF_NAMESPACE, CSRF_MAX_AGE)
    except BadToken:
        abort(400, "The form has expired or was not sent by this site. Please try again.")
    if not cookie or not secrets.compare_digest(str(nonce), cookie):
        abort(400, "The form has expired or was not sent by this site. Please try again.")


def _finish_html(response: Response) -> Response:
    if is_machine_facing(request.path):
        return response
    response.headers.update(SECURITY_HEADERS)
    nonce = g.get("csrf_nonce")
    if nonce and request.cookies.get(CSRF_COOKIE) != nonce:
        response.set_cookie(CSRF_COOKIE, nonce, httponly=True, samesite="Strict",
                            secure=request.is_secure, max_age=CSRF_MAX_AGE)
    return response


def install(app: Flask) -> None:
    """Template helpers and the response hook for HTML pages."""
    app.jinja_env.globals.update(csrf_token=csrf_token, csrf_field=CSRF_FIELD)
    app.jinja_env.filters.update(markdown=render_markdown, money=money, form_amount=form_amount,
                                 qr=qr_svg)
    app.after_request(_finish_html)
