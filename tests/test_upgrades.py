"""Upgrades lose nothing: the database each earlier schema version left on disk (written by
that version's own code, tests/fixtures/upgrades) migrates to the current schema with every
row and value kept, and serves at once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from sellix_lite.migrations import ABILITIES_BEFORE_LICENSES, latest_version

from conftest import GENEROUS_LIMITS, Server

FIXTURES = Path(__file__).parent / "fixtures" / "upgrades"
VERSIONS = sorted(int(p.stem.split("-")[1]) for p in FIXTURES.glob("schema-*.sql"))


def test_every_earlier_schema_version_has_a_fixture():
    """Before a new migration lands, the schema it replaces gets its fixture
    (tests/fixtures/upgrades/make_fixture.py, run on the last commit of that schema)."""
    assert set(range(VERSIONS[0], latest_version())) <= set(VERSIONS)


def fixture_shop(root: Path, version: int) -> tuple[Server, dict]:
    """A server whose data folder holds the fixture database of `version` (not started)."""
    shop = Server(root, GENEROUS_LIMITS)
    shop.database.parent.mkdir(mode=0o700)
    conn = sqlite3.connect(shop.database)
    conn.executescript((FIXTURES / f"schema-{version}.sql").read_text())
    conn.close()
    return shop, json.loads((FIXTURES / f"schema-{version}.json").read_text())


def rows_by_key(database: Path) -> dict[str, dict[tuple, dict]]:
    """Every row of every table, keyed by table and primary key."""
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    tables = [name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
    found = {}
    for table in tables:
        key = [c["name"] for c in conn.execute(f"PRAGMA table_info({table})") if c["pk"]]
        key = key or ["rowid"]
        found[table] = {tuple(row[k] for k in key): dict(row) for row in conn.execute(
            f"SELECT {'rowid, ' if key == ['rowid'] else ''}* FROM {table}")}
    conn.close()
    return found


# The abilities each migration gave to keys that held every ability there was before it.
GRANTS = [
    (ABILITIES_BEFORE_LICENSES, ["licenses:read", "licenses:write"]),
    (ABILITIES_BEFORE_LICENSES | {"licenses:read", "licenses:write"},
     ["customers:write", "coupons:read", "coupons:write", "blacklist:read", "blacklist:write"]),
]


def row_abilities_as_before(before: dict, after: dict) -> str:
    """A key's abilities after the upgrade, less the ones it was granted then: a key that held
    every ability of its time gains the ones added since, and only such a key."""
    held, now = json.loads(before["abilities"]), json.loads(after["abilities"])
    expected = list(held)
    for every, added in GRANTS:
        if every <= set(expected):
            expected += [ability for ability in added if ability not in expected]
    assert now == expected, now
    return before["abilities"]


@pytest.mark.parametrize("version", VERSIONS)
def test_migrating_keeps_every_row_and_value(tmp_path, version):
    shop, _ = fixture_shop(tmp_path, version)
    before = rows_by_key(shop.database)
    result = shop.cli("migrate")
    assert result.returncode == 0, result.stderr
    assert str(latest_version()) in result.stdout
    after = rows_by_key(shop.database)
    for table, rows in before.items():
        assert table in after, f"table {table} of schema {version} is gone"
        for key, row in rows.items():
            assert key in after[table], f"{table} row {key} of schema {version} is gone"
            kept = {column: after[table][key].get(column) for column in row}
            if table == "api_keys":
                kept["abilities"] = row_abilities_as_before(row, kept)
            assert kept == row, f"{table} row {key} changed in the upgrade from {version}"


@pytest.mark.parametrize("version", VERSIONS)
def test_an_upgraded_shop_serves_its_data(tmp_path, version):
    shop, recorded = fixture_shop(tmp_path, version)
    before = rows_by_key(shop.database)
    shop.start()  # migrations run on start
    try:
        (applied,), = shop.query("SELECT count(*) FROM _sqlite_migrations")
        assert applied == latest_version()
        client = shop.client(recorded["test_key_secret"])
        keys = client.get("/v1/api-keys", params={"limit": 100})
        assert keys.status_code == 200, keys.text
        assert {k["id"] for k in keys.json()["data"]} == {
            row["id"] for row in before["api_keys"].values() if row["mode"] == "test"}
        for table, path in (("products", "/v1/products"), ("orders", "/v1/orders"),
                            ("webhook_endpoints", "/v1/webhooks"), ("payouts", "/v1/payouts")):
            if table not in before:
                continue
            listed = client.get(path, params={"limit": 100})
            assert listed.status_code == 200, listed.text
            assert {item["id"] for item in listed.json()["data"]} == {
                row["id"] for row in before[table].values() if row["mode"] == "test"}
        for row in before.get("orders", {}).values():
            order = client.get(f"/v1/orders/{row['id']}").json()
            if row["status"] in ("completed", "refunded", "partially_refunded"):
                assert order["delivery"]["keys"], f"order {row['id']} lost its keys"
                # Its keys' licenses, read with the fixture's key: minted with every ability
                # before licenses existed, it gained the licenses abilities.
                licensed = client.get("/v1/licenses", params={"order_id": row["id"]})
                assert licensed.status_code == 200, licensed.text
                by_key = {lic["key"]: lic for lic in licensed.json()["data"]}
                assert set(order["delivery"]["keys"]) <= set(by_key), \
                    f"order {row['id']} has no licenses"
                replaced = set(by_key) - set(order["delivery"]["keys"])
                assert all(by_key[key]["status"] == "disabled" for key in replaced)
    finally:
        shop.stop()
