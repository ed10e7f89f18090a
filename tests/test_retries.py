"""The one retry policy: the next attempt from a schedule and when to give up, leases that
lapse and that a restart voids, and the three senders that follow it (webhook deliveries,
dynamic deliveries, emails) each giving up after exactly 1 + len(schedule) attempts.

The senders run in process on a migrated database, calling a real receiver on loopback;
each retry is made due by moving its due time back, never by waiting."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta

import pytest

from sellix_lite import db as storage
from sellix_lite.config import config_from_dict
from sellix_lite.migrations import migrate
from sellix_lite.security import Signer
from sellix_lite.services import (
    checkout,
    emails,
    fulfilment,
    products,
    retries,
    sandbox_helpers,
    webhook_sender,
    webhooks,
)
from sellix_lite.services.links import Links
from sellix_lite.services.scope import Scope

from support import Receiver

NOW = datetime(2026, 5, 26, 7, 0, 0, tzinfo=UTC)
PAST = "2000-01-01T00:00:00Z"
FUTURE = "2999-01-01T00:00:00Z"
SCHEDULE = [1, 1]  # two delays: three attempts in all


# --- the policy, table-driven ------------------------------------------------------------

@pytest.mark.parametrize(("schedule", "attempts", "delay"), [
    ((60,), 1, 60),
    ((60,), 2, None),
    ((60, 120, 300), 1, 60),
    ((60, 120, 300), 3, 300),
    ((60, 120, 300), 4, None),
    ((60, 120, 300, 900, 3600, 21600, 86400), 7, 86400),
    ((60, 120, 300, 900, 3600, 21600, 86400), 8, None),
    ((5,) * 20, 20, 5),
    ((5,) * 20, 21, None),
])
def test_next_attempt_follows_the_schedule_then_gives_up(schedule, attempts, delay):
    expected = None if delay is None else NOW + timedelta(seconds=delay)
    assert retries.next_attempt(schedule, attempts, NOW) == expected


@pytest.mark.parametrize("schedule", [(1,), (60, 120, 300), (9,) * 20])
def test_a_schedule_of_n_delays_allows_n_plus_1_attempts(schedule):
    attempts = 1
    while retries.next_attempt(schedule, attempts, NOW) is not None:
        attempts += 1
    assert attempts == len(schedule) + 1


@pytest.mark.parametrize(("deadline", "lapses_after"), [(2, 62), (10, 70), (30, 90)])
def test_a_lease_lapses_a_margin_after_the_deadline(deadline, lapses_after):
    assert retries.lease_expiry(deadline, NOW) == NOW + timedelta(seconds=lapses_after)


# --- leases ------------------------------------------------------------------------------

QUEUES = [retries.Queue("webhook_deliveries"), emails.QUEUE, fulfilment.DYNAMIC_QUEUE]


@pytest.mark.parametrize(("queue", "row", "claimable"), [
    (QUEUES[0], {"due": PAST}, True),
    (QUEUES[0], {"due": FUTURE}, False),
    (QUEUES[0], {"due": PAST, "owner": "me", "until": FUTURE}, False),
    (QUEUES[0], {"due": PAST, "owner": "me", "until": PAST}, True),
    (QUEUES[0], {"due": PAST, "owner": "dead", "until": FUTURE}, True),
    (QUEUES[1], {"due": PAST}, True),
    (QUEUES[1], {"due": FUTURE}, False),
    (QUEUES[1], {"due": FUTURE, "owner": "me"}, False),
    (QUEUES[1], {"due": PAST, "owner": "me"}, True),
    (QUEUES[1], {"due": FUTURE, "owner": "dead"}, True),
    (QUEUES[2], {"due": PAST}, True),
    (QUEUES[2], {"due": FUTURE}, False),
])
def test_who_may_claim(queue, row, claimable):
    condition, params = queue.claimable("2026-05-26T07:00:00Z", "me")
    columns = (f"? AS {queue.due}, ? AS {queue.owner or 'no_owner'}, "
               f"? AS {queue.until or 'no_until'}")
    values = (row["due"], row.get("owner"), row.get("until"))
    with sqlite3.connect(":memory:") as db:
        (found,) = db.execute(f"SELECT count(*) FROM (SELECT {columns}) WHERE {condition}",
                              (*values, *params)).fetchone()
    assert found == int(claimable)


# --- the three senders -------------------------------------------------------------------

@pytest.fixture
def shop(tmp_path):
    """A migrated test-mode shop in process: its scope, config and links."""
    config = config_from_dict({
        "storage": {"path": str(tmp_path / "sellix.db")},
        "webhooks": {"retry_schedule": SCHEDULE, "timeout_seconds": 2},
        "email": {"retry_schedule": SCHEDULE},
    })
    db = storage.connect(config.database_path)
    migrate(db)
    signer = Signer("k" * 32)
    links = Links(config.public_url, signer, 1)
    yield Scope(db, "test", config, links), config, links
    db.close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def inline(db):
    """A `submit` that runs a sender's work now, on this thread."""
    return lambda work, key=None: work(db)


def run_until_settled(db, run, due_sql: str, settled_sql: str, row_id: str) -> None:
    """Run `run()`, making the row due again after each attempt, until it is settled."""
    for _ in range(30):
        run()
        if db.execute(settled_sql, (row_id,)).fetchone()[0]:
            return
        db.execute(due_sql, (PAST, row_id))
    raise AssertionError(f"{row_id} never settled")


