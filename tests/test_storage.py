"""Storage: migrations, connection settings, write transactions and concurrent writers."""

from __future__ import annotations

import json
import sqlite3
import threading

import pytest

from sellix_lite import db as storage, migrations as schema
from sellix_lite.config import config_from_dict
from sellix_lite.jobs import JobContext, purge_idempotency_keys
from sellix_lite.migrations import SchemaTooNew, latest_version, migrate, schema_version


def table_names(db) -> set[str]:
    return {row["name"] for row in db.query("SELECT name FROM sqlite_master WHERE type='table'")}


def api_key_row(n: int) -> dict:
    return {"id": f"apik_{n:026d}", "mode": "test", "name": f"key {n}",
            "abilities": json.dumps(["orders:read"]), "secret_hash": f"hash{n}",
            "created_at": "2026-01-01T00:00:00Z", "last_used_at": None, "revoked_at": None}


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "shop.db"


@pytest.fixture
def db(db_path):
    """A connection to a fully migrated database."""
    conn = storage.connect(db_path)
    migrate(conn)
    yield conn
    conn.close()


# --- (a) migrations ------------------------------------------------------------------------


def test_upgrade_from_the_first_migration_keeps_rows(db_path):
    old = storage.connect(db_path)
    schema.migrations.apply(old, stop_before="m0002_idempotency")
    assert schema_version(old) == 1
    assert "api_keys" in table_names(old)
    assert "idempotency_keys" not in table_names(old)
    rows = [api_key_row(n) for n in range(5)]
    with storage.write_txn(old):
        for row in rows:
            storage.insert(old, "api_keys", row)
    old.close()

    db = storage.connect(db_path)
    try:
        assert migrate(db) == latest_version()
        assert schema_version(db) == latest_version()
        assert latest_version() >= 2
        assert "idempotency_keys" in table_names(db)
        assert list(db.query("SELECT * FROM api_keys ORDER BY id")) == rows
        # The new table works with the old rows (its foreign key points at them).
        db.execute("INSERT INTO idempotency_keys (api_key_id, key, fingerprint, state, boot_id,"
                   " created_at) VALUES (?, 'k', 'f', 'done', 'b', '2026-01-01T00:00:00Z')",
                   (rows[0]["id"],))
    finally:
        db.close()


def test_migrate_twice_is_a_no_op(db_path):
    db = storage.connect(db_path)
    try:
        assert migrate(db) == latest_version()
        applied = [m.name for m in schema.migrations.applied(db)]
        assert migrate(db) == latest_version()
        assert [m.name for m in schema.migrations.applied(db)] == applied
    finally:
        db.close()


def test_fresh_database_gets_the_latest_version(db):
    assert schema_version(db) == latest_version()
    assert {"api_keys", "settings", "idempotency_keys"} <= table_names(db)


def test_database_from_a_newer_version_is_refused(db, db_path):
    db["_sqlite_migrations"].insert({"migration_set": "sellix_lite", "name": "m9999_future",
                                     "applied_at": "2099-01-01 00:00:00+00:00"})
    with pytest.raises(SchemaTooNew) as info:
        migrate(db)
    assert "m9999_future" in str(info.value)
    # A fresh connection (a new process) is refused the same way.
    other = storage.connect(db_path)
    try:
        with pytest.raises(SchemaTooNew):
            migrate(other)
    finally:
        other.close()


def test_other_migration_sets_do_not_count_as_newer(db):
    db["_sqlite_migrations"].insert({"migration_set": "some_plugin", "name": "p0001",
                                     "applied_at": "2026-01-01 00:00:00+00:00"})
    assert migrate(db) == latest_version()


# --- (b) connection settings ---------------------------------------------------------------


