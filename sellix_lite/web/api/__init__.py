"""The merchant JSON API under /v1: one module per resource, one shared pipeline."""

from flask import Blueprint

from .pipeline import add_rate_limit_headers, authenticate_request

bp = Blueprint("v1", __name__, url_prefix="/v1")
bp.before_request(authenticate_request)
bp.after_request(add_rate_limit_headers)

from . import (  # noqa: E402,F401  (routes)
    api_keys,
    blacklist,
    coupons,
    licenses,
    openapi,
    orders,
    payouts,
    products,
    reports,
    webhooks,
)
