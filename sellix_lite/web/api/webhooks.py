"""/v1/webhooks and /v1/events: endpoints, their deliveries, and events (docs/webhooks.md)."""

from __future__ import annotations

from ...services import events, webhook_sender, webhooks
from ..context import runtime
from . import bp
from .pipeline import caller, operation, scope

TAG = "Webhooks"


@operation(bp, "GET", "/webhooks", summary="List endpoints", tag=TAG,
           ability="webhooks:read", query=webhooks.LIST,
           response="list:WebhookEndpoint")
def list_webhooks(query):
    """Returns this mode's webhook endpoints, newest first."""
    return webhooks.list_page(scope(), query)


@operation(bp, "POST", "/webhooks", summary="Register an endpoint", tag=TAG,
           ability="webhooks:write", body=webhooks.CREATE, status=201,
           secret_field="signing_secret",
           response="NewWebhookEndpoint")
def create_webhook(query, body):
    """Subscribes a URL to event types; `signing_secret` is shown in this response only."""
    return webhooks.create(scope(), body)


@operation(bp, "GET", "/webhooks/<endpoint_id>", summary="Fetch an endpoint", tag=TAG,
           ability="webhooks:read",
           response="WebhookEndpoint")
def get_webhook(endpoint_id, query):
    """Returns one endpoint (never its secret)."""
    return webhooks.get(scope(), endpoint_id)


@operation(bp, "PATCH", "/webhooks/<endpoint_id>", summary="Update an endpoint", tag=TAG,
           ability="webhooks:write", body=webhooks.UPDATE,
           response="WebhookEndpoint")
def update_webhook(endpoint_id, query, body):
    """Edits url, events or description; `{"status": "active"}` re-enables it."""
    return webhooks.update(scope(), endpoint_id, body)


@operation(bp, "DELETE", "/webhooks/<endpoint_id>", summary="Remove an endpoint", tag=TAG,
           ability="webhooks:write",
           response="DeletedWebhookEndpoint")
def delete_webhook(endpoint_id, query, body):
    """Stops further deliveries and cancels pending retries."""
    return webhooks.delete(scope(), endpoint_id)


@operation(bp, "POST", "/webhooks/<endpoint_id>/test", summary="Fire a test event", tag=TAG,
           ability="webhooks:write", body=webhooks.TEST,
           response="TestDelivery")
def test_webhook(endpoint_id, query, body):
    """Sends a synthetic signed event now and reports the endpoint's answer."""
    return webhook_sender.send_test(scope(), endpoint_id, body, runtime().test_sends)


@operation(bp, "POST", "/webhooks/<endpoint_id>/rotate-secret", summary="Rotate the secret",
           tag=TAG, ability="webhooks:write", secret_field="signing_secret",
           response="NewWebhookEndpoint")
def rotate_webhook_secret(endpoint_id, query, body):
    """Returns a new secret; the old one keeps signing alongside it for 24 hours."""
    return webhooks.rotate_secret(scope(), endpoint_id)


@operation(bp, "GET", "/webhooks/<endpoint_id>/deliveries", summary="List deliveries",
           tag=TAG, ability="webhooks:read", query=webhooks.DELIVERIES,
           response="list:WebhookDelivery")
def list_deliveries(endpoint_id, query):
    """Every delivery to the endpoint, newest first, each with its attempts."""
    return webhooks.deliveries_page(scope(), endpoint_id, query)


@operation(bp, "POST", "/webhooks/<endpoint_id>/deliveries/<delivery_id>/retry",
           summary="Retry a delivery", tag=TAG, ability="webhooks:write",
           response="WebhookDelivery")
def retry_delivery(endpoint_id, delivery_id, query, body):
    """Queues the delivery for an immediate new attempt."""
    return webhooks.retry_delivery(scope(), endpoint_id, delivery_id)


@operation(bp, "GET", "/events", summary="List events", tag="Events",
           ability="webhooks:read", query=events.LIST,
           response="list:Event")
def list_events(query):
    """Events of this mode whose objects this key can read, newest first; `type` filters
    by event type."""
    return events.list_page(scope(), query, caller()["abilities"])


@operation(bp, "GET", "/events/<event_id>", summary="Fetch an event", tag="Events",
           ability="webhooks:read",
           response="Event")
def get_event(event_id, query):
    """Returns one event as webhooks deliver it, if this key can read its object."""
    return events.get(scope(), event_id, caller()["abilities"])