def test_migrate_switches_the_file_to_wal(db, db_path):
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # WAL is a property of the file: every later connection sees it.
    other = storage.connect(db_path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        other.close()
    plain = sqlite3.connect(db_path)
    try:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        plain.close()


def test_every_connection_has_foreign_keys_a_busy_timeout_and_temp_in_memory(db, db_path):
    connections = [db] + [storage.connect(db_path) for _ in range(3)]
    try:
        for conn in connections + [db.writer.conn]:  # and the shared writer
            assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
            assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
            assert conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
    finally:
        for conn in connections[1:]:
            conn.close()


def test_connections_from_other_threads_have_the_same_settings(db_path, db):
    seen = []

    def check():
        conn = storage.connect(db_path)
        try:
            seen.append((conn.execute("PRAGMA foreign_keys").fetchone()[0],
                         conn.execute("PRAGMA busy_timeout").fetchone()[0]))
        finally:
            conn.close()

    thread = threading.Thread(target=check)
    thread.start()
    thread.join()
    assert len(seen) == 1 and seen[0][0] == 1 and seen[0][1] > 0


def test_foreign_keys_are_enforced(db):
    with pytest.raises(sqlite3.IntegrityError):
        with storage.write_txn(db):
            db.execute("INSERT INTO license_keys (product_id, key, created_at) VALUES "
                       "('prod_nobody', 'k', '2026-01-01T00:00:00Z')")
    assert db.execute("SELECT count(*) FROM license_keys").fetchone()[0] == 0


def test_connections_are_in_autocommit_mode(db):
    assert not db.conn.in_transaction
    db.execute("SELECT 1").fetchall()
    assert not db.conn.in_transaction


# --- (c) write_txn -------------------------------------------------------------------------


@pytest.fixture
def things(db):
    db.execute("CREATE TABLE things (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    return db


def count(db, table: str = "things") -> int:
    return db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_write_txn_commits_on_success(things, db_path):
    with storage.write_txn(things) as same:
        assert same is things
        assert things.conn.in_transaction
        things.execute("INSERT INTO things (name) VALUES ('a')")
        things.execute("INSERT INTO things (name) VALUES ('b')")
    assert not things.conn.in_transaction
    other = storage.connect(db_path)
    try:
        assert count(other) == 2
    finally:
        other.close()


def test_write_txn_rolls_back_on_exception(things, db_path):
    with pytest.raises(RuntimeError, match="boom"):
        with storage.write_txn(things):
            things.execute("INSERT INTO things (name) VALUES ('a')")
            raise RuntimeError("boom")
    assert not things.conn.in_transaction
    assert count(things) == 0
    # The connection is usable afterwards.
    with storage.write_txn(things):
        things.execute("INSERT INTO things (name) VALUES ('b')")
    assert count(things) == 1


def test_write_txn_rolls_back_on_a_failing_statement(things):
    with pytest.raises(sqlite3.IntegrityError):
        with storage.write_txn(things):
            things.execute("INSERT INTO things (name) VALUES ('a')")
            things.execute("INSERT INTO things (name) VALUES (NULL)")
    assert count(things) == 0
    assert not things.conn.in_transaction


def test_write_txn_rolls_back_on_base_exceptions(things):
    with pytest.raises(KeyboardInterrupt):
        with storage.write_txn(things):
            things.execute("INSERT INTO things (name) VALUES ('a')")
            raise KeyboardInterrupt
    assert count(things) == 0


def test_before_commit_hooks_run_inside_the_transaction(things, db_path):
    calls = []

    def hook(conn):
        calls.append(conn.conn.in_transaction)
        # What a hook writes sees the block's writes and commits with them.
        seen = count(conn)
        conn.execute("INSERT INTO things (name) VALUES (?)", (f"hook saw {seen}",))

    things.before_commit.append(hook)
    with storage.write_txn(things):
        things.execute("INSERT INTO things (name) VALUES ('a')")
        assert calls == []  # not before the block has finished
    assert calls == [True]
    assert [r["name"] for r in things.query("SELECT name FROM things ORDER BY id")] == \
        ["a", "hook saw 1"]


def test_before_commit_hook_failure_rolls_back_everything(things):
    def hook(conn):
        conn.execute("INSERT INTO things (name) VALUES ('hook')")
        raise ValueError("hook failed")

    things.before_commit.append(hook)
    with pytest.raises(ValueError, match="hook failed"):
        with storage.write_txn(things):
            things.execute("INSERT INTO things (name) VALUES ('a')")
    assert count(things) == 0
    assert not things.conn.in_transaction


def test_before_commit_hooks_do_not_run_when_the_block_fails(things):
    calls = []
    things.before_commit.append(lambda conn: calls.append(1))
    with pytest.raises(RuntimeError):
        with storage.write_txn(things):
            raise RuntimeError("no")
    assert calls == []


def test_before_commit_hooks_belong_to_one_connection(things, db_path):
    calls = []
    things.before_commit.append(lambda conn: calls.append(1))
    other = storage.connect(db_path)
    try:
        assert other.before_commit == []
        with storage.write_txn(other):
            other.execute("INSERT INTO things (name) VALUES ('x')")
    finally:
        other.close()
    assert calls == []


def test_write_txn_takes_the_write_lock_at_once(things, db_path):
    """BEGIN IMMEDIATE: another writer can't start even before the block writes."""
    impatient = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        with storage.write_txn(things):
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                impatient.execute("BEGIN IMMEDIATE")
            # Readers are not blocked (WAL).
            assert impatient.execute("SELECT count(*) FROM things").fetchone()[0] == 0
        impatient.execute("BEGIN IMMEDIATE")
        impatient.execute("ROLLBACK")
    finally:
        impatient.close()


def test_query_one(things):
    assert storage.query_one(things, "SELECT * FROM things") is None
    with storage.write_txn(things):
        things.execute("INSERT INTO things (name) VALUES ('a'), ('b')")
    assert storage.query_one(things, "SELECT name FROM things WHERE name = ?", ("b",)) == \
        {"name": "b"}


AWKWARD_TEXTS = ["", "it's \"quoted\" \\ back", "line\nbreak\ttab\r", "nul \x00 inside",
                 "🛒 ünïcödé", '{"looks": "like json"}', "[1, 2]", "null", "12", "\u2028"]


@pytest.mark.parametrize("sql, params", [
    ("SELECT * FROM things ORDER BY id DESC", ()),
    ("SELECT * FROM things WHERE id < ? ORDER BY id DESC LIMIT ?", (12, 5)),
    ("SELECT name AS \"the name\", -id AS negated, NULL AS missing FROM things ORDER BY id",
     ()),
    ("SELECT * FROM things WHERE name = ?", ("absent",)),
])
def test_rows_fetched_in_one_step_are_the_rows_of_the_select(things, sql, params):
    with storage.write_txn(things):
        for n, text in enumerate(AWKWARD_TEXTS):
            things.execute("INSERT INTO things (id, name) VALUES (?, ?)", (n, text))
        things.execute("INSERT INTO things (id, name) VALUES (?, '')", (2 ** 63 - 1,))
    assert things.query_in_one_step(sql, params) == list(things.query(sql, params))
    # The wrapped statement is kept, and gives the same rows again.
    assert things.query_in_one_step(sql, params) == list(things.query(sql, params))


def test_tables_hold_only_values_json_carries_exactly(db):
    """List pages come through JSON (`query_in_one_step`): a REAL column would lose digits
    and a BLOB one would fail. Idempotency keys keep response bodies as bytes; nothing lists
    them."""
    for name in table_names(db) - {"idempotency_keys"}:
        types = {column["type"] for column in db.query(f"PRAGMA table_info({name})")}
        assert types <= {"TEXT", "INTEGER"}, name


# --- (d) many writers at once --------------------------------------------------------------

WORKERS = 16
TXNS_PER_WORKER = 200


def test_concurrent_writers_lose_nothing(db, db_path, tmp_path):
    db.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, value INTEGER NOT NULL)")
    db.execute("CREATE TABLE log (id INTEGER PRIMARY KEY, worker INTEGER NOT NULL,"
               " seen INTEGER NOT NULL UNIQUE)")
    db.execute("CREATE TABLE ticks (id INTEGER PRIMARY KEY)")
    db.execute("INSERT INTO counter (id, value) VALUES (1, 0)")

    errors: list[BaseException] = []
    start = threading.Barrier(WORKERS + 1)
    workers_done = threading.Event()
    ticks = []

    def worker(n: int):
        try:
            conn = storage.connect(db_path)
            try:
                start.wait()
                for _ in range(TXNS_PER_WORKER):
                    with storage.write_txn(conn):
                        value = storage.query_one(
                            conn, "SELECT value FROM counter WHERE id = 1")["value"]
                        conn.execute("UPDATE counter SET value = ? WHERE id = 1", (value + 1,))
                        # UNIQUE(seen): two writers reading the same value would collide.
                        conn.execute("INSERT INTO log (worker, seen) VALUES (?, ?)", (n, value))
            finally:
                conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def scheduler_like():
        """What the scheduler does meanwhile: its own connections, short write jobs."""
        ctx = JobContext(config_from_dict({"storage": {"path": str(db_path)}},
                                          base_dir=tmp_path), "secret")
        try:
            start.wait()
            while not workers_done.is_set():
                purge_idempotency_keys(ctx)
                conn = ctx.connect()
                try:
                    with storage.write_txn(conn):
                        conn.execute("INSERT INTO ticks DEFAULT VALUES")
                    ticks.append(1)
                finally:
                    conn.close()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(WORKERS)]
    jobs = threading.Thread(target=scheduler_like)
    for thread in threads + [jobs]:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    workers_done.set()
    jobs.join(timeout=60)

    assert not any(t.is_alive() for t in threads + [jobs]), "a writer hung"
    assert errors == [], errors[:3]
    total = WORKERS * TXNS_PER_WORKER
    assert storage.query_one(db, "SELECT value FROM counter WHERE id = 1")["value"] == total
    assert count(db, "log") == total
    assert storage.query_one(db, "SELECT min(seen) AS lo, max(seen) AS hi FROM log") == \
        {"lo": 0, "hi": total - 1}
    per_worker = {r["worker"]: r["n"] for r in
                  db.query("SELECT worker, count(*) AS n FROM log GROUP BY worker")}
    assert per_worker == {n: TXNS_PER_WORKER for n in range(WORKERS)}
    assert ticks and count(db, "ticks") == len(ticks)
    assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# --- (e) group commit ----------------------------------------------------------------------


