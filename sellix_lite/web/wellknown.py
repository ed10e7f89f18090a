"""`GET /.well-known/jwks.json`: the public keys that verify the shop's license leases
(docs/licenses.md), for the merchant's software to fetch once and keep."""

from __future__ import annotations

from flask import Blueprint

from ..services import leases
from .context import get_db
from .responses import json_response

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")

# Public keys: any program or page may read them (so any origin), and caches may keep them
# a while, as the shop's key is made once and never changes.
JWKS_HEADERS = {"Cache-Control": "public, max-age=300", "Access-Control-Allow-Origin": "*"}


@bp.get("/jwks.json")
def jwks():
    """The shop's lease signing keys as a JWK Set."""
    return json_response(leases.jwks(get_db()), headers=JWKS_HEADERS)
