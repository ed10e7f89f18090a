"""Products: list, create, edit, archive, import keys, upload the file."""

from __future__ import annotations

import csv
import io

from flask import flash, request, url_for

from ...currencies import MINOR_UNITS
from ...errors import InvalidRequest
from ...services import custom_fields, license_keys, products
from ..context import runtime
from ..html import form_cents, form_integer
from . import back_or, bp, page, query_of, scope, submit, submit_and_show

POOL_SHOWN = 100  # keys listed per page of a license_key product's pool, newest first
TEXT_FIELDS = ("name", "description", "delivery_text", "dynamic_url", "interval", "status")
# Whole numbers whose empty field means none: no low-stock alert, unlimited activations.
OPTIONAL_NUMBERS = ("low_stock_threshold", "activation_limit")
# What the custom fields' rows of the product forms offer.
FIELD_ROWS = {"field_types": custom_fields.TYPES, "most_fields": custom_fields.MAX_FIELDS}


@bp.get("/products")
def products_page():
    """Every product of the mode, newest first."""
    listing = products.list_page(scope(), {"limit": 100, **_cursor()})
    return page("products.html", listing=listing, types=products.TYPES, **FIELD_ROWS)


@bp.post("/products")
def create_product():
    """Create a product; a dynamic one's page shows its signing secret, this once."""
    def create():
        return products.create(scope(), _product_body(request.form, creating=True))

    back = url_for("dashboard.products_page")
    if request.form.get("type") == "dynamic":
        return submit_and_show(create, lambda created: _with_secret(created, created), back)
    return submit(lambda: url_for("dashboard.product_page", product_id=create()["id"]), back)


@bp.get("/products/<product_id>")
def product_page(product_id):
    """One product: edit it, import keys, see its key pool by status and prune it, upload
    its file, archive it."""
    return page("product.html", **_product_view(products.get(scope(), product_id)))


def _product_view(product: dict) -> dict:
    """The product page's context: the product and, for a license_key one, a page of its
    pool (of the status the page's `status` asks for)."""
    pool = None
    if product["type"] == "license_key":
        pool = license_keys.list_page(scope(), product["id"],
                                      query_of(license_keys.LIST, POOL_SHOWN))
    return {"product": product, "pool": pool, "pool_statuses": license_keys.STATUSES,
            **FIELD_ROWS}


@bp.post("/products/<product_id>")
def update_product(product_id):
    def action():
        products.update(scope(), product_id, _product_body(request.form, creating=False))
    return submit(action, url_for("dashboard.product_page", product_id=product_id))


@bp.post("/products/<product_id>/rotate-dynamic-secret")
def rotate_dynamic_secret(product_id):
    """A new signing secret for a dynamic product's calls, shown this once."""
    return submit_and_show(
        lambda: products.rotate_dynamic_secret(scope(), product_id),
        lambda rotated: _with_secret(products.get(scope(), product_id), rotated),
        url_for("dashboard.product_page", product_id=product_id))


def _with_secret(product: dict, answer: dict):
    return page("product.html", **_product_view(product),
                signing_secret=answer["dynamic_signing_secret"])


@bp.post("/products/<product_id>/archive")
def archive_product(product_id):
    return submit(lambda: products.archive(scope(), product_id) and None,
                  url_for("dashboard.product_page", product_id=product_id))


@bp.post("/products/<product_id>/keys/<key_id>/delete")
def delete_key(product_id, key_id):
    """Remove an available key from the pool; back to the pool's page it was on."""
    return submit(lambda: license_keys.delete(scope(), product_id, key_id) and None,
                  back_or(url_for("dashboard.product_page", product_id=product_id)))


@bp.post("/products/<product_id>/keys")
def import_keys(product_id):
    """Keys pasted one per line, or a .txt/.csv file with one key per line (first column)."""
    def action():
        result = license_keys.import_keys(scope(), product_id, {"keys": _keys_from_form()})
        flash(f"Imported {_count(result['imported'], 'key')} "
              f"({_count(result['duplicates'], 'duplicate')}); "
              f"{result['stock_after']} in stock.", "info")
    return submit(action, url_for("dashboard.product_page", product_id=product_id))


