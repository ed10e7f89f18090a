"""Developers: webhook endpoints and their deliveries, API keys, and the email outbox."""

from __future__ import annotations

from flask import flash, request, url_for

from ...services import api_keys, emails, webhook_sender, webhooks
from ..context import runtime
from . import bp, page, scope, submit, submit_and_show


@bp.get("/webhooks")
def webhooks_page():
    return page("webhooks.html", listing=webhooks.list_page(scope(), {"limit": 100}),
                events=webhooks.EVENT_TYPES + webhooks.PATTERNS)


@bp.post("/webhooks")
def create_webhook():
    """Register an endpoint and show its signing secret, this once."""
    body = {"url": request.form.get("url", "").strip(),
            "events": request.form.getlist("events"),
            "description": request.form.get("description", "")}
    return submit_and_show(
        lambda: webhooks.create(scope(), body),
        lambda created: page("webhook.html", endpoint=created, secret=created["signing_secret"],
                             deliveries=[]),
        url_for("dashboard.webhooks_page"))


@bp.get("/webhooks/<endpoint_id>")
def webhook_page(endpoint_id):
    """One endpoint with its delivery log."""
    log = webhooks.deliveries_page(scope(), endpoint_id, {"limit": 50})
    return page("webhook.html", endpoint=webhooks.get(scope(), endpoint_id), secret=None,
                deliveries=log["data"])


@bp.post("/webhooks/<endpoint_id>/test")
def test_webhook(endpoint_id):
    def action():
        result = webhook_sender.send_test(scope(), endpoint_id, {}, runtime().test_sends)
        outcome = "delivered" if result["delivered"] else "not delivered"
        flash(f"Test event {outcome} (HTTP {result['response_code']}, "
              f"{result['delivery_ms']} ms).", "info" if result["delivered"] else "error")
    return submit(action, url_for("dashboard.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<endpoint_id>/status")
def webhook_status(endpoint_id):
    status = "active" if request.form.get("status") == "active" else "disabled"
    return submit(lambda: webhooks.update(scope(), endpoint_id, {"status": status}) and None,
                  url_for("dashboard.webhook_page", endpoint_id=endpoint_id))


@bp.post("/webhooks/<endpoint_id>/rotate")
def rotate_webhook(endpoint_id):
    back = url_for("dashboard.webhook_page", endpoint_id=endpoint_id)
    return submit_and_show(
        lambda: webhooks.rotate_secret(scope(), endpoint_id),
        lambda rotated: page("webhook.html", endpoint=rotated, secret=rotated["signing_secret"],
                             deliveries=[]), back)


@bp.post("/webhooks/<endpoint_id>/delete")
def delete_webhook(endpoint_id):
    return submit(lambda: webhooks.delete(scope(), endpoint_id) and None,
                  url_for("dashboard.webhooks_page"))


@bp.post("/webhooks/<endpoint_id>/deliveries/<delivery_id>/retry")
def retry_delivery(endpoint_id, delivery_id):
    def action():
        webhooks.retry_delivery(scope(), endpoint_id, delivery_id)
        flash("The delivery will be sent again within seconds.", "info")
    return submit(action, url_for("dashboard.webhook_page", endpoint_id=endpoint_id))


@bp.get("/api-keys")
def api_keys_page():
    return page("api_keys.html", listing=api_keys.list_page(scope(), {"limit": 100}),
                abilities=api_keys.ABILITIES, created=None)


@bp.post("/api-keys")
def mint_api_key():
    """Mint a key with the chosen abilities and show its secret, this once."""
    body = {"name": request.form.get("name", ""), "abilities": request.form.getlist("abilities"),
            "mode": request.form.get("key_mode", "test")}
    return submit_and_show(
        lambda: api_keys.create(scope(), body),
        lambda created: page("api_keys.html", created=created, abilities=api_keys.ABILITIES,
                             listing=api_keys.list_page(scope(), {"limit": 100})),
        url_for("dashboard.api_keys_page"))


@bp.post("/api-keys/<key_id>/revoke")
def revoke_api_key(key_id):
    def action():
        api_keys.revoke(scope(), key_id)
        flash(f"Revoked {key_id}; it fails from the next request on.", "info")
    return submit(action, url_for("dashboard.api_keys_page"))


@bp.get("/outbox")
def outbox_page():
    """Every email the shop sent or queued in this mode."""
    return page("outbox.html", listing=emails.list_page(scope(), {"limit": 100}))

