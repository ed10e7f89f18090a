"""Licenses: the list with its search by key; disable, re-enable or limit one from any page
that lists it, and remove an instance from its order's page."""

from __future__ import annotations

from flask import flash, request, url_for

from ...services import licenses
from ..html import form_integer
from . import back_or, bp, page, query_of, scope, submit


@bp.get("/licenses")
def licenses_page():
    """Licenses, newest first, by status or buyer, and found by the start of their key."""
    listing = licenses.search(scope(), query_of(licenses.SEARCH))
    return page("licenses.html", listing={**listing, "data": with_locks(listing["data"])},
                statuses=licenses.STATUSES, filters=request.args)


def with_locks(shown: list[dict]) -> list[dict]:
    """The licenses with `locked`: why one can't be enabled again (`replaced`,
    `refunded`), or None; the table offers no Enable button for a locked license."""
    return [{**lic, "locked": licenses.lock_reason(scope().db, lic)} for lic in shown]


@bp.post("/licenses/<license_id>")
def update_license(license_id):
    """Disable or re-enable a license, or change its activation limit; then back to the page
    the form was on."""
    def action():
        updated = licenses.update(scope(), license_id, _license_body(request.form))
        limit = updated["activation_limit"]
        flash(f"License {updated['key']} is {updated['status']}, "
              f"{'unlimited' if limit is None else limit} activations allowed.", "info")
    return submit(action, back_or(url_for("dashboard.licenses_page")))


def _license_body(form) -> dict:
    """The API body the form stands for: a status, or a limit (empty: unlimited)."""
    body = {"status": form["status"]} if "status" in form else {}
    if "activation_limit" in form:
        limit = form["activation_limit"].strip()
        body["activation_limit"] = form_integer(limit) if limit else None
    return body


@bp.post("/licenses/<license_id>/instances/<instance_id>/delete")
def delete_instance(license_id, instance_id):
    """Remove an instance, freeing its activation for the buyer's next machine; then back
    to the page the form was on."""
    def action():
        licenses.delete_instance(scope(), license_id, instance_id)
        flash(f"Instance {instance_id} removed: its activation is free again.", "info")
    return submit(action, back_or(url_for("dashboard.licenses_page")))
