"""The only place that opens SQLite connections and write transactions.

Each thread (a request, a job run, a CLI command) has its own connection; connections are
never shared across threads. The web server's threads keep theirs open between requests
(`ThreadConnections`): opening one costs more than answering a simple read. Writes that
read first must hold the write lock from the start, so every write transaction is opened
with BEGIN IMMEDIATE: a deferred transaction upgrading its lock fails at once with
"database is locked" and ignores the busy timeout.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import sqlite_utils

BUSY_TIMEOUT_SECONDS = 30
# Writers of this process queue on a lock before they ask SQLite for its write lock.
# SQLite's busy handler waits by sleeping and polling, with sleeps up to 100 ms, which
# turns contention into long tail latencies; a mutex hands the lock over at once. Other
# processes (the CLI, a backup) still meet the busy timeout as before.
_writer_locks: dict[str, threading.Lock] = {}
_writer_locks_guard = threading.Lock()


class Database(sqlite_utils.Database):
    """sqlite-utils' Database with the statements of our hot paths kept to one each.

    sqlite-utils wraps every `query` in a savepoint (three statements instead of one) and
    reads the schema on every `table.insert` or `table.update`; reads and writes of the
    services go through `query`, `insert` and `update` below instead.
    """

    def query(self, sql: str, params=()) -> Iterator[dict]:
        """Run a SELECT now; its rows as dicts, fetched as they are iterated."""
        cursor = self.conn.execute(sql, params or ())
        names = [column[0] for column in cursor.description]
        return (dict(zip(names, row)) for row in cursor)


def connect(path: str | Path) -> Database:
    """Open a connection in autocommit mode: transactions are only the ones we open."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    db = Database(conn)
    # Callables run inside every write transaction just before it commits (see write_txn).
    db.before_commit = []
    db.writer_lock = _writer_lock(str(Path(path).resolve()))
    return db


class ThreadConnections:
    """One connection per thread to one database file, reused from request to request."""

    def __init__(self, path: str | Path):
        self.path = path
        self._local = threading.local()

    def acquire(self) -> Database:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect(self.path)
        return db

    @staticmethod
    def release(db: Database) -> None:
        """Leave the connection as a new one would be: no transaction, no hooks."""
        if db.conn.in_transaction:
            db.conn.rollback()
        db.before_commit.clear()


def _writer_lock(path: str) -> threading.Lock:
    with _writer_locks_guard:
        return _writer_locks.setdefault(path, threading.Lock())


@contextmanager
def write_txn(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run the block as one BEGIN IMMEDIATE transaction: all of it commits, or none.

    The connection's `before_commit` hooks run inside the transaction, so what they write
    commits together with the block (the idempotency layer uses this to note that a
    request has taken effect).
    """
    with db.writer_lock:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            for hook in db.before_commit:
                hook(db)
        except BaseException:
            db.rollback()
            raise
        else:
            db.commit()


def insert(db: sqlite_utils.Database, table: str, row: dict, *,
           unless_taken: tuple[str, ...] = ()) -> bool:
    """INSERT one row of `table` (a dict of column values); returns whether it was.

    With `unless_taken` (the columns of a UNIQUE constraint), a row whose values there are
    already taken is skipped instead of failing.
    """
    columns = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("?" * len(row))
    skip = f" ON CONFLICT ({', '.join(unless_taken)}) DO NOTHING" if unless_taken else ""
    cursor = db.execute(f'INSERT INTO "{table}" ({columns}) VALUES ({marks}){skip}',
                        tuple(row.values()))
    return cursor.rowcount == 1


def update(db: sqlite_utils.Database, table: str, row_id: str, changes: dict) -> None:
    """UPDATE the columns in `changes` of `table`'s row `row_id`."""
    assignments = ", ".join(f'"{name}" = ?' for name in changes)
    db.execute(f'UPDATE "{table}" SET {assignments} WHERE id = ?',
               (*changes.values(), row_id))


def query_one(db: sqlite_utils.Database, sql: str, params=()) -> dict | None:
    """The first row of a query as a dict, or None."""
    return next(iter(db.query(sql, params)), None)


def enable_wal(db: sqlite_utils.Database) -> None:
    """Switch the file to write-ahead logging; it is a property of the file, set once."""
    db.execute("PRAGMA journal_mode = WAL")
