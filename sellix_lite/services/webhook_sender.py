"""Sending webhook deliveries: claim what is due, POST it, record the attempt.

At-least-once: a delivery is leased to this process (its boot id) before the POST and
settled after it, in two short transactions with the network call between them. A delivery
leased by a process that died is due again at once. At most one delivery per endpoint is in
flight, so a slow or hanging endpoint holds one sender, never the others; each call ends at
`timeout_seconds` whatever the receiver does.

A test send is made on the request's own thread, so `TestSendSlots` lets only a quarter of the
server's threads make them at once: receivers that never answer can't take them all.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import sqlite_utils

from .. import outbound, webhook_signatures
from ..clock import clock, iso, now_iso, utcnow
from ..config import Config
from ..db import query_one, write_txn
from ..errors import RateLimited
from ..ids import new_id
from . import emails, retries, webhooks
from .events import render as render_event
from .scope import Scope
from .urls import Targets


@dataclass(frozen=True)
class Claimed:
    """A delivery taken for one attempt, with all the sender needs."""

    delivery_id: str
    endpoint_id: str
    url: str
    mode: str
    event_id: str
    event_type: str
    body: bytes
    secrets: tuple[str, ...]


QUEUE = retries.Queue("webhook_deliveries")


def claim_due(db: sqlite_utils.Database, boot_id: str, config: Config, limit: int,
              endpoint_id: str | None = None, mode: str | None = None) -> list[Claimed]:
    """Lease up to `limit` due deliveries, at most one per endpoint, oldest first; only
    those of `endpoint_id`, or of `mode`, when given.

    Endpoints are few and deliveries can pile up by the thousand behind a slow one, so the
    lookups go endpoint by endpoint, each an index seek: the time spent under the write
    lock does not grow with a backlog.
    """
    now = now_iso()
    with write_txn(db):
        due = [row for endpoint in _active_endpoints(db, endpoint_id, mode)
               if (row := _oldest_due(db, endpoint, boot_id, now))]
        if not due:
            return []
        due.sort(key=lambda row: (row["next_attempt_at"], row["id"]))
        ids = json.dumps([row["id"] for row in due[:limit]])
        leased = QUEUE.claim(db, "SELECT value FROM json_each(?)", (ids,),
                             deadline_seconds=config.webhooks.timeout_seconds, boot_id=boot_id)
        leased.sort(key=lambda row: (row["next_attempt_at"], row["id"]))
        return [_claimed(db, row) for row in leased]


def _active_endpoints(db: sqlite_utils.Database, endpoint_id: str | None,
                      mode: str | None) -> list[str]:
    sql = "SELECT id FROM webhook_endpoints WHERE status = 'active' AND deleted_at IS NULL"
    params = ()
    if endpoint_id:
        sql, params = sql + " AND id = ?", (endpoint_id,)
    elif mode:
        sql, params = sql + " AND mode = ?", (mode,)
    return [row["id"] for row in db.query(sql, params)]


def _oldest_due(db: sqlite_utils.Database, endpoint_id: str, boot_id: str,
                now: str) -> dict | None:
    """The endpoint's oldest due delivery, unless a sender of this process is delivering
    to it right now."""
    held, held_params = QUEUE.held_here(now, boot_id)
    if query_one(db, f"SELECT 1 AS busy FROM webhook_deliveries WHERE endpoint_id = ? "
                     f"AND {held} AND status = 'pending' LIMIT 1",
                 (endpoint_id, *held_params)):
        return None
    claimable, params = QUEUE.claimable(now, boot_id)
    return query_one(db, f"""SELECT id, next_attempt_at FROM webhook_deliveries
        WHERE endpoint_id = ? AND status = 'pending' AND {claimable}
        ORDER BY next_attempt_at, id LIMIT 1""", (endpoint_id, *params))


def _claimed(db: sqlite_utils.Database, delivery: dict) -> Claimed:
    endpoint = query_one(db, "SELECT url, secret, previous_secret, previous_secret_expires_at"
                             " FROM webhook_endpoints WHERE id = ?", (delivery["endpoint_id"],))
    event = render_event(query_one(db, "SELECT * FROM events WHERE id = ?",
                                   (delivery["event_id"],)))
    return Claimed(delivery["id"], delivery["endpoint_id"], endpoint["url"], delivery["mode"],
                   event["id"], event["type"], json.dumps(event).encode(),
                   tuple(webhooks.signing_secrets(endpoint)))


def send(claimed: Claimed, config: Config) -> outbound.PostResult:
    """POST one signed delivery; `webhook-timestamp` is this attempt's time."""
    headers = webhook_signatures.headers(list(claimed.secrets), claimed.event_id,
                                         claimed.event_type, int(clock.time()), claimed.body)
    return outbound.post(claimed.url, claimed.body, headers,
                         timeout=config.webhooks.timeout_seconds,
                         targets=Targets(claimed.mode, config.webhooks))


