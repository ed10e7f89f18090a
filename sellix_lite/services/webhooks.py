"""Webhook endpoints (docs/webhooks.md): registration, rotation, and the delivery log.

Deliveries are created by `fan_out`, inside the transaction that writes the event, one per
matching endpoint of the event's mode. Sending them is `webhook_sender.py`'s job.
"""

from __future__ import annotations

import json
from datetime import timedelta

import sqlite_utils

from .. import db as storage, webhook_signatures
from ..clock import iso, now_iso, utcnow
from ..config import Config
from ..db import query_one, write_txn
from ..errors import NotFound, Unprocessable
from ..ids import new_id
from ..validation import HTTP_URL, Array, Enum, Schema, String
from .scope import Scope, list_query
from .urls import Targets, UrlRefused

EVENT_TYPES = (
    "order.created", "order.paid", "order.delivered", "order.failed", "order.refunded",
    "order.key_replaced", "order.updated",
    "product.created", "product.updated", "product.archived", "product.stock_low",
    "payout.queued", "payout.broadcast", "payout.confirmed", "payout.failed",
    "customer.created", "customer.updated",
    "license.created", "license.updated", "license.activated", "license.deactivated",
    "subscription.canceled",
)
# `*` and a wildcard for each family of EVENT_TYPES.
PATTERNS = ("*", "order.*", "product.*", "payout.*", "customer.*", "license.*",
            "subscription.*")
DELIVERY_STATUSES = ("pending", "succeeded", "failed", "cancelled")
ROTATION_OVERLAP = timedelta(hours=24)

_url = dict(min_length=1, max_length=2048, pattern=HTTP_URL, formats=("uri",),
            pattern_hint="must be a valid http(s) URL",
            description="URL the events are POSTed to.", example="https://your.app/sellix/webhook")
_events = dict(min_items=1, max_items=len(EVENT_TYPES) + len(PATTERNS), unique=True,
               description="Event types to receive; `*` for all, `order.*`, `product.*`, "
                           "`payout.*`, `customer.*`, `license.*` or `subscription.*` for a "
                           "family.",
               example=["order.paid", "order.refunded"])
_description = dict(max_length=500, description="A note for people, shown in the dashboard.")

CREATE = Schema(
    url=String(required=True, **_url),
    events=Array(Enum(EVENT_TYPES + PATTERNS), required=True, **_events),
    description=String(**_description),
)
UPDATE = Schema(
    url=String(**_url),
    events=Array(Enum(EVENT_TYPES + PATTERNS), **_events),
    description=String(**_description),
    status=Enum(("active", "disabled"), description="`active` re-enables a disabled endpoint."),
)
TEST = Schema(event=Enum(EVENT_TYPES, default="order.paid",
                         description="Type of the synthetic event to send."))
LIST = list_query()
DELIVERIES = list_query(status=Enum(DELIVERY_STATUSES,
                                    description="Only deliveries in this state."))


def render(row: dict) -> dict:
    """The public endpoint object (the secret only ever appears in create and rotate)."""
    return {"id": row["id"], "url": row["url"], "events": json.loads(row["events"]),
            "description": row["description"], "status": row["status"], "mode": row["mode"],
            "created_at": row["created_at"], "updated_at": row["updated_at"],
            "disabled_at": row["disabled_at"], "failing_since": row["failing_since"]}


def require(scope: Scope, endpoint_id: str) -> dict:
    """The endpoint of this mode, or 404 (deleted endpoints are gone)."""
    row = scope.get("webhook_endpoints", endpoint_id)
    if row is None or row["deleted_at"]:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return row


def list_page(scope: Scope, query: dict) -> dict:
    """A page of this mode's endpoints, newest first."""
    return scope.page("webhook_endpoints", query, render, where="deleted_at IS NULL")


def get(scope: Scope, endpoint_id: str) -> dict:
    return render(require(scope, endpoint_id))


def create(scope: Scope, body: dict) -> dict:
    """Register an endpoint; the response carries `signing_secret`, shown this once."""
    params = CREATE.validate(body)
    _check_url(params["url"], scope.mode, scope.config)
    now = now_iso()
    row = {"id": new_id("wh"), "mode": scope.mode, "url": params["url"],
           "events": json.dumps(params["events"]), "description": params.get("description", ""),
           "status": "active", "secret": webhook_signatures.new_secret(), "previous_secret": None,
           "previous_secret_expires_at": None, "failing_since": None, "disabled_at": None,
           "created_at": now, "updated_at": now, "deleted_at": None}
    with write_txn(scope.db):
        storage.insert(scope.db, "webhook_endpoints", row)
    return {**render(row), "signing_secret": row["secret"]}


def update(scope: Scope, endpoint_id: str, body: dict) -> dict:
    """Edit url, events, description; `status: active` re-enables a disabled endpoint."""
    params = UPDATE.validate(body)
    if "url" in params:
        _check_url(params["url"], scope.mode, scope.config)
    with write_txn(scope.db):
        row = require(scope, endpoint_id)
        changes = {k: (json.dumps(v) if k == "events" else v) for k, v in params.items()}
        if changes.get("status") == "active" and row["status"] != "active":
            changes.update(disabled_at=None, failing_since=None)
        elif changes.get("status") == "disabled" and row["status"] != "disabled":
            changes["disabled_at"] = now_iso()
        changes["updated_at"] = now_iso()
        storage.update(scope.db, "webhook_endpoints", endpoint_id, changes)
        return render({**row, **changes})


