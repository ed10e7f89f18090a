"""/v1/licenses: the licenses delivered keys carry (docs/api.md, Licenses)."""

from __future__ import annotations

from ...services import licenses
from . import bp
from .pipeline import operation, scope

TAG = "Licenses"


@operation(bp, "GET", "/licenses", summary="List licenses", tag=TAG, ability="licenses:read",
           query=licenses.LIST,
           response="list:License")
def list_licenses(query):
    """Returns licenses newest first, optionally of one status, product, order or buyer."""
    return licenses.list_page(scope(), query)


@operation(bp, "GET", "/licenses/<license_id>", summary="Fetch a license", tag=TAG,
           ability="licenses:read",
           response="LicenseDetail")
def get_license(license_id, query):
    """Returns one license with the instances that activated it."""
    return licenses.get(scope(), license_id)


@operation(bp, "PATCH", "/licenses/<license_id>", summary="Update a license", tag=TAG,
           ability="licenses:write", body=licenses.UPDATE,
           response="LicenseDetail")
def update_license(license_id, query, body):
    """Disables or re-enables a license, or changes its activation limit; emits
    `license.updated` when something changed."""
    return licenses.update(scope(), license_id, body)
