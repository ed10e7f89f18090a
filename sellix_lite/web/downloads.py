"""`GET /download/<token>`: the file of a file_download order, behind a signed, expiring link.

The token names the order; the file served is the product's current file, streamed from
disk. A forged link, an expired one, and an order refunded since are refused with a page
that says which.
"""

from __future__ import annotations

from flask import Blueprint, send_file

from ..db import query_one
from ..errors import ApiError, NotFound
from ..security import BadToken
from ..services import files
from ..services.links import LinkExpired
from .context import get_db, runtime

bp = Blueprint("downloads", __name__)


class LinkRefused(ApiError):
    status, type, title = 403, "forbidden", "This download link is not valid"


class LinkOutdated(ApiError):
    status, type, title = 410, "gone", "This download link has expired"


@bp.get("/download/<token>")
def download(token: str):
    """Stream the file an order bought."""
    try:
        order_id = runtime().links.download_order_id(token)
    except LinkExpired:
        raise LinkOutdated("Open your order page (the link in your order email) for a fresh "
                           "download link.") from None
    except BadToken:
        raise LinkRefused("The link was changed or is not one of ours.") from None
    order = query_one(get_db(), "SELECT * FROM orders WHERE id = ?", (order_id,))
    if order is None or order["delivery_state"] != "delivered" or order["status"] == "refunded":
        raise LinkRefused("This order has no download any more.")
    product = query_one(get_db(), "SELECT * FROM products WHERE id = ?", (order["product_id"],))
    path = files.path_of(runtime().config.files_dir, product["id"], product["file_sha256"] or "")
    if not path.is_file():
        raise NotFound("The file is missing; please contact the shop.")
    return send_file(path, as_attachment=True, download_name=product["file_name"],
                     mimetype="application/octet-stream", conditional=True, max_age=0)
