"""`POST /ipn/blockpn`: BlockPN's payment callbacks (docs/blockpn.md, Callbacks), live mode only.

A callback is verified (HMAC-SHA256 with `[blockpn] ipn_secret`) before anything is read
from it; a bad signature is a 401 problem and changes nothing. It then applies only to the
live order whose invoice id, reference (the order id) and currency it carries; anything
else is a 422 problem, logged, and changes nothing. Applying it is idempotent.
"""

from __future__ import annotations

import logging

from flask import Blueprint, request

from ..errors import NotFound, Unauthenticated
from ..providers.blockpn import InvalidCallback
from ..services import payments
from .context import get_db, runtime
from .responses import json_response, refuse_lone_surrogates

bp = Blueprint("ipn", __name__, url_prefix="/ipn")
log = logging.getLogger("sellix_lite.web.ipn")


@bp.post("/blockpn")
def blockpn_callback():
    """Apply an invoice update BlockPN reports."""
    config = runtime().config
    if not config.blockpn.base_url or not config.blockpn.ipn_secret:
        raise NotFound("live payments are not configured on this shop")
    provider = payments.provider_for(get_db(), "live", config)
    body = request.get_data()
    try:
        invoice = provider.verify_callback(body, request.headers)
    except InvalidCallback as exc:
        raise Unauthenticated(f"the callback signature does not verify: {exc}") from None
    refuse_lone_surrogates(body, vars(invoice))
    try:
        order = payments.apply_invoice(get_db(), invoice, "live", config, runtime().links)
    except payments.InvoiceMismatch as exc:
        log.warning("refused a BlockPN callback for invoice %s: %s", invoice.id, exc.detail)
        raise
    return json_response({"received": True, "order_id": order["id"],
                          "status": order["status"]})
