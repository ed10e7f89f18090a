"""Products (docs/api.md, Products): the catalog of each mode, with its events.

Every change runs in one write transaction together with the event it causes. The stock of
a license-key product is not stored by this code at all: database triggers keep it equal to
the number of available keys in its pool.
"""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from pathlib import Path
from typing import BinaryIO

from .. import db as storage, webhook_signatures
from ..clock import now_iso
from ..currencies import CODES
from ..db import query_one, write_txn
from ..errors import NotFound, Unprocessable
from ..ids import new_id
from ..validation import HTTP_URL, Boolean, Enum, Integer, Metadata, Schema, String, merge_metadata
from . import custom_fields, events, files, images, licenses
from .scope import Scope, list_query
from .urls import Targets, UrlRefused

TYPES = ("license_key", "account", "file_download", "dynamic", "physical", "subscription")
STATUSES = ("active", "draft", "archived")
INTERVALS = ("month", "year")
MAX_PRICE_CENTS = 10**12
MAX_STOCK = 10**9
_upload_lock = threading.Lock()

# Which product types each type-specific field applies to.
FIELD_TYPES = {
    "delivery_text": ("account", "subscription", "dynamic"),
    "dynamic_url": ("dynamic",),
    "interval": ("subscription",),
    "requires_shipping": ("physical",),
}


def _editable_fields() -> dict:
    return {
        "name": String(min_length=1, max_length=200, strip=True,
                       description="Display name shown on the storefront.",
                       example="Adobe Creative Cloud Key"),
        "price_cents": Integer(minimum=0, maximum=MAX_PRICE_CENTS,
                               description="Price in the smallest unit of `currency`.",
                               example=12900),
        "description": String(max_length=20000, description="Markdown description."),
        "stock": Integer(minimum=0, maximum=MAX_STOCK, nullable=True,
                         description="Units for sale; `null` is unlimited. Derived from the "
                                     "key pool for `license_key` products."),
        "low_stock_threshold": Integer(
            minimum=0, maximum=MAX_STOCK, nullable=True,
            description="When a sale, reservation or deleted key brings `stock` from above "
                        "this to at or below it, `product.stock_low` is emitted and the "
                        "owner emailed; `null`: never.", example=5),
        "activation_limit": Integer(
            minimum=1, maximum=licenses.MAX_ACTIVATION_LIMIT, nullable=True,
            description="Copied to each license the product delivers: how many instances "
                        "may activate it; `null`: unlimited.", example=3),
        "status": Enum(STATUSES, description="Lifecycle status."),
        "delivery_text": String(max_length=20000, nullable=True,
                                description="Text delivered on payment (account, "
                                            "subscription; dynamic's fallback)."),
        "dynamic_url": String(min_length=1, max_length=2048, nullable=True,
                              pattern=HTTP_URL, formats=("uri",),
                              pattern_hint="must be a valid http(s) URL",
                              description="URL called on payment (dynamic)."),
        "interval": Enum(INTERVALS, description="Billing interval (subscription)."),
        "custom_fields": custom_fields.Definitions(),
    }


CREATE = Schema(
    **{
        **_editable_fields(),
        "name": String(required=True, min_length=1, max_length=200, strip=True,
                       description="Display name shown on the storefront.",
                       example="Adobe Creative Cloud Key"),
        "type": Enum(TYPES, required=True,
                     description="Decides which delivery strategy runs on payment."),
        "price_cents": Integer(required=True, minimum=0, maximum=MAX_PRICE_CENTS,
                               description="Price in the smallest unit of `currency`.",
                               example=12900),
        "currency": Enum(CODES, required=True, description="ISO 4217 code.", example="USD"),
        "requires_shipping": Boolean(description="Physical products always ship."),
        "metadata": Metadata(),
    }
)
UPDATE = Schema(**_editable_fields(), metadata=Metadata(patch=True))
LIST = list_query(status=Enum(STATUSES, description="Only products with this status."),
                  type=Enum(TYPES, description="Only products of this type."))


