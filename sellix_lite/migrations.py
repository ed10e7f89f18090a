"""Schema migrations, applied in order by `serve` and `migrate`.

A migration is never edited once released: a change to the schema is a new function at the
end. The schema version is the number of migrations applied.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from .db import enable_wal

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
