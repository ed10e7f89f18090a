"""/v1/products: the catalog, license-key pools and product files (docs/api.md, Products)."""

from __future__ import annotations

import re

from flask import request

from ...errors import InvalidRequest
from ...services import license_keys, products
from ...validation import Schema, String
from ..context import runtime
from . import bp
from .pipeline import operation, scope

TAG = "Products"
MULTIPART_OVERHEAD_BYTES = 64 * 1024
UPLOAD_QUERY = Schema(filename=String(min_length=1, max_length=255,
                                      description="Name the buyer's download gets "
                                                  "(raw uploads; multipart sends its own)."))


@operation(bp, "GET", "/products", summary="List products", tag=TAG,
           ability="products:read", query=products.LIST,
           response="list:Product")
def list_products(query):
    """Returns a page of products, newest first, in every status unless `status` is given."""
    return products.list_page(scope(), query)


@operation(bp, "POST", "/products", summary="Create a product", tag=TAG,
           ability="products:write", body=products.CREATE, status=201,
           secret_field="dynamic_signing_secret",
           response="NewProduct")
def create_product(query, body):
    """Publishes a new product; its slug is derived from the name, unique in this mode.
    A dynamic product's `dynamic_signing_secret` is shown in this response only."""
    return products.create(scope(), body)


@operation(bp, "GET", "/products/<product_id>", summary="Fetch a product", tag=TAG,
           ability="products:read",
           response="Product")
def get_product(product_id, query):
    """Returns one product, including its stock."""
    return products.get(scope(), product_id)


@operation(bp, "PATCH", "/products/<product_id>", summary="Update a product", tag=TAG,
           ability="products:write", body=products.UPDATE,
           response="Product")
def update_product(product_id, query, body):
    """Changes any subset of the editable fields and returns the whole product."""
    return products.update(scope(), product_id, body)


@operation(bp, "DELETE", "/products/<product_id>", summary="Archive a product", tag=TAG,
           ability="products:write",
           response="ArchivedProduct")
def archive_product(product_id, query, body):
    """Archives the product: it stays readable, orders keep working, the shop hides it."""
    return products.archive(scope(), product_id)


@operation(bp, "POST", "/products/<product_id>/rotate-dynamic-secret",
           summary="Rotate the dynamic signing secret", tag=TAG, ability="products:write",
           secret_field="dynamic_signing_secret",
           response="DynamicSigningSecret")
def rotate_dynamic_secret(product_id, query, body):
    """Returns a new secret for the calls to `dynamic_url`; the old one stops at once."""
    return products.rotate_dynamic_secret(scope(), product_id)


@operation(bp, "POST", "/products/<product_id>/keys", summary="Bulk-import license keys",
           tag=TAG, ability="products:write", body=license_keys.IMPORT, status=201,
           response="KeyImport")
def import_license_keys(product_id, query, body):
    """Adds up to 5,000 keys to a license_key product's pool in one transaction."""
    return license_keys.import_keys(scope(), product_id, body)


@operation(bp, "GET", "/products/<product_id>/keys", summary="List a product's license keys",
           tag=TAG, ability="products:read", query=license_keys.LIST,
           response="list:LicenseKey")
def list_license_keys(product_id, query):
    """Returns a page of a license_key product's pool, newest first, in every status unless
    `status` is given."""
    return license_keys.list_page(scope(), product_id, query)


@operation(bp, "DELETE", "/products/<product_id>/keys/<key_id>",
           summary="Delete an available license key", tag=TAG, ability="products:write",
           response="DeletedLicenseKey")
def delete_license_key(product_id, key_id, query, body):
    """Removes a key nobody has reserved or bought; the product's stock drops by one."""
    return license_keys.delete(scope(), product_id, key_id)


@operation(bp, "PUT", "/products/<product_id>/file", summary="Upload the product's file",
           tag=TAG, ability="products:write", query=UPLOAD_QUERY, upload=True,
           response="Product")
def upload_product_file(product_id, query):
    """Stores the file a file_download product delivers: a raw body or a multipart `file`."""
    config = runtime().config
    # Room for a multipart form's own bytes; files.store enforces the file's exact size.
    request.max_content_length = config.storage.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    source, filename = _upload_source(query)
    return products.replace_file(scope(), product_id, source, filename, config.files_dir,
                                 config.storage.max_upload_bytes)


@operation(bp, "PUT", "/products/<product_id>/image", summary="Upload the product's image",
           tag=TAG, ability="products:write", upload=True, response="Product")
def upload_product_image(product_id, query):
    """Stores the image the shop shows: PNG, JPEG or WebP (known by its bytes, not its name),
    at most 5 MB, as a raw body or a multipart `file`; anything else is a 422 on `image`."""
    config = runtime().config
    request.max_content_length = config.storage.max_upload_bytes + MULTIPART_OVERHEAD_BYTES
    source, _ = _upload_source(query)
    return products.replace_image(scope(), product_id, source, config.files_dir)


@operation(bp, "DELETE", "/products/<product_id>/image", summary="Remove the product's image",
           tag=TAG, ability="products:write", response="Product")
def remove_product_image(product_id, query, body):
    """The product without its image."""
    return products.remove_image(scope(), product_id, runtime().config.files_dir)


def _upload_source(query: dict):
    """The uploaded stream and its file name, from a multipart form or a raw body."""
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("file")
        if upload is None:
            raise InvalidRequest("send the file in a multipart field named `file`",
                                 errors={"file": "is required"})
        return upload.stream, upload.filename or query.get("filename", "download")
    if not request.content_length and request.headers.get("Transfer-Encoding") != "chunked":
        raise InvalidRequest("the request has no file in its body", errors={"file": "is required"})
    return request.stream, query.get("filename") or _disposition_name() or "download"


def _disposition_name() -> str | None:
    match = re.search(r'filename="?([^";]+)"?', request.headers.get("Content-Disposition", ""))
    return match.group(1) if match else None