def delete(scope: Scope, endpoint_id: str) -> dict:
    """Remove an endpoint and cancel its pending deliveries."""
    with write_txn(scope.db):
        require(scope, endpoint_id)
        now = now_iso()
        scope.db.execute("UPDATE webhook_endpoints SET deleted_at = ?, updated_at = ? "
                         "WHERE id = ?", (now, now, endpoint_id))
        scope.db.execute("UPDATE webhook_deliveries SET status = 'cancelled', completed_at = ?,"
                         " next_attempt_at = NULL WHERE endpoint_id = ? AND status = 'pending'",
                         (now, endpoint_id))
    return {"id": endpoint_id, "deleted": True}


def rotate_secret(scope: Scope, endpoint_id: str) -> dict:
    """A new secret; the old one keeps signing alongside it for 24 hours."""
    with write_txn(scope.db):
        row = require(scope, endpoint_id)
        changes = {"secret": webhook_signatures.new_secret(), "previous_secret": row["secret"],
                   "previous_secret_expires_at": iso(utcnow() + ROTATION_OVERLAP),
                   "updated_at": now_iso()}
        storage.update(scope.db, "webhook_endpoints", endpoint_id, changes)
    return {**render({**row, **changes}), "signing_secret": changes["secret"],
            "previous_secret_expires_at": changes["previous_secret_expires_at"]}


def signing_secrets(row: dict) -> list[str]:
    """The secrets that sign a delivery now: the current one, then one being rotated out."""
    current = [row["secret"]]
    expires = row["previous_secret_expires_at"]
    if row["previous_secret"] and expires and expires > now_iso():
        current.append(row["previous_secret"])
    return current


def matches(patterns: list[str], event_type: str) -> bool:
    """Whether an endpoint subscribed to `patterns` receives `event_type`."""
    family = event_type.split(".")[0] + ".*"
    return any(p in ("*", event_type, family) for p in patterns)


def fan_out(db: sqlite_utils.Database, mode: str, event_id: str, event_type: str) -> int:
    """Queue a delivery of the event to each matching active endpoint (inside the event's
    transaction); returns how many."""
    now = now_iso()
    count = 0
    for endpoint in db.query("SELECT id, events FROM webhook_endpoints WHERE mode = ? AND "
                             "status = 'active' AND deleted_at IS NULL", (mode,)):
        if matches(json.loads(endpoint["events"]), event_type):
            db.execute("INSERT INTO webhook_deliveries (id, mode, endpoint_id, event_id, status,"
                       " next_attempt_at, created_at) VALUES (?, ?, ?, ?, 'pending', ?, ?)",
                       (new_id("whd"), mode, endpoint["id"], event_id, now, now))
            count += 1
    return count


def render_delivery(row: dict, attempts: list[dict]) -> dict:
    """A delivery with every attempt made so far."""
    return {"id": row["id"], "endpoint_id": row["endpoint_id"], "event_id": row["event_id"],
            "event_type": row.get("event_type"), "status": row["status"],
            "attempt_count": row["attempts"], "next_attempt_at": row["next_attempt_at"],
            "created_at": row["created_at"], "completed_at": row["completed_at"],
            "attempts": [{"attempted_at": a["attempted_at"], "response_code": a["response_code"],
                          "duration_ms": a["duration_ms"], "error": a["error"],
                          "response_body": a["response_body"]} for a in attempts]}


def deliveries_page(scope: Scope, endpoint_id: str, query: dict) -> dict:
    """A page of one endpoint's deliveries, newest first, with their attempts."""
    require(scope, endpoint_id)
    where, params = "endpoint_id = ?", [endpoint_id]
    if "status" in query:
        where += " AND status = ?"
        params.append(query["status"])
    return scope.page("webhook_deliveries", query, lambda row: _delivery(scope, row),
                      where=where, params=tuple(params))


def retry_delivery(scope: Scope, endpoint_id: str, delivery_id: str) -> dict:
    """Send a delivery again now, whatever its state (cancelled ones excepted)."""
    with write_txn(scope.db):
        endpoint = require(scope, endpoint_id)
        row = scope.get("webhook_deliveries", delivery_id)
        if row is None or row["endpoint_id"] != endpoint_id:
            raise NotFound(f"no delivery {delivery_id} for endpoint {endpoint_id}")
        if endpoint["status"] != "active":
            raise Unprocessable(errors={"endpoint": "is disabled; re-enable it first"})
        if row["status"] == "cancelled":
            raise Unprocessable(errors={"delivery": "was cancelled"})
        scope.db.execute("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = ?,"
                         " completed_at = NULL WHERE id = ?", (now_iso(), delivery_id))
        return _delivery(scope, scope.get("webhook_deliveries", delivery_id))


def _delivery(scope: Scope, row: dict) -> dict:
    event = query_one(scope.db, "SELECT type FROM events WHERE id = ?", (row["event_id"],))
    attempts = list(scope.db.query(
        "SELECT * FROM webhook_attempts WHERE delivery_id = ? ORDER BY id", (row["id"],)))
    return render_delivery({**row, "event_type": event and event["type"]}, attempts)


def _check_url(url: str, mode: str, config: Config) -> None:
    try:
        Targets(mode, config.webhooks).check(url)
    except UrlRefused as exc:
        raise Unprocessable(errors={"url": str(exc)}) from None