def record(db: sqlite_utils.Database, claimed: Claimed, result: outbound.PostResult,
           config: Config) -> str:
    """Settle an attempt: success, a retry at the next step of the schedule, or failed.

    Returns the delivery's new status. A failure also ages the endpoint: failing without a
    success for `disable_after_hours` disables it and emails the shop owner.
    """
    now = utcnow()
    with write_txn(db):
        db.execute("INSERT INTO webhook_attempts (delivery_id, attempted_at, response_code, "
                   "duration_ms, error, response_body) VALUES (?, ?, ?, ?, ?, ?)",
                   (claimed.delivery_id, iso(now), result.status, result.duration_ms,
                    result.error, result.body[:outbound.MAX_KEPT_BODY]))
        row = query_one(db, "SELECT * FROM webhook_deliveries WHERE id = ?",
                        (claimed.delivery_id,))
        status = row["status"]
        db.execute("UPDATE webhook_deliveries SET lease_owner = NULL, lease_until = NULL, "
                   "last_response_code = ?, last_error = ? WHERE id = ?",
                   (result.status, result.error, claimed.delivery_id))
        if status != "pending":
            return status  # cancelled while in flight (endpoint deleted): nothing to settle
        status = _settle(db, row, result, now, config)
        _age_endpoint(db, claimed.endpoint_id, result.ok, now, config)
    return status


def _settle(db, row: dict, result: outbound.PostResult, now, config: Config) -> str:
    retry = None if result.ok else retries.next_attempt(config.webhooks.retry_schedule,
                                                         row["attempts"], now)
    if retry:
        status, due, completed = "pending", iso(retry), None
    else:
        status, due, completed = "succeeded" if result.ok else "failed", None, iso(now)
    db.execute("UPDATE webhook_deliveries SET status = ?, next_attempt_at = ?, completed_at = ?"
               " WHERE id = ?", (status, due, completed, row["id"]))
    return status


