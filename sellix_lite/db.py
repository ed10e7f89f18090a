"""The only place that opens SQLite connections and write transactions.

Each thread (a request, a job run, a CLI command) reads through a connection of its own;
those are never shared across threads. The web server's threads keep theirs open between
requests (`ThreadConnections`): opening one costs more than answering a simple read.

Writes of one process go through one shared connection per database file (`SharedWriter`)
and are committed in groups: a write transaction runs its statements under the writer's
mutex, inside the group's open transaction, and if other writes are queued for the mutex
it leaves the transaction open for them and waits for the COMMIT that the last of them
runs. Only then does `write_txn` return, so a write is acknowledged only once it is
durable, while one sync to disk serves every write of the group. The sync, not the
statements, is what a single write spends most of its time on. Grouped writes see each
other and commit or fail together, exactly as if they had run one after the other; a
write that fails rolls back only its own savepoint.

Writes that read first must hold the write lock from the start, so every group is opened
with BEGIN IMMEDIATE: a deferred transaction upgrading its lock fails at once with
"database is locked" and ignores the busy timeout.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlite_utils

BUSY_TIMEOUT_SECONDS = 30
# name of the savepoint that a write joining an open group runs in
_JOINED = "joined_write"


class Database(sqlite_utils.Database):
    """sqlite-utils' Database with the statements of our hot paths kept to one each.

    sqlite-utils wraps every `query` in a savepoint (three statements instead of one) and
    reads the schema on every `table.insert` or `table.update`; reads and writes of the
    services go through `query`, `insert` and `update` below instead.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._in_one_step: dict[str, str] = {}  # SELECT -> the same as one JSON array

    def query(self, sql: str, params=()) -> Iterator[dict]:
        """Run a SELECT now; its rows as dicts, fetched as they are iterated."""
        cursor = self.conn.execute(sql, params or ())
        names = [column[0] for column in cursor.description]
        return (dict(zip(names, row)) for row in cursor)

    def query_in_one_step(self, sql: str, params=()) -> list[dict]:
        """The rows of a SELECT as dicts, which SQLite hands over in one step as a JSON array.

        Python's sqlite3 releases the interpreter lock for each step of a statement, and a
        statement steps once per row. While other threads wait for the lock, each release
        hands it over and costs context switches to get it back. A list request of 25
        products made about 90 of them; in one step it makes 35, and list pages served a
        third more requests in bench/.
        Values must be TEXT, INTEGER or NULL: JSON holds no BLOB, and REAL may lose digits.
        The order of the rows is SQLite's, in practice the SELECT's; it is not promised.
        """
        wrapped = self._in_one_step.get(sql)
        if wrapped is None:
            # The columns of a connection's SELECT stay the same: the schema only changes
            # at start-up, before the server's connections open.
            names = [column[0] for column in
                     self.conn.execute(f"SELECT * FROM ({sql}) LIMIT 0", params).description]
            pairs = ", ".join(f"'{name}', \"{name}\"" for name in names)  # our own names
            wrapped = f"SELECT json_group_array(json_object({pairs})) FROM ({sql})"
            self._in_one_step[sql] = wrapped
        return json.loads(self.conn.execute(wrapped, params).fetchone()[0])


def connect(path: str | Path) -> Database:
    """Open a connection in autocommit mode: transactions are only the ones we open."""
    db = Database(_open(path))
    # Callables run inside every write transaction just before it commits (see write_txn).
    db.before_commit = []
    db.writer = SharedWriter.of(path)
    return db


def _open(path: str | Path, **options) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_SECONDS, isolation_level=None,
                           **options)
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")
    # Rolling back to a savepoint, as a failed write in a group does, needs the pages it
    # changed: SQLite keeps them in a temporary file by default, created and deleted for
    # each group. In memory they cost no file, and writes/s rose 2-9% in bench/. Nothing
    # durable lives there: after a crash the WAL alone restores the database.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


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