def run_queued(db_path, blocks):
    """Run each block in a write_txn of its own thread, all queued before the first starts
    (the test holds the writer's mutex meanwhile); returns (outcomes, COMMITs run)."""
    writer = storage.SharedWriter.of(db_path)
    commits = []
    writer.conn.set_trace_callback(lambda sql: sql == "COMMIT" and commits.append(sql))
    outcomes = [None] * len(blocks)

    def write(n: int) -> None:
        conn = storage.connect(db_path)
        try:
            with storage.write_txn(conn):
                blocks[n](conn)
            outcomes[n] = "committed"
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes[n] = exc
        finally:
            conn.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(len(blocks))]
    with writer.mutex:
        for thread in threads:
            thread.start()
        while len(writer._queued) < len(blocks):
            threading.Event().wait(0.001)
    for thread in threads:
        thread.join(timeout=30)
    writer.conn.set_trace_callback(None)
    assert not any(thread.is_alive() for thread in threads), "a writer hung"
    return outcomes, len(commits)


def insert_thing(name: str):
    return lambda conn: conn.execute("INSERT INTO things (name) VALUES (?)", (name,))


def names(db) -> list[str]:
    return sorted(row["name"] for row in db.query("SELECT name FROM things"))


def test_queued_writes_commit_together_with_one_sync(things, db_path):
    outcomes, commits = run_queued(db_path, [insert_thing(f"t{n}") for n in range(6)])
    assert outcomes == ["committed"] * 6
    assert commits == 1
    assert names(things) == [f"t{n}" for n in range(6)]