def render(row: dict) -> dict:
    """The public product object."""
    return {
        "id": row["id"], "name": row["name"], "slug": row["slug"], "type": row["type"],
        "price_cents": row["price_cents"], "currency": row["currency"],
        "description": row["description"], "stock": row["stock"],
        "low_stock_threshold": row["low_stock_threshold"],
        "activation_limit": row["activation_limit"], "status": row["status"],
        "mode": row["mode"], "created_at": row["created_at"], "updated_at": row["updated_at"],
        "archived_at": row["archived_at"],
        "delivery_text": row["delivery_text"], "dynamic_url": row["dynamic_url"],
        "interval": row["interval"], "requires_shipping": row["type"] == "physical",
        "file": _render_file(row),
        "image_url": row["image_sha256"] and images.url_path(row["image_sha256"],
                                                             row["image_type"]),
        "metadata": json.loads(row["metadata"]),
        "custom_fields": json.loads(row["custom_fields"]),
    }


def _render_file(row: dict) -> dict | None:
    if row["file_sha256"] is None:
        return None
    return {"name": row["file_name"], "size_bytes": row["file_size"],
            "sha256": row["file_sha256"], "updated_at": row["file_updated_at"]}


def require(scope: Scope, product_id: str) -> dict:
    """The product row of this mode, or 404."""
    row = scope.get("products", product_id)
    if row is None:
        raise NotFound(f"no product {product_id}")
    return row


def get(scope: Scope, product_id: str) -> dict:
    """The product object."""
    return render(require(scope, product_id))


def for_sale(scope: Scope, limit: int = 200) -> list[dict]:
    """Active products of this mode, newest first (a coupon form's product choice)."""
    return [render(row) for row in scope.db.query(
        "SELECT * FROM products WHERE mode = ? AND status = 'active' ORDER BY id DESC LIMIT ?",
        (scope.mode, limit))]


SHOP_PAGE_SIZE = 24


def shop_page(scope: Scope, search: str = "", cursor: str | None = None) -> dict:
    """A page of the shop: active products of this mode, newest first, in the list envelope.

    `search` keeps the products whose name contains it (SQLite's LIKE: letter case is
    ignored for ASCII letters only; `%`, `_` and `\\` in it are matched literally).
    `cursor` is a page's `next_cursor`, so a page costs the same however deep it is.
    """
    where, params = "status = 'active'", ()
    if search:
        where += " AND name LIKE ? ESCAPE '\\'"
        params = (f"%{_like_literal(search)}%",)
    query = {"limit": SHOP_PAGE_SIZE, **({"cursor": cursor} if cursor else {})}
    return scope.page("products", query, render, where=where, params=params)


def _like_literal(text: str) -> str:
    """`text` with LIKE's wildcards escaped, so that it matches only itself."""
    return re.sub(r"([\\%_])", r"\\\1", text)


def for_sale_by_slug(scope: Scope, slug: str) -> dict:
    """The active product of this mode with that slug, or 404."""
    row = query_one(scope.db, "SELECT * FROM products WHERE mode = ? AND slug = ? AND "
                              "status = 'active'", (scope.mode, slug))
    if row is None:
        raise NotFound(f"no product {slug} for sale")
    return render(row)


def list_page(scope: Scope, query: dict) -> dict:
    """A page of products, newest first, optionally filtered by status and type."""
    conditions, params = [], []
    for name in ("status", "type"):
        if name in query:
            conditions.append(f"{name} = ?")
            params.append(query[name])
    return scope.page("products", query, render, where=" AND ".join(conditions),
                      params=tuple(params))


def create(scope: Scope, body: dict) -> dict:
    """Create a product and its `product.created` event (the scope's config holds the URL
    rules).

    A dynamic product's answer carries `dynamic_signing_secret`, shown this once: it signs
    the calls to `dynamic_url` like a webhook, and whoever holds it can ask that URL for
    goods, so no read, list or event shows it.
    """
    params = CREATE.validate(body)
    product_type = params["type"]
    _check_type_fields(product_type, params, Targets(scope.mode, scope.config.webhooks),
                       creating=True)
    now = now_iso()
    row = {
        "id": new_id("prod"), "mode": scope.mode, "name": params["name"],
        "type": product_type, "price_cents": params["price_cents"],
        "currency": params["currency"], "description": params.get("description", ""),
        "stock": 0 if product_type == "license_key" else params.get("stock"),
        "low_stock_threshold": params.get("low_stock_threshold"),
        "activation_limit": params.get("activation_limit"),
        "status": params.get("status", "active"),
        "delivery_text": params.get("delivery_text"), "dynamic_url": params.get("dynamic_url"),
        "interval": params.get("interval", "month" if product_type == "subscription" else None),
        "file_name": None, "file_size": None, "file_sha256": None, "file_updated_at": None,
        "image_sha256": None, "image_type": None,
        "created_at": now, "updated_at": now,
        "archived_at": now if params.get("status") == "archived" else None,
        "dynamic_secret": webhook_signatures.new_secret() if product_type == "dynamic" else None,
        "metadata": json.dumps(params.get("metadata", {})),
        "custom_fields": custom_fields.stored(params.get("custom_fields", [])),
    }
    with write_txn(scope.db):
        # The name's own slug is usually free: try it, and look for a free one if not.
        row["slug"] = slugify(row["name"])
        if not storage.insert(scope.db, "products", row, unless_taken=("mode", "slug")):
            row["slug"] = _free_slug(scope, row["slug"])
            storage.insert(scope.db, "products", row)
        product = render(row)
        events.emit(scope.db, scope.mode, "product.created", product)
    if row["dynamic_secret"]:
        return {**product, "dynamic_signing_secret": row["dynamic_secret"]}
    return product