class SharedWriter:
    """The one connection a process writes to a database file with, and its group commit.

    One write at a time runs its statements, holding the mutex; a write that ends while
    others are queued for the mutex leaves the transaction open for them and waits, and
    the last of the queue commits the group (or a full group's write does, so that a
    stream of writes can't keep one waiting). The mutex also makes this process's writers
    queue at once instead of in SQLite's busy handler, which polls with sleeps of up to
    100 ms; other processes (the CLI, a backup) still meet the busy timeout.
    """

    MAX_GROUP = 64

    _by_file: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
    _by_file_guard = threading.Lock()

    @classmethod
    def of(cls, path: str | Path) -> SharedWriter:
        """The writer of the file now at `path`: a file put in its place gets another."""
        resolved = Path(path).resolve()
        key = (str(resolved), _inode(resolved))
        with cls._by_file_guard:
            writer = cls._by_file.get(key)
            if writer is None:
                writer = cls._by_file[key] = cls(resolved)
            return writer

    def __init__(self, path: Path):
        self.conn = _open(path, check_same_thread=False)
        weakref.finalize(self, self.conn.close)
        self.mutex = threading.Lock()
        self._holder: int | None = None  # the thread holding the mutex
        self._group = _Group()  # the group that writes join now
        # Threads that have asked for the mutex and not yet finished their write (adding
        # to and removing from a set are atomic, so this needs no lock of its own).
        self._queued: set[int] = set()
        self._settled = threading.Condition(threading.Lock())

    def begin(self) -> None:
        """Take the mutex, behind the process's other writes, and start a write.

        It opens the group's transaction, or a savepoint in it if other writes are in it.
        """
        me = threading.get_ident()
        if self._holder == me:  # the mutex isn't reentrant: this would wait for ever
            raise RuntimeError("write_txn can't be nested; run the inner writes in the "
                               "outer transaction")
        self._queued.add(me)
        try:
            self.mutex.acquire()
        except BaseException:
            self._queued.discard(me)
            raise
        self._holder = me
        try:
            self._drop_lost_group()
            self.conn.execute(f"SAVEPOINT {_JOINED}" if self._group.writes
                              else "BEGIN IMMEDIATE")
        except BaseException:
            if not self._group.writes and self.conn.in_transaction:
                self.conn.rollback()
            self._hand_on()
            raise

    def end(self, *, failed: bool = False) -> _Group | None:
        """Finish the write and hand the mutex on; returns the group to wait for.

        A failed write is rolled back, and nothing of the others in its group. It still
        returns the group it joined: the failure may rest on what the group's earlier
        writes did, which counts only if they commit.
        """
        try:
            if failed:
                joined = self._group if self._group.writes else None
                self._undo()
                return joined
            return self._keep()
        finally:
            self._hand_on()

    def wait_durable(self, group: _Group) -> None:
        """Return once `group` has committed; raise if it failed."""
        if not group.settled:  # the write that committed it knows already
            with self._settled:
                while not group.settled:
                    self._settled.wait()
        if group.failure is not None:
            raise sqlite3.OperationalError(f"the write was not committed: {group.failure}")

    def _keep(self) -> _Group:
        if self._drop_lost_group() or not self.conn.in_transaction:
            raise _ended()  # the block committed or rolled back by itself
        # A joined write's savepoint is left open (ROLLBACK TO finds the newest of the
        # name) and goes with the COMMIT: releasing it would cost a statement.
        self._group.writes += 1
        return self._group

    def _undo(self) -> None:
        self._drop_lost_group()
        if not self.conn.in_transaction:
            return
        if not self._group.writes:
            self.conn.rollback()
            return
        try:
            self.conn.execute(f"ROLLBACK TO {_JOINED}")
        except sqlite3.Error as exc:
            try:
                self.conn.rollback()
            finally:
                self._settle(exc)

    def _hand_on(self) -> None:
        """Release the mutex; the last write of the queue commits the group first."""
        try:
            self._holder = None
            self._queued.discard(threading.get_ident())
            group = self._group
            if group.writes and (not self._queued or group.writes >= self.MAX_GROUP):
                self._commit_group()
        finally:
            self.mutex.release()

    def _drop_lost_group(self) -> bool:
        """Fail the open group if its transaction is gone, as SQLite does on some errors."""
        lost = self._group.writes > 0 and not self.conn.in_transaction
        if lost:
            self._settle(_ended())
        return lost

    def _commit_group(self) -> None:
        """COMMIT the open group (under the mutex) and tell its writes how it went."""
        if self._drop_lost_group():
            return
        failure = None
        try:
            self.conn.commit()
        except BaseException as exc:
            failure = exc
            if self.conn.in_transaction:
                self.conn.rollback()
        finally:
            self._settle(failure)

    def _settle(self, failure: BaseException | None) -> None:
        """Close the open group (under the mutex) and wake the writes waiting for it."""
        with self._settled:
            # failure first: `wait_durable` reads `settled` without the lock
            self._group.failure = failure
            self._group.settled = True
            self._group = _Group()
            self._settled.notify_all()


class _Group:
    """Writes committed by one COMMIT."""

    def __init__(self):
        self.writes = 0
        self.settled = False
        self.failure: BaseException | None = None


def _ended() -> sqlite3.OperationalError:
    return sqlite3.OperationalError("the transaction ended before its commit")


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


@contextmanager
def write_txn(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """Run the block as one transaction: all of it commits, or none; durable on return.

    Inside the block `db` talks to the process's shared writer (see the module's notes).
    Its `before_commit` hooks run inside the transaction, so what they write commits
    together with the block (the idempotency layer uses this to note that a request has
    taken effect).
    """
    writer, own = db.writer, db.conn
    writer.begin()
    db.conn = writer.conn
    try:
        yield db
        for hook in db.before_commit:
            hook(db)
    except BaseException:
        db.conn = own
        joined = writer.end(failed=True)
        if joined is not None:
            writer.wait_durable(joined)  # an error resting on writes that were lost says so
        raise
    db.conn = own
    writer.wait_durable(writer.end())


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
