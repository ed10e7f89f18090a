"""Fulfilment: handing a paid order's goods to the buyer (docs/api.md, "Delivery and
fulfilment").

`start` runs in the payment's transaction: strategies that need no network deliver at once;
a dynamic product's order waits in `delivering` for `deliver_dynamic_due`, which calls the
merchant's URL outside any transaction and retries on the webhook schedule. A physical
order waits in `delivering` (awaiting shipment) until the merchant fulfils it.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils

from .. import outbound, webhook_signatures
from ..clock import iso, now_iso, utcnow
from ..config import Config
from ..db import query_one, write_txn
from ..errors import Unprocessable
from ..product_types import Outcome, strategy_for
from ..validation import Schema, String
from . import custom_fields, emails, orders, retries, subscriptions
from .links import Links
from .scope import Scope
from .urls import Targets
from .webhook_sender import draining

FULFIL = Schema(tracking=String(max_length=500, description="Carrier and tracking number."))
MAX_DYNAMIC_TEXT = 64 * 1024


def start(db: sqlite_utils.Database, order: dict, config: Config, links: Links) -> dict:
    """Deliver a just-paid order now, or queue it for the delivery job; emits `order.paid`.

    `order.paid` carries the order as the payment's transaction leaves it: with the goods
    of the kinds delivered here, `delivering` for the kinds whose goods come later (their
    `order.delivered` carries them).
    """
    outcome = strategy_for(order["product_type"]).deliver(db, order)
    if outcome is None:
        return orders.save(db, order, {"status": "delivering", "next_delivery_at": now_iso(),
                                       "updated_at": now_iso()}, links, "order.paid")
    return record(db, order, outcome, config, links, "order.paid")


def record(db, order: dict, outcome: Outcome, config: Config, links: Links,
           *announced: str) -> dict:
    """Store a delivery outcome with its events and the buyer's email (in a transaction).

    `announced` are events emitted first, with the order as the outcome leaves it.
    """
    if outcome.state == "failed":
        order = orders.save(db, order, {}, links, *announced)
        return orders.fail(db, order, outcome.reason or "delivery failed", links)
    now = now_iso()
    done = outcome.state in ("delivered", "shipped")
    order = orders.save(db, order, {
        "status": "completed" if done else "delivering", "delivery_state": outcome.state,
        "delivery": json.dumps(outcome.content), "delivered_at": now if done else None,
        "next_delivery_at": None, "failure_reason": None, "updated_at": now,
    }, links)
    if done and order["product_type"] == "subscription":
        order = subscriptions.on_delivered(db, order, config)
    order = orders.save(db, order, {}, links, *announced, *(["order.delivered"] if done else []))
    queue_delivery_email(db, order, config, links)
    return order


def queue_delivery_email(db, order: dict, config: Config, links: Links) -> str:
    """Queue the email that hands the buyer their goods and order link."""
    shown = orders.present(db, order, links)
    goods = _describe(shown["delivery"])
    if shown.get("subscription"):
        goods += (f"\n\nYour subscription runs until "
                  f"{shown['subscription']['current_period_end']}; we'll email you a renewal "
                  f"link before then.")
    body = (f"Thank you for your order {order['id']} at {config.shop.name}.\n\n"
            f"{order['qty']} x {order['product_name']}\n\n{goods}\n\n"
            f"Your order page: {links.order_url(order['id'], order['mode'])}\n"
            f"All your orders, keys and licenses: {links.portal_url(order['mode'])}\n")
    return emails.queue(db, mode=order["mode"], kind="order_delivered",
                        to=order["customer_email"], related_id=order["id"],
                        subject=f"Your order from {config.shop.name}: {order['product_name']}",
                        body=body)


def _describe(delivery: dict) -> str:
    if delivery.get("keys"):
        return "Your license keys:\n" + "\n".join(f"  {key}" for key in delivery["keys"])
    if delivery.get("download_url"):
        return (f"Download {delivery.get('file_name', 'your file')}:\n"
                f"  {delivery['download_url']}\n(The link works for a limited time; your "
                f"order page always has a fresh one.)")
    if delivery["state"] == "awaiting_shipment":
        return "We'll ship it to:\n" + _address(delivery["shipping_address"])
    if delivery["state"] == "shipped":
        tracking = delivery.get("tracking") or "no tracking number"
        return f"It has shipped ({tracking}) to:\n" + _address(delivery["shipping_address"])
    return delivery.get("text") or ""


def _address(address: dict) -> str:
    lines = [address["name"], address["line1"], address.get("line2"),
             " ".join(filter(None, [address.get("postal_code"), address["city"]])),
             address.get("state"), address["country"]]
    return "\n".join(f"  {line}" for line in lines if line)


def resend(scope: Scope, order_id: str) -> dict:
    """Send the delivery email of a delivered order again."""
    with write_txn(scope.db):
        order = scope.require("orders", order_id, "order")
        if order["delivery_state"] not in ("delivered", "shipped", "awaiting_shipment"):
            raise Unprocessable(errors={"order": "has not been delivered, so there is no "
                                                 "delivery email to send"})
        queue_delivery_email(scope.db, order, scope.config, scope.links)
    return {"sent_at": now_iso(), "recipient": order["customer_email"],
            "delivery_kind": order["product_type"]}


def fulfil(scope: Scope, order_id: str, body: dict) -> dict:
    """Mark a paid physical order shipped (with its tracking), and tell the buyer."""
    params = FULFIL.validate(body)
    with write_txn(scope.db):
        order = scope.require("orders", order_id, "order")
        if order["status"] != "delivering" or order["delivery_state"] != "awaiting_shipment":
            raise Unprocessable(errors={"order": "only a paid physical order awaiting "
                                                 "shipment can be fulfilled"})
        content = {**json.loads(order["delivery"]), "tracking": params.get("tracking")}
        order = record(scope.db, order, Outcome("shipped", content), scope.config, scope.links)
    return orders.present(scope.db, order, scope.links)


def deliver_dynamic_due(db: sqlite_utils.Database, config: Config, links: Links, submit,
                        limit: int = 10, mode: str | None = None,
                        busy: frozenset = frozenset(),
                        keep_going: Callable[[], bool] = lambda: True) -> int:
    """Start a sender for each dynamic product (of `mode`, when given, and not in `busy`)
    with orders due for delivery, up to `limit` products; returns how many were claimed.

    `submit(work, product_id)` runs `work(db)` now or on a sender thread. As with webhooks,
    one sender calls a product's URL at a time and drains its due orders one after another,
    so a URL that never answers holds one sender and delays only its own orders.
    """
    due = _claim_dynamic(db, config, limit, mode=mode, busy=busy)
    for order in due:
        submit(draining(order, lambda db, this: _deliver_dynamic(db, this, config, links),
                        lambda db, this: _claim_dynamic(db, config, 1,
                                                        product_id=this["product_id"]),
                        keep_going), order["product_id"])
    return len(due)


def _deliver_dynamic(db, order: dict, config: Config, links: Links) -> None:
    product = query_one(db, "SELECT * FROM products WHERE id = ?", (order["product_id"],))
    result = _call(order, product, config, links)
    with write_txn(db):
        current = query_one(db, "SELECT * FROM orders WHERE id = ?", (order["id"],))
        if current["status"] == "delivering":
            _after_call(db, current, product, result, config, links)


# Orders keep no lease owner: a claim pushes `next_delivery_at` past the call's deadline, so
# one left by a process that died is taken up once that time has passed.
DYNAMIC_QUEUE = retries.Queue("orders", attempts="delivery_attempts", due="next_delivery_at",
                              owner=None, until=None)


def _claim_dynamic(db, config: Config, limit: int, *, mode: str | None = None,
                   busy: frozenset = frozenset(), product_id: str | None = None) -> list[dict]:
    """Lease the oldest due order of up to `limit` products (of `mode`, or only
    `product_id`, when given; none in `busy`)."""
    claimable, params = DYNAMIC_QUEUE.claimable(now_iso())
    conditions, params = ["status = 'delivering'", "product_type = 'dynamic'",
                          claimable], list(params)
    for column, value in (("mode", mode), ("product_id", product_id)):
        if value:
            conditions.append(f"{column} = ?")
            params.append(value)
    if busy:
        conditions.append(f"product_id NOT IN ({', '.join('?' * len(busy))})")
        params.extend(sorted(busy))
    with write_txn(db):
        return DYNAMIC_QUEUE.claim(
            db, "SELECT min(id) FROM orders WHERE " + " AND ".join(conditions) +
            " GROUP BY product_id ORDER BY min(next_delivery_at) LIMIT ?", (*params, limit),
            deadline_seconds=config.webhooks.timeout_seconds)


def _call(order: dict, product: dict, config: Config, links: Links) -> outbound.PostResult:
    body = json.dumps(orders.render(order, links)).encode()
    headers = webhook_signatures.headers([product["dynamic_secret"]], order["id"], "order.delivery",
                                         int(utcnow().timestamp()), body)
    return outbound.post(product["dynamic_url"], body, headers,
                         timeout=config.webhooks.timeout_seconds,
                         targets=Targets(order["mode"], config.webhooks),
                         keep_bytes=MAX_DYNAMIC_TEXT)


def _after_call(db, order: dict, product: dict, result: outbound.PostResult, config: Config,
                links: Links) -> None:
    if result.ok:
        record(db, order, Outcome("delivered", {"text": result.body[:MAX_DYNAMIC_TEXT]}),
               config, links)
        return
    retry = retries.next_attempt(config.webhooks.retry_schedule, order["delivery_attempts"],
                                 utcnow())
    if retry:
        db.execute("UPDATE orders SET next_delivery_at = ?, failure_reason = ? WHERE id = ?",
                   (iso(retry), f"the delivery URL failed: {result.error}", order["id"]))
    elif product["delivery_text"]:
        record(db, order, Outcome("delivered", {
            "text": custom_fields.delivery_text(product, order)}), config, links)
    else:
        record(db, order, Outcome("failed", reason=f"the delivery URL failed "
                                                   f"{order['delivery_attempts']} times; last: "
                                                   f"{result.error}"), config, links)