def test_a_failing_write_in_a_group_rolls_back_only_itself(things, db_path):
    def fails(conn):
        conn.execute("INSERT INTO things (name) VALUES ('doomed')")
        raise RuntimeError("no")

    outcomes, commits = run_queued(
        db_path, [insert_thing("a"), fails, insert_thing("b"), insert_thing("c")])
    assert [o if isinstance(o, str) else repr(o) for o in outcomes] == \
        ["committed", "RuntimeError('no')", "committed", "committed"]
    assert commits == 1
    assert names(things) == ["a", "b", "c"]


def test_writes_in_a_group_see_each_other_as_if_run_one_after_another(things, db_path):
    def next_number(conn):
        seen = conn.execute("SELECT count(*) FROM things").fetchone()[0]
        conn.execute("INSERT INTO things (name) VALUES (?)", (f"n{seen}",))

    outcomes, _ = run_queued(db_path, [next_number] * 5)
    assert outcomes == ["committed"] * 5
    assert names(things) == [f"n{n}" for n in range(5)]


def test_a_failed_commit_fails_every_write_of_its_group(things, db_path):
    """No write is acknowledged unless its COMMIT succeeded: a deferred constraint that
    fails at COMMIT takes the whole group down, and the writers all hear of it."""
    things.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
    things.execute("CREATE TABLE children (id INTEGER PRIMARY KEY, parent_id INTEGER "
                   "REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)")
    orphan = lambda conn: conn.execute("INSERT INTO children (parent_id) VALUES (42)")  # noqa: E731
    outcomes, commits = run_queued(db_path, [insert_thing("a"), orphan, insert_thing("b")])
    assert all(isinstance(o, sqlite3.OperationalError) and "not committed" in str(o)
               for o in outcomes), outcomes
    assert commits == 1
    assert names(things) == []
    assert count(things, "children") == 0
    with storage.write_txn(things):  # the writer carries on
        insert_thing("after")(things)
    assert names(things) == ["after"]