def rotate_dynamic_secret(scope: Scope, product_id: str) -> dict:
    """A new signing secret for a dynamic product; the old one stops signing at once."""
    secret = webhook_signatures.new_secret()
    with write_txn(scope.db):
        if require(scope, product_id)["type"] != "dynamic":
            raise Unprocessable(errors={"type": "only dynamic products have a signing secret"})
        scope.db.execute("UPDATE products SET dynamic_secret = ? WHERE id = ?",
                         (secret, product_id))
    return {"dynamic_signing_secret": secret}


def update(scope: Scope, product_id: str, body: dict) -> dict:
    """Apply any subset of the editable fields; archiving through `status` archives, and
    `metadata` is merged into what the product keeps."""
    params = UPDATE.validate(body)
    if "custom_fields" in params:
        params["custom_fields"] = custom_fields.stored(params["custom_fields"])
    with write_txn(scope.db):
        row = require(scope, product_id)
        _check_type_fields(row["type"], params, Targets(scope.mode, scope.config.webhooks),
                           creating=False)
        if "metadata" in params:
            params["metadata"] = json.dumps(merge_metadata(json.loads(row["metadata"]),
                                                           params["metadata"]))
        changes = {k: v for k, v in params.items() if row[k] != v}
        if not changes:
            return render(row)
        if "status" in changes:
            changes["archived_at"] = now_iso() if changes["status"] == "archived" else None
        return _save(scope, row, changes)


def archive(scope: Scope, product_id: str) -> dict:
    """Archive (soft-delete) a product; archiving twice changes nothing."""
    with write_txn(scope.db):
        row = require(scope, product_id)
        if row["status"] != "archived":
            row = {**row, **_save_row(scope, row, {"status": "archived",
                                                   "archived_at": now_iso()})}
    return {"id": row["id"], "deleted": True, "archived_at": row["archived_at"]}


def replace_file(scope: Scope, product_id: str, source: BinaryIO, filename: str,
                 files_dir: Path, max_bytes: int) -> dict:
    """Store the file a file_download product delivers, replacing the previous one."""
    _require_file_product(scope, product_id)
    # Uploads are rare; one at a time keeps a concurrent upload's new file from being
    # removed as "not the current one" before it is recorded.
    with _upload_lock:
        stored = files.store(files_dir, product_id, source, max_bytes)
        try:
            with write_txn(scope.db):
                row = _require_file_product(scope, product_id)
                product = _save(scope, row, {
                    "file_name": clean_filename(filename), "file_size": stored.size,
                    "file_sha256": stored.sha256, "file_updated_at": now_iso()})
        finally:
            # Whatever happened, keep only the file the product points to.
            current = scope.get("products", product_id)
            files.remove_others(files_dir, product_id, current and current["file_sha256"])
    return product


def replace_image(scope: Scope, product_id: str, source: BinaryIO, files_dir: Path) -> dict:
    """Store the product's image (PNG, JPEG or WebP, at most 5 MB), replacing its last one."""
    require(scope, product_id)
    with _upload_lock:  # so that a removal never races a new upload of the same image
        sha256, kind = images.store(files_dir, source)
        try:
            return _set_image(scope, product_id, sha256, kind, files_dir)
        except BaseException:
            images.remove_unused(scope.db, files_dir, sha256)
            raise


def remove_image(scope: Scope, product_id: str, files_dir: Path) -> dict:
    """The product without its image; its file goes once no product shows it."""
    with _upload_lock:
        return _set_image(scope, product_id, None, None, files_dir)


