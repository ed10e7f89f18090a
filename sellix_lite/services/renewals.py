"""The renewal job: open the next order of each subscription ending soon and email the
buyer its checkout link; expire the subscriptions whose period ended unpaid."""

from __future__ import annotations

import logging
from datetime import datetime

import sqlite_utils

from ..clock import utcnow
from ..config import Config
from ..db import query_one, write_txn
from ..errors import ApiError
from . import checkout, emails, subscriptions
from .links import Links
from .scope import Scope

log = logging.getLogger("sellix_lite.renewals")


def run(db: sqlite_utils.Database, config: Config, links: Links) -> int:
    """Open the due renewals and expire ended subscriptions; returns renewals opened."""
    opened = 0
    for subscription in subscriptions.due_for_renewal(db, config.shop.renewal_notice_days):
        try:
            order = _open_renewal(db, subscription, config, links)
        except ApiError as exc:  # product gone, sold out, provider down: try next run
            log.warning("renewal of %s not opened: %s", subscription["id"], exc.detail)
            continue
        if order["paid_at"] is None:  # a free renewal was paid and delivered as it opened
            with write_txn(db):
                if not _still_renews(db, subscription["id"], order["id"], links):
                    continue
                db.execute("UPDATE subscriptions SET renewal_order_id = ? WHERE id = ?",
                           (order["id"], subscription["id"]))
                _email_renewal(db, subscription, order, config)
        opened += 1
    subscriptions.expire_ended(db)
    return opened


def _still_renews(db, subscription_id: str, order_id: str, links: Links) -> bool:
    """A cancel that came while the renewal was being opened fails it: nothing is charged
    after a cancel."""
    current = query_one(db, "SELECT * FROM subscriptions WHERE id = ?", (subscription_id,))
    if subscriptions.renews(current):
        return True
    subscriptions.fail_renewal(db, order_id, links)
    return False


def _open_renewal(db, subscription: dict, config: Config, links: Links) -> dict:
    end = datetime.fromisoformat(subscription["current_period_end"].replace("Z", "+00:00"))
    minutes_left = max(int((end - utcnow()).total_seconds() // 60), 1)
    scope = Scope(db, subscription["mode"], config, links)
    return checkout.create_order(
        scope, {"product_id": subscription["product_id"],
                "customer_email": subscription["customer_email"],
                "chain": subscription["chain"], "asset": subscription["asset"]},
        subscription_id=subscription["id"], ttl_minutes=minutes_left)


def _email_renewal(db, subscription: dict, order: dict, config: Config) -> None:
    items = order["items"][0]
    emails.queue(
        db, mode=subscription["mode"], kind="subscription_renewal",
        to=subscription["customer_email"], related_id=order["id"],
        subject=f"Renew your subscription: {items['product']}",
        body=(f"Your subscription to {items['product']} at {config.shop.name} ends on "
              f"{subscription['current_period_end']}.\n\nTo keep it, pay the renewal "
              f"before then:\n  {order['payment']['checkout_url']}\n\nIf it is not paid, "
              f"the subscription ends on that date.\n"))