def test_a_write_is_durable_when_write_txn_returns(things, db_path):
    """Another process's connection sees it at once: it is committed, not only grouped."""
    with storage.write_txn(things):
        insert_thing("x")(things)
    outside = sqlite3.connect(db_path)
    try:
        assert outside.execute("SELECT name FROM things").fetchall() == [("x",)]
    finally:
        outside.close()


def test_a_file_put_in_place_of_the_database_gets_its_own_writer(db_path, tmp_path):
    first = storage.connect(db_path)
    try:
        replacement = tmp_path / "replacement.db"
        sqlite3.connect(replacement).close()
        replacement.replace(db_path)
        second = storage.connect(db_path)
        assert second.writer is not first.writer
        second.close()
    finally:
        first.close()


def test_a_full_disk_never_acknowledges_a_write_it_lost(things, db_path):
    """SQLite may roll a whole transaction back when the disk is full; the writes of the
    group that were lost with it must hear so, and later writes start a group afresh."""
    writer = storage.SharedWriter.of(db_path)
    pages = writer.conn.execute("PRAGMA page_count").fetchone()[0]
    writer.conn.execute(f"PRAGMA max_page_count = {pages + 3}")
    blocks = [insert_thing("a"), insert_thing("x" * 200_000), insert_thing("c")]
    outcomes, _ = run_queued(db_path, blocks)
    assert isinstance(outcomes[1], sqlite3.OperationalError)
    kept = set(names(things))
    for name, outcome in zip(["a", "x" * 200_000, "c"], outcomes):
        assert (outcome == "committed") == (name in kept), (name[:5], outcome)
    writer.conn.execute("PRAGMA max_page_count = 1073741823")
    with storage.write_txn(things):
        insert_thing("after")(things)
    assert "after" in names(things)
    assert not writer.conn.in_transaction


def test_an_error_resting_on_a_lost_group_reports_the_loss(things, db_path):
    """A write that fails because of what an earlier write of its group did (a conflict
    with a row not yet committed) must not report that reason if the row never commits."""
    things.execute("CREATE TABLE parents (id INTEGER PRIMARY KEY)")
    things.execute("CREATE TABLE children (id INTEGER PRIMARY KEY, parent_id INTEGER "
                   "REFERENCES parents (id) DEFERRABLE INITIALLY DEFERRED)")
    writer = storage.SharedWriter.of(db_path)
    outcomes = {}

    def refuses_after_an_orphan():
        conn = storage.connect(db_path)
        try:
            with storage.write_txn(conn):
                if count(conn, "children"):
                    raise RuntimeError("conflict with a row that was never committed")
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            outcomes["refused"] = exc
        finally:
            conn.close()

    second = threading.Thread(target=refuses_after_an_orphan)
    with pytest.raises(sqlite3.OperationalError, match="not committed"):
        with storage.write_txn(things):
            # fine until its COMMIT, which the deferred key fails
            things.execute("INSERT INTO children (parent_id) VALUES (42)")
            second.start()  # queued behind this write, so it joins this group
            while len(writer._queued) < 2:
                threading.Event().wait(0.001)
    second.join(timeout=30)
    assert isinstance(outcomes["refused"], sqlite3.OperationalError), outcomes
    assert "not committed" in str(outcomes["refused"])
    assert count(things, "children") == 0


def test_nesting_write_txn_is_an_error_not_a_hang(things, db_path):
    inner = storage.connect(db_path)
    try:
        with storage.write_txn(things):
            insert_thing("outer")(things)
            with pytest.raises(RuntimeError, match="nested"):
                with storage.write_txn(inner):
                    insert_thing("inner")(inner)
    finally:
        inner.close()
    assert names(things) == ["outer"]