def shows_image(db, sha256: str, kind: str) -> bool:
    """Whether a product of either mode shows this image (only those are served)."""
    return db.execute("SELECT 1 FROM products WHERE image_sha256 = ? AND image_type = ? "
                      "LIMIT 1", (sha256, kind)).fetchone() is not None


def _set_image(scope: Scope, product_id: str, sha256: str | None, kind: str | None,
               files_dir: Path) -> dict:
    with write_txn(scope.db):
        row = require(scope, product_id)
        previous = row["image_sha256"]
        changes = {k: v for k, v in (("image_sha256", sha256), ("image_type", kind))
                   if row[k] != v}
        product = _save(scope, row, changes) if changes else render(row)
    if previous and previous != sha256:
        images.remove_unused(scope.db, files_dir, previous)
    return product


def clean_filename(filename: str) -> str:
    """A safe file name for the download: no folders, no control characters."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable()).strip().strip(".")
    return name[:255] or "download"


def _require_file_product(scope: Scope, product_id: str) -> dict:
    row = require(scope, product_id)
    if row["type"] != "file_download":
        raise Unprocessable(errors={"file": "only file_download products have a file"})
    return row


def _save(scope: Scope, row: dict, changes: dict) -> dict:
    return render({**row, **_save_row(scope, row, changes)})


def _save_row(scope: Scope, row: dict, changes: dict) -> dict:
    """Write `changes` and their event inside the caller's transaction; returns the changes."""
    changes = {**changes, "updated_at": now_iso()}
    storage.update(scope.db, "products", row["id"], changes)
    after = render({**row, **changes})
    event_type = "product.archived" if changes.get("status") == "archived" else "product.updated"
    before = render(row)
    previous = {k: before[k] for k in after if before[k] != after[k] and k != "updated_at"}
    events.emit(scope.db, scope.mode, event_type, after, previous)
    return changes


def _check_type_fields(product_type: str, params: dict, targets: Targets, *,
                       creating: bool) -> None:
    errors = {}
    for field, types in FIELD_TYPES.items():
        if field in params and params[field] is not None and product_type not in types:
            errors[field] = f"only applies to {' and '.join(types)} products"
    if product_type == "license_key" and "stock" in params:
        errors["stock"] = "of a license_key product is its number of unsold keys; import keys"
    if params.get("requires_shipping") is False and product_type == "physical":
        errors["requires_shipping"] = "physical products always ship"
    if product_type == "dynamic" and (creating or "dynamic_url" in params) \
            and not params.get("dynamic_url"):
        errors["dynamic_url"] = "is required for dynamic products"
    if params.get("dynamic_url") and "dynamic_url" not in errors:
        try:
            targets.check(params["dynamic_url"])
        except UrlRefused as exc:
            errors["dynamic_url"] = str(exc)
    if errors:
        raise Unprocessable(errors=errors)


def slugify(name: str) -> str:
    """`"Adobe Creative Cloud Key"` → `"adobe-creative-cloud-key"`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:80].strip("-")
    return slug or "product"


def _free_slug(scope: Scope, base: str) -> str:
    """`base-N` for an N this mode doesn't have yet, whose `base-(N-1)` it has (`base` itself
    standing for 1): with suffixes taken in order, the next one.

    A galloping search — `base-2`, `-4`, `-8`, ... until one is free, then halving the gap
    back to a taken one — costs some 2·log2(n) index lookups, so the thousandth product of a
    name is created as fast as the second. Runs inside the caller's write transaction, which
    keeps another create from taking the slug between the lookup and the insert.
    """
    def taken(suffix: int) -> bool:
        return query_one(scope.db, "SELECT 1 FROM products WHERE mode = ? AND slug = ?",
                         (scope.mode, f"{base}-{suffix}")) is not None

    low, high = 1, 2  # `base-low` is taken; `base-high` is not known yet
    while taken(high):
        low, high = high, high * 2
    while high - low > 1:  # `base-low` taken, `base-high` free
        middle = (low + high) // 2
        low, high = (middle, high) if taken(middle) else (low, middle)
    return f"{base}-{high}"


def record_stock_change(scope: Scope, before: dict) -> dict:
    """After the key pool changed (inside the same transaction): bump `updated_at` and
    write `product.updated` with the previous stock. Returns the product object."""
    after = require(scope, before["id"])
    if after["stock"] == before["stock"]:
        return render(after)
    return _save(scope, before, {"stock": after["stock"]})
