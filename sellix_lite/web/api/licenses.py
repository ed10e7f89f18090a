"""/v1/licenses: the licenses delivered keys carry, their instances, and the public checks
a merchant's software makes (docs/api.md, Licenses)."""

from __future__ import annotations

from ...services import license_checks, licenses
from ..context import get_db, runtime
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


@operation(bp, "DELETE", "/licenses/<license_id>/instances/<instance_id>",
           summary="Remove an instance", tag=TAG, ability="licenses:write",
           response="DeletedInstance")
def delete_license_instance(license_id, instance_id, query, body):
    """Removes an instance from a license, freeing its activation; emits
    `license.deactivated`."""
    return licenses.delete_instance(scope(), license_id, instance_id)


# The public license checks: called by the merchant's software, with the key as the only
# credential, so they need no API key and are limited per client address.

@operation(bp, "POST", "/licenses/activate", summary="Activate a license key", tag=TAG,
           ability=None, public=True, body=license_checks.ACTIVATE, status=201,
           alternate_status=200, errors=(404,), response="Activation")
def activate_license(query, body):
    """Activates a license on an instance (a machine or install): 201 with the new instance
    and a signed lease, or 200 with the existing instance when its `fingerprint` activated
    before. A disabled or expired license, or one at its activation limit, is 422 on
    `license_key`; an unknown key is 404. Emits `license.activated`."""
    answer, created = license_checks.activate(get_db(), license_scope, body)
    return answer, 201 if created else 200


@operation(bp, "POST", "/licenses/validate", summary="Validate a license key", tag=TAG,
           ability=None, public=True, body=license_checks.VALIDATE, errors=(404,),
           response="Validation")
def validate_license(query, body):
    """Says whether a license, and the instance named, is valid now; if not, `reason` says
    why (`disabled`, `expired`, `unknown_instance`). A valid answer carries a fresh signed
    lease. An unknown key is 404."""
    return license_checks.validate(get_db(), license_scope, body)


@operation(bp, "POST", "/licenses/deactivate", summary="Deactivate a license key", tag=TAG,
           ability=None, public=True, body=license_checks.DEACTIVATE, errors=(404,),
           response="Deactivation")
def deactivate_license(query, body):
    """Removes an instance from the license, freeing its activation; an unknown key or
    instance is 404. Emits `license.deactivated`."""
    return license_checks.deactivate(get_db(), license_scope, body)


def license_scope(mode: str):
    """The scope a public check runs in: the mode of the license its key found."""
    return runtime().scope(get_db(), mode)
