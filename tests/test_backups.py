"""Backups a merchant can trust: the copy made while serving restores into a new data
folder with everything in it, and scheduled copies keep only the newest (docs/deploy.md)."""

from __future__ import annotations

import json
import shutil
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from sellix_lite import backups
from sellix_lite.backups import check_backup
from sellix_lite.config import config_from_dict
from sellix_lite.server import prepare

from conftest import GENEROUS_LIMITS, Server, wait_until
from support import key_product, make_product, pay, place_order

LISTS = ("/v1/products", "/v1/orders", "/v1/customers", "/v1/webhooks", "/v1/events",
         "/v1/api-keys")


def snapshot(client) -> dict:
    """Every list the API has, as a client sees it (use times left out: they move on)."""
    lists = {}
    for path in LISTS:
        response = client.get(path, params={"limit": 100})
        assert response.status_code == 200, response.text
        lists[path] = [{k: v for k, v in item.items() if k != "last_used_at"}
                       for item in response.json()["data"]]
    return lists


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def test_a_backup_taken_while_serving_restores_into_a_new_data_folder(make_server, tmp_path):
    shop = make_server(GENEROUS_LIMITS)
    client = shop.client(shop.mint())
    product, _ = key_product(client, keys=3)
    make_product(client, type="account", delivery_text="login: buyer / pass: 1234")
    paid = pay(client, place_order(client, product["id"])["id"])
    assert paid["status"] == "completed"
    assert client.post("/v1/webhooks", json={"url": "http://127.0.0.1:9/hook",
                                             "events": ["*"]}).status_code == 201
    before = snapshot(client)

    backup = tmp_path / "nightly.db"
    ok(shop.cli("backup", backup))
    make_product(client, name="After the backup")  # not in the copy
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600

    # The documented procedure: a new data folder, the backup restored into it, and the
    # secret key (kept with the backups) copied along so buyer links stay valid.
    (tmp_path / "restored").mkdir()
    restored = Server(tmp_path / "restored", GENEROUS_LIMITS)
    restored.database.parent.mkdir(mode=0o700)
    shutil.copy2(shop.database.parent / "secret_key", restored.database.parent / "secret_key")
    result = ok(restored.cli("restore", backup))
    assert "restored" in result.stdout
    restored.start()
    try:
        after = restored.client(client.headers["Authorization"].split()[1])
        now = snapshot(after)
        # Events are stored as they were sent; objects read now carry links naming the
        # server that answers. Nothing else may differ.
        assert now.pop("/v1/events") == before.pop("/v1/events")
        assert json.dumps(now) == json.dumps(before).replace(shop.url, restored.url)
        # The buyer's order page, signed before the backup, opens on the restored shop.
        link = paid["payment"]["checkout_url"].replace(shop.url, restored.url)
        page = requests.get(link, timeout=10)
        assert page.status_code == 200 and product["name"] in page.text

        # Restoring under a running server is refused in one line.
        refused = restored.cli("restore", backup)
        assert refused.returncode == 1
        assert refused.stderr.count("\n") == 1 and "stop it before restoring" in refused.stderr
    finally:
        restored.stop()


def test_restore_keeps_the_replaced_database_and_refuses_a_non_database(make_server,
                                                                       tmp_path):
    shop = make_server(GENEROUS_LIMITS)
    client = shop.client(shop.mint())
    make_product(client, name="Kept aside")
    backup = tmp_path / "empty-shop.db"
    fresh = make_server(start=False)
    ok(fresh.cli("migrate"))
    ok(fresh.cli("backup", backup))
    shop.stop()

    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    refused = shop.cli("restore", junk)
    assert refused.returncode == 1 and refused.stderr.startswith("error: ")
    assert "Traceback" not in refused.stderr

    result = ok(shop.cli("restore", backup))
    kept = next(path for path in shop.database.parent.glob("sellix.db.before-restore-*")
                if not path.name.endswith(("-wal", "-shm")))  # its WAL files are kept beside it
    assert str(kept) in result.stdout
    shop.start()
    # The key lived in the replaced database only: the restored (empty) shop refuses it.
    assert client.get("/v1/products").status_code == 401
    check_backup(kept)  # the replaced database is whole and can be restored in turn
    conn = sqlite3.connect(kept)
    assert conn.execute("SELECT name FROM products").fetchall() == [("Kept aside",)]
    conn.close()


def test_restore_moves_aside_a_log_left_without_its_database(tmp_path):
    """A -wal file whose database was deleted by hand must not be replayed into the copy."""
    source = tmp_path / "source.db"
    conn = sqlite3.connect(source)
    conn.executescript("CREATE TABLE _sqlite_migrations (x); CREATE TABLE products (name);"
                       "INSERT INTO products VALUES ('from the backup');")
    conn.close()
    database = tmp_path / "data" / "sellix.db"
    database.parent.mkdir()
    Path(f"{database}-wal").write_bytes(b"a log of some other database")
    kept = backups.restore(source, database, datetime(2026, 3, 1, tzinfo=UTC))
    assert kept is not None and Path(f"{kept}-wal").exists()
    assert not Path(f"{database}-wal").exists()
    conn = sqlite3.connect(database)
    assert conn.execute("SELECT name FROM products").fetchall() == [("from the backup",)]
    conn.close()


def test_scheduled_backups_run_at_start_and_keep_the_newest(make_server):
    shop = make_server("[backups]\nevery_hours = 24\nkeep = 2\n", start=False)
    ok(shop.cli("migrate"))
    folder = shop.database.parent / "backups"
    folder.mkdir()
    for stamp in ("20250101T000000Z", "20250102T000000Z", "20250103T000000Z"):
        (folder / f"sellix-{stamp}.db").write_bytes(b"an old copy")
    (folder / "notes.txt").write_text("not ours: never deleted")

    shop.start()
    copies = wait_until(lambda: [p for p in sorted(folder.glob("sellix-*.db"))
                                 if not p.name.startswith("sellix-2025")] or None,
                        what="a scheduled backup")
    wait_until(lambda: len(list(folder.glob("sellix-*.db"))) == 2, what="old copies pruned")
    assert sorted(p.name for p in folder.glob("sellix-*.db")) == [
        "sellix-20250103T000000Z.db", copies[0].name]
    assert (folder / "notes.txt").exists()
    check_backup(copies[0])
    assert stat.S_IMODE(copies[0].stat().st_mode) == 0o600


def test_a_scheduled_backup_is_due_only_when_the_newest_is_old_enough(tmp_path):
    """Deciding by the newest copy's age: restarts neither skip a backup nor pile them up."""
    config = config_from_dict({"storage": {"path": "data/sellix.db"},
                               "backups": {"every_hours": 24, "keep": 3}}, base_dir=tmp_path)
    prepare(config)
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    made = [backups.run_scheduled(config, start + timedelta(hours=h))
            for h in (0, 1, 23, 24, 30, 48, 72)]
    assert [copy is not None for copy in made] == [True, False, False, True, False, True,
                                                   True]
    assert sorted(p.name for p in config.backups_dir.iterdir()) == [
        "sellix-20260302T120000Z.db", "sellix-20260303T120000Z.db",
        "sellix-20260304T120000Z.db"]
    assert backups.run_scheduled(config_from_dict({}, base_dir=tmp_path), start) is None