@bp.post("/products/<product_id>/file")
def upload_file(product_id):
    def action():
        upload = request.files.get("file")
        config = runtime().config
        if upload is None or not upload.filename:
            raise InvalidRequest("choose a file to upload", errors={"file": "is required"})
        products.replace_file(scope(), product_id, upload.stream, upload.filename,
                              config.files_dir, config.storage.max_upload_bytes)
    return submit(action, url_for("dashboard.product_page", product_id=product_id))


@bp.post("/products/<product_id>/image")
def upload_image(product_id):
    """The API's image upload: PNG, JPEG or WebP, known by its bytes."""
    def action():
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            raise InvalidRequest("choose an image to upload", errors={"file": "is required"})
        products.replace_image(scope(), product_id, upload.stream, runtime().config.files_dir)
    return submit(action, url_for("dashboard.product_page", product_id=product_id))


@bp.post("/products/<product_id>/image/delete")
def remove_image(product_id):
    def action():
        products.remove_image(scope(), product_id, runtime().config.files_dir)
    return submit(action, url_for("dashboard.product_page", product_id=product_id))


def _keys_from_form() -> list:
    """Pasted lines and .txt lines are whole keys; a .csv's first column is the key."""
    keys = request.form.get("keys", "").splitlines()
    upload = request.files.get("keys_file")
    if upload and upload.filename:
        text = upload.stream.read().decode("utf-8-sig", errors="replace")
        if upload.filename.lower().endswith(".csv"):
            keys += [row[0] for row in csv.reader(io.StringIO(text)) if row]
        else:
            keys += text.splitlines()
    return [key.strip() for key in keys if key.strip()]


def _product_body(form, *, creating: bool) -> dict:
    """The API body the form stands for; empty fields are left out."""
    body = {field: form[field] for field in TEXT_FIELDS if form.get(field, "").strip()}
    if creating:
        body.update(type=form.get("type", ""), currency=form.get("currency", "").upper())
    if form.get("price", "").strip():
        body["price_cents"] = to_cents(form["price"], form.get("currency") or
                                       products.get(scope(), request.view_args["product_id"])
                                       ["currency"])
    if form.get("stock", "").strip():
        body["stock"] = form_integer(form["stock"])
    elif form.get("unlimited"):
        body["stock"] = None
    for field in OPTIONAL_NUMBERS:  # the edit form always sends them; empty turns one off
        if field in form:
            number = form[field].strip()
            if number or not creating:
                body[field] = form_integer(number) if number else None
    definitions = _custom_fields_of(form)
    if definitions or ("field-0-name" in form and not creating):
        body["custom_fields"] = definitions  # the edit form's rows replace the fields
    return body


def _custom_fields_of(form) -> list:
    """The definitions of the custom fields' rows, in order; a row without a name and a
    label is empty. Options are one per line."""
    definitions = []
    for index in range(custom_fields.MAX_FIELDS):
        row = {part: form.get(f"field-{index}-{part}", "").strip()
               for part in ("name", "label", "type", "options", "max_length")}
        if not (row["name"] or row["label"]):
            continue
        definition = {"name": row["name"], "label": row["label"], "type": row["type"],
                      "required": f"field-{index}-required" in form}
        options = [line.strip() for line in row["options"].splitlines() if line.strip()]
        if options:
            definition["options"] = options
        if row["max_length"]:
            definition["max_length"] = form_integer(row["max_length"])
        definitions.append(definition)
    return definitions


def to_cents(amount: str, currency: str):
    """`"12.90"` in EUR → 1290; anything else is passed on for the API's own message."""
    return form_cents(amount, MINOR_UNITS.get(currency.upper(), 2))


def _cursor() -> dict:
    cursor = request.args.get("cursor")
    return {"cursor": cursor} if cursor else {}


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"
