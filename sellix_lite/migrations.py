"""Schema migrations, applied in order by `serve` and `migrate`.

A migration is never edited once released: a change to the schema is a new function at the
end. The schema version is the number of migrations applied.
"""

from __future__ import annotations

import json

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .db import enable_wal
from .ids import new_id

migrations = Migrations("sellix_lite")
_NAMES: list[str] = []


class SchemaTooNew(Exception):
    """The database was migrated by a newer sellix-lite than this one."""


def migration(func):
    """Register `func` as the next migration."""
    _NAMES.append(func.__name__)
    return migrations()(func)


def _run(db: sqlite_utils.Database, *statements: str) -> None:
    for statement in statements:
        db.execute(statement)


@migration
def m0001_api_keys(db):
    _run(
        db,
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            name TEXT NOT NULL,
            abilities TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            last_used_at TEXT,
            revoked_at TEXT
        )""",
        "CREATE INDEX api_keys_mode ON api_keys (mode, id)",
        """CREATE TABLE settings (
            name TEXT PRIMARY KEY,
            value TEXT NOT NULL
        )""",
    )


@migration
def m0002_idempotency(db):
    _run(
        db,
        """CREATE TABLE idempotency_keys (
            api_key_id TEXT NOT NULL REFERENCES api_keys (id),
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
            boot_id TEXT NOT NULL,
            effects_committed INTEGER NOT NULL DEFAULT 0,
            status INTEGER,
            headers TEXT,
            body BLOB,
            created_at TEXT NOT NULL,
            PRIMARY KEY (api_key_id, key)
        )""",
        "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
    )


@migration
def m0003_catalog(db):
    _run(
        db,
        """CREATE TABLE products (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            name TEXT NOT NULL,
            slug TEXT NOT NULL,
            type TEXT NOT NULL,
            price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
            currency TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            stock INTEGER CHECK (stock >= 0),
            status TEXT NOT NULL CHECK (status IN ('active', 'draft', 'archived')),
            delivery_text TEXT,
            dynamic_url TEXT,
            interval TEXT CHECK (interval IN ('month', 'year')),
            file_name TEXT,
            file_size INTEGER,
            file_sha256 TEXT,
            file_updated_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            archived_at TEXT,
            UNIQUE (mode, slug)
        )""",
        "CREATE INDEX products_list ON products (mode, id)",
        "CREATE INDEX products_by_status ON products (mode, status, id)",
        "CREATE INDEX products_by_type ON products (mode, type, id)",
        # One row per key; UNIQUE keeps a key out of a pool twice, and the single order_id
        # column means a key can belong to one order only.
        """CREATE TABLE license_keys (
            id INTEGER PRIMARY KEY,
            product_id TEXT NOT NULL REFERENCES products (id),
            key TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'available'
                CHECK (state IN ('available', 'reserved', 'delivered')),
            order_id TEXT,
            created_at TEXT NOT NULL,
            UNIQUE (product_id, key),
            CHECK ((state = 'available') = (order_id IS NULL))
        )""",
        "CREATE INDEX license_keys_by_state ON license_keys (product_id, state, id)",
        "CREATE INDEX license_keys_by_order ON license_keys (order_id)",
        # A delivered key is final: it can never move to another order or back to the pool.
        """CREATE TRIGGER license_keys_delivered_are_final
           BEFORE UPDATE ON license_keys WHEN OLD.state = 'delivered'
           BEGIN SELECT RAISE(ABORT, 'a delivered license key can not change'); END""",
        """CREATE TRIGGER license_keys_delivered_stay
           BEFORE DELETE ON license_keys WHEN OLD.state = 'delivered'
           BEGIN SELECT RAISE(ABORT, 'a delivered license key can not be deleted'); END""",
        # products.stock of a license-key product is the number of available keys, kept by
        # the database itself so no code path can let it drift.
        """CREATE TRIGGER license_keys_stock_insert AFTER INSERT ON license_keys
           WHEN NEW.state = 'available'
           BEGIN UPDATE products SET stock = stock + 1 WHERE id = NEW.product_id; END""",
        """CREATE TRIGGER license_keys_stock_update AFTER UPDATE OF state ON license_keys
           WHEN (OLD.state = 'available') != (NEW.state = 'available')
           BEGIN UPDATE products
                 SET stock = stock + (CASE WHEN NEW.state = 'available' THEN 1 ELSE -1 END)
                 WHERE id = NEW.product_id; END""",
        """CREATE TRIGGER license_keys_stock_delete AFTER DELETE ON license_keys
           WHEN OLD.state = 'available'
           BEGIN UPDATE products SET stock = stock - 1 WHERE id = OLD.product_id; END""",
        # The outbox: every event is written in the transaction of the change it reports.
        """CREATE TABLE events (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            type TEXT NOT NULL,
            data TEXT NOT NULL,
            created_at TEXT NOT NULL
        )""",
        "CREATE INDEX events_list ON events (mode, id)",
        "CREATE INDEX events_by_type ON events (mode, type, id)",
    )


@migration
def m0004_webhooks_and_email(db):
    _run(
        db,
        """CREATE TABLE webhook_endpoints (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            description TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
            secret TEXT NOT NULL,
            previous_secret TEXT,
            previous_secret_expires_at TEXT,
            failing_since TEXT,
            disabled_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            deleted_at TEXT
        )""",
        "CREATE INDEX webhook_endpoints_list ON webhook_endpoints (mode, id)",
        # One delivery per endpoint and event; attempts are its history.
        """CREATE TABLE webhook_deliveries (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            endpoint_id TEXT NOT NULL REFERENCES webhook_endpoints (id),
            event_id TEXT NOT NULL REFERENCES events (id),
            status TEXT NOT NULL
                CHECK (status IN ('pending', 'succeeded', 'failed', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            lease_owner TEXT,
            lease_until TEXT,
            last_response_code INTEGER,
            last_error TEXT,
            created_at TEXT NOT NULL,
            completed_at TEXT,
            UNIQUE (endpoint_id, event_id)
        )""",
        "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)",
        "CREATE INDEX webhook_deliveries_of_endpoint ON webhook_deliveries (endpoint_id, id)",
        """CREATE TABLE webhook_attempts (
            id INTEGER PRIMARY KEY,
            delivery_id TEXT NOT NULL REFERENCES webhook_deliveries (id),
            attempted_at TEXT NOT NULL,
            response_code INTEGER,
            duration_ms INTEGER NOT NULL,
            error TEXT,
            response_body TEXT
        )""",
        "CREATE INDEX webhook_attempts_of_delivery ON webhook_attempts (delivery_id, id)",
        # The email outbox: every message is a row first, then sent by a job.
        """CREATE TABLE emails (
            id TEXT PRIMARY KEY,
            mode TEXT CHECK (mode IN ('live', 'test')),
            kind TEXT NOT NULL,
            to_address TEXT NOT NULL,
            subject TEXT NOT NULL,
            body_text TEXT NOT NULL,
            related_id TEXT,
            status TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'outbox', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at TEXT,
            lease_owner TEXT,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT
        )""",
        "CREATE INDEX emails_due ON emails (status, next_attempt_at)",
    )


@migration
def m0005_orders(db):
    _run(
        db,
        """CREATE TABLE customers (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            email TEXT NOT NULL,
            first_seen_at TEXT NOT NULL,
            last_seen_at TEXT NOT NULL,
            UNIQUE (mode, email)
        )""",
        "CREATE INDEX customers_list ON customers (mode, id)",
        """CREATE TABLE orders (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            status TEXT NOT NULL CHECK (status IN ('pending', 'awaiting_payment', 'paid',
                'delivering', 'completed', 'failed', 'refunded')),
            product_id TEXT NOT NULL REFERENCES products (id),
            product_name TEXT NOT NULL,
            product_type TEXT NOT NULL,
            qty INTEGER NOT NULL CHECK (qty > 0),
            unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0),
            total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
            currency TEXT NOT NULL,
            customer_id TEXT NOT NULL REFERENCES customers (id),
            customer_email TEXT NOT NULL,
            shipping_address TEXT,
            chain TEXT NOT NULL,
            asset TEXT NOT NULL,
            invoice_id TEXT UNIQUE,
            pay_address TEXT,
            asset_amount TEXT,
            expires_at TEXT,
            paid_cents INTEGER NOT NULL DEFAULT 0,
            asset_paid TEXT,
            tx_hash TEXT,
            refunded_cents INTEGER NOT NULL DEFAULT 0,
            delivery_state TEXT NOT NULL DEFAULT 'pending' CHECK (delivery_state IN
                ('pending', 'delivered', 'failed', 'awaiting_shipment', 'shipped')),
            delivery TEXT,
            delivered_at TEXT,
            failure_reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            paid_at TEXT,
            CHECK (paid_cents >= 0 AND refunded_cents >= 0 AND refunded_cents <= paid_cents)
        )""",
        "CREATE INDEX orders_list ON orders (mode, id)",
        "CREATE INDEX orders_by_status ON orders (mode, status, id)",
        "CREATE INDEX orders_by_email ON orders (mode, customer_email, id)",
        "CREATE INDEX orders_by_customer ON orders (customer_id, id)",
        # The in-process BlockPN sandbox (test mode) keeps its ledger here; the HTTP
        # simulator keeps the same tables in a file of its own.
        """CREATE TABLE sandbox_invoices (
            id TEXT PRIMARY KEY,
            reference TEXT NOT NULL UNIQUE,
            chain TEXT NOT NULL,
            asset TEXT NOT NULL,
            address TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            currency TEXT NOT NULL,
            asset_amount TEXT NOT NULL,
            paid_cents INTEGER NOT NULL DEFAULT 0,
            asset_paid TEXT NOT NULL DEFAULT '0',
            tx_hash TEXT,
            status TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'expired')),
            callback_url TEXT,
            expires_at TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """CREATE TABLE sandbox_payouts (
            id TEXT PRIMARY KEY,
            reference TEXT NOT NULL UNIQUE,
            chain TEXT NOT NULL,
            asset TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            currency TEXT NOT NULL,
            address TEXT NOT NULL,
            memo TEXT,
            status TEXT NOT NULL CHECK (status IN ('queued', 'broadcast', 'confirmed', 'failed')),
            tx_hash TEXT,
            failure_reason TEXT,
            created_at TEXT NOT NULL,
            broadcast_at TEXT,
            confirmed_at TEXT
        )""",
        """CREATE TABLE sandbox_refunds (
            id TEXT PRIMARY KEY,
            reference TEXT NOT NULL UNIQUE,
            invoice_id TEXT NOT NULL REFERENCES sandbox_invoices (id),
            amount_cents INTEGER NOT NULL,
            currency TEXT NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed')),
            destination_tx TEXT,
            failure_reason TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
    )


@migration
def m0006_refunds_and_delivery_kinds(db):
    _run(
        db,
        """CREATE TABLE refunds (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            order_id TEXT NOT NULL REFERENCES orders (id),
            amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
            reason TEXT,
            note TEXT,
            status TEXT NOT NULL CHECK (status IN ('processing', 'succeeded', 'failed')),
            provider_refund_id TEXT,
            destination_tx TEXT,
            failure_reason TEXT,
            next_check_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX refunds_of_order ON refunds (order_id, id)",
        "CREATE INDEX refunds_list ON refunds (mode, id)",
        "CREATE INDEX refunds_due ON refunds (status, next_check_at)",
        # Dynamic products sign their calls like webhooks, with a secret of their own.
        "ALTER TABLE products ADD COLUMN dynamic_secret TEXT",
        # Deliveries that call out (dynamic) are retried on the webhook schedule.
        "ALTER TABLE orders ADD COLUMN delivery_attempts INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE orders ADD COLUMN next_delivery_at TEXT",
        "ALTER TABLE orders ADD COLUMN subscription_id TEXT",
        "CREATE INDEX orders_delivering ON orders (status, next_delivery_at)",
        """CREATE TABLE subscriptions (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            product_id TEXT NOT NULL REFERENCES products (id),
            customer_id TEXT NOT NULL REFERENCES customers (id),
            customer_email TEXT NOT NULL,
            interval TEXT NOT NULL CHECK (interval IN ('month', 'year')),
            status TEXT NOT NULL CHECK (status IN ('active', 'expired')),
            chain TEXT NOT NULL,
            asset TEXT NOT NULL,
            current_period_end TEXT NOT NULL,
            renewal_order_id TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        "CREATE INDEX subscriptions_list ON subscriptions (mode, id)",
        "CREATE INDEX subscriptions_due ON subscriptions (status, current_period_end)",
    )


@migration
def m0007_payouts(db):
    _run(
        db,
        """CREATE TABLE payouts (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            status TEXT NOT NULL CHECK (status IN ('queued', 'broadcast', 'confirmed', 'failed')),
            chain TEXT NOT NULL,
            asset TEXT NOT NULL,
            amount_cents INTEGER NOT NULL CHECK (amount_cents > 0),
            currency TEXT NOT NULL,
            destination_address TEXT NOT NULL,
            memo TEXT,
            provider_payout_id TEXT,
            tx_hash TEXT,
            failure_reason TEXT,
            next_check_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            broadcast_at TEXT,
            confirmed_at TEXT
        )""",
        "CREATE INDEX payouts_list ON payouts (mode, id)",
        "CREATE INDEX payouts_by_status ON payouts (mode, status, id)",
        "CREATE INDEX payouts_due ON payouts (status, next_check_at)",
    )


@migration
def m0008_idempotency_for_every_principal(db):
    # Idempotency keys are scoped to who sent them: an API key or the dashboard's forms,
    # so the reference to api_keys goes (SQLite changes a constraint by rebuilding).
    _run(
        db,
        """CREATE TABLE idempotency_keys_new (
            api_key_id TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('in_flight', 'done')),
            boot_id TEXT NOT NULL,
            effects_committed INTEGER NOT NULL DEFAULT 0,
            status INTEGER,
            headers TEXT,
            body BLOB,
            created_at TEXT NOT NULL,
            PRIMARY KEY (api_key_id, key)
        )""",
        "INSERT INTO idempotency_keys_new SELECT * FROM idempotency_keys",
        "DROP TABLE idempotency_keys",
        "ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys",
        "CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at)",
    )


@migration
def m0009_delivery_claim_indexes(db):
    # Claiming a delivery looks up one endpoint's oldest due delivery and whether one of
    # its deliveries is in flight; both must stay index seeks when a backlog builds up.
    _run(
        db,
        "CREATE INDEX webhook_deliveries_next ON webhook_deliveries "
        "(endpoint_id, status, next_attempt_at, id)",
        "CREATE INDEX webhook_deliveries_leased ON webhook_deliveries "
        "(endpoint_id, lease_owner, lease_until) WHERE lease_owner IS NOT NULL",
    )


@migration
def m0010_late_payments(db):
    # A payment that reached the order's invoice after it expired (shown as `payment.late`);
    # the index serves the poll of recently expired orders, which may still be paid late.
    _run(
        db,
        "ALTER TABLE orders ADD COLUMN paid_late INTEGER NOT NULL DEFAULT 0",
        "CREATE INDEX orders_expired ON orders (status, expires_at) WHERE paid_at IS NULL",
    )


@migration
def m0011_key_pool_view(db):
    # The key pool as the API lists it: a `key_` id that sorts like the row id (so the
    # list's keyset pagination works on it), the product's mode, and a delivered key shown
    # as `sold`.
    _run(
        db,
        """CREATE VIEW license_key_pool AS
           SELECT printf('key_%012d', k.id) AS id, p.mode AS mode, k.product_id, k.key,
                  CASE k.state WHEN 'delivered' THEN 'sold' ELSE k.state END AS status,
                  k.order_id, k.created_at
           FROM license_keys k JOIN products p ON p.id = k.product_id""",
    )


@migration
def m0012_low_stock_threshold(db):
    # The stock at or below which the owner is told (null: never).
    _run(
        db,
        "ALTER TABLE products ADD COLUMN low_stock_threshold INTEGER "
        "CHECK (low_stock_threshold >= 0)",
    )


@migration
def m0013_licenses(db):
    # One license per delivered key: what the merchant's software checks the key against.
    # A product's `activation_limit` is copied to the licenses it delivers.
    _run(
        db,
        "ALTER TABLE products ADD COLUMN activation_limit INTEGER CHECK (activation_limit >= 1)",
        """CREATE TABLE licenses (
               id TEXT PRIMARY KEY, mode TEXT NOT NULL, key TEXT NOT NULL,
               status TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'expired')),
               product_id TEXT NOT NULL REFERENCES products (id),
               order_id TEXT NOT NULL REFERENCES orders (id),
               customer_email TEXT NOT NULL,
               activation_limit INTEGER CHECK (activation_limit >= 1),
               activations INTEGER NOT NULL DEFAULT 0, expires_at TEXT,
               created_at TEXT NOT NULL, updated_at TEXT NOT NULL)""",
        "CREATE INDEX licenses_order ON licenses (order_id)",
        "CREATE INDEX licenses_product ON licenses (product_id, id)",
        "CREATE INDEX licenses_email ON licenses (mode, customer_email, id)",
        "CREATE INDEX licenses_key ON licenses (key)",
    )
    _license_delivered_keys(db)
    _grant_to_keys_with_every_ability(db, ABILITIES_BEFORE_LICENSES,
                                      ["licenses:read", "licenses:write"])


# Every ability before licenses: a key holding them all was minted with "every ability".
ABILITIES_BEFORE_LICENSES = frozenset({
    "products:read", "products:write", "orders:read", "orders:write", "customers:read",
    "payouts:read", "payouts:write", "webhooks:read", "webhooks:write", "api_keys:read",
    "api_keys:write"})


def _grant_to_keys_with_every_ability(db, every: frozenset[str], added: list[str]) -> None:
    """Give `added` to each key that held `every` ability there was: "every ability"
    includes the ones added later, so a merchant's all-powerful key keeps reaching
    everything."""
    for key_id, abilities in db.execute("SELECT id, abilities FROM api_keys").fetchall():
        held = json.loads(abilities)
        if every <= set(held):
            db.execute("UPDATE api_keys SET abilities = ? WHERE id = ?",
                       (json.dumps(held + [a for a in added if a not in held]), key_id))


def _license_delivered_keys(db) -> None:
    """The license of each key delivered before licenses existed (disabled when its order
    was refunded in full), dated from its delivery; no event announces them."""
    rows = db.execute(
        """SELECT k.key, k.product_id, o.id, o.customer_email, o.mode, o.status,
                  coalesce(o.delivered_at, o.updated_at)
           FROM license_keys k JOIN orders o ON o.id = k.order_id
           WHERE k.state = 'delivered' ORDER BY k.id""").fetchall()
    db.conn.executemany(
        "INSERT INTO licenses (id, key, status, product_id, order_id, customer_email, mode, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(new_id("lic"), key, "disabled" if status == "refunded" else "active", product_id,
          order_id, email, mode, at, at)
         for key, product_id, order_id, email, mode, status, at in rows])


@migration
def m0014_license_instances_and_replacements(db):
    # The instances (machines) that activated a license; one per fingerprint when given.
    # The lease signing key lives here so a backup restores it. A replaced key is burned:
    # it stays delivered to its order (a delivered key never changes) and is recorded here.
    _run(
        db,
        """CREATE TABLE license_instances (
               id TEXT PRIMARY KEY, license_id TEXT NOT NULL REFERENCES licenses (id),
               mode TEXT NOT NULL, name TEXT NOT NULL, fingerprint TEXT,
               created_at TEXT NOT NULL, UNIQUE (license_id, fingerprint))""",
        """CREATE TABLE signing_keys (
               kid TEXT PRIMARY KEY, algorithm TEXT NOT NULL, private_key TEXT NOT NULL,
               public_key TEXT NOT NULL, created_at TEXT NOT NULL)""",
        """CREATE TABLE burned_keys (
               key_id INTEGER PRIMARY KEY REFERENCES license_keys (id),
               order_id TEXT NOT NULL REFERENCES orders (id),
               replacement_key_id INTEGER NOT NULL REFERENCES license_keys (id),
               reason TEXT, burned_at TEXT NOT NULL)""",
        "CREATE INDEX burned_keys_order ON burned_keys (order_id)",
        "DROP VIEW license_key_pool",
        """CREATE VIEW license_key_pool AS
           SELECT printf('key_%012d', k.id) AS id, p.mode AS mode, k.product_id, k.key,
                  CASE WHEN b.key_id IS NOT NULL THEN 'burned'
                       WHEN k.state = 'delivered' THEN 'sold' ELSE k.state END AS status,
                  k.order_id, k.created_at
           FROM license_keys k JOIN products p ON p.id = k.product_id
           LEFT JOIN burned_keys b ON b.key_id = k.id""",
    )


@migration
def m0015_coupons_fields_metadata_blacklist(db):
    # Coupons and their redemptions (one per order; given back when the order fails
    # unpaid), custom checkout fields and their values, metadata on products, orders,
    # customers and coupons, and the blacklist with the checkouts it refused. An order's
    # subtotal is its total before the discount: for every order so far, the same.
    _run(
        db,
        """CREATE TABLE coupons (
               id TEXT PRIMARY KEY, mode TEXT NOT NULL, code TEXT NOT NULL,
               code_key TEXT NOT NULL,
               percent_off INTEGER CHECK (percent_off BETWEEN 1 AND 100),
               amount_off_cents INTEGER CHECK (amount_off_cents >= 1), currency TEXT,
               product_ids TEXT, max_redemptions INTEGER CHECK (max_redemptions >= 1),
               redemptions INTEGER NOT NULL DEFAULT 0 CHECK (redemptions >= 0),
               once_per_customer INTEGER NOT NULL DEFAULT 0,
               starts_at TEXT, expires_at TEXT,
               status TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
               metadata TEXT NOT NULL DEFAULT '{}',
               created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
               UNIQUE (mode, code_key),
               CHECK ((percent_off IS NULL) != (amount_off_cents IS NULL)),
               CHECK ((amount_off_cents IS NULL) = (currency IS NULL)),
               CHECK (max_redemptions IS NULL OR redemptions <= max_redemptions))""",
        "CREATE INDEX coupons_list ON coupons (mode, id)",
        """CREATE TABLE coupon_redemptions (
               order_id TEXT PRIMARY KEY REFERENCES orders (id),
               coupon_id TEXT NOT NULL REFERENCES coupons (id),
               customer_email TEXT NOT NULL, created_at TEXT NOT NULL)""",
        "CREATE INDEX coupon_redemptions_by_buyer ON coupon_redemptions "
        "(coupon_id, customer_email)",
        "ALTER TABLE orders ADD COLUMN subtotal_cents INTEGER CHECK (subtotal_cents >= 0)",
        "UPDATE orders SET subtotal_cents = total_cents",
        "ALTER TABLE orders ADD COLUMN discount_cents INTEGER NOT NULL DEFAULT 0 "
        "CHECK (discount_cents >= 0)",
        "ALTER TABLE orders ADD COLUMN coupon TEXT",
        "ALTER TABLE orders ADD COLUMN custom_fields TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE orders ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE orders ADD COLUMN customer_ip TEXT",
        "ALTER TABLE products ADD COLUMN custom_fields TEXT NOT NULL DEFAULT '[]'",
        "ALTER TABLE products ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE customers ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
        """CREATE TABLE blacklist (
               id TEXT PRIMARY KEY, mode TEXT NOT NULL,
               type TEXT NOT NULL CHECK (type IN ('email', 'email_domain', 'ip', 'country')),
               value TEXT NOT NULL, note TEXT, created_at TEXT NOT NULL)""",
        "CREATE INDEX blacklist_list ON blacklist (mode, id)",
        """CREATE TABLE blacklist_refusals (
               id TEXT PRIMARY KEY, mode TEXT NOT NULL,
               rule_id TEXT NOT NULL REFERENCES blacklist (id) ON DELETE CASCADE,
               customer_email TEXT, customer_ip TEXT, country TEXT, product_id TEXT,
               surface TEXT NOT NULL, created_at TEXT NOT NULL)""",
        "CREATE INDEX blacklist_refusals_by_rule ON blacklist_refusals (rule_id, id)",
    )
    _grant_to_keys_with_every_ability(
        db, ABILITIES_BEFORE_LICENSES | {"licenses:read", "licenses:write"},
        ["customers:write", "coupons:read", "coupons:write", "blacklist:read",
         "blacklist:write"])


@migration
def m0016_subscription_cancelling(db):
    # A subscription can be cancelled: at its period end (no renewal is opened, it expires
    # then) or at once (`canceled`). SQLite can't change a CHECK, so the table is rebuilt;
    # no other table refers to it.
    _run(
        db,
        """CREATE TABLE subscriptions_new (
            id TEXT PRIMARY KEY,
            mode TEXT NOT NULL CHECK (mode IN ('live', 'test')),
            product_id TEXT NOT NULL REFERENCES products (id),
            customer_id TEXT NOT NULL REFERENCES customers (id),
            customer_email TEXT NOT NULL,
            interval TEXT NOT NULL CHECK (interval IN ('month', 'year')),
            status TEXT NOT NULL CHECK (status IN ('active', 'canceled', 'expired')),
            chain TEXT NOT NULL,
            asset TEXT NOT NULL,
            current_period_end TEXT NOT NULL,
            renewal_order_id TEXT,
            cancel_at_period_end INTEGER NOT NULL DEFAULT 0,
            canceled_at TEXT,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""",
        """INSERT INTO subscriptions_new (id, mode, product_id, customer_id, customer_email,
               interval, status, chain, asset, current_period_end, renewal_order_id,
               created_at, updated_at)
           SELECT id, mode, product_id, customer_id, customer_email, interval, status, chain,
                  asset, current_period_end, renewal_order_id, created_at, updated_at
           FROM subscriptions""",
        "DROP TABLE subscriptions",
        "ALTER TABLE subscriptions_new RENAME TO subscriptions",
        "CREATE INDEX subscriptions_list ON subscriptions (mode, id)",
        "CREATE INDEX subscriptions_due ON subscriptions (status, current_period_end)",
        "CREATE INDEX subscriptions_by_email ON subscriptions (mode, customer_email, id)",
    )


@migration
def m0017_product_images(db):
    # A product's image is stored content-addressed (media/<sha256>); the index finds
    # whether any product still shows an image before its file is removed.
    _run(
        db,
        "ALTER TABLE products ADD COLUMN image_sha256 TEXT",
        "ALTER TABLE products ADD COLUMN image_type TEXT "
        "CHECK (image_type IN ('png', 'jpeg', 'webp'))",
        "CREATE INDEX products_by_image ON products (image_sha256) "
        "WHERE image_sha256 IS NOT NULL",
    )


def migrate(db: sqlite_utils.Database) -> int:
    """Apply every pending migration and return the schema version."""
    unknown = [m.name for m in migrations.applied(db) if m.name not in _NAMES]
    if unknown:
        raise SchemaTooNew(
            f"the database has migration {unknown[0]}, which this version of sellix-lite"
            " does not know: it was written by a newer version"
        )
    enable_wal(db)
    migrations.apply(db)
    return schema_version(db)


def schema_version(db: sqlite_utils.Database) -> int:
    """How many migrations this database has applied."""
    return len(migrations.applied(db))


def latest_version() -> int:
    """The schema version this release of sellix-lite creates."""
    return len(_NAMES)