def test_a_webhook_delivery_gives_up_after_the_schedule(shop, receiver):
    scope, config, links = shop
    receiver.plan("down", 500)
    endpoint = webhooks.create(scope, {"url": receiver.url("down"), "events": ["*"]})
    products.create(scope, {"name": "Widget", "type": "account", "price_cents": 500,
                            "currency": "USD"})
    (delivery_id,), = scope.db.execute("SELECT id FROM webhook_deliveries WHERE endpoint_id = ?",
                                       (endpoint["id"],)).fetchall()

    run_until_settled(
        scope.db, lambda: webhook_sender.deliver_due(scope.db, config, "boot",
                                                   inline(scope.db)),
        "UPDATE webhook_deliveries SET next_attempt_at = ? WHERE id = ?",
        "SELECT status = 'failed' FROM webhook_deliveries WHERE id = ?", delivery_id)
    assert len(receiver.requests("down")) == len(SCHEDULE) + 1
    assert scope.db.execute("SELECT attempts, lease_owner FROM webhook_deliveries WHERE id = ?",
                            (delivery_id,)).fetchone() == (len(SCHEDULE) + 1, None)


def test_one_webhook_sender_per_endpoint_and_a_restart_takes_over(shop):
    scope, config, _ = shop
    endpoint = webhooks.create(scope, {"url": "http://127.0.0.1:9/hook", "events": ["*"]})
    for name in ("One", "Two"):  # two deliveries due for the same endpoint
        products.create(scope, {"name": name, "type": "account", "price_cents": 500,
                                "currency": "USD"})

    (first,) = webhook_sender.claim_due(scope.db, "boot", config, 10)
    assert first.endpoint_id == endpoint["id"]
    assert webhook_sender.claim_due(scope.db, "boot", config, 10) == []  # one in flight
    (taken_over,) = webhook_sender.claim_due(scope.db, "next-boot", config, 10)
    assert taken_over.delivery_id == first.delivery_id  # the dead process's lease is void
    assert scope.db.execute("SELECT attempts, lease_owner FROM webhook_deliveries WHERE id = ?",
                            (first.delivery_id,)).fetchone() == (2, "next-boot")


def test_a_dynamic_delivery_gives_up_after_the_schedule(shop, receiver):
    scope, config, links = shop
    receiver.plan("dynamic", 500)
    product = products.create(scope, {"name": "Code", "type": "dynamic", "price_cents": 500,
                                      "currency": "USD", "dynamic_url": receiver.url("dynamic")})
    order = checkout.create_order(scope, {"product_id": product["id"],
                                          "customer_email": "buyer@example.com"})
    sandbox_helpers.pay_order(scope, order["id"], {})

    run_until_settled(
        scope.db, lambda: fulfilment.deliver_dynamic_due(scope.db, config, links,
                                                           inline(scope.db)),
        "UPDATE orders SET next_delivery_at = ? WHERE id = ?",
        "SELECT status = 'failed' FROM orders WHERE id = ?", order["id"])
    assert len(receiver.requests("dynamic")) == len(SCHEDULE) + 1
    assert scope.db.execute("SELECT delivery_attempts FROM orders WHERE id = ?",
                            (order["id"],)).fetchone()[0] == len(SCHEDULE) + 1


def queue_email(db, to: str) -> str:
    with storage.write_txn(db):
        return emails.queue(db, mode="test", kind="order_delivered", to=to, subject="Hi",
                            body="Hello")


def send(shop, boot_id: str = "boot") -> int:
    """One run of the email job as the process `boot_id`; returns how many went out."""
    scope, config, _ = shop
    return emails.send_due(scope.db, config.email, "shop@example.org",
                           config.data_dir / "outbox", boot_id)


def test_an_email_gives_up_after_the_schedule(shop):
    scope, config, _ = shop
    email_id = queue_email(scope.db, "a@b.co,c@d.co")  # can't be built: fails every time

    run_until_settled(
        scope.db, lambda: send(shop),
        "UPDATE emails SET next_attempt_at = ? WHERE id = ?",
        "SELECT status = 'failed' FROM emails WHERE id = ?", email_id)
    assert scope.db.execute("SELECT attempts, lease_owner FROM emails WHERE id = ?",
                            (email_id,)).fetchone() == (len(SCHEDULE) + 1, None)


def test_an_email_lease_lapses_after_its_deadline_and_a_restart_voids_it(shop):
    scope, config, _ = shop
    email_id = queue_email(scope.db, "buyer@example.com")
    with storage.write_txn(scope.db):  # claimed by this process, whose sender then died
        (claimed,) = emails.QUEUE.claim(scope.db, "SELECT ?", (email_id,),
                                        deadline_seconds=emails.SMTP_TIMEOUT_SECONDS,
                                        boot_id="boot")
    expiry = datetime.strptime(claimed["next_attempt_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert expiry.replace(tzinfo=UTC) > datetime.now(UTC) + timedelta(
        seconds=emails.SMTP_TIMEOUT_SECONDS)

    assert send(shop, "boot") == 0  # still leased to this process
    assert send(shop, "next-boot") == 1  # a restart takes it over at once
    assert scope.db.execute("SELECT status, attempts, lease_owner FROM emails WHERE id = ?",
                            (email_id,)).fetchone() == ("outbox", 2, None)
    assert (config.data_dir / "outbox" / f"{email_id}.eml").exists()