def _age_endpoint(db, endpoint_id: str, ok: bool, now, config: Config) -> None:
    if ok:
        db.execute("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = ?",
                   (endpoint_id,))
        return
    db.execute("UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, ?) "
               "WHERE id = ?", (iso(now), endpoint_id))
    endpoint = query_one(db, "SELECT * FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
    limit = iso(now - timedelta(hours=config.webhooks.disable_after_hours))
    if endpoint["status"] == "active" and endpoint["failing_since"] <= limit:
        db.execute("UPDATE webhook_endpoints SET status = 'disabled', disabled_at = ?, "
                   "updated_at = ? WHERE id = ?", (iso(now), iso(now), endpoint_id))
        _email_owner(db, endpoint, config)


def _email_owner(db, endpoint: dict, config: Config) -> None:
    if not config.shop.owner_email:
        return
    hours = config.webhooks.disable_after_hours
    emails.queue(
        db, mode=endpoint["mode"], kind="webhook_disabled", to=config.shop.owner_email,
        related_id=endpoint["id"],
        subject=f"Webhook endpoint disabled: {endpoint['url']}",
        body=(f"The webhook endpoint {endpoint['id']} ({endpoint['url']}, {endpoint['mode']} "
              f"mode) has failed every delivery for {hours} hours, so {config.shop.name} "
              f"stopped sending to it. Its pending deliveries are kept.\n\n"
              f"Fix the receiver, then re-enable the endpoint in the dashboard or with\n"
              f"PATCH /v1/webhooks/{endpoint['id']} {{\"status\": \"active\"}}.\n"))


def deliver_due(db: sqlite_utils.Database, config: Config, boot_id: str, submit,
                limit: int = 16, keep_going: Callable[[], bool] = lambda: True,
                mode: str | None = None) -> int:
    """Start a sender for each endpoint (of `mode`, when given) with due deliveries, up to
    `limit` endpoints.

    `submit(work)` runs `work(db)` now or on a sender thread. Each sender drains its
    endpoint's due deliveries one after another, up to MAX_SENDS_IN_A_ROW, so a backlog
    goes out at the receiver's pace rather than one delivery per tick; it stops early once
    `keep_going()` is false (the server is shutting down), leaving the rest for next time.
    """
    claimed = claim_due(db, boot_id, config, limit, mode=mode)
    for item in claimed:
        submit(draining(
            item, lambda db, this: record(db, this, send(this, config), config),
            lambda db, this: claim_due(db, boot_id, config, 1, this.endpoint_id),
            keep_going))
    return len(claimed)


MAX_SENDS_IN_A_ROW = 100


def draining(first, deliver: Callable, claim_next: Callable, keep_going: Callable[[], bool]):
    """A sender's work: deliver `first`, then what `claim_next(db, item)` claims for the same
    target (a list of at most one), until there is none, MAX_SENDS_IN_A_ROW were sent or
    `keep_going()` turns false."""
    def drain(db: sqlite_utils.Database) -> int:
        item, sent = first, 0
        while item is not None:
            deliver(db, item)
            sent += 1
            more = claim_next(db, item) if sent < MAX_SENDS_IN_A_ROW and keep_going() else []
            item = more[0] if more else None
        return sent
    return drain


class TestSendSlots:
    """At most `max(1, server.threads // 4)` test sends at once; more are refused (429)."""

    def __init__(self, config: Config):
        self.size = max(1, config.server.threads // 4)
        self._free = threading.BoundedSemaphore(self.size)
        self._retry_after = str(config.webhooks.timeout_seconds)

    @contextmanager
    def hold(self):
        """A slot for one test send, or RateLimited at once when none is free."""
        if not self._free.acquire(blocking=False):
            raise RateLimited(f"Too many test sends at once: the server makes at most "
                              f"{self.size} at a time; try again in {self._retry_after} "
                              f"seconds",
                              headers={"Retry-After": self._retry_after})
        try:
            yield
        finally:
            self._free.release()


def send_test(scope: Scope, endpoint_id: str, body: dict, slots: TestSendSlots) -> dict:
    """Send a synthetic, signed event now and report how the endpoint answered."""
    event_type = webhooks.TEST.validate(body)["event"]
    endpoint = webhooks.require(scope, endpoint_id)
    event = {"id": new_id("evt"), "type": event_type, "created_at": now_iso(),
             "mode": scope.mode, "data": {"object": _sample_object(event_type), "test": True}}
    claimed = Claimed("", endpoint_id, endpoint["url"], scope.mode, event["id"], event_type,
                      json.dumps(event).encode(), tuple(webhooks.signing_secrets(endpoint)))
    with slots.hold():
        result = send(claimed, scope.config)
    return {"delivered": result.ok, "response_code": result.status,
            "delivery_ms": result.duration_ms}


def _sample_object(event_type: str) -> dict:
    """A small object of the event's kind, clearly marked as a test."""
    kind = event_type.split(".")[0]
    prefix = {"order": "ord", "product": "prod", "payout": "po", "customer": "cus",
              "license": "lic", "subscription": "sub"}[kind]
    return {"id": f"{prefix}_test", "object": kind, "test": True}
