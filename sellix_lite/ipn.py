"""`POST /ipn/blockpn`: BlockPN's payment callbacks (CONTRACT §14), live mode only.

A callback is verified (HMAC-SHA256 with `[blockpn] ipn_secret`) before anything is read
from it; a bad signature is a 401 problem and changes nothing. Applying it is idempotent.
"""

from __future__ import annotations

from flask import Blueprint, request

from .app import get_db, runtime
from .errors import NotFound, Unauthenticated
from .http import json_response
from .providers.blockpn import InvalidCallback
from .services import payments

bp = Blueprint("ipn", __name__, url_prefix="/ipn")


@bp.post("/blockpn")
def blockpn_callback():
    """Apply an invoice update BlockPN reports."""
    config = runtime().config
    if not config.blockpn.base_url or not config.blockpn.ipn_secret:
        raise NotFound("live payments are not configured on this shop")
    provider = payments.provider_for(get_db(), "live", config)
    try:
        invoice = provider.verify_callback(request.get_data(), request.headers)
    except InvalidCallback as exc:
        raise Unauthenticated(f"the callback signature does not verify: {exc}") from None
    order = payments.apply_invoice(get_db(), invoice, config, runtime().links)
    if order is None:
        raise NotFound(f"no order has invoice {invoice.id}")
    return json_response({"received": True, "order_id": order["id"],
                          "status": order["status"]})
